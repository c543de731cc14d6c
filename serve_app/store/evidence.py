"""Alert evidence: faces blurred unless unredacted access is allowed.

Each alert has its snapshot (``citysight:evidence:{alert_id}``, from the triggering frame)
and may gain further items (``citysight:evidence:{alert_id}:{item}``): field-report photos,
feedback ("after") photos, the snapshot of a camera re-check. Every item is a JPEG with the
same retention, served through the same redaction.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import cached_property
from typing import cast

import cv2
import numpy as np
import redis

from citysight import keys
from citysight.config import CitysightConfig
from citysight.contracts import Alert, EvidenceRef, ObjectClass
from citysight.redaction import FaceRedactor, RedactionUnavailable, blur_boxes

__all__ = ["EvidenceStore", "RedactionUnavailable", "blur_boxes"]

logger = logging.getLogger(__name__)


class EvidenceStore:
    """JPEG evidence per alert in ``citysight:evidence:{alert_id}`` (TTL from retention).

    Args:
        r: Redis client.
        cfg: Configuration (``retention.evidence_ttl_s``).
        redactor: Face redaction of every redacted view (faces found in the image at serving
            time plus the faces recorded on the alert); built from
            ``cfg.services.inference`` (the face detector tiers) on first use when not given.
    """

    def __init__(
        self, r: redis.Redis, cfg: CitysightConfig, *, redactor: FaceRedactor | None = None
    ) -> None:
        self.r = r
        self.cfg = cfg
        if redactor is not None:
            self.redactor = redactor

    @cached_property
    def redactor(self) -> FaceRedactor:
        """The face redactor (loaded once, on the first redacted view or health check)."""
        return FaceRedactor.from_config(self.cfg.services.inference)

    def put(self, alert_id: str, jpeg: bytes) -> None:
        """Store the unredacted original."""
        self.r.set(keys.evidence_key(alert_id), jpeg, ex=self.cfg.retention.evidence_ttl_s)

    def put_item(self, alert_id: str, item_id: str, jpeg: bytes) -> str:
        """Store a further evidence item (already cleaned JPEG); returns its key."""
        key = keys.evidence_item_key(alert_id, item_id)
        self.r.set(key, jpeg, ex=self.cfg.retention.evidence_ttl_s)
        return key

    def delete_items(self, alert_id: str, item_ids: list[str]) -> None:
        """Remove items stored for a request that failed afterwards (nothing half-kept)."""
        if item_ids:
            self.r.delete(*(keys.evidence_item_key(alert_id, i) for i in item_ids))

    def copy_snapshot_item(self, alert_id: str, item_id: str, snapshot_key: str) -> str | None:
        """Copy a short-lived frame snapshot to an evidence item; its key, or ``None`` when
        the snapshot already expired."""
        blob = self.r.get(snapshot_key)
        if blob is None:
            return None
        return self.put_item(alert_id, item_id, cast(bytes, blob))

    def copy_snapshots(self, pairs: dict[str, str]) -> int:
        """Copy short-lived frame snapshots to alert evidence in two round trips.

        Args:
            pairs: alert id → ``citysight:snap:...`` key.

        Returns:
            How many snapshots were still there and were copied.
        """
        if not pairs:
            return 0
        ids = list(pairs)
        blobs = self.r.mget([pairs[i] for i in ids])
        pipe = self.r.pipeline(transaction=False)
        n = 0
        for alert_id, blob in zip(ids, blobs, strict=True):
            if blob is not None:
                pipe.set(keys.evidence_key(alert_id), blob, ex=self.cfg.retention.evidence_ttl_s)
                n += 1
        if n:
            pipe.execute()
        if n < len(ids):
            logger.warning("%d alert snapshot(s) had already expired", len(ids) - n)
        return n

    def ref(self, alert: Alert, item_id: str | None = None) -> EvidenceRef | None:
        """The evidence reference ``item_id`` of an alert (``None``: its main picture, the
        snapshot, else the first item such as a report's first photo)."""
        if item_id is None:
            main = next((e for e in alert.evidence if not e.id), None)
            return main or (alert.evidence[0] if alert.evidence else None)
        return next((e for e in alert.evidence if e.id == item_id), None)

    def get(self, alert: Alert, *, unredacted: bool, item_id: str | None = None) -> bytes | None:
        """The alert's JPEG (its main picture, or item ``item_id``); every face blurred
        unless ``unredacted``.

        A redacted view is re-encoded from the original with every face the detector finds
        in it blurred, plus the faces recorded on the alert; one that cannot be decoded is
        never returned as the original. The rendering is kept beside the original (same
        expiry), keyed by a hash of the original bytes, the recorded boxes and the detector
        tier, so the detection pass runs once per image and tier.

        Raises:
            RedactionUnavailable: a redacted view was asked for and faces cannot be looked
                for (no face detector, or it failed): nothing is served (fail closed).
        """
        ref = self.ref(alert, item_id)
        if item_id is not None and ref is None:
            return None
        # Only keys of this alert are ever read (the refs are the server's own records).
        key = ref.key if ref is not None and ref.id else keys.evidence_key(alert.id)
        if ref is not None and ref.id and key != keys.evidence_item_key(alert.id, ref.id):
            return None
        # JPEG bytes: evidence needs a client without ``decode_responses``.
        raw = cast("bytes | None", self.r.get(key))
        if raw is None or unredacted:
            return raw
        if not self.redactor.available:  # fail closed before anything is read or cached
            raise RedactionUnavailable(self.redactor.reason)
        mine = [ref] if ref is not None and ref.id else [e for e in alert.evidence if not e.id]
        recorded = [
            b
            for e in mine
            for b, c in zip(e.boxes, e.class_ids, strict=False)
            if c == ObjectClass.FACE
        ]
        # The rendering depends only on these bytes, the recorded boxes and the detector
        # tier, so it is kept (expiring with the original) and a second view of the same
        # evidence costs one GET instead of another detection pass.
        fp = hashlib.sha256(raw + json.dumps([self.redactor.tier, recorded]).encode()).hexdigest()[
            :24
        ]
        cache_key = keys.redacted_evidence_key(alert.id, fp)
        cached = cast("bytes | None", self.r.get(cache_key))
        if cached is not None:
            return cached
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            logger.warning("evidence of %s is not a decodable image; withheld", alert.id)
            return None
        red = self.redactor.redact(np.asarray(img, np.uint8), recorded)
        ok, enc = cv2.imencode(".jpg", red, [cv2.IMWRITE_JPEG_QUALITY, 85])
        if not ok:
            return None
        out = enc.tobytes()
        ttl_ms = int(self.r.pttl(key))
        if ttl_ms > 0:  # the original may have expired meanwhile: cache nothing then
            self.r.set(cache_key, out, px=ttl_ms)
        return out
