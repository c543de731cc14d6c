"""Triton python-backend models: the project's detectors behind Triton's batching.

Each ``model_repo/<name>/1/model.py`` subclasses :class:`DetectorModel` (or
:class:`CanaryModel`). The model runs the same detector code as the in-process ONNX Runtime
backend (:func:`inference.detectors.load_detector`), so both backends give identical detections.

Tensor layout (see ``model_repo/*/config.pbtxt``):

* inputs ``FRAMES`` ``[B, H, W, 3]`` uint8 BGR and ``CAMERA_IDS`` ``[B, 1]`` bytes;
* outputs ``COUNT`` ``[B, 1]`` int32 and, padded to the request's largest count ``K``,
  ``BOXES`` ``[B, K, 4]`` float32, ``SCORES`` ``[B, K]`` float32, ``CLASS_IDS`` ``[B, K]`` int32,
  for plates ``TEXT`` ``[B, K]`` bytes and ``TEXT_SCORES`` ``[B, K]`` float32, and ``EXTRA``
  ``[B, 1]``: one JSON object per frame holding every further per-detection column.

This module imports ``triton_python_backend_utils`` lazily so that it can be imported (and its
pure helpers tested) outside Triton.
"""

from __future__ import annotations

import abc
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

logger = logging.getLogger(__name__)

MODELS_DIR_ENV = "CITYSIGHT_MODELS_DIR"
TIERS_ENV = "CITYSIGHT_DETECTOR_TIERS"
"""Optional ``detector=tier1+tier2,...`` override of the tiers each model may load."""

# Extra columns that also travel as dedicated tensors of the plate model.
TEXT_COLUMN = "plate_text"
TEXT_SCORE_COLUMN = "plate_score"

# Colour of the canary's drawn rectangles (BGR magenta), which no detector cares about.
CANARY_BGR = (255, 0, 255)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def encode_extra(extra: dict[str, list[Any]]) -> bytes:
    """One frame's extra columns as compact JSON bytes (numpy scalars become Python)."""
    return json.dumps(
        extra, default=_json_default, ensure_ascii=False, separators=(",", ":")
    ).encode()


def parse_tiers(spec: str) -> dict[str, list[str]]:
    """Parse ``face=yunet+haar,plate=y5fu`` into ``{"face": ["yunet", "haar"], ...}``."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        name, _, tiers = part.partition("=")
        out[name.strip()] = [t for t in tiers.split("+") if t]
    return out


def pad_outputs(outputs: list[Any], with_text: bool) -> dict[str, npt.NDArray[Any]]:
    """Pack per-frame detector outputs into padded batch tensors.

    Args:
        outputs: One :class:`inference.detectors.DetectorOutput` per frame.
        with_text: Also produce ``TEXT`` and ``TEXT_SCORES`` (plate model).

    Returns:
        Output name → numpy array, first dimension the number of frames.
    """
    b = len(outputs)
    k = max((len(o) for o in outputs), default=0)
    count = np.zeros((b, 1), np.int32)
    boxes = np.zeros((b, k, 4), np.float32)
    scores = np.zeros((b, k), np.float32)
    class_ids = np.full((b, k), -1, np.int32)
    extra = np.empty((b, 1), dtype=object)
    text = np.full((b, k), b"", dtype=object)
    text_scores = np.zeros((b, k), np.float32)
    for i, o in enumerate(outputs):
        n = len(o)
        count[i, 0] = n
        boxes[i, :n] = o.boxes
        scores[i, :n] = o.scores
        class_ids[i, :n] = o.class_ids
        extra[i, 0] = encode_extra(o.extra)
        if with_text:
            for j, t in enumerate(o.extra.get(TEXT_COLUMN, [None] * n)):
                text[i, j] = (t or "").encode()
            for j, s in enumerate(o.extra.get(TEXT_SCORE_COLUMN, [None] * n)):
                text_scores[i, j] = float(s or 0.0)
    out = {"COUNT": count, "BOXES": boxes, "SCORES": scores, "CLASS_IDS": class_ids, "EXTRA": extra}
    if with_text:
        out["TEXT"] = text
        out["TEXT_SCORES"] = text_scores
    return out


def check_frames(frames: npt.NDArray[Any]) -> str | None:
    """Why a ``FRAMES`` tensor is unusable, or ``None`` when it is fine."""
    if frames.dtype != np.uint8:
        return f"FRAMES must be uint8, got {frames.dtype}"
    if frames.ndim != 4 or frames.shape[-1] != 3:
        return f"FRAMES must be [B, H, W, 3], got shape {list(frames.shape)}"
    if 0 in frames.shape:
        return f"FRAMES is empty: shape {list(frames.shape)}"
    return None


def find_canary_boxes(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Boxes ``x1, y1, x2, y2`` of the solid canary-coloured rectangles in ``frame``."""
    import cv2

    mask = np.all(frame == np.asarray(CANARY_BGR, np.uint8), axis=-1).astype(np.uint8)
    n, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=4)
    rows = [(x, y, x + w, y + h) for x, y, w, h, area in stats[1:n] if area >= 16]
    return np.asarray(sorted(rows), np.float32).reshape(-1, 4)


def canary_frame(
    width: int = 320, height: int = 240
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.float32]]:
    """The known canary frame (grey noise with two magenta rectangles) and its boxes."""
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 200, (height, width, 3), dtype=np.uint8)
    boxes = np.asarray([[20, 30, 100, 90], [150, 120, 300, 200]], np.float32)
    for x1, y1, x2, y2 in boxes.astype(int):
        frame[y1:y2, x1:x2] = CANARY_BGR
    return frame, boxes


class _BaseModel(abc.ABC):
    """Shared request handling of the python-backend models."""

    model_name: str = ""

    def _setup(self, args: dict[str, Any]) -> dict[str, str]:
        cfg = json.loads(args["model_config"])
        self.model_name = args.get("model_name", cfg.get("name", ""))
        self.output_names = {o["name"] for o in cfg.get("output", [])}
        return {k: v.get("string_value", "") for k, v in cfg.get("parameters", {}).items()}

    def execute(self, requests: list[Any]) -> list[Any]:
        """Run every request; frames of all valid requests go to the model in one call."""
        import triton_python_backend_utils as pb_utils

        responses: list[Any] = [None] * len(requests)
        frames: list[npt.NDArray[np.uint8]] = []
        cams: list[str] = []
        opts: list[str] = []
        spans: list[tuple[int, int, int]] = []  # (request index, start, stop)
        for r, request in enumerate(requests):
            batch = pb_utils.get_input_tensor_by_name(request, "FRAMES").as_numpy()
            problem = check_frames(batch)
            ids_t = pb_utils.get_input_tensor_by_name(request, "CAMERA_IDS")
            ids = (
                []
                if ids_t is None
                else [
                    x.decode() if isinstance(x, bytes) else str(x) for x in ids_t.as_numpy().ravel()
                ]
            )
            if problem is None and len(ids) != batch.shape[0]:
                problem = f"CAMERA_IDS has {len(ids)} values for {batch.shape[0]} frames"
            opt_t = pb_utils.get_input_tensor_by_name(request, "OPTIONS")  # optional
            req_opts = (
                [""] * len(ids)
                if opt_t is None
                else [
                    x.decode() if isinstance(x, bytes) else str(x) for x in opt_t.as_numpy().ravel()
                ]
            )
            if problem is None and len(req_opts) != batch.shape[0]:
                problem = f"OPTIONS has {len(req_opts)} values for {batch.shape[0]} frames"
            if problem is not None:
                responses[r] = pb_utils.InferenceResponse(
                    output_tensors=[], error=pb_utils.TritonError(f"{self.model_name}: {problem}")
                )
                continue
            spans.append((r, len(frames), len(frames) + batch.shape[0]))
            frames.extend(batch)
            cams.extend(ids)
            opts.extend(req_opts)
        if frames:
            try:
                results = self._run(frames, cams, opts)
            except Exception as exc:  # report per request; never kill the stub
                logger.exception("%s: inference failed", self.model_name)
                for r, _, _ in spans:
                    responses[r] = pb_utils.InferenceResponse(
                        output_tensors=[],
                        error=pb_utils.TritonError(f"{self.model_name}: {exc}"),
                    )
                return responses
            for r, start, stop in spans:
                tensors = self._tensors(results[start:stop])
                responses[r] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor(name, arr)
                        for name, arr in tensors.items()
                        if name in self.output_names
                    ]
                )
        return responses

    @abc.abstractmethod
    def _run(
        self, frames: list[npt.NDArray[np.uint8]], cams: list[str], opts: list[str]
    ) -> list[Any]:
        """Run the model on same-size frames of the given cameras (``opts``: each frame's
        camera settings as JSON, ``""`` for none)."""

    @abc.abstractmethod
    def _tensors(self, results: list[Any]) -> dict[str, npt.NDArray[Any]]:
        """Output tensors of one request's results."""

    def finalize(self) -> None:
        """Called by Triton when the model is unloaded."""
        logger.info("%s: unloaded", self.model_name)


class DetectorModel(_BaseModel):
    """A project detector (face, plate, fire_smoke, vending) as a Triton python model."""

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the strongest working tier; raising here marks the model UNAVAILABLE."""
        from inference.detectors.base import load_detector

        params = self._setup(args)
        name = params.get("detector") or self.model_name
        models_dir = Path(
            params.get("models_dir") or os.environ.get(MODELS_DIR_ENV) or "model_repo/files"
        )
        tiers = parse_tiers(os.environ.get(TIERS_ENV, "")).get(name)
        self.detector = load_detector(name, models_dir, tiers)
        self.with_text = "TEXT" in self.output_names
        logger.info("%s: tier %s from %s", self.model_name, self.detector.tier, models_dir)

    def _run(
        self, frames: list[npt.NDArray[np.uint8]], cams: list[str], opts: list[str]
    ) -> list[Any]:
        if any(opts) and getattr(self.detector, "takes_options", False):
            return list(self.detector.detect(frames, cams, opts))  # type: ignore[call-arg]
        return list(self.detector.detect(frames, cams))

    def _tensors(self, results: list[Any]) -> dict[str, npt.NDArray[Any]]:
        out = pad_outputs(results, self.with_text)
        out["TIER"] = np.full((len(results), 1), self.detector.tier.encode(), dtype=object)
        return out


class CanaryModel(_BaseModel):
    """Finds the canary rectangles and runs a real ONNX Runtime detector on the same frame.

    The box check proves that the stub, the tensor path and numpy/OpenCV work; the ONNX
    Runtime run (the ``face`` detector's strongest tier) proves that sessions on the
    configured execution provider still execute, which Triton's own readiness does not show.
    """

    def initialize(self, args: dict[str, Any]) -> None:
        """Load the detector used to exercise ONNX Runtime (weaker tiers are fine)."""
        from inference.detectors.base import load_detector

        params = self._setup(args)
        models_dir = Path(
            params.get("models_dir") or os.environ.get(MODELS_DIR_ENV) or "model_repo/files"
        )
        self.probe = load_detector(params.get("probe_detector") or "face", models_dir)

    def _run(
        self, frames: list[npt.NDArray[np.uint8]], cams: list[str], opts: list[str]
    ) -> list[Any]:
        probe = self.probe.detect(frames, cams)
        return [(find_canary_boxes(f), p) for f, p in zip(frames, probe, strict=True)]

    def _tensors(self, results: list[Any]) -> dict[str, npt.NDArray[Any]]:
        b = len(results)
        k = max((len(bx) for bx, _ in results), default=0)
        boxes = np.zeros((b, k, 4), np.float32)
        count = np.zeros((b, 1), np.int32)
        for i, (bx, _) in enumerate(results):
            boxes[i, : len(bx)] = bx
            count[i, 0] = len(bx)
        probe = np.full((b, 1), f"{self.probe.name}:{self.probe.tier}".encode(), dtype=object)
        return {"COUNT": count, "BOXES": boxes, "PROBE": probe}
