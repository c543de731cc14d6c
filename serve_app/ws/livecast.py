"""Live view, ingress side: a camera's packets from Redis remuxed to fragmented MP4.

One :class:`Channel` per watched camera and replica reads ``citysight:live:{id}:packets``
(written by the stream worker while the interest key exists), remuxes the H.264 packets
into fragmented MP4 with PyAV (init segment, then one ``moof``+``mdat`` fragment per frame:
no decoding, no re-encoding) and fans the bytes out to its viewers. It keeps the init
segment and the fragments since the last keyframe, so a viewer joining a watched camera
starts at once; every viewer has a bounded queue, and one that falls behind is closed
(4008) by the channel alone, never slowing anyone else or the stream worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final

import av
from redis.asyncio import Redis
from redis.exceptions import RedisError

from citysight import keys
from citysight.config import LiveService

logger = logging.getLogger(__name__)

TS_HZ: Final = 90_000
CLOSE_SLOW: Final = 4008
CLOSE_UNAVAILABLE: Final = 4501
CLOSE_NO_VIDEO: Final = 4504
_MOVFLAGS: Final = "empty_moov+default_base_moof+frag_every_frame+skip_trailer"


def avc_codec_string(data: bytes) -> str:
    """The RFC 6381 ``avc1.PPCCLL`` string from the SPS of an Annex B keyframe.

    Falls back to Constrained Baseline 3.0 when no SPS is found (browsers then still try).
    """
    i = 0
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 6 > len(data):
            return "avc1.42E01E"
        if data[i + 3] & 0x1F == 7:
            return "avc1." + data[i + 4 : i + 7].hex().upper()
        i += 3


class _Sink:
    """File-like object collecting what the muxer writes (non-seekable)."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def write(self, b: bytes) -> int:
        self.buf += b
        return len(b)

    def tell(self) -> int:
        return len(self.buf)

    def seekable(self) -> bool:
        return False


class Fmp4Remuxer:
    """H.264 Annex B packets in, fragmented-MP4 byte segments out (no re-encoding).

    Args:
        width: Coded width.
        height: Coded height.
    """

    def __init__(self, width: int, height: int) -> None:
        self._sink = _Sink()
        self._out = av.open(self._sink, "w", format="mp4", options={"movflags": _MOVFLAGS})
        self._stream = self._out.add_mux_stream("h264", width=width, height=height)
        self._tb = Fraction(1, TS_HZ)
        self._stream.time_base = self._tb
        self._keys: deque[bool] = deque()
        self._pending = bytearray()
        self.init: bytes | None = None

    def push(self, data: bytes, pts: int, dts: int, keyframe: bool) -> list[tuple[bytes, bool]]:
        """Mux one packet; returns the fragments completed, each with whether it starts at a
        keyframe (the muxer emits a frame's fragment when the next frame arrives)."""
        pk = av.Packet(data)
        pk.pts, pk.dts, pk.is_keyframe = pts, dts, keyframe
        pk.time_base = self._tb
        pk.stream = self._stream
        self._keys.append(keyframe)
        self._out.mux(pk)
        return self._drain()

    def _drain(self) -> list[tuple[bytes, bool]]:
        self._pending += self._sink.buf
        self._sink.buf.clear()
        out: list[tuple[bytes, bool]] = []
        start = 0
        pos = 0
        buf = self._pending
        while pos + 8 <= len(buf):
            size = int.from_bytes(buf[pos : pos + 4], "big")
            kind = bytes(buf[pos + 4 : pos + 8])
            if size < 8 or pos + size > len(buf):
                break
            pos += size
            if kind == b"moov":
                self.init = bytes(buf[start:pos])
                start = pos
            elif kind == b"mdat":
                key = self._keys.popleft() if self._keys else False
                out.append((bytes(buf[start:pos]), key))
                start = pos
        del buf[:start]
        return out

    def close(self) -> None:
        """Release the muxer (what it still holds is dropped: viewers are gone)."""
        with contextlib.suppress(Exception):
            self._out.close()


@dataclass(eq=False)
class Viewer:
    """One open live viewer: its bounded queue and what it was sent."""

    principal_name: str
    queue: asyncio.Queue[bytes | str | None]
    bytes_sent: int = 0
    ready: bool = False  # got the init segment of the current stream
    close_code: int | None = None
    close_reason: str = ""
    started_at: float = field(default_factory=time.time)

    def end(self, code: int, reason: str) -> None:
        """Ask the sender to close with ``code`` (the first reason wins)."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        while self.queue.full():  # the close goes first: what is queued is not needed
            self.queue.get_nowait()
        self.queue.put_nowait(None)


class Channel:
    """One camera's live stream on this replica (see the module docstring).

    Args:
        camera_id: The camera.
        r: Async Redis client (bytes replies).
        cfg: Live-view settings.
        counters: ``name → count`` the replica's metrics read (shared dict).
        on_empty: Called when the last viewer left and the channel stopped.
    """

    def __init__(
        self,
        camera_id: str,
        r: Redis,
        cfg: LiveService,
        counters: dict[str, int],
        on_empty: Callable[[Channel], None],
    ) -> None:
        self.camera_id = camera_id
        self.r = r
        self.cfg = cfg
        self.counters = counters
        self.on_empty = on_empty
        self.viewers: set[Viewer] = set()
        self.mime = ""
        self.info: dict[str, Any] = {}
        self._info_raw = b""
        self._remux: Fmp4Remuxer | None = None
        self._gop: list[bytes] = []
        self._last_dts: int | None = None
        self._task: asyncio.Task[None] | None = None
        self.packets = 0
        self.last_wall_s = 0.0  # demux time of the newest packet (the glass side of delay)

    # -- viewers -----------------------------------------------------------------------

    def add(self, viewer: Viewer) -> None:
        """Attach a viewer: it gets the init segment and the current GOP at once."""
        self.viewers.add(viewer)
        if self._remux is not None and self._remux.init is not None and self._gop:
            self._start(viewer, self._remux.init, self._gop)
        if self._task is None or self._task.done():
            # A task that ended (no video, unavailable) is started again for a new viewer.
            self._task = asyncio.create_task(self._run(), name=f"live-{self.camera_id}")

    def remove(self, viewer: Viewer) -> None:
        """Detach a viewer; the channel stops with its last one."""
        self.viewers.discard(viewer)
        if not self.viewers:
            self.stop()

    def stop(self) -> None:
        """Stop reading (the interest key then expires and the worker stops publishing)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self._remux is not None:
            self._remux.close()
            self._remux = None
        self.on_empty(self)

    def _offer(self, viewer: Viewer, item: bytes | str) -> None:
        if viewer.close_code is not None:
            return
        try:
            viewer.queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too slow: its queue is full. Closed alone; nothing waits for it.
            self.counters["dropped_slow"] += 1
            viewer.end(CLOSE_SLOW, "viewer too slow: live queue overflow")

    def _start(self, viewer: Viewer, init: bytes, gop: list[bytes]) -> None:
        """Send a viewer the stream description, the init segment and ``gop``."""
        viewer.ready = True
        self._offer(viewer, self._init_message())
        self._offer(viewer, init)
        for frag in gop:
            self._offer(viewer, frag)

    def _end_all(self, code: int, reason: str) -> None:
        for v in list(self.viewers):
            v.end(code, reason)

    def _init_message(self) -> str:
        return json.dumps(
            {"type": "init", "camera_id": self.camera_id, "mime": self.mime, **self.info}
        )

    # -- the reader task -------------------------------------------------------------------

    async def _run(self) -> None:
        key = keys.live_packets_key(self.camera_id)
        try:
            last_id = await self._start_position(key)
            await self._refresh_interest()
            next_refresh = time.monotonic() + self.cfg.interest_ttl_s / 3
            deadline = time.monotonic() + self.cfg.start_timeout_s
            while self.viewers:
                now = time.monotonic()
                if now >= next_refresh:
                    await self._refresh_interest()
                    next_refresh = now + self.cfg.interest_ttl_s / 3
                if self._remux is None and now > deadline:
                    self.counters["no_video"] += 1
                    self._end_all(
                        CLOSE_NO_VIDEO,
                        f"no video from camera {self.camera_id} within "
                        f"{self.cfg.start_timeout_s:.0f} s (offline, or read by no worker)",
                    )
                    return
                try:
                    reply: Any = await self.r.xread({key: last_id}, count=200, block=500)
                except (RedisError, OSError) as exc:
                    self.counters["read_errors"] += 1
                    logger.warning("live packets of %s unreadable: %s", self.camera_id, exc)
                    await asyncio.sleep(0.5)
                    continue
                for _, entries in reply or []:
                    for entry_id, fields in entries:
                        last_id = entry_id
                        if not self._handle(fields):
                            return
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("live channel of %s failed", self.camera_id)
            self._end_all(1011, "live stream failed")

    async def _refresh_interest(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.r.set(
                keys.live_interest_key(self.camera_id),
                str(time.time()),
                ex=max(1, round(self.cfg.interest_ttl_s)),
            )

    async def _start_position(self, key: str) -> bytes | str:
        """Where to read from: the newest keyframe of a fresh stream, else new entries."""
        try:
            recent: Any = await self.r.xrevrange(key, count=self.cfg.stream_max_packets)
        except (RedisError, OSError):
            return "$"
        if not recent:
            return "0-0"
        newest_ms = keys.stream_id(recent[0][0])[0]
        if time.time() * 1000 - newest_ms > 2000:
            stale: bytes = recent[0][0]
            return stale  # stale: wait for the worker's fast start
        for entry_id, fields in recent:
            if fields.get(b"k") == b"1":
                ms, seq = keys.stream_id(entry_id)
                # Read from just before the keyframe, so it is the first entry read.
                return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-{2**63 - 1}"
        newest: bytes = recent[0][0]
        return newest

    def _handle(self, fields: dict[bytes, bytes]) -> bool:
        """One stream entry; returns False when the channel must end."""
        reason = fields.get(b"x")
        if reason is not None:
            self.counters["unavailable"] += 1
            self._end_all(CLOSE_UNAVAILABLE, reason.decode("utf-8", "replace"))
            return False
        data = fields.get(b"v")
        if data is None:
            return True
        keyframe = fields.get(b"k") == b"1"
        pts, dts = int(fields.get(b"p", b"0")), int(fields.get(b"d", b"0"))
        info = fields.get(b"i")
        if keyframe and info is not None and (info != self._info_raw or self._remux is None):
            self._reinit(info, data)
        elif keyframe and self._last_dts is not None and dts <= self._last_dts:
            self._reinit(info or self._info_raw, data)  # a new timeline (worker restarted)
        if self._remux is None:
            return True  # wait for a keyframe
        if self._last_dts is not None and dts <= self._last_dts:
            return True  # a repeat (a worker's fast start after its queue overflowed)
        self._last_dts = dts
        self.packets += 1
        self.counters["packets"] += 1
        self.last_wall_s = float(fields.get(b"w", b"0") or 0)
        remux = self._remux
        for frag, starts_gop in remux.push(data, pts, dts, keyframe):
            if starts_gop:
                self._gop = []
                if remux.init is not None:
                    for v in self.viewers:
                        if not v.ready:
                            self._start(v, remux.init, [])
            self._gop.append(frag)
            for v in list(self.viewers):
                if v.ready:
                    self._offer(v, frag)
        return True

    def _reinit(self, info_raw: bytes, keyframe_data: bytes) -> None:
        """A new init segment (first keyframe, or new stream parameters)."""
        try:
            info = json.loads(info_raw)
            width, height = int(info["width"]), int(info["height"])
        except (ValueError, KeyError, TypeError):
            logger.warning("live stream of %s: malformed stream info", self.camera_id)
            return
        if self._remux is not None:
            self._remux.close()
        self._remux = Fmp4Remuxer(width, height)
        self._info_raw = info_raw
        self.info = {"width": width, "height": height, "fps": info.get("fps")}
        self.mime = f'video/mp4; codecs="{avc_codec_string(keyframe_data)}"'
        self._gop = []
        self._last_dts = None
        for v in self.viewers:
            v.ready = False  # the next keyframe fragment brings them the new init segment
