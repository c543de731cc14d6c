"""Run a bounded, headless locust test against a citysight on 127.0.0.1 and plot it.

Locust runs in its own subprocess (its gevent monkey-patching must come before ssl/redis
imports). Every run is bounded in users and time and may only target 127.0.0.1. Outputs,
for ``--name NAME``: ``benchmarks/results/locust-NAME_stats.csv``, ``_stats_history.csv``,
``_failures.csv``, ``.json`` (locust's final stats) and ``.png`` (latency percentiles and
throughput over time).

Example::

    CITYSIGHT_LOCUST_TOKENS='{"police": "...", "fire": "..."}' \\
    python -m benchmarks.locust.run --host http://127.0.0.1:8000 --users 50 --spawn-rate 10 \\
        --run-time 60 --name ws WsSubscriber
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from benchmarks.common.plot import plot_panels

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
RESULTS = HERE.parent / "results"
USER_CLASSES = ("WsSubscriber", "RestReader", "Dispatcher", "IngestPublisher")
MAX_USERS = 2000
MAX_RUN_S = 1800
ALLOWED_HOSTS = frozenset({"127.0.0.1"})


class TargetError(ValueError):
    """The target is not allowed (only 127.0.0.1)."""


def check_target(url: str, what: str = "--host") -> None:
    """Refuse any target other than 127.0.0.1.

    Raises:
        TargetError: the URL's host is not 127.0.0.1 (``localhost`` included: it may
            resolve elsewhere).
    """
    host = urlparse(url).hostname
    if host not in ALLOWED_HOSTS:
        raise TargetError(f"{what} {url!r}: load tests may only target 127.0.0.1")


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="citysight bench locust", description=__doc__.split("\n")[0])
    p.add_argument("classes", nargs="*", default=list(USER_CLASSES), help="user classes")
    p.add_argument("--host", default=None, help="http://127.0.0.1:PORT of a running API")
    p.add_argument(
        "--start-city",
        type=int,
        default=0,
        metavar="CAMERAS",
        help="start a private citysight (embedded Redis, local Ray, Serve app) with the "
        "city bench's config of this many cameras, and target it",
    )
    p.add_argument("--users", "-u", type=int, default=10)
    p.add_argument("--spawn-rate", "-r", type=float, default=5.0)
    p.add_argument("--run-time", "-t", type=float, default=30.0, help="seconds")
    p.add_argument("--name", default="run", help="result file stem: locust-NAME")
    p.add_argument("--out-dir", type=Path, default=RESULTS)
    p.add_argument("--locustfile", type=Path, default=HERE / "locustfile.py")
    p.add_argument("--redis-url", default=os.environ.get("CITYSIGHT_LOCUST_REDIS_URL", ""))
    p.add_argument("--no-plot", action="store_true")
    return p


def locust_command(args: argparse.Namespace, prefix: Path) -> list[str]:
    """The locust command line (headless, bounded, CSV with full history, JSON)."""
    return [
        sys.executable, "-m", "locust",
        "-f", str(args.locustfile),
        "--headless", "--only-summary",
        "-u", str(args.users), "-r", str(args.spawn_rate), "-t", f"{int(args.run_time)}s",
        "--stop-timeout", "5",
        "--host", args.host,
        "--csv", str(prefix), "--csv-full-history",
        "--json",
        "--exit-code-on-error", "0",
        "--skip-log-setup",
        *args.classes,
    ]  # fmt: skip


def read_history(path: Path) -> list[dict[str, str]]:
    """Rows of ``*_stats_history.csv``."""
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _num(v: str | None) -> float | None:
    try:
        return float(v) if v not in (None, "", "N/A") else None
    except ValueError:
        return None


def plot_history(rows: list[dict[str, str]], png: Path, title: str) -> None:
    """Latency percentiles and throughput over time, per request name."""
    if not rows:
        return
    t0 = min(float(r["Timestamp"]) for r in rows)
    names = sorted({r["Name"] for r in rows if r["Name"] != "Aggregated"}) or ["Aggregated"]
    lat_series: list[Any] = []
    rate_series: list[Any] = []
    for name in names:
        sel = [r for r in rows if r["Name"] == name]
        xs = [float(r["Timestamp"]) - t0 for r in sel]
        for pct in ("50%", "99%"):
            lat_series.append((f"{name} p{pct[:-1]}", xs, [_num(r.get(pct)) for r in sel]))
        rate_series.append((name, xs, [_num(r.get("Requests/s")) for r in sel]))
    agg = [r for r in rows if r["Name"] == "Aggregated"]
    users = [
        (
            "users",
            [float(r["Timestamp"]) - t0 for r in agg],
            [_num(r.get("User Count")) for r in agg],
        )
    ]
    plot_panels(
        png,
        title,
        [("latency (ms)", lat_series), ("requests/s", rate_series), ("users", users)],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run locust once; returns locust's exit code (2 on refused arguments)."""
    args = build_parser().parse_args(argv)
    if args.start_city:
        if not 1 <= args.start_city <= 10_000 or args.host:
            print("citysight bench locust: --start-city 1..10000, without --host", file=sys.stderr)
            return 2
        return _with_city(args)
    if not args.host:
        print("citysight bench locust: --host or --start-city is required", file=sys.stderr)
        return 2
    return _run(args)


def _with_city(args: argparse.Namespace) -> int:
    """Start the city bench's system, point locust at it, stop it afterwards."""
    import tempfile

    from benchmarks.city.scenario import camera_id, city_config_dict, make_tokens, principals
    from benchmarks.city.system import CitySystem
    from citysight.app.services.redis_server import free_port

    port = free_port()
    cfg = city_config_dict(args.start_city, http_port=port, max_connections=args.users * 2 + 100)
    tokens = make_tokens()
    system = CitySystem(cfg, principals(tokens), Path(tempfile.mkdtemp(prefix="cslocust-")))
    system.start()
    try:
        os.environ["CITYSIGHT_LOCUST_TOKENS"] = json.dumps(tokens)
        os.environ.setdefault(
            "CITYSIGHT_LOCUST_CAMERAS", ",".join(camera_id(i) for i in range(args.start_city))
        )
        os.environ["CITYSIGHT_LOCUST_SHARDS"] = str(system.shards)
        args.host = f"http://127.0.0.1:{port}"
        args.redis_url = system.redis_url
        return _run(args)
    finally:
        system.stop()


def _run(args: argparse.Namespace) -> int:
    """Validate the target and bounds, run locust, write JSON and the plot."""
    try:
        check_target(args.host)
        if args.redis_url:
            check_target(args.redis_url, "--redis-url")
    except TargetError as exc:
        print(f"citysight bench locust: {exc}", file=sys.stderr)
        return 2
    bad = [c for c in args.classes if c not in USER_CLASSES]
    if bad or not 1 <= args.users <= MAX_USERS or not 0 < args.run_time <= MAX_RUN_S:
        print(
            f"citysight bench locust: classes from {USER_CLASSES}, 1 <= --users <= "
            f"{MAX_USERS}, 0 < --run-time <= {MAX_RUN_S}",
            file=sys.stderr,
        )
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    prefix = args.out_dir / f"locust-{args.name}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(HERE.parents[1]), os.environ.get("PYTHONPATH", "")]),
    }
    if args.redis_url:
        env["CITYSIGHT_LOCUST_REDIS_URL"] = args.redis_url
    cmd = locust_command(args, prefix)
    logger.info("running %s", " ".join(cmd))
    t0 = time.monotonic()
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=args.run_time + 90
        )
    except subprocess.TimeoutExpired:
        print("citysight bench locust: locust did not stop in time (killed)", file=sys.stderr)
        return 1
    wall = time.monotonic() - t0
    if proc.returncode != 0:
        print(proc.stderr[-4000:], file=sys.stderr)
    try:
        stats = json.loads(proc.stdout) if proc.stdout.strip() else []
    except ValueError:
        stats = []
        print(proc.stdout[-2000:], file=sys.stderr)
    summary = summarise(stats)
    doc = {
        "benchmark": "locust",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "params": {
            "host": args.host,
            "users": args.users,
            "spawn_rate": args.spawn_rate,
            "run_time_s": args.run_time,
            "classes": args.classes,
        },
        "wall_s": round(wall, 1),
        "exit_code": proc.returncode,
        "summary": summary,
        "stats": stats,
    }
    prefix.with_suffix(".json").write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    if not args.no_plot:
        plot_history(
            read_history(Path(f"{prefix}_stats_history.csv")),
            prefix.with_suffix(".png"),
            f"locust {args.name}: {args.users} users, {' '.join(args.classes)}",
        )
    for name, s in summary.items():
        print(
            f"{name:45} n={s['num_requests']:7d} fail={s['num_failures']:5d} "
            f"p50={s['p50_ms']} p99={s['p99_ms']} max={s['max_ms']} rps={s['rps']}"
        )
    return int(proc.returncode)


def _percentile(hist: dict[str, int], q: float) -> float | None:
    """Percentile from locust's ``response_times`` histogram (rounded ms → count)."""
    total = sum(hist.values())
    if not total:
        return None
    need = q * total
    acc = 0
    for k in sorted(hist, key=float):
        acc += hist[k]
        if acc >= need:
            return float(k)
    return float(max(hist, key=float))


def summarise(stats: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per ``METHOD name``: requests, failures, p50/p99/max ms and requests/s."""
    out = {}
    for s in stats:
        hist = {str(k): int(v) for k, v in (s.get("response_times") or {}).items()}
        span = max(
            1e-9, float(s.get("last_request_timestamp") or 0) - float(s.get("start_time") or 0)
        )
        n = int(s.get("num_requests", 0))
        out[f"{s.get('method')} {s.get('name')}"] = {
            "num_requests": n,
            "num_failures": int(s.get("num_failures", 0)),
            "p50_ms": _percentile(hist, 0.50),
            "p99_ms": _percentile(hist, 0.99),
            "max_ms": round(float(s.get("max_response_time") or 0), 1),
            "rps": round(n / span, 2) if n > 1 else None,
        }
    return out


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main())
