"""Keyed, hash-chained audit log in ``citysight:audit``.

Each record carries ``hash`` = HMAC-SHA256 (key outside Redis: ``audit.key_env`` or
``audit.key_file``, see ``citysight/keyfiles.py``) of its canonical fields, including
``prev``, its predecessor's ``hash``. Whoever can write Redis but lacks the key cannot
alter, insert or re-link records without :meth:`AuditLog.verify_report` noticing.

* Retention trims the oldest records (``retention.audit_ttl_s``); the trim writes a keyed
  *anchor* (``citysight:audit:anchor``: the first record left and its ``prev``) in the same
  transaction, so a first record whose ``prev`` is not the genesis is accepted only when
  the anchor vouches for it: deleting the oldest records by hand is detected.
* After each verification the chain head (last id and hash) is exported to
  ``audit.head_file``; the next verification requires the chain to still contain it, so
  deleting the newest records (and resetting ``citysight:audit:head``) is detected too.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT, StreamRangeResponse

from citysight import keys
from citysight.config import CitysightConfig
from citysight.keyfiles import audit_key

logger = logging.getLogger(__name__)

GENESIS = "0" * 64
_FIELDS = ("actor", "action", "target", "reason", "at", "prev")
AUDIT_ANCHOR = keys.AUDIT_ANCHOR


def _canonical(d: dict[str, Any], fields: tuple[str, ...]) -> bytes:
    return json.dumps(
        {k: str(d[k]) for k in fields}, sort_keys=True, separators=(",", ":")
    ).encode()


def record_hash(rec: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) of a record's canonical JSON (fields ``actor..prev``)."""
    return hmac.new(key, _canonical(rec, _FIELDS), hashlib.sha256).hexdigest()


@dataclass
class ChainReport:
    """The result of one verification of the whole chain.

    Attributes:
        ok: Every record's HMAC and link, the first record's anchor and the exported head
            check out.
        records: Records checked.
        reason: Why not ok (empty when ok).
        head_id: Last record id (empty: no records).
        head_hash: Last record hash.
        verified_at: Unix time of the verification.
    """

    ok: bool
    records: int
    reason: str = ""
    head_id: str = ""
    head_hash: str = ""
    verified_at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON form (``/health`` detail, metrics snapshot)."""
        return asdict(self)


class AuditLog:
    """Append-only, keyed, hash-chained audit records (who, what, when, why).

    Args:
        r: Redis client.
        cfg: Configuration: ``retention.audit_ttl_s`` bounds trimming, ``audit`` names the
            key and the head file; optional (then ``key`` is required).
        key: The HMAC key (default: read from ``cfg.audit`` on first use).
    """

    def __init__(
        self, r: redis.Redis, cfg: CitysightConfig | None = None, *, key: bytes | None = None
    ) -> None:
        self.r = r
        self.cfg = cfg
        self._key = key

    @property
    def key(self) -> bytes:
        """The HMAC key (loaded once).

        Raises:
            citysight.keyfiles.SecretError: no key can be read.
        """
        if self._key is None:
            if self.cfg is None:
                raise ValueError("AuditLog needs cfg or key")
            self._key = audit_key(self.cfg.audit)
        return self._key

    def append(self, *, actor: str, action: str, target: str, reason: str = "") -> dict[str, Any]:
        """Append one record; concurrent appenders are serialised by WATCH on the chain head."""
        key = self.key  # before the transaction: no key, no record (callers fail closed)
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
                    rec["hash"] = record_hash(rec, key)
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
        """Whether the whole chain checks out (see :meth:`verify_report`)."""
        return self.verify_report().ok

    def _anchor_mac(self, first_id: str, prev: str) -> str:
        body = _canonical({"first_id": first_id, "prev": prev}, ("first_id", "prev"))
        return hmac.new(self.key, b"anchor:" + body, hashlib.sha256).hexdigest()

    def _anchored(self, first: dict[str, Any] | None, head: str | None = None) -> bool:
        """Whether the keyed anchor vouches for ``first`` as the oldest record left.

        An anchor with an empty ``first_id`` (retention removed every record) vouches for
        the first record appended after it, or, with no record, for the head it names.
        """
        raw = keys.text(self.r.get(AUDIT_ANCHOR))
        if not raw:
            return False
        try:
            a = json.loads(raw)
            if first is None:
                matches = a["first_id"] == "" and a["prev"] == head
            else:
                matches = a["first_id"] in ("", first["id"]) and a["prev"] == first["prev"]
            return bool(
                matches
                and hmac.compare_digest(str(a["mac"]), self._anchor_mac(a["first_id"], a["prev"]))
            )
        except (ValueError, KeyError, TypeError):
            return False

    def verify_report(self, *, head_file: str | os.PathLike[str] | None = None) -> ChainReport:
        """Verify the chain from its first record.

        Checks every record's HMAC, every link to its predecessor, that the first record
        links to the genesis or is vouched for by the retention anchor, that
        ``citysight:audit:head`` is the last record's hash, and that the head exported last
        (``head_file``, default ``cfg.audit.head_file``) is still in the chain (or was
        trimmed by retention).

        Raises:
            redis.RedisError: Redis is unreachable.
            citysight.keyfiles.SecretError: no key can be read.
        """
        for attempt in range(2):  # a retention trim between reads can fake a broken start
            report = self._verify_once(head_file)
            if report.ok or "first record" not in report.reason or attempt:
                return report
        return report  # pragma: no cover - the loop always returns

    def _verify_once(self, head_file: str | os.PathLike[str] | None) -> ChainReport:
        key = self.key
        now = time.time()
        prev: str | None = None
        first: dict[str, Any] | None = None
        last_id = ""
        n = 0
        exported = self._read_exported(head_file)
        exported_seen = False
        cursor = "-"
        extra_pages = 0
        head: str | None = None

        def broken(reason: str) -> ChainReport:
            logger.warning("audit chain broken: %s", reason)
            return ChainReport(False, n, reason, last_id, prev or "", now)

        while True:
            rows = self._rows(self.r.xrange(keys.AUDIT_STREAM, min=cursor, max="+", count=1000))
            for rec in rows:
                n += 1
                if not all(isinstance(rec.get(k), str) for k in (*_FIELDS, "hash")):
                    return broken(f"record {rec['id']} lacks fields")
                if not hmac.compare_digest(record_hash(rec, key), str(rec["hash"])):
                    return broken(f"record {rec['id']} was altered or forged")
                if first is None:
                    first = rec
                    if rec["prev"] != GENESIS and not self._anchored(rec):
                        return broken(f"first record {rec['id']} follows records that are gone")
                elif rec["prev"] != prev:
                    return broken(f"record {rec['id']} does not follow its predecessor")
                if exported is not None and rec["id"] == exported.get("id"):
                    if rec["hash"] != exported.get("hash"):
                        return broken(f"exported head {rec['id']} was replaced")
                    exported_seen = True
                prev, last_id = rec["hash"], rec["id"]
            if len(rows) < 1000:
                head = keys.text(self.r.get(keys.AUDIT_HEAD))
                # A record appended between the last page and the head read (appends write
                # both in one transaction) is read on, not reported as a broken chain.
                if prev is not None and head != prev and extra_pages < 100:
                    more = self.r.xrange(keys.AUDIT_STREAM, min="(" + last_id, max="+", count=1)
                    if more:
                        extra_pages += 1
                        cursor = "(" + last_id
                        continue
                break
            cursor = "(" + rows[-1]["id"]
        if prev is not None and head != prev:
            return broken("the stored chain head is not the last record")
        if prev is None and head and not self._anchored(None, head):
            return broken("records are gone (the chain head is set, the stream is empty)")
        if exported is not None and exported.get("id") and not exported_seen:
            gone = str(exported["id"])
            if first is not None:
                trimmed = keys.stream_id(gone) < keys.stream_id(first["id"])
            else:  # retention removed every record: the anchor names the head it left
                trimmed = self._anchored(None, head)
            if not trimmed:
                return broken(f"exported head {gone} is no longer in the chain")
        return ChainReport(True, n, "", last_id, prev or "", now)

    def _head_path(self, head_file: str | os.PathLike[str] | None) -> Path | None:
        if head_file is not None:
            return Path(head_file)
        if self.cfg is None or not self.cfg.audit.head_file:
            return None
        return Path(self.cfg.audit.head_file)

    def _read_exported(self, head_file: str | os.PathLike[str] | None) -> dict[str, Any] | None:
        path = self._head_path(head_file)
        if path is None or not path.exists():
            return None
        try:
            data = json.loads(path.read_text())
            return data if isinstance(data, dict) else None
        except (OSError, ValueError) as exc:
            logger.warning("exported audit head %s unreadable: %s", path, exc)
            return None

    def export_head(
        self, report: ChainReport, head_file: str | os.PathLike[str] | None = None
    ) -> None:
        """Write a verified chain head to the head file (atomically, mode 0600).

        Raises:
            OSError: the file cannot be written.
        """
        path = self._head_path(head_file)
        if path is None or not report.ok:
            return
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        body = {"id": report.head_id, "hash": report.head_hash, "records": report.records,
                "at": report.verified_at}  # fmt: skip
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(body, f)
        os.replace(tmp, path)

    def trim(self, now: float | None = None) -> int:
        """Drop records older than ``retention.audit_ttl_s`` (by ``MINID``).

        The first record left is anchored (keyed) in the same transaction.
        """
        if self.cfg is None:
            return 0
        cutoff = int(((now or time.time()) - self.cfg.retention.audit_ttl_s) * 1000)
        minid = f"{max(cutoff, 0)}-0"
        oldest = self.r.xrange(keys.AUDIT_STREAM, min="-", max="+", count=1)
        if not oldest or keys.stream_id(keys.text(oldest[0][0]) or "0") >= (max(cutoff, 0), 0):
            return 0  # nothing to trim: no anchor to write
        while True:
            with self.r.pipeline(transaction=True) as pipe:
                try:
                    # An append between the reads and the trim would change what is first.
                    pipe.watch(keys.AUDIT_HEAD)  # type: ignore[no-untyped-call]  # redis: unannotated
                    nxt = self._rows(pipe.xrange(keys.AUDIT_STREAM, min=minid, max="+", count=1))
                    if nxt:
                        first_id, prev = nxt[0]["id"], nxt[0]["prev"]
                    else:  # every record goes: the next one appended follows the head
                        first_id, prev = "", keys.text(pipe.get(keys.AUDIT_HEAD)) or GENESIS
                    anchor = {"first_id": first_id, "prev": prev,
                              "mac": self._anchor_mac(first_id, prev)}  # fmt: skip
                    pipe.multi()
                    pipe.xtrim(keys.AUDIT_STREAM, minid=minid, approximate=False)
                    pipe.set(AUDIT_ANCHOR, json.dumps(anchor))
                    with contextlib.suppress(IndexError):
                        return int(pipe.execute()[0])
                    return 0
                except redis.WatchError:
                    continue
