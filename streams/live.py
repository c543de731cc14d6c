"""Live view, worker side: a watched camera's packets go to a short Redis stream.

:class:`LivePublisher` is a :class:`~streams.packets.PacketTap`. For every camera it keeps
the packets since the last keyframe (the GOP, for a fast start) and, only while the camera
has a viewer-interest key (``citysight:live:{id}:interest``, set by the ingress with a TTL),
hands packets to a publisher thread that appends them to the capped stream
``citysight:live:{id}:packets``. A new viewer therefore starts at a keyframe at once.

The decode thread only copies references into a bounded deque: Redis is written by the
publisher thread, so a slow or unreachable Redis drops live packets (counted) and never
delays analytics. Timestamps are rebased to 90 kHz and kept monotonic across passes (a
reconnect or a looped file restarts them).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

import redis

from citysight import keys
from citysight.config import CameraConfig, LiveService
from citysight.urls import ffmpeg_options, redact
from streams.decoders import PyAVBackend, PyAVSession
from streams.packets import Packet, StreamInfo
from streams.reader import CameraReader, PermanentSourceError, ReaderOptions

logger = logging.getLogger(__name__)

TS_HZ = 90_000
"""Clock of the published ``pts``/``dts`` (MPEG's 90 kHz)."""
PLAYABLE_CODECS = frozenset({"h264"})
"""Codecs browsers play through Media Source Extensions (Debian's Chromium: H.264, not HEVC)."""
NVDEC_UNAVAILABLE = (
    "live view unavailable: this camera is decoded on the GPU (NVDEC), which offers no "
    "compressed packets to remux; configure an H.264 substream or a CPU (pyav) worker"
)
STREAM_TTL_S = 30
"""A packet stream nobody refreshes disappears (viewers gone, worker gone)."""


@dataclass
class _Camera:
    """Live state of one camera (touched by the decode thread, ``want`` by the publisher)."""

    info: StreamInfo | None = None
    info_json: str = ""
    tick_s: float = 0.0
    unplayable: str = ""
    rebase: bool = True
    offset: int = 0
    last_dts: int | None = None
    last_pts: int | None = None
    frame_ticks: int = 3600
    gop: list[dict[str, Any]] = field(default_factory=list)
    gop_full: bool = False
    have_key: bool = False
    want: bool = False
    watched: bool = False
    queue: deque[dict[str, Any]] = field(default_factory=deque)
    last_notice: float = 0.0


class LivePublisher:
    """Publishes watched cameras' packets to Redis (see the module docstring).

    Args:
        r: Redis client (used by the publisher thread only).
        cfg: Live-view settings (caps, TTLs).
        camera_ids: The cameras this worker reads (told "unavailable" when they offer no
            packets while watched).
        unavailable: Why none of this worker's cameras can be watched (NVDEC decode), or
            empty.
        poll_s: Interval of the interest check.
        camera_of: A camera's config by id (its ``substream_url``); ``None``: no sub-streams.
        reader_options: URL policy, secrets and timeouts for sub-stream connections.
    """

    def __init__(
        self,
        r: redis.Redis,
        cfg: LiveService,
        camera_ids: Callable[[], list[str]] | None = None,
        *,
        unavailable: str = "",
        poll_s: float = 0.25,
        camera_of: Callable[[str], CameraConfig | None] | None = None,
        reader_options: ReaderOptions | None = None,
    ) -> None:
        self.r = r
        self.cfg = cfg
        self._camera_ids = camera_ids or (lambda: [])
        self._unavailable = unavailable
        self._poll_s = poll_s
        self._cams: dict[str, _Camera] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._camera_of = camera_of or (lambda _cid: None)
        self._reader_options = reader_options or ReaderOptions()
        self._sub_ids: frozenset[str] = frozenset()  # cameras whose live view is a sub-stream
        self._subs: dict[str, SubstreamReader] = {}
        self.published = 0
        self.dropped = 0  # packets lost to a full publish queue (viewers restart at a keyframe)
        self.errors = 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> LivePublisher:
        """Start the publisher thread."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="live-publisher", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the publisher thread and wait for it."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for sub in list(self._subs.values()):
            sub.stop()
        self._subs.clear()

    def stats(self) -> dict[str, Any]:
        """Counters and which cameras are watched now."""
        return {
            "published": self.published,
            "dropped": self.dropped,
            "errors": self.errors,
            "watched": sorted(c for c, st in self._cams.items() if st.watched),
            "substreams": sorted(self._subs),
        }

    # -- PacketTap (decode threads) --------------------------------------------------

    def opened(self, camera_id: str, info: StreamInfo) -> None:
        """A pass of the analysed stream starts (ignored when a sub-stream serves live)."""
        if camera_id not in self._sub_ids:
            self.source_opened(camera_id, info)

    def closed(self, camera_id: str) -> None:
        """The analysed stream's pass ended."""
        if camera_id not in self._sub_ids:
            self.source_closed(camera_id)

    def packet(self, camera_id: str, packet: Packet) -> None:
        """A packet of the analysed stream (ignored when a sub-stream serves live)."""
        if camera_id not in self._sub_ids:
            self.source_packet(camera_id, packet)

    def source_opened(self, camera_id: str, info: StreamInfo) -> None:
        """A pass of the live source starts: keep the stream info; the next packets are
        rebased."""
        st = self._cams.setdefault(camera_id, _Camera())
        st.info = info
        st.tick_s = info.time_base[0] / info.time_base[1] if info.time_base[1] else 0.0
        st.frame_ticks = max(1, round(TS_HZ / info.fps)) if info.fps > 0 else 3600
        st.info_json = json.dumps(
            {"codec": info.codec, "width": info.width, "height": info.height, "fps": info.fps}
        )
        st.unplayable = (
            ""
            if info.codec in PLAYABLE_CODECS
            else f"live view unavailable: codec {info.codec} cannot be played by browsers "
            "(Media Source Extensions need H.264); configure an H.264 substream"
        )
        st.rebase = True
        st.have_key = False
        st.gop = []
        st.gop_full = False

    def source_closed(self, camera_id: str) -> None:
        """The live source's pass ended (its GOP stays until the next pass replaces it)."""
        st = self._cams.get(camera_id)
        if st is not None:
            st.have_key = False

    def source_packet(self, camera_id: str, packet: Packet) -> None:
        """Keep the GOP; queue the packet when the camera is watched (never blocks)."""
        st = self._cams.get(camera_id)
        if st is None or st.info is None or st.unplayable:
            return
        if packet.keyframe:
            st.have_key = True
        elif not st.have_key:
            return  # nothing is decodable before this pass's first keyframe
        entry = self._entry(st, packet)
        if packet.keyframe:
            st.gop = [entry]
            st.gop_full = False
        elif len(st.gop) < self.cfg.gop_max_packets:
            st.gop.append(entry)
        else:
            st.gop_full = True  # a new viewer then waits for the next keyframe
        if not st.want:
            if st.watched:
                st.watched = False
                st.queue.clear()
            return
        if not st.watched:
            if packet.keyframe or not st.gop_full:
                st.queue.extend(st.gop)  # the fast start: from the last keyframe
                st.watched = True
                self._wake.set()
            return
        if len(st.queue) >= self.cfg.publish_queue_packets:
            # Redis is behind: drop what is queued and restart viewers at a keyframe, never
            # hand them a GOP with holes.
            self.dropped += len(st.queue)
            st.queue.clear()
            st.watched = False
            return
        was_empty = not st.queue
        st.queue.append(entry)
        if was_empty:
            self._wake.set()

    def _entry(self, st: _Camera, packet: Packet) -> dict[str, Any]:
        """The stream entry of one packet, its timestamps rebased to 90 kHz and monotonic."""
        dts_in = packet.dts if packet.dts is not None else packet.pts
        dts = round(dts_in * st.tick_s * TS_HZ) if dts_in is not None else None
        pts = round(packet.pts * st.tick_s * TS_HZ) if packet.pts is not None else None
        if st.rebase or dts is None:
            # A new pass (or no timestamp): continue one frame after the last packet.
            base = st.last_dts + st.frame_ticks if st.last_dts is not None else 0
            st.offset = base - (dts if dts is not None else 0)
            st.rebase = dts is None
        out_dts = (dts if dts is not None else 0) + st.offset
        if st.last_dts is not None and out_dts <= st.last_dts:
            out_dts = st.last_dts + 1
        out_pts = pts + st.offset if pts is not None else out_dts
        out_pts = max(out_pts, out_dts)
        st.last_dts, st.last_pts = out_dts, out_pts
        entry: dict[str, Any] = {
            "v": packet.data,
            "p": out_pts,
            "d": out_dts,
            "k": 1 if packet.keyframe else 0,
            "w": repr(packet.wall_s),
        }
        if packet.keyframe:
            entry["i"] = st.info_json
        return entry

    # -- publisher thread ------------------------------------------------------------

    def _run(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_poll:
                try:
                    self._poll_interest()
                except redis.RedisError as exc:
                    self.errors += 1
                    logger.warning("live interest check failed: %s", exc)
                except Exception:
                    self.errors += 1
                    logger.exception("live interest check failed")
                next_poll = now + self._poll_s
            try:
                self._flush()
            except redis.RedisError as exc:
                self.errors += 1
                logger.warning("live packets not published: %s", exc)
            except Exception:
                self.errors += 1
                logger.exception("live packets not published")
            self._wake.wait(min(self._poll_s, max(0.0, next_poll - time.monotonic())))
            self._wake.clear()

    def _poll_interest(self) -> None:
        ids = sorted(set(self._cams) | set(self._camera_ids()))
        subs = {c: cam for c in ids if (cam := self._camera_of(c)) and cam.substream_url}
        self._sub_ids = frozenset(subs)
        for cid in list(self._subs):
            if cid not in subs:
                self._subs.pop(cid).stop()
        if not ids:
            return
        found = self.r.mget([keys.live_interest_key(c) for c in ids])
        mine = set(self._camera_ids())
        now = time.monotonic()
        pipe = self.r.pipeline(transaction=False)
        notices = 0
        for cid, raw in zip(ids, found, strict=True):
            want = raw is not None
            st = self._cams.get(cid)
            if st is None:
                if want and cid in mine and (self._unavailable or cid in subs):
                    st = self._cams.setdefault(cid, _Camera())
                else:
                    continue
            st.want = want and self.cfg.enabled
            self._manage_substream(cid, subs.get(cid), st.want)
            reason = (
                st.unplayable
                if cid in subs
                else (self._unavailable if st.info is None else st.unplayable)
            )
            sub = self._subs.get(cid)
            if sub is not None and sub.failure:
                reason = sub.failure
            if st.want and reason and now - st.last_notice >= 1.0:
                st.last_notice = now
                pipe.xadd(keys.live_packets_key(cid), {"x": reason}, maxlen=50, approximate=True)
                pipe.expire(keys.live_packets_key(cid), STREAM_TTL_S)
                notices += 1
        if notices:
            pipe.execute()

    def _flush(self) -> None:
        pipe = self.r.pipeline(transaction=False)
        n = 0
        for cid, st in list(self._cams.items()):
            if not st.queue:
                continue
            key = keys.live_packets_key(cid)
            while st.queue:
                try:
                    entry = st.queue.popleft()
                except IndexError:
                    break
                pipe.xadd(
                    key, cast(Any, entry), maxlen=self.cfg.stream_max_packets, approximate=True
                )
                n += 1
            pipe.expire(key, STREAM_TTL_S)
        if n:
            pipe.execute()
            self.published += n

    def _manage_substream(self, camera_id: str, camera: CameraConfig | None, want: bool) -> None:
        """Run a camera's sub-stream reader exactly while it is watched."""
        running = self._subs.get(camera_id)
        if camera is None or not want:
            if running is not None and not want:
                self._subs.pop(camera_id).stop()
            return
        if running is not None and running.camera != camera:
            self._subs.pop(camera_id).stop()  # its URL changed
            running = None
        if running is None:
            self._cams.setdefault(camera_id, _Camera())
            self._subs[camera_id] = SubstreamReader(camera, self._reader_options, self).start()


class SubstreamReader:
    """Demuxes a camera's sub-stream (no decoding) into a :class:`LivePublisher` while the
    camera is watched.

    The URL goes through the same checks as the analysed stream's (scheme, resolved address
    against the network allow-list, the camera's secret bound to its host) at every
    connect; a refusal is permanent and told to viewers (:attr:`failure`).
    """

    def __init__(self, camera: CameraConfig, opts: ReaderOptions, sink: LivePublisher) -> None:
        self.camera = camera
        self.opts = opts
        self.sink = sink
        self.failure = ""
        self.packets = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"live-substream-{camera.id}", daemon=True
        )

    def start(self) -> SubstreamReader:
        """Start reading."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the reader to stop (it leaves at its next packet or I/O timeout)."""
        self._stop.set()

    def _run(self) -> None:
        cam = self.camera
        assert cam.substream_url is not None
        # The reader's own URL checks, applied to the sub-stream's URL.
        probe = CameraReader(
            cam.model_copy(update={"url": cam.substream_url}), lambda *a: None, None, self.opts
        )
        while not self._stop.is_set():
            session: PyAVSession | None = None
            try:
                url, live = probe._source()
                opts = ffmpeg_options(
                    url, transport=cam.profile.transport, timeout_s=self.opts.io_timeout_s
                )
                session = PyAVBackend().open(
                    url,
                    options=opts,
                    timeout_s=self.opts.io_timeout_s,
                    keyframe_only=False,
                    threads=1,
                    max_pixels=self.opts.max_pixels,
                )
                self._pass(session, live)
            except PermanentSourceError as exc:
                self.failure = f"live view unavailable: sub-stream refused: {exc}"
                logger.warning("camera %s: sub-stream: %s", cam.id, exc)
                return
            except Exception as exc:
                logger.warning(
                    "camera %s: sub-stream error: %s: %s",
                    cam.id,
                    type(exc).__name__,
                    redact(str(exc))[:300],
                )
            finally:
                if session is not None:
                    session.close()
                    self.sink.source_closed(cam.id)
            self._stop.wait(1.0)

    def _pass(self, session: PyAVSession, live: bool) -> None:
        self.sink.source_opened(self.camera.id, session.stream_info())
        t0 = time.monotonic()
        first: float | None = None
        for unit in session.units():
            if self._stop.is_set():
                return
            pkt = session.packet(unit)
            if not live and pkt.dts is not None:
                # A file sub-stream (tests, replays) is paced like a camera.
                t = pkt.dts * float(unit.time_base or 0)
                first = t if first is None else first
                lag = t0 + (t - first) - time.monotonic()
                if lag > 0 and self._stop.wait(lag):
                    return
            self.packets += 1
            self.sink.source_packet(self.camera.id, pkt)
