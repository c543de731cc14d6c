"""``citysight bench metrics``: the cost of one ``GET /metrics`` scrape at city scale.

Fills a real Redis with the state a city's components publish (camera health for N
cameras, components, per-worker inference, per-consumer rules and per-replica ingress
snapshots, detections streams with the rules group) and times the real exposition
(:func:`serve_app.api.metrics.render_metrics`) against a baseline measured in the same run:
reading the same camera-health hash and parsing every camera's JSON, the part no exporter
of per-camera metrics can avoid. Reported: scrape p50/p99 ms, baseline p50, their ratio,
exposition size and series, and Redis round trips per scrape.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from benchmarks.common.results import emit
from benchmarks.common.stats import latency_summary

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "metrics.json"


class _CountingConnection(redis.Connection):
    """A connection that counts its round trips (one per packed command sent)."""

    round_trips = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).round_trips += 1
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def build_parser() -> argparse.ArgumentParser:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(prog="citysight bench metrics", description=__doc__.split("\n")[0])
    p.add_argument("--cameras", type=int, default=7500, help="cameras with health entries")
    p.add_argument("--workers", type=int, default=40, help="stream workers (inference snapshots)")
    p.add_argument("--consumers", type=int, default=2, help="rules consumers")
    p.add_argument("--replicas", type=int, default=2, help="ingress replicas")
    p.add_argument("--shards", type=int, default=8, help="detections streams")
    p.add_argument("--scrapes", type=int, default=20, help="scrapes timed")
    p.add_argument("--redis-url", default=None, help="a Redis to fill (default: a private one)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def populate(r: redis.Redis, args: argparse.Namespace, seed: int = 7) -> None:
    """Write the state of a city (see the module docstring) into ``r``."""
    from citysight import keys
    from citysight.contracts import CameraState, CameraStatus
    from citysight.keys import detections_stream
    from citysight.metrics import InferenceMeter, publish_snapshot
    from serve_app.api.metrics import Metrics

    rng = random.Random(seed)
    r.flushdb()
    states = [CameraState.RUNNING] * 95 + [CameraState.STALLED] * 2 + [CameraState.OFFLINE] * 3
    pipe = r.pipeline(transaction=False)
    for i in range(args.cameras):
        n = rng.randint(10_000, 2_000_000)
        st = CameraStatus(
            camera_id=f"cam-{i:05d}",
            state=rng.choice(states),
            metrics={
                "frames_in": float(n),
                "frames_out": float(n // 5),
                "skipped": 0.0,
                "late": float(rng.randint(0, 50)),
                "decode_ms": round(rng.uniform(1, 9), 3),
                "decode_s": n * 0.004,
                "convert_s": n * 0.0005,
                "convert_cpu_s": n * 0.0004,
                "behind_s": 0.0,
                "reconnects": float(rng.randint(0, 3)),
                "errors": float(rng.randint(0, 5)),
                "last_frame_age_s": round(rng.uniform(0, 1), 3),
                "drops": float(rng.randint(0, 500)),
            },
        )
        pipe.hset(keys.CAMERA_HEALTH, st.camera_id, st.model_dump_json())
    now = time.time()
    for name in ("streams", "inference", "rules", "ingress"):
        body = {"state": "running", "detail": {}, "updated_at": now}
        pipe.hset(keys.COMPONENTS, name, json.dumps(body))
    for w in range(args.workers):
        meter = InferenceMeter()
        for _ in range(200):
            meter.record(8, 8, rng.uniform(20, 400))
        publish_snapshot(pipe, "inference", f"gpu-{w:03d}:1:0", meter.snapshot({"ready": True}))
    for c in range(args.consumers):
        stats = {"state": "running", "processed": 10**7, "alerts": 900, "lag_ms": 12.0}
        publish_snapshot(pipe, "rules", f"rules-{c}", stats)
    for k in range(args.replicas):
        m = Metrics(replica=f"ingress-{k}")
        m.ws_clients = 500
        publish_snapshot(pipe, "ingress", m.replica, m.snapshot())
    pipe.execute()
    for s in range(args.shards):
        stream = detections_stream(s)
        r.xadd(stream, {"d": b"x"})
        r.xgroup_create(stream, keys.RULES_GROUP, id="0")
        r.xadd(stream, {"d": b"y"})


def _time(fn: Callable[[], Any], n: int) -> tuple[list[float], Any]:
    out: list[float] = []
    last = None
    for _ in range(n):
        t0 = time.perf_counter()
        last = fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out, last


def measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    """Populate, then time scrapes and the baseline (interleaved, same Redis, same run)."""
    from citysight import keys
    from citysight.config import CitysightConfig
    from serve_app.api.metrics import render_metrics
    from serve_app.http import ApiContext

    pool = redis.ConnectionPool.from_url(url, connection_class=_CountingConnection)
    r = redis.Redis(connection_pool=pool)
    populate(r, args)
    cfg = CitysightConfig.model_validate({"services": {"streams": {"shards": args.shards}}})
    ctx = ApiContext(cfg, url)
    ctx.redis = r  # count the scrape's round trips

    def baseline() -> int:
        raw = r.hgetall(keys.CAMERA_HEALTH)
        return len([json.loads(v) for v in raw.values()])

    def scrape() -> str:
        return render_metrics(ctx)

    baseline()
    scrape()  # warm up both
    base_ms: list[float] = []
    scrape_ms: list[float] = []
    trips: list[int] = []
    text = ""
    for _ in range(args.scrapes):
        b, _ = _time(baseline, 1)
        before = _CountingConnection.round_trips
        s, text = _time(scrape, 1)
        trips.append(_CountingConnection.round_trips - before)
        base_ms += b
        scrape_ms += s
    ctx.close()
    samples = [ln for ln in text.splitlines() if ln and not ln.startswith("#")]
    sc, bs = latency_summary(scrape_ms), latency_summary(base_ms)
    p50, p99, b50 = float(sc["p50"] or 0), float(sc["p99"] or 0), float(bs["p50"] or 0)
    return {
        "benchmark": "metrics",
        "cameras": args.cameras,
        "workers": args.workers,
        "consumers": args.consumers,
        "replicas": args.replicas,
        "shards": args.shards,
        "scrapes": args.scrapes,
        "scrape_p50_ms": round(p50, 2),
        "scrape_p99_ms": round(p99, 2),
        "baseline_read_parse_p50_ms": round(b50, 2),
        "ratio_scrape_to_baseline": round(p50 / b50, 2) if b50 else None,
        "exposition_bytes": len(text.encode()),
        "series": len(samples),
        "redis_round_trips_per_scrape": max(trips),
        "host": _host(),
    }


def _host() -> dict[str, Any]:
    import os
    import platform

    return {"python": platform.python_version(), "cpus": os.cpu_count()}


def table(res: dict[str, Any]) -> str:
    """A one-row Markdown table of the result."""
    return (
        "| cameras | scrape p50 / p99 ms | baseline (read + parse) p50 ms | ratio | "
        "bytes | series | round trips |\n|---|---|---|---|---|---|---|\n"
        f"| {res['cameras']} | {res['scrape_p50_ms']} / {res['scrape_p99_ms']} | "
        f"{res['baseline_read_parse_p50_ms']} | {res['ratio_scrape_to_baseline']} | "
        f"{res['exposition_bytes']} | {res['series']} | {res['redis_round_trips_per_scrape']} |"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write ``--out`` (JSON) and print a table (or the JSON)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.cameras < 1 or args.scrapes < 1 or args.shards < 1:
        print("citysight bench metrics: --cameras, --scrapes and --shards must be >= 1",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.redis_url:
        res = measure(args.redis_url, args)
    else:
        from citysight.app.services.redis_server import EmbeddedRedis, free_port

        with tempfile.TemporaryDirectory(prefix="cs-bench-metrics-") as d:
            srv = EmbeddedRedis(free_port(), Path(d), appendonly=False)
            srv.start()
            try:
                res = measure(srv.url, args)
            finally:
                srv.stop()
    emit(res, args.out, as_json=args.json, table=table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
