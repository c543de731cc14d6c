"""Evidence clips on the serving side: requesting them for new alerts, serving them redacted.

The rules consumer calls :func:`request_clips` with the alerts it has just saved: each gets
a ``pending`` :class:`~citysight.clips.ClipRecord` and a request on its camera's stream,
which the stream worker reading that camera answers (``streams/clips.py``).

:class:`ClipService` is the ingress half: the record of an alert's clip, the original (for
``evidence:unredacted``, audited by the route) and the face-blurred copy everyone else
gets. The copy is made once per clip and detector tier (decode, blur every face found on
every frame with :class:`citysight.redaction.FaceRedactor`, encode H.264) and kept in the
clip store beside the original, so retention deletes both. Fail closed: no detector, or a
detector failure on any frame, means no copy and nothing served.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import threading
import time
from fractions import Fraction
from functools import cached_property
from pathlib import Path

import av
import numpy as np
import redis

from citysight import keys
from citysight.clips import (
    ClipRecord,
    ClipState,
    ClipStore,
    ClipStoreError,
    open_store,
    read_record,
    redacted_name,
    request_fields,
    write_record,
)
from citysight.config import CitysightConfig
from citysight.contracts import Alert, AlertKind
from citysight.redaction import FaceRedactor, RedactionUnavailable

logger = logging.getLogger(__name__)

#: Alerts about the system itself have no scene worth a clip (or no video at all).
NO_CLIP_KINDS = frozenset({AlertKind.CAMERA_OFFLINE, AlertKind.ANALYTICS_DOWN})


def request_clips(r: redis.Redis, cfg: CitysightConfig, alerts: list[Alert]) -> int:
    """Record a pending clip and queue its request for each alert that gets one.

    Idempotent per alert: a record already there (written, or pending) is kept, so a
    retried output never turns a ready clip back into a pending one.

    Returns:
        How many requests were queued.
    """
    clips = cfg.services.streams.clips
    if not clips.enabled:
        return 0
    now = time.time()
    pipe = r.pipeline(transaction=True)
    n = 0
    for a in alerts:
        if a.kind in NO_CLIP_KINDS or not a.camera_id:
            continue
        rec = ClipRecord(
            alert_id=a.id,
            camera_id=a.camera_id,
            event_at=a.detected_at or now,
            pre_s=clips.pre_s,
            post_s=clips.post_s,
            requested_at=now,
            expires_at=now + cfg.retention.clip_ttl_s,
            grace_s=clips.write_grace_s,
        )
        write_record(pipe, rec, nx=True)
        pipe.xadd(keys.clip_requests_stream(a.camera_id), dict(request_fields(rec)))  # type: ignore[arg-type]
        n += 1
    if n:
        pipe.execute()
    return n


class ClipUnavailable(LookupError):
    """The alert has no clip to serve (yet): ``record`` says why (``None``: never asked)."""

    def __init__(self, record: ClipRecord | None, message: str) -> None:
        super().__init__(message)
        self.record = record


class ClipService:
    """Reads clip records and files; renders the face-blurred copy.

    Args:
        r: Redis client.
        cfg: Configuration (clips settings and storage).
        redactor: Face redaction (built from ``cfg.services.inference`` on first use).
        store: The clip store (the one the config names by default).
    """

    def __init__(
        self,
        r: redis.Redis,
        cfg: CitysightConfig,
        *,
        redactor: FaceRedactor | None = None,
        store: ClipStore | None = None,
    ) -> None:
        self.r = r
        self.cfg = cfg
        if redactor is not None:
            self.redactor = redactor
        if store is not None:
            self.store = store
        self._locks: dict[str, threading.Lock] = {}
        self._locks_lock = threading.Lock()
        self.rendered = 0
        self.render_ms = 0.0

    @cached_property
    def redactor(self) -> FaceRedactor:
        """The face redactor (loaded on first use)."""
        return FaceRedactor.from_config(self.cfg.services.inference)

    @cached_property
    def store(self) -> ClipStore:
        """The clip store.

        Raises:
            ClipStoreError: it cannot be opened.
        """
        return open_store(self.cfg.services.streams.clips.storage)

    def record(self, alert_id: str) -> ClipRecord | None:
        """The clip record of an alert (``None``: none requested, or expired)."""
        return read_record(self.r, alert_id)

    def ready(self, alert: Alert) -> ClipRecord:
        """The record of a clip that can be served now.

        Raises:
            ClipUnavailable: no clip, still pending, unavailable, failed or expired.
        """
        rec = self.record(alert.id)
        if rec is None:
            raise ClipUnavailable(None, "no clip was recorded for this alert")
        if rec.state != ClipState.READY:
            raise ClipUnavailable(rec, rec.reason or f"clip {rec.state.value}")
        if rec.expires_at and time.time() >= rec.expires_at:
            raise ClipUnavailable(rec, "the clip has expired (retention.clip_ttl_s)")
        return rec

    def original(self, rec: ClipRecord) -> tuple[str, int]:
        """Object name and size of the original.

        Raises:
            ClipUnavailable: the file is gone from the store.
        """
        size = self.store.size(rec.object)
        if size is None:
            raise ClipUnavailable(rec, "the clip file is missing from the clip store")
        return rec.object, size

    def fingerprint(self, rec: ClipRecord) -> str:
        """What the blurred copy depends on: the original, the detector tier, the quality."""
        crf = self.cfg.services.streams.clips.redact_crf
        raw = f"{rec.sha256}\x1f{self.redactor.tier}\x1f{crf}".encode()
        return hashlib.sha256(raw).hexdigest()[:24]

    def redacted(self, rec: ClipRecord) -> tuple[str, int, str]:
        """Object name, size and ETag of the face-blurred copy (rendered on first use).

        Raises:
            RedactionUnavailable: faces cannot be looked for (nothing is served).
            ClipUnavailable: the original is gone.
        """
        if not self.redactor.available:  # fail closed before reading anything
            raise RedactionUnavailable(self.redactor.reason)
        fp = self.fingerprint(rec)
        name = redacted_name(rec.alert_id, fp)
        with self._locks_lock:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:  # one rendering per copy, however many viewers ask at once
            size = self.store.size(name)
            if size is None:
                self._render(rec, name)
                size = self.store.size(name)
                if size is None:
                    raise ClipUnavailable(rec, "the blurred clip could not be stored")
        with self._locks_lock:
            self._locks.pop(name, None)
        return name, size, f"{rec.sha256[:32]}-r{fp[:16]}"

    def _render(self, rec: ClipRecord, name: str) -> None:
        raw = self.store.get(rec.object)
        if raw is None:
            raise ClipUnavailable(rec, "the clip file is missing from the clip store")
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="clip-redact-") as tmp:
            src, dst = Path(tmp) / "in.mp4", Path(tmp) / "out.mp4"
            src.write_bytes(raw)
            frames = blur_clip(
                src, dst, self.redactor, crf=self.cfg.services.streams.clips.redact_crf
            )
            try:
                self.store.put_file(name, dst)
            except ClipStoreError as exc:
                raise ClipUnavailable(rec, str(exc)) from None
        self.rendered += 1
        self.render_ms = (time.perf_counter() - t0) * 1000
        logger.info(
            "blurred copy of the clip of %s: %d frames in %.0f ms",
            rec.alert_id, frames, self.render_ms,
        )  # fmt: skip

    def read(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``start``..``end`` (inclusive) of a clip object."""
        return self.store.open_range(name, start, end)


def blur_clip(src: Path, dst: Path, redactor: FaceRedactor, *, crf: int = 26) -> int:
    """Re-encode ``src`` to ``dst`` (H.264 MP4) with every face of every frame blurred.

    Returns:
        Frames written.

    Raises:
        RedactionUnavailable: faces could not be looked for on some frame (``dst`` is then
            incomplete and must not be served; the caller's temporary directory drops it).
    """
    n = 0
    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        rate = vin.average_rate or vin.guessed_rate or Fraction(25)
        with av.open(str(dst), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            vout = out.add_stream("libx264", rate=rate)
            vout.width = vin.codec_context.width
            vout.height = vin.codec_context.height
            vout.pix_fmt = "yuv420p"
            vout.options = {"crf": str(crf), "preset": "veryfast"}
            for frame in inp.decode(vin):
                bgr = np.ascontiguousarray(frame.to_ndarray(format="bgr24"), dtype=np.uint8)
                red = redactor.redact(bgr)  # raises RedactionUnavailable: fail closed
                vf = av.VideoFrame.from_ndarray(red, format="bgr24")
                vf.pts = n
                vf.time_base = Fraction(1) / Fraction(rate)
                for pkt in vout.encode(vf):
                    out.mux(pkt)
                n += 1
            for pkt in vout.encode(None):
                out.mux(pkt)
    if n == 0:
        raise ClipUnavailable(None, "the clip has no decodable frame")
    return n
