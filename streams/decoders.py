"""Decoder backends of the camera reader, chosen by name (``ReaderOptions.decoder``).

A backend opens a source and hands the reader *units* (demuxed packets) to decode one at
a time, so the reader can time each decode against its deadline, and converts the frames
it samples to the detector input. ``pyav`` (FFmpeg on CPU) is the default; ``nvdec``
(NVIDIA's PyNvVideoCodec, :mod:`streams.nvdec`) is imported only when asked for, and PyAV
only when a ``pyav`` source is opened.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from citysight.choices import DECODERS
from citysight.registry import Registry


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
