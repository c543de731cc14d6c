"""Evidence snapshots: one JPEG per alert, faces blurred unless unredacted access is allowed."""

from __future__ import annotations

import logging
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
import redis

from citysight import keys
from citysight.config import CitysightConfig
from citysight.contracts import Alert, ObjectClass

logger = logging.getLogger(__name__)

_FACE_PAD = 0.15  # grow face boxes so hair and chin edges are covered too


class EvidenceStore:
    """JPEG evidence per alert in ``citysight:evidence:{alert_id}`` (TTL from retention).

    Args:
        r: Redis client.
        cfg: Configuration (``retention.evidence_ttl_s``).
        face_detector: Optional callable ``(bgr image) -> (N, 4) boxes`` run as an extra
            pass on redacted views (catches faces the recorded boxes missed); ``None`` blurs
            only the recorded face boxes.
    """

    def __init__(self, r: redis.Redis, cfg: CitysightConfig, *, face_detector: Any = None) -> None:
        self.r = r
        self.cfg = cfg
        self.face_detector = face_detector

    def put(self, alert_id: str, jpeg: bytes) -> None:
        """Store the unredacted original."""
        self.r.set(keys.evidence_key(alert_id), jpeg, ex=self.cfg.retention.evidence_ttl_s)

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

    def get(self, alert: Alert, *, unredacted: bool) -> bytes | None:
        """The alert's JPEG; faces blurred unless ``unredacted``.

        A redacted view that cannot be decoded is never returned as the original.
        """
        # JPEG bytes: evidence needs a client without ``decode_responses``.
        raw = cast("bytes | None", self.r.get(keys.evidence_key(alert.id)))
        if raw is None or unredacted:
            return raw
        img = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            logger.warning("evidence of %s is not a decodable image; withheld", alert.id)
            return None
        boxes = [
            b
            for ref in alert.evidence
            for b, c in zip(ref.boxes, ref.class_ids, strict=False)
            if c == ObjectClass.FACE
        ]
        if self.face_detector is not None:
            try:
                boxes.extend(np.asarray(self.face_detector(img), float).reshape(-1, 4).tolist())
            except Exception:
                logger.exception("face detector pass failed; recorded boxes still blurred")
        blur_boxes(img, boxes)
        ok, enc = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 85])
        return enc.tobytes() if ok else None


def blur_boxes(img: npt.NDArray[Any], boxes: list[list[float]]) -> None:
    """Blur ``x1, y1, x2, y2`` pixel boxes of ``img`` in place (padded, clipped)."""
    h, w = img.shape[:2]
    for x1, y1, x2, y2 in boxes:
        px, py = (x2 - x1) * _FACE_PAD, (y2 - y1) * _FACE_PAD
        a, b = int(max(0, x1 - px)), int(max(0, y1 - py))
        c, d = int(min(w, x2 + px + 1)), int(min(h, y2 + py + 1))
        if c <= a or d <= b:
            continue
        roi = img[b:d, a:c]
        # Pixelate then blur: irreversible at any face size, unlike a small Gaussian kernel.
        small = cv2.resize(
            roi, (max(1, (c - a) // 12), max(1, (d - b) // 12)), interpolation=cv2.INTER_AREA
        )
        img[b:d, a:c] = cv2.GaussianBlur(
            cv2.resize(small, (c - a, d - b), interpolation=cv2.INTER_NEAREST), (0, 0), 3
        )
