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

import contextlib
import hashlib
import logging
import os
import queue
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
RENDER_LOCK_S = 900  # longest a rendering may hold its lock (a 1080p clip on a busy box)

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


class ClipRendering(ClipUnavailable):
    """The face-blurred copy is being made (ask again shortly)."""


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
        self._queue: queue.Queue[tuple[ClipRecord, str, str]] = queue.Queue()
        self._pending: set[str] = set()
        self._failed: dict[str, Exception] = {}
        self._jobs_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._closed = threading.Event()
        self._me = f"{os.getpid()}:{id(self):x}"
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
        """Object name, size and ETag of the face-blurred copy.

        The copy is rendered in the background on first use (it decodes, runs the face
        detector on every frame and encodes again: seconds to minutes of CPU); until it is
        stored this raises :class:`ClipRendering` (the route answers 202).

        Raises:
            RedactionUnavailable: faces cannot be looked for, now or while rendering this
                copy (nothing is served).
            ClipRendering: the copy is being made.
            ClipUnavailable: the original is gone.
        """
        if not self.redactor.available:  # fail closed before reading anything
            raise RedactionUnavailable(self.redactor.reason)
        fp = self.fingerprint(rec)
        name = redacted_name(rec.alert_id, fp)
        etag = f"{rec.sha256[:32]}-r{fp[:16]}"
        size = self.store.size(name)
        if size is not None:
            return name, size, etag
        with self._jobs_lock:
            failed = self._failed.pop(name, None)
            if failed is not None:
                if isinstance(failed, RedactionUnavailable):
                    raise failed
                raise ClipUnavailable(rec, str(failed))
            if name not in self._pending:
                # One rendering per copy across replicas: the first to take the lock.
                lock = keys.clip_render_lock(rec.alert_id, fp)
                if self.r.set(lock, self._me, nx=True, ex=RENDER_LOCK_S):
                    self._pending.add(name)
                    self._queue.put((rec, name, lock))
                    self._ensure_worker()
        raise ClipRendering(rec, "the face-blurred copy of the clip is being made")

    def _ensure_worker(self) -> None:
        if self._worker is None or not self._worker.is_alive():
            self._worker = threading.Thread(target=self._work, name="clip-redact", daemon=True)
            self._worker.start()

    def _work(self) -> None:
        while not self._closed.is_set():
            try:
                rec, name, lock = self._queue.get(timeout=0.5)
            except queue.Empty:
                continue
            try:
                self._render(rec, name)
            except Exception as exc:  # recorded for the next request, never lost
                logger.warning("blurring the clip of %s failed: %s", rec.alert_id, exc)
                with self._jobs_lock:
                    self._failed[name] = exc
            finally:
                with self._jobs_lock:
                    self._pending.discard(name)
                with contextlib.suppress(redis.RedisError):  # otherwise it expires
                    self.r.delete(lock)

    def close(self) -> None:
        """Stop the rendering thread (a rendering in progress is abandoned)."""
        self._closed.set()
        if self._worker is not None:
            self._worker.join(5)

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
