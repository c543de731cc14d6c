"""GPU decode without DeepStream: NVIDIA's PyNvVideoCodec behind the reader's interface.

Selected with ``ReaderOptions(decoder="nvdec")`` (frames delivered as host BGR arrays,
what the mux and the CPU detectors take) or ``decoder="nvdec-cuda"`` (frames stay on the
GPU as ``torch`` CUDA tensors, HWC BGR uint8, for a same-node GPU detector). NVDEC does the
decode; the NV12 → BGR conversion and resize of *sampled* frames run as torch ops on the
same GPU.

``PyNvVideoCodec`` (a pip wheel from NVIDIA; not a dependency of the CPU install) and
``torch`` are imported only when the backend is created; without them, or without a
visible GPU, creation raises :class:`~streams.decoders.DecoderUnavailable` with the reason
and the reader marks the camera ``failed`` with that message.

Limits: PyNvVideoCodec's own FFmpeg demuxer opens the source, so the reader's FFmpeg
options (protocol whitelist, socket timeouts, no HTTP redirects) are not passed to it. The
reader still applies the whole camera URL policy before opening, as for PyAV: the URL is
checked (:func:`citysight.urls.check_url`), its host resolved and every address checked
against ``services.streams.allowed_networks``, and the URL handed over is pinned to the
checked address (:func:`citysight.urls.resolve_source`); the worker's no-frame timeout
covers a stuck read. Frame times come from the frame counter (``frame_time`` returns ``None``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from streams.decoders import DecoderUnavailable, SourceRefused

logger = logging.getLogger(__name__)

INSTALL_HINT = (
    "install NVIDIA's PyNvVideoCodec wheel (pip install PyNvVideoCodec) and a CUDA torch on a "
    "node with an NVIDIA GPU, a driver that supports it and NVIDIA_DRIVER_CAPABILITIES "
    "including 'video'"
)


def _import_nvc() -> Any:
    try:
        import PyNvVideoCodec as nvc
    except ImportError as exc:
        raise DecoderUnavailable(
            f"decoder 'nvdec' needs PyNvVideoCodec, which is not importable here ({exc}); "
            f"{INSTALL_HINT}"
        ) from None
    return nvc


def _import_torch_cuda() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise DecoderUnavailable(
            f"decoder 'nvdec' needs torch for GPU colour conversion ({exc}); {INSTALL_HINT}"
        ) from None
    if not torch.cuda.is_available():
        raise DecoderUnavailable(f"decoder 'nvdec' found no CUDA GPU; {INSTALL_HINT}")
    return torch


def nv12_to_bgr(torch: Any, nv12: Any, height: int, width: int, out_w: int, out_h: int) -> Any:
    """Convert one NV12 frame (``(height * 3 / 2, width)`` uint8) to resized HWC BGR uint8.

    BT.601 limited range (what H.264 cameras send); bilinear resize on the device.

    Args:
        torch: The torch module (injected so this module imports without it).
        nv12: The NV12 planes as one 2-D uint8 tensor.
        height: Luma height.
        width: Luma width.
        out_w: Output width.
        out_h: Output height.
    """
    f = nv12.float()
    y = f[:height, :width] - 16.0
    uv = f[height : height + height // 2, :width].reshape(height // 2, width // 2, 2)
    uv = uv.repeat_interleave(2, dim=0).repeat_interleave(2, dim=1) - 128.0
    u, v = uv[..., 0], uv[..., 1]
    r = 1.164 * y + 1.596 * v
    g = 1.164 * y - 0.392 * u - 0.813 * v
    b = 1.164 * y + 2.017 * u
    bgr = torch.stack((b, g, r), dim=0).unsqueeze(0)
    if (out_w, out_h) != (width, height):
        bgr = torch.nn.functional.interpolate(
            bgr, size=(out_h, out_w), mode="bilinear", align_corners=False
        )
    return bgr.squeeze(0).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous()


class NvDecSession:
    """A PyNvVideoCodec demuxer and NVDEC decoder for one source."""

    def __init__(self, nvc: Any, torch: Any, url: str, gpu_id: int, device_output: bool) -> None:
        self.torch = torch
        self.device_output = device_output
        self.demuxer = nvc.CreateDemuxer(filename=url)
        self.width = int(self.demuxer.Width())
        self.height = int(self.demuxer.Height())
        fps = float(self.demuxer.FrameRate() or 0)
        self.fps = fps if fps > 0 else 25.0
        self.decoder = nvc.CreateDecoder(
            gpuid=gpu_id,
            codec=self.demuxer.GetNvCodecId(),
            cudacontext=0,
            cudastream=0,
            usedevicememory=True,
        )
        self._nvc = nvc
        self._url = url
        self._gpu_id = gpu_id

    def units(self) -> Iterator[Any]:
        """Demuxed packets."""
        yield from self.demuxer

    def decode(self, unit: Any) -> list[Any]:
        """NVDEC decode of one packet (frames live in device memory)."""
        return list(self.decoder.Decode(unit))

    def frame_time(self, frame: Any) -> float | None:
        """Unknown (the reader counts frames at the nominal rate)."""
        return None

    def convert(self, frame: Any, width: int, height: int) -> Any:
        """BGR at the detector size: a CUDA tensor, or a host array unless device output."""
        nv12 = self.torch.from_dlpack(frame)
        bgr = nv12_to_bgr(self.torch, nv12, self.height, self.width, width, height)
        return bgr if self.device_output else bgr.cpu().numpy()

    def rewind(self) -> None:
        """Reopen the demuxer (PyNvVideoCodec's demuxer has no seek)."""
        self.demuxer = self._nvc.CreateDemuxer(filename=self._url)

    def stream_info(self) -> None:
        """``None``: PyNvVideoCodec's demuxed packets carry no timestamps a muxer can use,
        so clips and live view are not offered from NVDEC sources (analytics unaffected)."""
        return None

    def packet(self, unit: Any) -> Any:
        """Not offered (see :meth:`stream_info`)."""
        raise RuntimeError("NVDEC sessions offer no packets: stream_info() is None")

    def close(self) -> None:
        """Drop the demuxer and decoder (freed by PyNvVideoCodec)."""
        self.demuxer = None
        self.decoder = None


class NvDecBackend:
    """NVDEC decode through PyNvVideoCodec (host BGR arrays out).

    Args:
        gpu_id: CUDA device.

    Raises:
        DecoderUnavailable: PyNvVideoCodec, torch or a CUDA GPU is missing.
    """

    name = "nvdec"
    device_output = False

    def __init__(self, gpu_id: int = 0) -> None:
        self.nvc = _import_nvc()
        self.torch = _import_torch_cuda()
        self.gpu_id = gpu_id

    def open(
        self,
        url: str,
        *,
        options: dict[str, str],
        timeout_s: float,
        keyframe_only: bool,
        threads: int,
        max_pixels: int,
    ) -> NvDecSession:
        """Open ``url`` (FFmpeg ``options`` and ``threads`` do not apply to NVDEC)."""
        if keyframe_only:
            # NVDEC has no skip-non-key switch here; every frame is decoded on the GPU and
            # the reader's sampler picks frames (keyframe-only saves no NVDEC work).
            logger.debug("nvdec: keyframe_only is applied by sampling, not by the decoder")
        session = NvDecSession(self.nvc, self.torch, url, self.gpu_id, self.device_output)
        if session.width * session.height > max_pixels:
            session.close()
            raise SourceRefused(
                f"stream declares {session.width}x{session.height}, more than the "
                f"{max_pixels} pixels allowed"
            )
        return session


class NvDecCudaBackend(NvDecBackend):
    """NVDEC decode with frames left on the GPU as torch CUDA tensors (HWC BGR uint8)."""

    name = "nvdec-cuda"
    device_output = True
