"""Plate reads: every OCR'd plate with camera and time (the trajectory of a plate).

Retention (``retention.plate_read_ttl_s``) holds for every read, not only for the whole set:
reads older than the retention are removed by score on every write (so a plate seen every
day keeps only its recent reads), by :meth:`PlateReads.sweep` (plates never seen again),
never returned by a query, and a set expires when its newest read does.
"""

from __future__ import annotations

import json
import time
from typing import Any, Final, cast

import redis

from citysight import keys
from citysight.config import CitysightConfig
from citysight.plates import normalise_plate

MAX_QUERY_READS: Final = 10_000
"""The most reads one query returns (``limit`` is capped here)."""
SWEEP_COUNT: Final = 500
"""Keys visited per :meth:`PlateReads.sweep` call (one SCAN page)."""


class PlateReads:
    """``citysight:plates:{plate}`` sorted sets (score = read time, TTL from retention)."""

    def __init__(self, r: redis.Redis, cfg: CitysightConfig) -> None:
        self.r = r
        self.cfg = cfg
        self._cursor = 0

    @property
    def ttl_s(self) -> int:
        """Seconds a read is kept."""
        return self.cfg.retention.plate_read_ttl_s

    def add_many(
        self, reads: list[tuple[str, str, float, float]], now: float | None = None
    ) -> None:
        """Store ``(plate, camera_id, t, score)`` reads in one round trip (idempotent).

        Each written plate also loses its reads older than the retention.
        """
        if not reads:
            return
        ttl = self.ttl_s
        cutoff = (time.time() if now is None else now) - ttl
        pipe = self.r.pipeline(transaction=False)
        for plate, camera_id, t, score in reads:
            p = normalise_plate(plate)
            if not p:
                continue
            member = json.dumps(
                {"camera_id": camera_id, "t": round(float(t), 3), "score": round(float(score), 3)},
                separators=(",", ":"),
            )
            key = keys.plates_key(p)
            pipe.zadd(key, {member: float(t)})
            pipe.zremrangebyscore(key, "-inf", f"({cutoff}")
            pipe.expire(key, ttl)
        pipe.execute()

    def sweep(self, now: float | None = None, count: int = SWEEP_COUNT) -> int:
        """Trim expired reads of one SCAN page of plate sets; call it periodically.

        Continues where the previous call stopped, so successive calls cover every plate.

        Returns:
            Reads removed.
        """
        cutoff = (time.time() if now is None else now) - self.ttl_s
        cursor, found = self.r.scan(self._cursor, match=keys.plates_key("*"), count=count)
        self._cursor = int(cursor)
        if not found:
            return 0
        pipe = self.r.pipeline(transaction=False)
        for key in found:
            pipe.zremrangebyscore(key, "-inf", f"({cutoff}")
        return sum(int(n) for n in pipe.execute())

    def query(
        self,
        plate: str,
        since: float | None,
        until: float | None,
        limit: int = 1000,
        now: float | None = None,
    ) -> list[dict[str, Any]]:
        """Reads of a plate between ``since`` and ``until``, oldest first.

        Reads older than the retention are never returned, even before a trim removed them;
        at most ``limit`` (capped at :data:`MAX_QUERY_READS`) reads come back.
        """
        floor = (time.time() if now is None else now) - self.ttl_s
        lo = floor if since is None else max(since, floor)
        # Without ``withscores`` the reply is a plain list of members.
        rows = cast(
            "list[bytes | str]",
            self.r.zrangebyscore(
                keys.plates_key(normalise_plate(plate)),
                lo,
                "+inf" if until is None else until,
                start=0,
                num=max(1, min(int(limit), MAX_QUERY_READS)),
            ),
        )
        return [json.loads(x) for x in rows]
