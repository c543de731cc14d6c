"""Timing helper shared by the inference benchmarks."""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable


def measure(fn: Callable[[int], int], seconds: float, threads: int = 1) -> dict[str, float]:
    """Call ``fn(i)`` (returns frames done) from ``threads`` threads for ``seconds``."""
    lat: list[float] = []
    done = [0]
    lock = threading.Lock()
    fn(0)  # warm-up, not timed
    stop_at = time.perf_counter() + seconds

    def worker(k: int) -> None:
        i = k
        first = True  # every thread measures at least once, even on a starved host
        while first or time.perf_counter() < stop_at:
            first = False
            t0 = time.perf_counter()
            n = fn(i)
            dt = time.perf_counter() - t0
            with lock:
                lat.append(dt)
                done[0] += n
            i += threads

    t0 = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    wall = time.perf_counter() - t0
    lat.sort()
    return {
        "frames_per_s": round(done[0] / wall, 2),
        "latency_ms_p50": round(1000 * statistics.median(lat), 2) if lat else 0.0,
        "latency_ms_p95": round(1000 * lat[int(0.95 * (len(lat) - 1))], 2) if lat else 0.0,
        "requests": len(lat),
        "threads": threads,
    }
