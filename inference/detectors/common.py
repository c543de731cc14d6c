"""Shared helpers: ONNX Runtime sessions, letterboxing, NMS, model file checks."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import cv2
import numpy as np
import numpy.typing as npt

from inference.detectors.base import DetectorLoadError

logger = logging.getLogger(__name__)

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


#: Decode to 8-bit BGR and keep the pixels as stored: labelled boxes are in stored pixel
#: coordinates, and OpenCV otherwise applies a JPEG's EXIF orientation by default.
IMREAD_AS_STORED = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    """Read an image file as 8-bit BGR, as stored (no EXIF rotation).

    Raises:
        ValueError: the file is missing or not a decodable image (the message names it).
    """
    img = cv2.imread(str(path), IMREAD_AS_STORED)
    if img is None:
        raise ValueError(f"cannot read image {path}")
    # IMREAD_COLOR always decodes to uint8 BGR (the stubs say MatLike).
    return np.asarray(img, dtype=np.uint8)


def require_file(path: Path) -> Path:
    """Return ``path`` if it is a non-empty file, else raise :class:`DetectorLoadError`."""
    if not path.is_file():
        raise DetectorLoadError(f"model file missing: {path}")
    if path.stat().st_size == 0:
        raise DetectorLoadError(f"model file empty: {path}")
    return path


Provider = Literal["cpu", "cuda", "tensorrt"]

#: ONNX Runtime providers tried for each choice, in order (CPU always last).
PROVIDER_CHAIN: dict[str, tuple[str, ...]] = {
    "cpu": ("CPUExecutionProvider",),
    "cuda": ("CUDAExecutionProvider", "CPUExecutionProvider"),
    "tensorrt": (
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ),
}
#: Environment variables read when no options were set explicitly (the Triton python
#: models get their settings this way from the server's environment).
PROVIDER_ENV = "CITYSIGHT_ORT_PROVIDER"
MAX_BATCH_ENV = "CITYSIGHT_ORT_MAX_BATCH"
#: Frames per run when none is configured. On the CPU, larger batches measured slower (one
#: intra-op thread; activations spill out of cache: benchmarks/results/inference-batch.json);
#: GPU providers want large ones.
DEFAULT_MAX_BATCH = {"cpu": 8, "cuda": 64, "tensorrt": 64}


@dataclass(frozen=True, slots=True)
class OrtOptions:
    """How detectors run ONNX Runtime.

    Attributes:
        provider: Execution provider choice; unavailable ones fall back to the CPU.
        max_batch: Frames per session call of a batchable model; ``None`` takes the
            provider's default (:data:`DEFAULT_MAX_BATCH`, see :attr:`frames_per_run`).
        threads: Intra-op threads per session.
    """

    provider: Provider = "cpu"
    max_batch: int | None = None
    threads: int = 1

    def __post_init__(self) -> None:
        if self.provider not in PROVIDER_CHAIN:
            raise ValueError(f"unknown provider {self.provider!r}; known: {list(PROVIDER_CHAIN)}")
        if (self.max_batch is not None and self.max_batch < 1) or self.threads < 1:
            raise ValueError("max_batch and threads must be at least 1")

    @classmethod
    def from_config(cls, inf: Any) -> OrtOptions:
        """Options of a :class:`citysight.config.InferenceService`."""
        return cls(provider=inf.execution_provider, max_batch=inf.ort_max_batch)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> OrtOptions:
        """Options from ``CITYSIGHT_ORT_PROVIDER`` / ``CITYSIGHT_ORT_MAX_BATCH`` (or defaults).

        Raises:
            ValueError: a variable holds an unknown provider or a bad number.
        """
        env = dict(os.environ if env is None else env)
        provider = env.get(PROVIDER_ENV, "").strip().lower() or "cpu"
        if provider not in get_args(Provider):
            raise ValueError(f"{PROVIDER_ENV}={provider!r}; known: {list(get_args(Provider))}")
        raw = env.get(MAX_BATCH_ENV, "").strip()
        max_batch = int(raw) if raw else None
        return cls(provider=provider, max_batch=max_batch)  # type: ignore[arg-type]

    @property
    def frames_per_run(self) -> int:
        """``max_batch``, or the provider's default when it is ``None``."""
        return self.max_batch or DEFAULT_MAX_BATCH[self.provider]

    def env(self) -> dict[str, str]:
        """The environment variables that make :meth:`from_env` return these options."""
        return {PROVIDER_ENV: self.provider, MAX_BATCH_ENV: str(self.max_batch or "")}


_OPTIONS: ContextVar[OrtOptions | None] = ContextVar("citysight_ort_options", default=None)


def ort_options() -> OrtOptions:
    """The options detectors being loaded now should use (see :func:`using_ort_options`)."""
    return _OPTIONS.get() or OrtOptions.from_env()


@contextlib.contextmanager
def using_ort_options(opts: OrtOptions | None) -> Iterator[None]:
    """Detectors constructed inside this block use ``opts`` (``None``: the environment's)."""
    token = _OPTIONS.set(opts)
    try:
        yield
    finally:
        _OPTIONS.reset(token)


_WARNED: set[str] = set()


def resolve_providers(provider: str, available: list[str] | None = None) -> list[str]:
    """The ONNX Runtime provider list for a choice, without those this build lacks.

    Logs a warning naming the fallback when the chosen provider is not available.
    """
    if available is None:
        import onnxruntime as ort

        available = list(ort.get_available_providers())
    chain = PROVIDER_CHAIN[provider]
    chosen = [p for p in chain if p in available] or ["CPUExecutionProvider"]
    if chain[0] not in available and provider not in _WARNED:
        _WARNED.add(provider)  # once per process, not once per session
        logger.warning(
            "ONNX Runtime provider %s requested but this onnxruntime has only %s; using %s",
            chain[0],
            available,
            chosen[0],
        )
    return chosen


def active_provider(session: Any) -> str:
    """The execution provider a session actually runs on (its first registered one)."""
    providers = list(session.get_providers())
    return str(providers[0]) if providers else "CPUExecutionProvider"


def ort_session(
    path: Path, threads: int = 1, provider: str = "cpu", model: bytes | None = None
) -> object:
    """An ONNX Runtime session with few threads (the host is shared).

    Args:
        path: The ONNX file (loaded unless ``model`` is given; named in errors).
        threads: Intra-op threads.
        provider: ``cpu``, ``cuda`` or ``tensorrt``; falls back to the CPU with a warning.
        model: A serialised (for example rewritten) model to load instead of the file.

    Raises:
        DetectorLoadError: the file is missing or not a loadable ONNX model.
    """
    import onnxruntime as ort

    require_file(path)
    opts = ort.SessionOptions()
    # Few threads per session: many sessions share 2 cores; more threads only contend.
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    providers = resolve_providers(provider)
    try:
        return ort.InferenceSession(
            model if model is not None else str(path), sess_options=opts, providers=providers
        )
    except Exception as exc:
        raise DetectorLoadError(f"cannot load ONNX model {path}: {exc}") from exc


def letterbox(
    img: npt.NDArray[np.uint8], size: int, pad_value: int = 114
) -> tuple[npt.NDArray[np.uint8], float]:
    """Resize keeping aspect ratio into a ``size``×``size`` canvas, padded bottom/right.

    Returns:
        The canvas and the scale applied (frame pixels = canvas pixels / scale).
    """
    h, w = img.shape[:2]
    scale = min(size / h, size / w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    canvas = np.full((size, size, 3), pad_value, np.uint8)
    canvas[:nh, :nw] = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, scale


def nms(
    boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32], iou: float
) -> npt.NDArray[np.int64]:
    """Indices kept by greedy non-maximum suppression, by descending score."""
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    x1, y1, x2, y2 = boxes.T
    areas = np.maximum(0, x2 - x1) * np.maximum(0, y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    while len(order):
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(x1[i], x1[rest])
        yy1 = np.maximum(y1[i], y1[rest])
        xx2 = np.minimum(x2[i], x2[rest])
        yy2 = np.minimum(y2[i], y2[rest])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        ovr = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[ovr < iou]
    return np.asarray(keep, np.int64)


def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Pairwise IoU of ``(N, 4)`` and ``(M, 4)`` xyxy boxes → ``(N, M)``."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    iou: npt.NDArray[np.float32] = (
        inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)
    ).astype(np.float32)
    return iou


def clip_boxes(boxes: npt.NDArray[np.float32], w: int, h: int) -> npt.NDArray[np.float32]:
    """Clip xyxy boxes to the frame."""
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, w)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, h)
    return out
