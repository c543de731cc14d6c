"""``citysight bench stats``: ``GET /api/stats`` and the CSV export over N alerts (issue 16).

For each alert count N: N alerts spread over 7 days across the demo's cameras (and so its
synthetic townships and grids), about half acknowledged and a third of those resolved, on a
private real Redis; the real FastAPI app in process. Timed (median of ``--repeats``): the
statistics of the whole city by township, a township officer's statistics (its own index),
and the streamed CSV export of the whole range; the baseline, same run, is one JSON page of
the alert list (``GET /api/alerts?limit=500``). Reported: milliseconds, the ratio to the
baseline and µs per alert in range; the statistics' work grows with the alerts in range (see
:mod:`serve_app.store.stats`), so µs per alert stays roughly flat as N grows.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common.results import emit

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "stats.json"
DAYS = 7


def build_parser() -> argparse.ArgumentParser:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(prog="citysight bench stats", description=__doc__.split("\n")[0])
    p.add_argument(
        "--alerts",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1000, 5000, 20000],
        help="comma-separated alert counts",
    )
    p.add_argument("--repeats", type=int, default=5, help="timed runs per measurement")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _config() -> Any:
    from citysight.app.demo import DEMO_DEPARTMENTS, DEMO_JURISDICTIONS, DEMO_ROUTING
    from citysight.config import CitysightConfig

    return CitysightConfig.model_validate(
        {
            "site": {"timezone": "Asia/Shanghai"},
            "jurisdictions": {"areas": [dict(a) for a in DEMO_JURISDICTIONS]},
            "departments": [dict(d) for d in DEMO_DEPARTMENTS],
            "routing": [dict(r) for r in DEMO_ROUTING],
        }
    )


def _seed(r: Any, cfg: Any, n: int, now: float) -> None:
    """N alerts over DAYS days at the demo cameras' positions, with lifecycle events."""
    from citysight.app.demo import _CAMERAS
    from citysight.contracts import Alert, AlertKind, AlertState, Location, Severity
    from serve_app.store.alerts import AlertStore

    store = AlertStore(r, cfg)
    kinds = [AlertKind.FIRE, AlertKind.SMOKE, AlertKind.VENDING, AlertKind.PLATE, AlertKind.FACE]
    batch: list[Alert] = []
    for i in range(n):
        cid, _scene, _name, lat, lon, _t, _d = _CAMERAS[i % len(_CAMERAS)]
        kind = kinds[i % len(kinds)]
        t = now - DAYS * 86400 * (i + 0.5) / n
        batch.append(
            Alert(
                id=f"al_bench_{i:07d}",
                kind=kind,
                severity=Severity.HIGH,
                camera_id=cid,
                location=Location(lat=lat, lon=lon),
                department=cfg.route(kind, "") or "duty",
                rule_id=f"{kind.value}-rule",
                started_at=datetime.fromtimestamp(t, UTC),
                raised_at=t,
            )
        )
        if len(batch) == 500:
            store.save_new(batch)
            batch = []
    store.save_new(batch)
    for i in range(0, n, 2):  # half acknowledged, a third of those resolved
        aid = f"al_bench_{i:07d}"
        store.transition(aid, AlertState.ACKNOWLEDGED, actor="bench")
        if i % 3 == 0:
            store.transition(aid, AlertState.RESOLVED, actor="bench", outcome="handled")


def _median_ms(fn: Callable[[], Any], repeats: int) -> float:
    out: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(out)


def _measure_size(
    c: Any, h: dict[str, dict[str, str]], n: int, rng: str, repeats: int
) -> dict[str, Any]:
    """Time the routes over one seeded store (``c``: a TestClient of the real app)."""

    def get(url: str, role: str = "admin") -> Any:
        res = c.get(url, headers=h[role])
        assert res.status_code == 200, res.text
        return res

    city_url = f"/api/stats?group_by=jurisdiction&level=township&{rng}"
    town_url = f"/api/stats?{rng}"
    csv_url = f"/api/alerts?format=csv&limit={n}"
    city = get(city_url).json()
    town = get(town_url, "township").json()
    csv_rows = get(csv_url).text.count("\n") - 1
    base = _median_ms(lambda: get("/api/alerts?limit=500"), repeats)
    return {
        "alerts": n,
        "baseline_list_500_ms": round(base, 1),
        "stats_city_ms": round(_median_ms(lambda: get(city_url), repeats), 1),
        "stats_township_ms": round(_median_ms(lambda: get(town_url, "township"), repeats), 1),
        "csv_export_ms": round(_median_ms(lambda: get(csv_url), max(1, repeats // 2)), 1),
        "city_total": city["overall"]["total"],
        "township_total": town["overall"]["total"],
        "csv_rows": csv_rows,
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Seed each size on a fresh Redis and time the routes (see the module docstring)."""
    import redis
    from fastapi.testclient import TestClient

    from citysight import keys
    from citysight.app.services.redis_server import EmbeddedRedis, free_port
    from serve_app.http import create_api

    cfg = _config()
    tokens = {"admin": ("*", "*"), "township": ("*", "meilan")}
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="citysight-bench-stats-") as tmp:
        srv = EmbeddedRedis(free_port(), Path(tmp), appendonly=False).start()
        try:
            r = redis.Redis.from_url(srv.url)
            for n in args.alerts:
                r.flushall()
                for role, (dept, jur) in tokens.items():
                    rec = {"name": role, "role": role, "department": dept, "jurisdiction": jur,
                           "scopes": ["alerts:read"]}  # fmt: skip
                    tok = f"bench-stats-{role}-0123456789"
                    r.hset(
                        keys.PRINCIPALS, hashlib.sha256(tok.encode()).hexdigest(), json.dumps(rec)
                    )
                now = time.time()
                t0 = time.perf_counter()
                _seed(r, cfg, n, now)
                seed_s = time.perf_counter() - t0
                h = {k: {"Authorization": f"Bearer bench-stats-{k}-0123456789"} for k in tokens}
                rng = f"from={now - DAYS * 86400 - 60}&to={now + 60}"
                with TestClient(create_api(cfg, srv.url)) as c:
                    row = _measure_size(c, h, n, rng, args.repeats)
                row["seed_s"] = round(seed_s, 1)
                base = row["baseline_list_500_ms"]
                row["stats_city_x_baseline"] = round(row["stats_city_ms"] / base, 2)
                row["stats_city_us_per_alert"] = round(row["stats_city_ms"] * 1e3 / n, 1)
                row["stats_township_us_per_alert"] = round(
                    row["stats_township_ms"] * 1e3 / max(1, row["township_total"]), 1
                )
                rows.append(row)
            r.close()
        finally:
            srv.stop()
    return {"benchmark": "stats", "repeats": args.repeats, "days": DAYS, "rows": rows}


def table(res: dict[str, Any]) -> str:
    """A Markdown table of the result."""
    lines = [
        "| alerts | list 500 ms (baseline) | stats city ms | × baseline | µs/alert | "
        "stats township ms (alerts) | CSV export ms (rows) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['alerts']} | {r['baseline_list_500_ms']} | {r['stats_city_ms']} | "
            f"{r['stats_city_x_baseline']} | {r['stats_city_us_per_alert']} | "
            f"{r['stats_township_ms']} ({r['township_total']}) | "
            f"{r['csv_export_ms']} ({r['csv_rows']}) |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write ``--out`` (JSON) and print a table (or the JSON)."""
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or not args.alerts or min(args.alerts) < 10:
        print("citysight bench stats: --repeats must be >= 1 and every count >= 10",
              file=sys.stderr)  # fmt: skip
        return 2
    res = measure(args)
    emit(res, args.out, as_json=args.json, table=table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
