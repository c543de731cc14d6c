"""Evidence clips: a bounded ring of compressed packets per camera, an MP4 per alert.

:class:`PacketRing` keeps the last ``ring_max_s`` seconds of one camera's packets, starting
at a keyframe, bounded by seconds *and* bytes; appending is O(1) under a lock held for a few
list operations, so the decode thread never waits. Timestamps are rebased to one 90 kHz
clock that only moves forward: a reconnect or a looped file's rewind (each a new pass, see
``streams/packets.py``) continues where the previous pass ended.

:class:`ClipRecorder` is the worker's packet tap and clip writer. Its thread reads the clip
requests of the worker's own cameras (``citysight:clip-requests:{camera_id}``, consumer
group ``clips``; a camera moved from a dead worker brings its pending requests along through
``XAUTOCLAIM``), waits until the post-roll is in the ring, muxes ``pre_s`` before to
``post_s`` after the event into an MP4 without re-encoding, stores it and records the result
(``citysight.clips.ClipRecord``: ready with sha256, duration, frames and size, or
failed/unavailable with the reason). It also sweeps clips past ``retention.clip_ttl_s``.
"""

from __future__ import annotations

import hashlib
import heapq
import logging
import os
import socket
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, cast

import av
import redis

from citysight import keys
from citysight.clips import (
    ClipRecord,
    ClipState,
    ClipStore,
    ClipStoreError,
    open_store,
    original_name,
    sweep_expired,
    write_record,
)
from citysight.config import ClipsConfig
from streams.packets import Packet, StreamInfo

logger = logging.getLogger(__name__)

CLOCK = 90_000  # ticks per second of the ring's own timestamps
_OVERHEAD = 120  # bytes a held packet costs beyond its data (tuple, list slot), for the bound
WRITE_MARGIN_S = 1.0  # wait this long past the post-roll for the last packets to arrive
SWEEP_EVERY_S = 60.0
CLAIM_EVERY_S = 15.0
CLAIM_IDLE_MS = 30_000  # a request this long with a consumer that never acked it is taken

# (wall_s, dts, pts, keyframe, data): a tuple per packet keeps the append cheap.
_Held = tuple[float, int, int, bool, bytes]


@dataclass
class ClipWindow:
    """Packets copied out of a ring for one clip (already rebased, in decode order)."""

    info: StreamInfo
    packets: list[_Held]
    wanted_from: float
    wanted_to: float


@dataclass
class _Gop:
    start_wall: float
    packets: list[_Held] = field(default_factory=list)
    nbytes: int = 0


class PacketRing:
    """The last seconds of one camera's packets, from a keyframe, bounded by seconds and bytes.

    Args:
        max_s: Seconds kept (the oldest GOP goes once the next one starts ``max_s`` ago).
        max_bytes: Bytes kept at most (data plus a per-packet overhead); beyond it the
            oldest GOPs are dropped, and a single GOP larger than the bound is dropped whole
            until the next keyframe. Each such packet counts in ``dropped``.
    """

    def __init__(self, max_s: float, max_bytes: int) -> None:
        self.max_s = max_s
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._gops: deque[_Gop] = deque()
        self.nbytes = 0
        self.npackets = 0
        self.info: StreamInfo | None = None
        self._tb = Fraction(1, CLOCK)
        self._offset: int | None = None  # added to this pass's ticks (None: first packet)
        self._last_dts: int | None = None
        self._frame_ticks = CLOCK // 25
        self._pass_wall0 = 0.0
        self._discard_gop = False  # the current GOP went over the byte bound
        self._need_key = True  # a pass starts at a keyframe
        self.passes = 0
        self.evicted = 0  # packets aged out normally
        self.dropped = 0  # packets dropped for the byte bound
        self.skipped = 0  # packets before a pass's first keyframe (undecodable alone)
        self.resets = 0  # stream parameters changed: the ring started over

    # -- tap side (decode thread) -------------------------------------------------------

    def opened(self, info: StreamInfo) -> None:
        """A pass starts: rebase its timestamps after the previous pass's end."""
        with self._lock:
            old = self.info
            if old is not None and (old.codec, old.width, old.height) != (
                info.codec,
                info.width,
                info.height,
            ):
                # One MP4 stream cannot change codec or size: start over.
                self._gops.clear()
                self.nbytes = self.npackets = 0
                self._last_dts = None
                self.resets += 1
            self.info = info
            self._tb = Fraction(*info.time_base)
            self._frame_ticks = max(1, round(CLOCK / info.fps)) if info.fps > 0 else CLOCK // 25
            self._offset = None
            self._pass_wall0 = time.time()
            self._discard_gop = False
            self.passes += 1
            self._need_key = True

    def _ticks(self, ts: int | None) -> int | None:
        return None if ts is None else round(ts * self._tb * CLOCK)

    def append(self, p: Packet) -> None:
        """Add one packet (O(1) amortised; evicts whole GOPs from the front)."""
        with self._lock:
            if self.info is None:
                self.skipped += 1
                return
            if self._need_key:
                if not p.keyframe:
                    self.skipped += 1
                    return
                self._need_key = False
            dts = self._ticks(p.dts)
            pts = self._ticks(p.pts)
            if dts is None:
                dts = pts
            if dts is None:  # no timestamps at all (some RTSP sources): the arrival clock
                dts = round((p.wall_s - self._pass_wall0) * CLOCK)
            if pts is None:
                pts = dts
            if self._offset is None:
                start = 0 if self._last_dts is None else self._last_dts + self._frame_ticks
                self._offset = start - dts
            dts += self._offset
            pts += self._offset
            if self._last_dts is not None and dts <= self._last_dts:
                dts = self._last_dts + 1  # never backwards, even across a pts jump
            pts = max(pts, dts)
            self._last_dts = dts
            size = len(p.data) + _OVERHEAD
            if p.keyframe:
                self._discard_gop = False
                self._gops.append(_Gop(p.wall_s))
                self._age_out(p.wall_s)
            elif self._discard_gop or not self._gops:
                self.dropped += 1
                return
            gop = self._gops[-1]
            gop.packets.append((p.wall_s, dts, pts, p.keyframe, p.data))
            gop.nbytes += size
            self.nbytes += size
            self.npackets += 1
            while self.nbytes > self.max_bytes and self._gops:
                old = self._gops.popleft()
                self.nbytes -= old.nbytes
                self.npackets -= len(old.packets)
                self.dropped += len(old.packets)
                if old is gop:  # the GOP being written is itself too large
                    self._discard_gop = True

    def _age_out(self, newest: float) -> None:
        gops = self._gops
        while len(gops) > 1 and gops[1].start_wall <= newest - self.max_s:
            old = gops.popleft()
            self.nbytes -= old.nbytes
            self.npackets -= len(old.packets)
            self.evicted += len(old.packets)

    # -- writer side ----------------------------------------------------------------------

    def window(self, start_wall: float, end_wall: float) -> ClipWindow | None:
        """The packets from the last keyframe at or before ``start_wall`` to ``end_wall``.

        Returns ``None`` when the ring holds nothing in that span. The lock is held only to
        copy references (the packets themselves are immutable).
        """
        with self._lock:
            info = self.info
            if info is None or not self._gops:
                return None
            first = 0
            for i, g in enumerate(self._gops):
                if g.start_wall <= start_wall:
                    first = i
                else:
                    break
            chosen = [g.packets for g in list(self._gops)[first:]]
            taken = [pk for pkts in chosen for pk in list(pkts)]
        out = [pk for pk in taken if pk[0] <= end_wall]
        if not out:
            return None
        return ClipWindow(info, out, start_wall, end_wall)

    def stats(self) -> dict[str, float]:
        """Bytes and packets held, seconds covered, and the counters."""
        with self._lock:
            held_s = 0.0
            if self._gops and self._gops[-1].packets:
                held_s = self._gops[-1].packets[-1][0] - self._gops[0].start_wall
            return {
                "ring_bytes": float(self.nbytes),
                "ring_packets": float(self.npackets),
                "ring_gops": float(len(self._gops)),
                "ring_seconds": round(max(0.0, held_s), 3),
                "ring_dropped": float(self.dropped),
                "ring_evicted": float(self.evicted),
                "ring_skipped": float(self.skipped),
                "ring_passes": float(self.passes),
            }


@dataclass
class WrittenClip:
    """What :func:`mux_clip` wrote."""

    sha256: str
    size: int
    frames: int
    duration_s: float
    start_at: float


def mux_clip(win: ClipWindow, path: Path) -> WrittenClip:
    """Write ``win`` as an MP4 (``+faststart``: the index first, so browsers seek at once).

    The packets are copied as they are (no re-encoding); timestamps start at 0.

    Raises:
        av.FFmpegError: the muxer refused the packets.
    """
    info, pkts = win.info, win.packets
    base = min(pkts[0][1], pkts[0][2])
    step = round(CLOCK / info.fps) if info.fps > 0 else CLOCK // 25
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as dst:
        st = dst.add_mux_stream(info.codec, width=info.width, height=info.height)
        st.time_base = Fraction(1, CLOCK)
        for _, dts, pts, key, data in pkts:
            pk = av.Packet(data)
            pk.dts, pk.pts = dts - base, pts - base
            pk.is_keyframe = key
            pk.duration = step  # the last sample too (a 0-length last frame gets dropped)
            pk.time_base = st.time_base
            pk.stream = st
            dst.mux(pk)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    span = max(p[2] for p in pkts) - min(p[2] for p in pkts) + step
    return WrittenClip(
        sha256=h.hexdigest(),
        size=path.stat().st_size,
        frames=len(pkts),
        duration_s=round(span / CLOCK, 3),
        start_at=pkts[0][0],
    )


class ClipRecorder:
    """The worker's packet tap (a ring per camera) and its clip writer thread.

    Args:
        cfg: ``services.streams.clips``.
        r: Redis (requests, records, the expiry index); bytes replies.
        cameras: The ids of the cameras this worker reads now (whose requests it answers).
        store: Where clips go (default: the one ``cfg.storage`` names).
    """

    def __init__(
        self,
        cfg: ClipsConfig,
        r: redis.Redis,
        cameras: Callable[[], list[str]],
        store: ClipStore | None = None,
    ) -> None:
        self.cfg = cfg
        self.r = r
        self._cameras = cameras
        self.store_error = ""
        self.store: ClipStore | None = store
        if store is None:
            try:
                self.store = open_store(cfg.storage)
            except ClipStoreError as exc:
                self.store_error = str(exc)
                logger.error("evidence clips cannot be stored: %s", exc)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{id(self) & 0xFFFFFF:x}"
        self._rings: dict[str, PacketRing] = {}
        self._rings_lock = threading.Lock()
        self._groups: set[str] = set()
        self._jobs: list[tuple[float, str, str, ClipRecord]] = []  # (due, stream, entry, rec)
        self._queued: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.written = 0
        self.failed = 0
        self.unavailable = 0
        self.swept = 0
        self.errors = 0
        self.last_write_ms = 0.0
        self.last_error = ""

    # -- PacketTap ----------------------------------------------------------------------

    def _ring(self, camera_id: str) -> PacketRing:
        ring = self._rings.get(camera_id)
        if ring is None:
            with self._rings_lock:
                ring = self._rings.setdefault(
                    camera_id, PacketRing(self.cfg.ring_max_s, self.cfg.ring_max_bytes)
                )
        return ring

    def opened(self, camera_id: str, info: StreamInfo) -> None:
        """A pass of ``camera_id`` starts."""
        self._ring(camera_id).opened(info)

    def packet(self, camera_id: str, packet: Packet) -> None:
        """Keep one packet (never blocks beyond the ring's short lock)."""
        ring = self._rings.get(camera_id)
        if ring is not None:
            ring.append(packet)

    def closed(self, camera_id: str) -> None:
        """The pass ended; the ring stays (an alert just before a drop still gets its clip)."""

    def forget(self, camera_id: str) -> None:
        """Drop a camera's ring (the camera left this worker)."""
        with self._rings_lock:
            self._rings.pop(camera_id, None)

    def ring_stats(self, camera_id: str) -> dict[str, float]:
        """One camera's ring metrics (empty when it has no ring)."""
        ring = self._rings.get(camera_id)
        return ring.stats() if ring is not None else {}

    def stats(self) -> dict[str, Any]:
        """Totals for the worker's stats and health."""
        with self._rings_lock:
            rings = dict(self._rings)
        per = {cid: ring.stats() for cid, ring in rings.items()}
        out: dict[str, Any] = {
            "state": "failed" if self.store_error else "running",
            "ring_bytes": sum(int(s["ring_bytes"]) for s in per.values()),
            "ring_dropped": sum(int(s["ring_dropped"]) for s in per.values()),
            "ring_max_bytes": self.cfg.ring_max_bytes,
            "cameras": len(per),
            "written": self.written,
            "failed": self.failed,
            "unavailable": self.unavailable,
            "queued": len(self._jobs),
            "swept": self.swept,
            "errors": self.errors,
            "last_write_ms": round(self.last_write_ms, 1),
        }
        if self.store_error:
            out["reason"] = self.store_error
        if self.last_error:
            out["last_error"] = self.last_error
        return out

    # -- writer thread --------------------------------------------------------------------

    def start(self) -> None:
        """Start answering clip requests."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="clip-writer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the writer thread (requests not written stay pending for the next owner)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    def _run(self) -> None:
        next_sweep = next_claim = 0.0
        while not self._stop.is_set():
            try:
                now = time.monotonic()
                if now >= next_claim:
                    self._claim()
                    next_claim = now + CLAIM_EVERY_S
                self._read(block_ms=self._block_ms())
                self._write_due()
                if now >= next_sweep and self.store is not None:
                    self.swept += sweep_expired(self.r, self.store)
                    next_sweep = now + SWEEP_EVERY_S
            except redis.RedisError as exc:
                self.errors += 1
                self.last_error = f"redis: {exc}"
                logger.warning("clip writer: %s", exc)
                self._stop.wait(1.0)
            except Exception as exc:  # the writer must outlive any one bad request
                self.errors += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("clip writer loop failed")
                self._stop.wait(1.0)

    def _block_ms(self) -> int:
        if not self._jobs:
            return 500
        wait = self._jobs[0][0] - time.time()
        return int(min(500, max(1, wait * 1000)))

    def _streams(self) -> list[str]:
        out = []
        for cid in self._cameras():
            s = keys.clip_requests_stream(cid)
            if s not in self._groups:
                try:
                    # From 0: requests made before this worker got the camera are answered.
                    self.r.xgroup_create(s, keys.CLIPS_GROUP, id="0", mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
                self._groups.add(s)
            out.append(s)
        return out

    def _read(self, block_ms: int) -> None:
        streams = self._streams()
        if not streams:
            self._stop.wait(block_ms / 1000)
            return
        got = cast(
            "list[tuple[bytes, list[tuple[bytes, dict[Any, Any]]]]] | None",
            self.r.xreadgroup(
                keys.CLIPS_GROUP, self.name, {s: ">" for s in streams}, count=16, block=block_ms
            ),
        )
        for stream, entries in got or []:
            for eid, fields in entries:
                self._queue(keys.text(stream) or "", keys.text(eid) or "", fields)

    def _claim(self) -> None:
        for s in self._streams():
            res = self.r.xautoclaim(
                s,
                keys.CLIPS_GROUP,
                self.name,
                min_idle_time=CLAIM_IDLE_MS,
                start_id="0-0",
                count=16,
            )
            for eid, fields in res[1] if len(res) > 1 else []:
                if fields is not None:
                    self._queue(s, keys.text(eid) or "", fields)

    def _queue(self, stream: str, eid: str, fields: dict[Any, Any]) -> None:
        if eid in self._queued:
            return
        raw = fields.get(b"d") or fields.get("d") or b""
        try:
            rec = ClipRecord.model_validate_json(raw)
        except Exception as exc:
            # A request that cannot be read is acked (it would come back forever) and logged.
            logger.error("clip request %s of %s is unreadable (%s); dropped", eid, stream, exc)
            self.errors += 1
            self.r.xack(stream, keys.CLIPS_GROUP, eid)
            return
        due = rec.event_at + rec.post_s + WRITE_MARGIN_S
        self._queued.add(eid)
        heapq.heappush(self._jobs, (due, stream, eid, rec))

    def _write_due(self) -> None:
        while self._jobs and self._jobs[0][0] <= time.time() and not self._stop.is_set():
            _, stream, eid, rec = heapq.heappop(self._jobs)
            self._queued.discard(eid)
            try:
                self.write(rec)
            finally:
                pipe = self.r.pipeline(transaction=False)
                pipe.xack(stream, keys.CLIPS_GROUP, eid)
                pipe.xdel(stream, eid)  # answered: the request itself is no longer needed
                pipe.execute()

    def write(self, rec: ClipRecord) -> ClipRecord:
        """Write one clip now and record the outcome (ready, failed or unavailable)."""
        t0 = time.perf_counter()
        rec = rec.model_copy()
        rec.writer = self.name
        rec.written_at = time.time()
        ring = self._rings.get(rec.camera_id)
        win = (
            ring.window(rec.event_at - rec.pre_s, rec.event_at + rec.post_s)
            if ring is not None
            else None
        )
        if self.store is None:
            rec.state, rec.reason = ClipState.FAILED, f"clip store unavailable: {self.store_error}"
        elif ring is None and rec.camera_id not in self._cameras():
            rec.state = ClipState.UNAVAILABLE
            rec.reason = f"camera {rec.camera_id} is not being read by this stream worker"
        elif ring is None or win is None:
            rec.state = ClipState.UNAVAILABLE
            rec.reason = (
                f"no video of camera {rec.camera_id} buffered around the alert "
                "(camera offline, or the ring had already moved past it)"
            )
        else:
            try:
                with tempfile.TemporaryDirectory(prefix="clip-") as tmp:
                    path = Path(tmp) / "clip.mp4"
                    done = mux_clip(win, path)
                    rec.object = original_name(rec.alert_id)
                    self.store.put_file(rec.object, path)
                rec.state = ClipState.READY
                rec.reason = ""
                rec.sha256, rec.size, rec.frames = done.sha256, done.size, done.frames
                rec.duration_s, rec.start_at = done.duration_s, done.start_at
                rec.codec, rec.width, rec.height = win.info.codec, win.info.width, win.info.height
                if done.start_at > rec.event_at - rec.pre_s + 1.0:
                    rec.reason = (
                        f"pre-roll short: the ring started {done.start_at - rec.event_at:+.1f} s "
                        "from the alert"
                    )
            except (av.FFmpegError, OSError, ClipStoreError, ValueError) as exc:
                rec.state, rec.reason = ClipState.FAILED, f"writing the clip failed: {exc}"
                logger.warning("clip of alert %s failed: %s", rec.alert_id, exc)
        rec.write_ms = round((time.perf_counter() - t0) * 1000, 1)
        self.last_write_ms = rec.write_ms
        pipe = self.r.pipeline(transaction=True)
        write_record(pipe, rec)
        if rec.state == ClipState.READY:
            pipe.zadd(keys.CLIPS_EXPIRY, {rec.alert_id: rec.expires_at})
        pipe.execute()
        if rec.state == ClipState.READY:
            self.written += 1
            logger.info(
                "clip of alert %s: %d frames, %.1f s, %d bytes in %.0f ms",
                rec.alert_id, rec.frames, rec.duration_s, rec.size, rec.write_ms,
            )  # fmt: skip
        elif rec.state == ClipState.FAILED:
            self.failed += 1
        else:
            self.unavailable += 1
            logger.info("clip of alert %s unavailable: %s", rec.alert_id, rec.reason)
        return rec
