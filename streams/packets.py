"""Compressed packets of a camera, offered to taps on the decode thread (clips, live view).

The reader demuxes every packet of a camera's video stream anyway; a *tap* sees each one
before it is decoded, without copying frames or re-encoding: an evidence-clip ring keeps
the last seconds, a live-view fan-out remuxes them for viewers. Taps run on the decode
thread, so they must return at once (append to a bounded buffer, drop when full); one that
raises is counted and skipped, never allowed to stop the camera's analytics.

Each decode pass (a connect, a reconnect, or a looped file's rewind) starts with
:meth:`PacketTap.opened`, which is also a discontinuity: timestamps restart after it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Protocol

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StreamInfo:
    """What a muxer needs to write a camera's packets without re-encoding.

    Attributes:
        codec: FFmpeg codec name (``h264``, ``hevc``, ...).
        width: Coded width.
        height: Coded height.
        fps: Nominal frame rate.
        time_base: Seconds per timestamp tick of the packets' ``pts``/``dts``, as a
            (numerator, denominator) pair.
        extradata: The source's codec configuration (avcC / hvcC), for reference: H.264 and
            HEVC packets are offered in Annex B with their parameter sets in-band before
            each keyframe, so muxers (MP4, fragmented MP4) need no extradata.
    """

    codec: str
    width: int
    height: int
    fps: float
    time_base: tuple[int, int]
    extradata: bytes = b""


@dataclass(frozen=True)
class Packet:
    """One compressed packet, copied out of the demuxer.

    Attributes:
        data: The packet's bytes.
        pts: Presentation timestamp in ``StreamInfo.time_base`` ticks (``None``: unknown).
        dts: Decode timestamp in the same ticks (``None``: unknown).
        keyframe: Whether decoding can start here.
        wall_s: Wall-clock time (``time.time()``) when the packet was demuxed.
    """

    data: bytes
    pts: int | None
    dts: int | None
    keyframe: bool
    wall_s: float


class PacketTap(Protocol):
    """A consumer of a camera's compressed packets (called on the decode thread)."""

    def opened(self, camera_id: str, info: StreamInfo) -> None:
        """A decode pass starts: new stream parameters, timestamps restart."""
        ...

    def packet(self, camera_id: str, packet: Packet) -> None:
        """One packet in decode order; must not block."""
        ...

    def closed(self, camera_id: str) -> None:
        """The camera stopped or its source ended (a reconnect calls ``opened`` again)."""
        ...


class PacketTaps:
    """The taps of one stream worker: fan-out with errors isolated and counted.

    Thread-safe: taps can be added and removed while readers run.
    """

    def __init__(self) -> None:
        self._taps: tuple[PacketTap, ...] = ()
        self._lock = threading.Lock()
        self._open: dict[str, StreamInfo] = {}  # cameras in a pass, for taps added later
        self.errors = 0
        self.packets = 0
        self.tap_s = 0.0  # time spent in taps on decode threads (should stay tiny)

    def __bool__(self) -> bool:
        return bool(self._taps)

    def add(self, tap: PacketTap) -> None:
        """Register a tap; it is told about every camera already in a pass."""
        with self._lock:
            self._taps = (*self._taps, tap)
            open_now = list(self._open.items())
        for camera_id, info in open_now:
            self._call(tap, "opened", camera_id, info)

    def remove(self, tap: PacketTap) -> None:
        """Unregister a tap (no error when absent)."""
        with self._lock:
            self._taps = tuple(t for t in self._taps if t is not tap)

    def opened(self, camera_id: str, info: StreamInfo) -> None:
        """Tell every tap a pass starts."""
        with self._lock:
            self._open[camera_id] = info
        for tap in self._taps:
            self._call(tap, "opened", camera_id, info)

    def packet(self, camera_id: str, packet: Packet) -> None:
        """Offer one packet to every tap."""
        self.packets += 1
        t0 = time.perf_counter()
        for tap in self._taps:
            self._call(tap, "packet", camera_id, packet)
        self.tap_s += time.perf_counter() - t0

    def closed(self, camera_id: str) -> None:
        """Tell every tap the camera's pass ended."""
        with self._lock:
            self._open.pop(camera_id, None)
        for tap in self._taps:
            self._call(tap, "closed", camera_id)

    def _call(self, tap: PacketTap, method: str, *args: object) -> None:
        try:
            getattr(tap, method)(*args)
        except Exception:
            # A tap is an extra (clips, live view): analytics go on without it.
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                logger.exception("packet tap %r failed in %s (%d errors)", tap, method, self.errors)
