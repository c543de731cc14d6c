"""The soak's instruments: ``/health`` once a second, the detections streams, the rules group.

The detections streams are the ground truth of "frames analysed per camera": every analysed
frame is one entry, read here with plain ``XRANGE`` (no consumer group, so the rules'
deliveries are untouched). ``/health`` is what a monitor sees; the soak compares the two.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import defaultdict
from typing import Any

import httpx
import msgpack
import redis

from benchmarks.soak.accounting import entry_ms
from citysight import keys

logger = logging.getLogger(__name__)


class Observer:
    """Samples ``/health``, the detections streams and the rules group in a thread.

    Args:
        base_url: The API (``http://127.0.0.1:8000``).
        redis_url: The deployment's Redis.
        shards: Number of detections streams.
        period_s: Sampling period.
    """

    def __init__(self, base_url: str, redis_url: str, shards: int, period_s: float = 1.0) -> None:
        self.base_url = base_url
        self.redis_url = redis_url
        self.shards = shards
        self.period_s = period_s
        self.health: list[dict[str, Any]] = []
        self.groups: list[dict[str, Any]] = []
        self.entries: dict[str, list[float]] = defaultdict(list)  # camera -> entry times
        self.foreign_entries = 0  # entries that do not decode (injected poison)
        self.redis_errors = 0
        self._last_ids = {s: "0-0" for s in range(shards)}
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None
        self._r: redis.Redis | None = None
        self._http = httpx.Client(timeout=5.0)

    def start(self) -> Observer:
        """Start sampling."""
        self._thread = threading.Thread(target=self._loop, name="soak-observer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(15)
        self._http.close()
        if self._r is not None:
            with contextlib.suppress(Exception):
                self._r.close()

    def _loop(self) -> None:
        while not self._halt.is_set():
            t0 = time.monotonic()
            self._sample_health()
            self._sample_redis()
            self._halt.wait(max(0.05, self.period_s - (time.monotonic() - t0)))

    def _sample_health(self) -> None:
        t = time.time()
        sample: dict[str, Any] = {"t": t, "code": 0, "status": "unreachable", "states": {}}
        try:
            resp = self._http.get(f"{self.base_url}/health")
            sample["code"] = resp.status_code
            body = resp.json()
            comps = body.get("components", {})
            sample["status"] = body.get("status")
            sample["states"] = {k: v.get("state") for k, v in comps.items()}
            detail = comps.get("inference", {}).get("detail", {})
            for key in ("frames_ok", "frames_dropped", "recoveries", "server_restarts"):
                if isinstance(detail.get(key), int | float):
                    sample[key] = detail[key]
            rules = comps.get("rules", {}).get("detail", {})
            if isinstance(rules, dict):
                for key in ("processed", "dead", "lag"):
                    if isinstance(rules.get(key), int | float):
                        sample[f"rules_{key}"] = rules[key]
        except (httpx.HTTPError, ValueError) as exc:
            sample["error"] = type(exc).__name__
        with self._lock:
            self.health.append(sample)

    def _redis(self) -> redis.Redis:
        if self._r is None:
            self._r = redis.Redis.from_url(self.redis_url, socket_timeout=3)
        return self._r

    def _sample_redis(self) -> None:
        t = time.time()
        try:
            r = self._redis()
            new: dict[str, list[float]] = defaultdict(list)
            for s in range(self.shards):
                key = f"{keys.DETECTIONS_STREAM_PREFIX}{s}"
                while True:
                    rows: list[Any] = r.xrange(key, min=f"({self._last_ids[s]}", count=2000) or []
                    for eid, fields in rows:
                        cam = _camera_of(fields.get(b"d"))
                        if cam is None:
                            self.foreign_entries += 1
                        else:
                            new[cam].append(entry_ms(eid) / 1000.0)
                    if rows:
                        self._last_ids[s] = rows[-1][0].decode()
                    if len(rows) < 2000:
                        break
            groups: dict[str, Any] = {"t": t}
            for s in range(self.shards):
                with contextlib.suppress(redis.ResponseError):
                    for g in r.xinfo_groups(f"{keys.DETECTIONS_STREAM_PREFIX}{s}"):
                        if _text(g.get("name")) == keys.RULES_GROUP:
                            groups[str(s)] = {
                                "pending": int(g.get("pending") or 0),
                                "lag": g.get("lag"),
                                "last_delivered": _text(g.get("last-delivered-id")),
                            }
            groups["dead"] = int(r.xlen(keys.DEAD_LETTER_STREAM))
        except (redis.RedisError, OSError) as exc:
            self.redis_errors += 1
            logger.debug("redis sample failed: %s", exc)
            if self._r is not None:
                with contextlib.suppress(Exception):
                    self._r.close()
            self._r = None
            return
        with self._lock:
            for cam, ts in new.items():
                self.entries[cam].extend(ts)
            self.groups.append(groups)

    # -- queries ----------------------------------------------------------------------

    def entry_times(self, camera_id: str) -> list[float]:
        """Entry times of one camera so far."""
        with self._lock:
            return list(self.entries.get(camera_id, ()))

    def count_between(self, camera_id: str, lo: float, hi: float) -> int:
        """Entries of a camera with times in ``[lo, hi)``."""
        with self._lock:
            return sum(1 for t in self.entries.get(camera_id, ()) if lo <= t < hi)

    def health_since(self, t: float) -> list[dict[str, Any]]:
        """``/health`` samples taken at or after ``t``."""
        with self._lock:
            return [h for h in self.health if h["t"] >= t]

    def groups_since(self, t: float) -> list[dict[str, Any]]:
        """Rules-group samples taken at or after ``t``."""
        with self._lock:
            return [g for g in self.groups if g["t"] >= t]

    def latest_health(self) -> dict[str, Any]:
        """The newest ``/health`` sample (empty before the first)."""
        with self._lock:
            return dict(self.health[-1]) if self.health else {}


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _camera_of(packed: bytes | None) -> str | None:
    if not packed:
        return None
    try:
        d = msgpack.unpackb(packed, raw=False)
        cam = d.get("cam") if isinstance(d, dict) else None
        return str(cam) if cam is not None else None
    except Exception:  # a malformed entry is counted, never fatal to the observer
        return None
