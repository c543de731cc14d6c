"""The floors of the house: the ground (``citysight/`` but ``citysight/app/``) imports no
layer; the layers (``streams``, ``inference``, ``serve_app``) import the ground and
themselves, never each other or the roof; the roof (``citysight/app/``, ``citysight/__main__``)
and ``benchmarks`` may import anything. Every import counts, function-level ones included,
and so do dotted ``"module:attr"`` / ``import_module("module")`` strings (a registry target
is an import that happens later). Fails on any arrow from a lower floor to a higher one."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LAYERS = ("streams", "inference", "serve_app")
PROJECT = ("citysight", *LAYERS, "benchmarks", "tests")
_DOTTED = re.compile(r"^([a-z_]+(?:\.[a-z_0-9]+)+)(?::[A-Za-z_][A-Za-z_0-9]*)?$")


def floor_of(module: str) -> str | None:
    """``ground``, a layer's name, ``roof``, or None for modules outside the project."""
    top = module.split(".")[0]
    if module == "citysight.__main__" or module.startswith("citysight.app"):
        return "roof"
    if top == "citysight":
        return "ground"
    if top in LAYERS:
        return top
    if top == "benchmarks":
        return "roof"
    return None


def allowed(src: str, dst: str) -> bool:
    """May a module on floor ``src`` import one on floor ``dst``?"""
    if src == "roof":
        return True
    if src == "ground":
        return dst == "ground"
    return dst in ("ground", src)  # a layer


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) for every import statement and dotted module string in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    me = module_name(path, root)
    pkg = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append((node.lineno, mod))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            m = _DOTTED.match(node.value)
            if (
                m
                and m.group(1).split(".")[0] in PROJECT
                and (":" in node.value or (root / (m.group(1).replace(".", "/") + ".py")).exists())
            ):
                out.append((node.lineno, m.group(1)))
    return out


def _sources() -> list[Path]:
    return sorted(
        p
        for top in ("citysight", *LAYERS)
        for p in (ROOT / top).rglob("*.py")
        if ".venv" not in p.parts
    )


def test_no_import_runs_from_a_lower_floor_to_a_higher_one() -> None:
    bad = []
    for path in _sources():
        src = floor_of(module_name(path))
        assert src is not None
        for line, mod in imports_of(path):
            dst = floor_of(mod)
            if dst is not None and not allowed(src, dst):
                bad.append(f"{path.relative_to(ROOT)}:{line}: {src} imports {mod} ({dst})")
    assert not bad, "imports against the floors:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("src", "code", "ok"),
    [
        ("citysight/x.py", "import streams.urls", False),
        ("citysight/x.py", "def f():\n    from serve_app.app import build_app", False),
        ("citysight/x.py", "T = 'inference.client:create'", False),
        ("citysight/x.py", "from citysight.app import cli", False),
        ("citysight/x.py", "from citysight import keys", True),
        ("streams/x.py", "from inference.client import create_client", False),
        ("streams/x.py", "from . import urls\nfrom citysight.keys import FEED", True),
        ("serve_app/x.py", "import citysight.app.runtime", False),
        ("citysight/app/x.py", "import streams, inference, serve_app", True),
    ],
)
def test_the_check_itself_catches_each_kind_of_arrow(
    tmp_path: Path, src: str, code: str, ok: bool
) -> None:
    """The walker sees plain, function-level, relative and string imports."""
    path = tmp_path / src
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(code + "\n")
    me = floor_of(module_name(path, tmp_path))
    assert me is not None
    found = imports_of(path, tmp_path)
    verdicts = [allowed(me, d) for _, m in found if (d := floor_of(m)) is not None]
    assert verdicts and all(verdicts) is ok, (code, found)
