"""In-process backend: every detector tier runs inside this process (embedded default)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from citysight.config import Detector, InferenceService
from citysight.contracts import ContractError, FrameBatch, FrameResult
from inference.detectors.base import (
    DetectorBackend,
    DetectorLoadError,
    DetectorOutput,
    load_detector,
)
from inference.detectors.common import OrtOptions
from inference.tracker import TrackerBank

logger = logging.getLogger(__name__)


class OrtClient:
    """Runs detectors in-process (OpenCV / ONNX Runtime, CPU or CUDA provider).

    Args:
        cfg: Inference config (``execution_provider`` and ``ort_max_batch`` matter here).
        models_dir: Directory of model files.
        detectors: Detectors to load (default: all).
        tiers: Optional tier order per detector (``{"face": ["haar"]}``).
    """

    def __init__(
        self,
        cfg: InferenceService | None,
        models_dir: Path,
        detectors: list[str] | None = None,
        tiers: dict[str, list[str]] | None = None,
    ) -> None:
        self.models_dir = Path(models_dir)
        cfg = cfg or InferenceService()
        self.ort = OrtOptions.from_config(cfg)
        self._detectors: dict[str, DetectorBackend | None] = {}
        self._load_errors: dict[str, str] = {}
        self._errors: dict[str, int] = {}
        self._trackers = TrackerBank()
        self._lock = threading.Lock()
        for name in detectors or [d.value for d in Detector]:
            try:
                self._detectors[name] = load_detector(
                    name, self.models_dir, (tiers or {}).get(name), ort=self.ort
                )
            except DetectorLoadError as exc:
                logger.error("detector %s unavailable: %s", name, exc)
                self._detectors[name] = None
                self._load_errors[name] = str(exc)
            self._errors[name] = 0

    def infer(self, batch: FrameBatch) -> list[FrameResult]:
        """Run the detectors each frame asks for; see :class:`InferenceClient`."""
        if not isinstance(batch, FrameBatch):
            raise ContractError(f"expected a FrameBatch, got {type(batch).__name__}")
        if len(batch) == 0:
            raise ContractError("empty FrameBatch")
        batch.__post_init__()  # re-check shapes: the batch may have been mutated
        wanted = set().union(*batch.detectors)
        unknown = wanted - set(self._detectors)
        if unknown:
            raise ContractError(f"unknown or unloaded detector(s): {sorted(unknown)}")
        parts: list[list[DetectorOutput]] = [[] for _ in range(len(batch))]
        with self._lock:
            for name in sorted(wanted):
                idx = [i for i, d in enumerate(batch.detectors) if name in d]
                det = self._detectors[name]
                if det is None:
                    continue
                frames = [batch.frames[i] for i in idx]
                cams = [batch.camera_ids[i] for i in idx]
                try:
                    if getattr(det, "takes_options", False):  # per-camera settings
                        outs = det.detect(frames, cams, batch.options_of(name, idx))  # type: ignore[call-arg]
                    else:
                        outs = det.detect(frames, cams)
                except Exception:  # one detector's failure must not stop the others
                    self._errors[name] += 1
                    logger.exception("detector %s failed on %d frames", name, len(idx))
                    continue
                for i, o in zip(idx, outs, strict=True):
                    parts[i].append(o)
            return [self._result(batch, i, DetectorOutput.concat(p)) for i, p in enumerate(parts)]

    def _result(self, batch: FrameBatch, i: int, out: DetectorOutput) -> FrameResult:
        return self._trackers.frame_result(batch, i, out)

    def health(self) -> dict[str, Any]:
        """Per detector: tier, model file, loaded, error count, provider, batchable."""
        dets = {}
        for name, det in self._detectors.items():
            dets[name] = {
                "loaded": det is not None,
                "tier": det.tier if det else None,
                "model_file": det.model_file if det else None,
                "errors": self._errors[name],
                # Tiers without an ONNX Runtime session (Haar, classical...) report None.
                "provider": getattr(det, "provider", None),
                "batchable": getattr(det, "batchable", False),
            }
            if name in self._load_errors:
                dets[name]["load_error"] = self._load_errors[name]
        return {
            "backend": "onnxruntime",
            "ready": any(d is not None for d in self._detectors.values()),
            "detectors": dets,
        }

    def close(self) -> None:
        """Drop the loaded detectors and tracker state."""
        self._detectors = dict.fromkeys(self._detectors)
        self._trackers.reset()


def create(cfg: InferenceService, models_dir: Path) -> OrtClient:
    """The ``onnxruntime`` backend of ``inference.client.BACKENDS``."""
    return OrtClient(cfg, models_dir, tiers=cfg.tiers or None)
