"""Hash-chained audit log in ``citysight:audit``: each record carries its predecessor's hash."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT, StreamRangeResponse

from citysight import keys
from citysight.config import CitysightConfig

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_FIELDS = ("actor", "action", "target", "reason", "at", "prev")


def record_hash(rec: dict[str, Any]) -> str:
    """sha256 of a record's canonical JSON (fields ``actor..prev``)."""
    body = json.dumps({k: str(rec[k]) for k in _FIELDS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class AuditLog:
    """Append-only, hash-chained audit records (who, what, when, why).

    Args:
        r: Redis client.
        cfg: Configuration (``retention.audit_ttl_s`` bounds trimming); optional.
    """

    def __init__(self, r: redis.Redis, cfg: CitysightConfig | None = None) -> None:
        self.r = r
        self.cfg = cfg

    def append(self, *, actor: str, action: str, target: str, reason: str = "") -> dict[str, Any]:
        """Append one record; concurrent appenders are serialised by WATCH on the chain head."""
        while True:
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    pipe.watch(keys.AUDIT_HEAD)  # type: ignore[no-untyped-call]  # redis: unannotated
                    prev = keys.text(pipe.get(keys.AUDIT_HEAD)) or GENESIS
                    rec: dict[str, Any] = {
                        "actor": actor,
                        "action": action,
                        "target": target,
                        "reason": reason,
                        "at": repr(time.time()),
                        "prev": prev,
                    }
                    rec["hash"] = record_hash(rec)
                    pipe.multi()
                    # every field is a str here (``id`` is added after the write)
                    pipe.xadd(keys.AUDIT_STREAM, cast("dict[FieldT, EncodableT]", rec))
                    pipe.set(keys.AUDIT_HEAD, rec["hash"])
                    rec["id"] = keys.text(pipe.execute()[0])
                    return rec
                except redis.WatchError:
                    continue

    def _rows(self, rows: StreamRangeResponse | None) -> list[dict[str, Any]]:
        assert rows is not None  # a synchronous client's XRANGE reply is always a list
        out = []
        for rid, fields in rows:
            assert fields is not None  # only XCLAIM replies carry deleted (None) entries
            rec: dict[str, Any] = {keys.text(k) or "": keys.text(v) for k, v in fields.items()}
            rec["id"] = keys.text(rid)
            out.append(rec)
        return out

    def list(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest records first."""
        return self._rows(self.r.xrevrange(keys.AUDIT_STREAM, count=limit))

    def verify(self) -> bool:
        """Whether every record's hash and link to its predecessor are intact.

        The first remaining record's ``prev`` is not checked (older records may have been
        trimmed by retention).
        """
        prev: str | None = None
        last = "-"
        while True:
            rows = self._rows(self.r.xrange(keys.AUDIT_STREAM, min=last, max="+", count=1000))
            for rec in rows:
                if record_hash(rec) != rec.get("hash"):
                    logger.warning("audit record %s was altered", rec["id"])
                    return False
                if prev is not None and rec["prev"] != prev:
                    logger.warning("audit chain broken before %s", rec["id"])
                    return False
                prev = rec["hash"]
            if len(rows) < 1000:
                head = keys.text(self.r.get(keys.AUDIT_HEAD))
                return prev is None or head == prev
            last = "(" + rows[-1]["id"]

    def trim(self, now: float | None = None) -> int:
        """Drop records older than ``retention.audit_ttl_s`` (by ``MINID``)."""
        if self.cfg is None:
            return 0
        cutoff = int(((now or time.time()) - self.cfg.retention.audit_ttl_s) * 1000)
        return int(self.r.xtrim(keys.AUDIT_STREAM, minid=f"{max(cutoff, 0)}-0"))
