"""Plate reads: every OCR'd plate with camera and time (the trajectory of a plate)."""

from __future__ import annotations

import json
from typing import Any, cast

import redis

from citysight import keys
from citysight.config import CitysightConfig
from citysight.plates import normalise_plate


class PlateReads:
    """``citysight:plates:{plate}`` sorted sets (score = read time, TTL from retention)."""

    def __init__(self, r: redis.Redis, cfg: CitysightConfig) -> None:
        self.r = r
        self.cfg = cfg

    def add_many(self, reads: list[tuple[str, str, float, float]]) -> None:
        """Store ``(plate, camera_id, t, score)`` reads in one round trip (idempotent)."""
        if not reads:
            return
        ttl = self.cfg.retention.plate_read_ttl_s
        pipe = self.r.pipeline(transaction=False)
        for plate, camera_id, t, score in reads:
            p = normalise_plate(plate)
            if not p:
                continue
            member = json.dumps(
                {"camera_id": camera_id, "t": round(float(t), 3), "score": round(float(score), 3)},
                separators=(",", ":"),
            )
            pipe.zadd(keys.plates_key(p), {member: float(t)})
            pipe.expire(keys.plates_key(p), ttl)
        pipe.execute()

    def query(self, plate: str, since: float | None, until: float | None) -> list[dict[str, Any]]:
        """Reads of a plate between ``since`` and ``until``, oldest first."""
        # Without ``withscores`` the reply is a plain list of members.
        rows = cast(
            "list[bytes | str]",
            self.r.zrangebyscore(
                keys.plates_key(normalise_plate(plate)),
                "-inf" if since is None else since,
                "+inf" if until is None else until,
            ),
        )
        return [json.loads(x) for x in rows]
