"""Decoder backends of the camera reader, chosen by name (``ReaderOptions.decoder``).

A backend opens a source and hands the reader *units* (demuxed packets) to decode one at
a time, so the reader can time each decode against its deadline, and converts the frames
it samples to the detector input. ``pyav`` (FFmpeg on CPU) is the default; ``nvdec``
(NVIDIA's PyNvVideoCodec, :mod:`streams.nvdec`) is imported only when asked for, and PyAV
only when a ``pyav`` source is opened.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from citysight.choices import DECODERS
from citysight.registry import Registry
from streams.packets import Packet, StreamInfo


class DecoderUnavailable(RuntimeError):
    """The chosen decoder backend cannot run here (missing library or GPU)."""


class SourceRefused(ValueError):
    """The source cannot be used: no video stream, or more pixels than allowed."""


class DecodeSession(Protocol):
    """An opened source.

    Attributes:
        width: Coded width.
        height: Coded height.
        fps: Nominal frame rate (25 when unknown).
    """

    width: int
    height: int
    fps: float

    def units(self) -> Iterator[Any]:
        """Demuxed units (packets) in decode order; ends with the source."""
        ...

    def decode(self, unit: Any) -> list[Any]:
        """Decode one unit into zero or more frames (raises on corrupt data)."""
        ...

    def frame_time(self, frame: Any) -> float | None:
        """Presentation time of a frame in seconds (``None`` when unknown)."""
        ...

    def convert(self, frame: Any, width: int, height: int) -> Any:
        """The frame as BGR at the detector input size (host array or device tensor)."""
        ...

    def rewind(self) -> None:
        """Seek to the start (looping files)."""
        ...

    def stream_info(self) -> StreamInfo | None:
        """Parameters for remuxing the units (``None``: this backend's units cannot be)."""
        ...

    def packet(self, unit: Any) -> Packet:
        """A unit as a compressed :class:`Packet` (only when ``stream_info()`` is set)."""
        ...

    def close(self) -> None:
        """Release the source and the decoder."""
        ...


class DecoderBackend(Protocol):
    """Opens sources with one decoder implementation."""

    name: str

    def open(
        self,
        url: str,
        *,
        options: dict[str, str],
        timeout_s: float,
        keyframe_only: bool,
        threads: int,
        max_pixels: int,
    ) -> DecodeSession:
        """Open ``url``; raise :class:`SourceRefused` past ``max_pixels``."""
        ...


class PyAVSession:
    """A PyAV container and its first video stream."""

    def __init__(self, container: Any, stream: Any) -> None:
        self.container = container
        self.stream = stream
        cc = stream.codec_context
        self.width = int(cc.width or 0)
        self.height = int(cc.height or 0)
        self.fps = float(stream.average_rate or stream.guessed_rate or 25)
        self._bsf: Any = None  # Annex B filter for packets offered to taps; False: none

    def _annexb_filter(self) -> Any:
        cc = self.stream.codec_context
        name = {"h264": "h264_mp4toannexb", "hevc": "hevc_mp4toannexb"}.get(str(cc.name))
        extradata = bytes(cc.extradata or b"")
        if name is None or not extradata or extradata[:1] != b"\x01":
            return False  # already Annex B (RTSP, raw .h264) or another codec
        import av

        return av.BitStreamFilterContext(name, self.stream)

    def units(self) -> Iterator[Any]:
        """Non-empty packets of the video stream."""
        for packet in self.container.demux(self.stream):
            if packet.size:
                yield packet

    def decode(self, unit: Any) -> list[Any]:
        """``packet.decode()``."""
        return list(unit.decode())

    def frame_time(self, frame: Any) -> float | None:
        """``frame.time``."""
        t = frame.time
        return float(t) if t is not None else None

    def convert(self, frame: Any, width: int, height: int) -> npt.NDArray[np.uint8]:
        """BGR at ``width`` x ``height`` with swscale's fast bilinear filter."""
        out: npt.NDArray[np.uint8] = frame.to_ndarray(
            format="bgr24", width=width, height=height, interpolation="FAST_BILINEAR"
        )
        return out

    def stream_info(self) -> StreamInfo:
        """Codec, size, rate, time base and extradata of the video stream."""
        cc = self.stream.codec_context
        tb = self.stream.time_base
        return StreamInfo(
            codec=str(cc.name),
            width=self.width,
            height=self.height,
            fps=self.fps,
            time_base=(int(tb.numerator), int(tb.denominator)) if tb else (1, 90000),
            extradata=bytes(cc.extradata or b""),
        )

    def packet(self, unit: Any) -> Packet:
        """The packet's bytes and timestamps, copied (the demuxer reuses its buffers).

        H.264/HEVC from MP4-style sources (length-prefixed NAL units, parameter sets in
        ``extradata``) are rewritten to Annex B with the parameter sets before each
        keyframe, the form RTSP delivers: a muxer then needs no extradata (PyAV cannot set
        it on a stream it does not encode; FFmpeg's MP4 muxers take it from the first
        keyframe), and a viewer can start at any keyframe.
        """
        if self._bsf is None:
            self._bsf = self._annexb_filter()
        data = bytes(unit)
        if self._bsf is not False:
            # The filter takes its input's buffers: give it a copy, the decoder needs unit.
            import av

            copy = av.Packet(data)
            copy.pts, copy.dts, copy.is_keyframe = unit.pts, unit.dts, unit.is_keyframe
            copy.time_base = unit.time_base
            data = b"".join(bytes(p) for p in self._bsf.filter(copy))
        return Packet(
            data=data,
            pts=unit.pts,
            dts=unit.dts,
            keyframe=bool(unit.is_keyframe),
            wall_s=time.time(),
        )

    def rewind(self) -> None:
        """Seek to 0 and flush the decoder."""
        self.container.seek(0)
        self.stream.codec_context.flush_buffers()

    def close(self) -> None:
        """Close the container."""
        self.container.close()


class PyAVBackend:
    """FFmpeg through PyAV, on CPU (the default)."""

    name = "pyav"

    def open(
        self,
        url: str,
        *,
        options: dict[str, str],
        timeout_s: float,
        keyframe_only: bool,
        threads: int,
        max_pixels: int,
    ) -> PyAVSession:
        """Open with FFmpeg options (protocol whitelist, timeouts) and set up the decoder."""
        import av  # here, so GPU nodes decoding with NVDEC need no PyAV

        container: Any = av.open(url, options=options, timeout=(timeout_s, timeout_s))
        try:
            if not container.streams.video:
                raise SourceRefused("source has no video stream")
            stream = container.streams.video[0]
            cc = stream.codec_context
            w, h = int(cc.width or 0), int(cc.height or 0)
            if w * h > max_pixels:
                raise SourceRefused(
                    f"stream declares {w}x{h} ({w * h} pixels), more than the {max_pixels} allowed"
                )
            cc.thread_count = threads
            cc.thread_type = "SLICE" if threads > 1 else "NONE"
            if keyframe_only:
                cc.skip_frame = "NONKEY"
            return PyAVSession(container, stream)
        except BaseException:
            container.close()
            raise


# services.streams.decoder -> backend class; imported on first use so optional backends
# cost nothing.
BACKENDS: Registry[type[DecoderBackend]] = Registry(
    "decoder",
    {
        "pyav": "streams.decoders:PyAVBackend",
        "nvdec": "streams.nvdec:NvDecBackend",
        "nvdec-cuda": "streams.nvdec:NvDecCudaBackend",
    },
    names=DECODERS,
)


def get_backend(name: str) -> DecoderBackend:
    """Instantiate the backend registered under ``name``.

    Raises:
        ValueError: Unknown name.
        DecoderUnavailable: The backend's library or device is missing.
    """
    return BACKENDS.get(name)()
