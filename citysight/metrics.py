"""Per-instance metric snapshots shared through Redis (read by ``GET /metrics``).

Components that run as many instances (stream workers' inference, rules consumers, ingress
replicas) each write one JSON snapshot of their counters into ``citysight:metrics:{role}``
(a hash: instance id → snapshot). Any ingress replica renders all of them, so a scrape of
any replica gives the city-wide view. Snapshots carry ``updated_at``; readers ignore stale
ones (a dead instance stops counting) and prune very old ones.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

from citysight.keys import metrics_key

logger = logging.getLogger(__name__)

PUBLISH_PERIOD_S: Final = 5.0
STALE_AFTER_S: Final = 60.0
PRUNE_AFTER_S: Final = 3600.0

# Batch latency of the detectors (ms): CPU batches take tens to hundreds of ms, a Triton
# timeout seconds.
INFERENCE_BUCKETS_MS: Final[tuple[float, ...]] = (
    5,
    10,
    20,
    50,
    100,
    200,
    500,
    1000,
    2000,
    5000,
    10000,
)


def instance_id() -> str:
    """A new instance id, ``host:pid:tag``; callers keep it for their lifetime.

    The tag tells apart several instances in one process (tests, benchmarks).
    """
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(2)}"


class _HashWriter(Protocol):
    def hset(self, name: str, key: str, value: str) -> Any: ...


def publish_snapshot(r: _HashWriter, role: str, instance: str, data: dict[str, Any]) -> None:
    """Write one instance's snapshot (``updated_at`` is added) with a client or pipeline."""
    body = {**data, "updated_at": time.time()}
    r.hset(metrics_key(role), instance, json.dumps(body, separators=(",", ":"), default=str))


class Histogram:
    """A cumulative-bucket histogram (Prometheus semantics, ``le`` upper bounds)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        """Create a histogram with ascending upper bounds ``buckets`` (+Inf is implicit)."""
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)
        self.total = 0.0
        self.n = 0

    def observe(self, value: float) -> None:
        """Record one value."""
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.n += 1

    def to_dict(self) -> dict[str, Any]:
        """JSON form: bounds, per-bucket (not cumulative) counts, sum and count."""
        return {
            "buckets": list(self.buckets),
            "counts": list(self.counts),
            "sum": round(self.total, 3),
            "count": self.n,
        }


class InferenceMeter:
    """Counts what the detectors of one stream worker did, around its infer callable.

    Frames handed in, frames answered (a backend leaves dropped frames out of its
    results), batches, batches that raised, and batch latency. Thread-safe.
    """

    def __init__(self) -> None:
        """Start at zero."""
        self._lock = threading.Lock()
        self.batches = 0
        self.errors = 0
        self.frames_in = 0
        self.frames_ok = 0
        self.latency_ms = Histogram(INFERENCE_BUCKETS_MS)

    def wrap(self, infer: Callable[[Any], list[Any]]) -> Callable[[Any], list[Any]]:
        """``infer`` measured: counts and latency of every call; exceptions propagate."""

        def measured(batch: Any) -> list[Any]:
            n = len(batch)
            t0 = time.perf_counter()
            try:
                results = infer(batch)
            except Exception:
                self.record(n, 0, (time.perf_counter() - t0) * 1000.0, failed=True)
                raise
            self.record(n, len(results), (time.perf_counter() - t0) * 1000.0)
            return results

        return measured

    def record(self, frames_in: int, frames_ok: int, ms: float, *, failed: bool = False) -> None:
        """Account for one batch."""
        with self._lock:
            self.batches += 1
            self.errors += int(failed)
            self.frames_in += frames_in
            self.frames_ok += min(frames_ok, frames_in)
            self.latency_ms.observe(ms)

    def snapshot(self, health: dict[str, Any] | None = None) -> dict[str, Any]:
        """Counters plus the backend's own state and counters from its ``health()``."""
        h = health or {}
        with self._lock:
            snap: dict[str, Any] = {
                "batches": self.batches,
                "errors": self.errors,
                "frames_in": self.frames_in,
                "frames_ok": self.frames_ok,
                "frames_dropped": self.frames_in - self.frames_ok,
                "batch_ms": self.latency_ms.to_dict(),
            }
        snap["backend"] = str(h.get("backend", "unknown"))
        state = h.get("state")
        ready = bool(h.get("ready", False))
        snap["up"] = ready and state in (None, "running")
        for key in ("recoveries", "server_restarts", "requests", "request_errors"):
            if isinstance(h.get(key), int | float):
                snap[key] = h[key]
        return snap


class MeteredInference:
    """A stream worker's inference callable, measured and published for ``GET /metrics``.

    Calls pass through an :class:`InferenceMeter`; a daemon thread publishes the counters
    with the inner callable's ``health()`` (when it has one) every ``period_s``, so a worker
    whose cameras send nothing still reports its detectors' state. Other attributes are the
    inner callable's.
    """

    def __init__(
        self, inner: Callable[[Any], list[Any]], redis_url: str, period_s: float = PUBLISH_PERIOD_S
    ) -> None:
        """Wrap ``inner`` and start publishing to the Redis at ``redis_url``."""
        import redis

        self._inner = inner
        self.meter = InferenceMeter()
        self._measured = self.meter.wrap(inner)
        self.instance = instance_id()
        self.period_s = period_s
        self._r = redis.Redis.from_url(redis_url, socket_timeout=5)
        self._stop = threading.Event()
        self.publish()
        self._thread = threading.Thread(
            target=self._loop, name="citysight-inference-metrics", daemon=True
        )
        self._thread.start()

    def __call__(self, batch: Any) -> list[Any]:
        """Run the inner inference, measured."""
        return self._measured(batch)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._inner, name)

    def publish(self) -> None:
        """Write this worker's snapshot now (never raises: metrics must not break inference)."""
        try:
            health_fn = getattr(self._inner, "health", None)
            health = health_fn() if callable(health_fn) else None
            data = self.meter.snapshot(health if isinstance(health, dict) else None)
            publish_snapshot(self._r, "inference", self.instance, data)
        except Exception as exc:
            logger.warning("inference metrics not published: %s", exc)

    def close(self) -> None:
        """Stop publishing, remove this worker's snapshot and close the inner callable."""
        self._stop.set()
        self._thread.join(timeout=self.period_s + 5)
        try:
            self._r.hdel(metrics_key("inference"), self.instance)
        except Exception as exc:
            logger.debug("inference metrics not removed: %s", exc)
        self._r.close()
        inner_close = getattr(self._inner, "close", None)
        if callable(inner_close):
            inner_close()  # the client's shared memory and connections

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.publish()


def metered_inference(
    factory: Callable[[], Callable[[Any], list[Any]]], redis_url: str
) -> MeteredInference:
    """``factory()`` metered: the stream workers' infer factory (``functools.partial`` of it)."""
    return MeteredInference(factory(), redis_url)
