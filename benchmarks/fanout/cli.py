"""``citysight bench fanout``: WebSocket fan-out latency against a bare broadcast server.

One run measures both servers under identical load: N subscriber connections each (in
separate processes, asyncio + websockets) to ``/ws`` on 127.0.0.1. Both servers stay up
while this process writes alerts at stepped rates, at each step first to citysight's feed
and then to the baseline's (interleaved, so background load on a shared machine hits
both). Latency is the time from the feed write (the alert's ``raised_at``) to the
subscriber's receive. The baseline is a bare ASGI broadcast server under the same uvicorn
(no auth, no scoping, no per-client queues), so ``ratio`` = citysight p99 / baseline p99
is citysight's own overhead. Results go to ``benchmarks/results/fanout.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks.fanout.servers import BASELINE_FEED_KEY
from benchmarks.fanout.world import make_alert, seed_principals, token_of
from citysight import keys
from citysight.app.services.redis_server import EmbeddedRedis, free_port

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "benchmarks" / "results" / "fanout.json"
SUBS_PER_PROCESS = 500
MAX_SUBSCRIBERS = 5000
DEPTS = ("fire", "enforcement", "police")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="citysight bench fanout", description=__doc__)
    p.add_argument("--subscribers", type=int, default=1000, help="WebSocket subscribers")
    p.add_argument("--duration", type=float, default=30.0, help="seconds of load per server")
    p.add_argument(
        "--rates", default="2,5,10", help="alert rates (alerts/s), stepped up, comma-separated"
    )
    p.add_argument("--redis-url", default=None, help="Redis to use (default: a private one)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result file")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    if not 1 <= args.subscribers <= MAX_SUBSCRIBERS:
        p.error(f"--subscribers must be between 1 and {MAX_SUBSCRIBERS}")
    if not 1 <= args.duration <= 3600:
        p.error("--duration must be between 1 and 3600 seconds")
    try:
        args.rate_steps = [float(x) for x in args.rates.split(",") if x.strip()]
    except ValueError:
        p.error("--rates must be numbers, e.g. 2,5,10")
    if not args.rate_steps or any(not 0 < r <= 10_000 for r in args.rate_steps):
        p.error("--rates must be between 0 and 10000 alerts/s")
    return args


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _wait_port(port: int, proc: subprocess.Popen[Any], timeout_s: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"benchmark server exited with code {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"benchmark server did not listen on 127.0.0.1:{port}")


def _publish(r: redis.Redis, key: str, rate: float, seconds: float, start_i: int) -> int:
    """Write alerts to stream ``key`` at ``rate`` per second for ``seconds``; returns the count."""
    n = max(1, int(rate * seconds))
    t0 = time.perf_counter()
    for k in range(n):
        due = t0 + k / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        dept = DEPTS[k % 3]
        a = make_alert(start_i + k, dept)
        a.raised_at = time.time()
        r.xadd(
            key,
            {
                "type": "alert",
                "department": dept,
                "kind": a.kind.value,
                "camera_id": a.camera_id,
                "severity": a.severity.value,
                "lat": repr(a.location.lat),
                "lon": repr(a.location.lon),
                "d": a.model_dump_json(),
            },
        )
    return n


def _stats(lat: list[float]) -> dict[str, float]:
    if not lat:
        return {"p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    a = np.asarray(lat)
    return {
        "p50_ms": round(float(np.percentile(a, 50)), 2),
        "p99_ms": round(float(np.percentile(a, 99)), 2),
        "max_ms": round(float(a.max()), 2),
    }


class Side:
    """One server process and its subscriber processes."""

    def __init__(self, kind: str, feed_key: str, n: int, redis_url: str) -> None:
        """Start the server and connect ``n`` subscribers (raises RuntimeError on failure)."""
        self.kind = kind
        self.feed_key = feed_key
        self.n = n
        self.published = 0
        self.steps: list[dict[str, Any]] = []
        port = free_port()
        self.server = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.fanout.servers", kind, str(port), redis_url],
            cwd=ROOT,
            env=_env(),
        )
        self.subs: list[subprocess.Popen[str]] = []
        _wait_port(port, self.server)
        url = f"ws://127.0.0.1:{port}/ws"
        left = n
        while left > 0:
            k = min(SUBS_PER_PROCESS, left)
            left -= k
            self.subs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "benchmarks.fanout.subscribers",
                        url,
                        str(k),
                        token_of("admin"),
                    ],
                    cwd=ROOT,
                    env=_env(),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
        for p in self.subs:
            assert p.stdout is not None
            line = p.stdout.readline().strip()
            if line != "READY":
                raise RuntimeError(f"{kind}: subscribers failed to connect ({line!r})")

    def step(self, r: redis.Redis, rate: float, seconds: float) -> None:
        """Publish one rate step to this side's feed."""
        n = _publish(r, self.feed_key, rate, seconds, self.published)
        self.published += n
        self.steps.append({"rate_per_s": rate, "alerts": n, "first": self.published - n})

    def collect(self) -> dict[str, Any]:
        """Stop the subscribers (after they drain) and summarise their latencies."""
        for p in self.subs:
            assert p.stdin is not None
            p.stdin.write(f"STOP {self.published}\n")
            p.stdin.flush()
        pairs: list[list[float]] = []
        closed = 0
        drain_s = 0.0
        for p in self.subs:
            out, _ = p.communicate(timeout=300)
            res = json.loads(out.strip().splitlines()[-1])
            pairs += res["latencies_ms"]
            closed += res["closed"]
            drain_s = max(drain_s, res["drain_s"])
        expected = self.published * self.n
        seq = np.asarray([x[0] for x in pairs], dtype=np.int64)
        lat = [x[1] for x in pairs]
        arr = np.asarray(lat, dtype=np.float64)
        steps = []
        for st in self.steps:
            sel = arr[(seq >= st["first"]) & (seq < st["first"] + st["alerts"])]
            steps.append(
                {"rate_per_s": st["rate_per_s"], "alerts": st["alerts"], **_stats(sel.tolist())}
            )
        return {
            "published": self.published,
            "expected": expected,
            "delivered": len(lat),
            "lost": expected - len(lat),
            "closed_connections": closed,
            "drain_s": drain_s,
            "steps": steps,
            **_stats(lat),
        }

    def stop(self) -> None:
        """Kill whatever is still running."""
        for p in self.subs:
            if p.poll() is None:
                p.kill()
        self.server.terminate()
        try:
            self.server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.server.kill()


def measure(args: argparse.Namespace, redis_url: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both servers up at once, loaded in turn at each rate step (citysight, then baseline).

    Interleaving the steps exposes both to the same background load on a shared machine;
    only one of them carries traffic at any moment.
    """
    r = redis.Redis.from_url(redis_url)
    sides: list[Side] = []
    try:
        sides.append(Side("citysight", keys.FEED_STREAM, args.subscribers, redis_url))
        sides.append(Side("baseline", BASELINE_FEED_KEY, args.subscribers, redis_url))
        time.sleep(0.5)
        step_s = args.duration / len(args.rate_steps)
        for rate in args.rate_steps:
            for side in sides:
                side.step(r, rate, step_s)
                time.sleep(1.0)  # let the backlog of this step drain before the next
        cs, base = (side.collect() for side in sides)
    finally:
        for side in sides:
            side.stop()
        r.close()
    return cs, base


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measure citysight and the baseline in one run; return the result document."""
    tmp = None
    embedded = None
    redis_url = args.redis_url
    if redis_url is None:
        tmp = tempfile.TemporaryDirectory(prefix="citysight-fanout-")
        embedded = EmbeddedRedis(free_port(), Path(tmp.name), appendonly=False)
        embedded.start()
        redis_url = embedded.url
    try:
        seed_principals(redis.Redis.from_url(redis_url))
        cs, base = measure(args, redis_url)
    finally:
        if embedded is not None:
            embedded.stop()
        if tmp is not None:
            tmp.cleanup()
    ratio = cs["p99_ms"] / base["p99_ms"] if base["p99_ms"] > 0 else float("nan")
    return {
        "benchmark": "fanout",
        "subscribers": args.subscribers,
        "duration_s": args.duration,
        "rates_per_s": args.rate_steps,
        "p50_ms": cs["p50_ms"],
        "p99_ms": cs["p99_ms"],
        "baseline_p50_ms": base["p50_ms"],
        "baseline_p99_ms": base["p99_ms"],
        "ratio": round(ratio, 3),
        "delivered": cs["delivered"],
        "lost": cs["lost"],
        "citysight": cs,
        "baseline": base,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``citysight bench fanout``; returns the exit status."""
    args = _parse(argv)
    try:
        result = run(args)
    except (RuntimeError, OSError, redis.RedisError, subprocess.TimeoutExpired) as exc:
        print(f"citysight bench fanout: {exc}", file=sys.stderr)
        return 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"fanout {args.subscribers} subscribers: p50 {result['p50_ms']} ms, "
            f"p99 {result['p99_ms']} ms (baseline p99 {result['baseline_p99_ms']} ms, "
            f"ratio {result['ratio']}), delivered {result['delivered']}, lost {result['lost']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
