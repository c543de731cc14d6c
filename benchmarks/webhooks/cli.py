"""``citysight bench webhooks``: webhook delivery latency and catch-up after an outage.

Real Redis (embedded, private port), the real :class:`WebhookService` and a verifying HTTP
receiver on 127.0.0.1 (``citysight webhooks receive``'s). Three measurements in one run:

* **baseline**: the same signed POST sent back to back by one httpx client straight to the
  receiver (what one in-order HTTP stream can do here, no Redis);
* **live**: alert events written by the alert store at ``--rate``; latency from the feed
  entry (event written) to the receiver's handling of it;
* **outage**: the receiver is down while ``--outage-events`` events are written; then it
  comes back and the time until it holds every one gives the catch-up rate, reported with
  its ratio to the baseline. Every event is checked to arrive once and in order.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common.results import emit

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "webhooks.json"
SECRET = "bench-secret-0123456789abcdef"


def build_parser() -> argparse.ArgumentParser:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(prog="citysight bench webhooks", description=__doc__.split("\n")[0])
    p.add_argument("--live-events", type=int, default=300, help="events in the live phase")
    p.add_argument("--rate", type=float, default=20.0, help="live events per second")
    p.add_argument("--outage-events", type=int, default=2000, help="events while it is down")
    p.add_argument("--baseline-posts", type=int, default=1000)
    p.add_argument("--timeout", type=float, default=300.0, help="bound of each phase (s)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _alert(i: int) -> Any:
    from citysight.contracts import Alert, AlertKind, Location, Severity

    return Alert(
        id=f"al_b{i:07d}", kind=AlertKind.FIRE, severity=Severity.HIGH, camera_id=f"cam{i % 50}",
        location=Location(lat=20.0, lon=110.3), department="fire", rule_id="fire",
        started_at=datetime.fromtimestamp(1_700_000_000 + i, UTC), summary="bench",
    )  # fmt: skip


def _wait(cond: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.005)
    return False


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the three phases; returns the result document."""
    import httpx
    import redis

    from benchmarks.common.stats import latency_summary
    from citysight import keys
    from citysight.app.services.redis_server import EmbeddedRedis, free_port
    from citysight.config import CitysightConfig
    from serve_app.store import AlertStore
    from serve_app.webhooks.admin import VerifyingReceiver
    from serve_app.webhooks.delivery import WebhookService
    from serve_app.webhooks.payload import sign

    arrivals: dict[str, float] = {}
    order: list[str] = []

    class Timed(VerifyingReceiver):
        def accept(self, headers: dict[str, str], body: bytes) -> int:
            code = super().accept(headers, body)
            eid = {k.lower(): v for k, v in headers.items()}.get("x-citysight-event-id", "")
            if code == 200 and eid not in arrivals:
                arrivals[eid] = time.time()
                order.append(eid)
            return code

    port = free_port()

    def receiver() -> tuple[VerifyingReceiver, threading.Thread]:
        rx = Timed(SECRET, "127.0.0.1", port, out=io.StringIO())
        t = threading.Thread(target=rx.serve_forever, daemon=True)
        t.start()
        return rx, t

    tmp = Path(tempfile.mkdtemp(prefix="cs-bench-webhooks-"))
    srv = EmbeddedRedis(free_port(), tmp / "redis", appendonly=False).start()
    svc = None
    rx, _ = receiver()
    try:
        # -- baseline: one client, back to back, same body size as a real event
        body = json.dumps({"id": "x", "alert": _alert(0).to_api()}).encode()
        lat: list[float] = []
        with httpx.Client(trust_env=False) as client:
            t0 = time.perf_counter()
            for i in range(args.baseline_posts):
                ts = int(time.time())
                headers = {
                    "X-Citysight-Timestamp": str(ts),
                    "X-Citysight-Signature": sign(SECRET, ts, body),
                    "X-Citysight-Event-Id": f"baseline-{i}",
                    "Content-Type": "application/json",
                }
                t1 = time.perf_counter()
                client.post(f"http://127.0.0.1:{port}/", content=body, headers=headers)
                lat.append((time.perf_counter() - t1) * 1000)
            base_s = time.perf_counter() - t0
        baseline = {
            "posts": args.baseline_posts,
            "posts_per_s": round(args.baseline_posts / base_s, 1),
            "post_ms": latency_summary(lat),
        }
        cfg = CitysightConfig.model_validate(
            {
                "departments": [{"id": "fire"}],
                "webhooks": [
                    {
                        "name": "bench", "url": f"http://127.0.0.1:{port}/hook",
                        "secret_env": "CS_BENCH_WEBHOOK_SECRET", "allow_networks": ["127.0.0.1/32"],
                        "backoff_initial_s": 0.05, "backoff_max_s": 0.5, "max_attempts": 1000,
                        "max_pending": max(100_000, args.outage_events * 2),
                    }
                ],
            }
        )  # fmt: skip
        r = redis.Redis.from_url(srv.url)
        store = AlertStore(r, cfg)
        svc = WebhookService(cfg, srv.url, secrets={"bench": SECRET}).start()
        _wait(svc.active.is_set, 30)

        # -- live: paced writes, latency from the feed entry to the receiver
        written: list[tuple[str, float]] = []
        period = 1.0 / args.rate
        t_next = time.perf_counter()
        for i in range(args.live_events):
            store.save_new([_alert(i)])
            written.append((f"al_b{i:07d}:0", time.time()))
            t_next += period
            time.sleep(max(0.0, t_next - time.perf_counter()))
        ok_live = _wait(lambda: all(e in arrivals for e, _ in written), args.timeout)
        live_ms = [(arrivals[e] - t) * 1000 for e, t in written if e in arrivals]
        live = {
            "events": args.live_events,
            "rate_per_s": args.rate,
            "delivered": sum(e in arrivals for e, _ in written),
            "complete": ok_live,
            "latency_ms": latency_summary(live_ms),
        }

        # -- outage: receiver down, N events, receiver back, time to catch up
        rx.shutdown()
        start = args.live_events
        ids = [f"al_b{i:07d}:0" for i in range(start, start + args.outage_events)]
        for lo in range(0, args.outage_events, 500):
            hi = min(args.outage_events, lo + 500)
            store.save_new([_alert(start + i) for i in range(lo, hi)])
        outbox = keys.webhook_outbox("bench")
        queued = _wait(lambda: r.xlen(outbox) >= args.outage_events, args.timeout)
        down_attempts = int(r.hget(keys.webhook_stats("bench"), "attempts_failed") or 0)
        t_back = time.time()
        rx, _ = receiver()
        done = _wait(lambda: all(e in arrivals for e in ids), args.timeout)
        t_done = max((arrivals[e] for e in ids if e in arrivals), default=time.time())
        got = [e for e in order if e.startswith("al_b")]
        catch_up_s = max(1e-9, t_done - t_back)
        rate = args.outage_events / catch_up_s if done else None
        outage = {
            "events": args.outage_events,
            "queued_while_down": queued,
            "failed_attempts_while_down": down_attempts,
            "complete": done,
            "catch_up_s": round(catch_up_s, 3),
            "catch_up_events_per_s": round(rate, 1) if rate else None,
            "ratio_to_baseline": round(rate / baseline["posts_per_s"], 3) if rate else None,
            "in_order": got == [e for e, _ in written] + ids,
            "duplicates_seen_by_receiver": rx.duplicates,
        }
        r.close()
    finally:
        if svc is not None:
            svc.stop()
        rx.shutdown()
        srv.stop()
    return {
        "benchmark": "webhooks",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "host": platform.node(),
            "cpus": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "baseline": baseline,
        "live": live,
        "outage": outage,
    }


def table(res: dict[str, Any]) -> str:
    """A Markdown table of the result."""
    b, lv, o = res["baseline"], res["live"], res["outage"]
    rows = [
        ("baseline: direct POSTs/s (one client)", b["posts_per_s"]),
        ("baseline: POST p50 / p99 ms", f"{b['post_ms']['p50']} / {b['post_ms']['p99']}"),
        (
            f"live: {lv['events']} events at {lv['rate_per_s']:g}/s, latency p50 / p99 / max ms",
            f"{lv['latency_ms']['p50']} / {lv['latency_ms']['p99']} / {lv['latency_ms']['max']}",
        ),
        (f"outage: {o['events']} events queued while down", o["queued_while_down"]),
        ("outage: catch-up s", o["catch_up_s"]),
        ("outage: catch-up events/s (ratio to baseline)",
         f"{o['catch_up_events_per_s']} ({o['ratio_to_baseline']})"),
        ("every event once, in order", o["complete"] and o["in_order"]),
    ]  # fmt: skip
    out = ["| measure | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write ``--out`` (JSON) and print a table (or the JSON)."""
    args = build_parser().parse_args(argv)
    if min(args.live_events, args.outage_events, args.baseline_posts) < 1 or args.rate <= 0:
        print("citysight bench webhooks: counts must be >= 1 and --rate > 0", file=sys.stderr)
        return 2
    res = run(args)
    emit(res, args.out, as_json=args.json, table=table)
    ok = res["live"]["complete"] and res["outage"]["complete"] and res["outage"]["in_order"]
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
