"""The names of every backend choice, listed once (standard library only).

The config accepts exactly these names (``citysight.config`` re-exports them and uses the
``Literal`` types), and each layer's :class:`citysight.registry.Registry` maps exactly these
names to its implementations. No pydantic here: a bare GPU node runs the NVDEC benchmark
(``streams.decoders``) with neither PyAV nor pydantic installed.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

InferenceBackend = Literal["onnxruntime", "triton"]
INFERENCE_BACKENDS: Final[tuple[str, ...]] = get_args(InferenceBackend)
"""``services.inference.type``: ``inference.client.BACKENDS``."""

DecoderName = Literal["pyav", "nvdec", "nvdec-cuda"]
DECODERS: Final[tuple[str, ...]] = get_args(DecoderName)
"""``services.streams.decoder``: ``streams.decoders.BACKENDS``."""

ClipStorageName = Literal["local", "s3"]
CLIP_STORES: Final[tuple[str, ...]] = get_args(ClipStorageName)
"""``services.streams.clips.storage.type``: ``citysight.clips.STORES``."""

DETECTOR_TIERS: Final[dict[str, tuple[str, ...]]] = {
    "face": ("yunet", "yunet_n", "haar"),
    "plate": ("y5fu", "y5fu_640", "ocr_det"),
    "fire_smoke": ("det", "yolo", "cnn", "classical"),
    "vending": ("picodet", "yolox", "hog"),
}
"""Tiers of each detector (keyed by ``citysight.config.Detector`` value), strongest first
(``services.inference.tiers``): ``inference.detectors.base.TIERS``."""
