"""Helpers for the project's tests (on the pytest pythonpath: ``from testkit import ...``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need_shared(rel: str) -> Path:
    """Path of a file or folder under ../shared; fails in CI when missing, skips elsewhere."""
    path = SHARED / rel
    if not path.exists():
        msg = f"shared test data missing: {path}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path


# -- Prometheus queries (dashboards and alert rules checked against real expositions) ------

Series = dict[str, list[dict[str, str]]]


def exposition_series(text: str) -> Series:
    """Sample name → label sets of every sample in a Prometheus text exposition.

    Raises:
        ValueError: the text is not valid exposition format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    # The parser renames counter samples to OpenMetrics' ``<name>_total``; Prometheus stores
    # them as written (Triton's counters have no suffix), so undo that for those.
    bare_counters = {
        parts[2]
        for line in text.splitlines()
        if line.startswith("# TYPE ")
        and len(parts := line.split()) == 4
        and parts[3] == "counter"
        and not parts[2].endswith("_total")
    }
    out: Series = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            name = s.name
            if fam.type == "counter" and name.removesuffix("_total") in bare_counters:
                name = name.removesuffix("_total")
            out.setdefault(name, []).append(dict(s.labels))
    return out


def query_problems(expr: str, series: Series, prefixes: tuple[str, ...] = ("",)) -> list[str]:
    """What in a PromQL query does not match an exposition (empty: it all does).

    The query is parsed with a real PromQL parser (``promql-parser``). For every selector
    whose metric name starts with one of ``prefixes``: the name must have samples, every
    label it matches on must exist on them, and an equality matcher's value must occur;
    every ``by (...)`` label of an aggregation must exist on a selector inside it.
    """
    import promql_parser

    try:
        root = promql_parser.parse(expr)
    except ValueError as exc:
        return [f"does not parse: {exc}"]
    problems: list[str] = []

    def selectors(node: Any) -> list[tuple[str, list[tuple[str, str, str]]]]:
        found: list[tuple[str, list[tuple[str, str, str]]]] = []

        def visit(n: Any) -> None:
            if isinstance(n, promql_parser.VectorSelector):
                ms = [(m.name, str(m.op), m.value) for m in n.matchers.matchers]
                name = n.name or next((v for k, _, v in ms if k == "__name__"), "")
                found.append((name, [m for m in ms if m[0] != "__name__"]))

        promql_parser.walk(node, pre_visit=visit)
        return found

    def mine(name: str) -> bool:
        return any(name.startswith(p) for p in prefixes)

    for name, matchers in selectors(root):
        if not mine(name):
            continue
        samples = series.get(name)
        if not samples:
            problems.append(f"metric {name} is not exported")
            continue
        for label, op, value in matchers:
            values = {s[label] for s in samples if label in s}
            if not values:
                problems.append(f"{name} has no label {label!r}")
            elif op.endswith("Equal") and "Not" not in op and value not in values:
                problems.append(f"{name}{{{label}={value!r}}} matches no exported sample")

    def check_grouping(n: Any) -> None:
        if not isinstance(n, promql_parser.AggregateExpr) or n.modifier is None:
            return
        if "By" not in str(n.modifier.type):
            return
        inner = [s for s in selectors(n.expr) if mine(s[0]) and s[0] in series]
        if not inner:
            return
        have = {k for name, _ in inner for sample in series[name] for k in sample}
        for label in n.modifier.labels:
            if label not in have:
                problems.append(f"grouping by {label!r}: no such label on {inner[0][0]}")

    promql_parser.walk(root, pre_visit=check_grouping)
    return problems


def dashboard_queries(doc: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, expression) of every query of a Grafana dashboard, rows included."""
    out: list[tuple[str, str]] = []

    def panels(items: list[dict[str, Any]]) -> None:
        for p in items:
            for t in p.get("targets") or []:
                if t.get("expr"):
                    out.append((str(p.get("title", "")), str(t["expr"])))
            panels(p.get("panels") or [])

    panels(doc.get("panels") or [])
    return out
