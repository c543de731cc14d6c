"""The inference client interface and its backend registry (chosen by ``type``)."""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from citysight.config import InferenceService
from citysight.contracts import FrameBatch, FrameResult

logger = logging.getLogger(__name__)

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")


@runtime_checkable
class InferenceClient(Protocol):
    """Runs the detectors a batch asks for and returns tracked frame results."""

    def infer(self, batch: FrameBatch) -> list[FrameResult]:
        """One :class:`FrameResult` per frame, boxes in that frame's pixels, tracked.

        Raises:
            citysight.contracts.ContractError: the batch is empty, malformed or names an
                unknown detector.
        """
        ...

    def health(self) -> dict[str, Any]:
        """Per detector: active tier, model file, loaded flag (and backend details)."""
        ...

    def close(self) -> None:
        """Release sessions and connections."""
        ...


ClientFactory = Callable[[InferenceService, Path], InferenceClient]


def _onnxruntime(cfg: InferenceService, models_dir: Path) -> InferenceClient:
    from inference.backends.onnxruntime import OrtClient

    return OrtClient(cfg, models_dir, tiers=cfg.tiers or None)


def _triton(cfg: InferenceService, models_dir: Path) -> InferenceClient:
    # Written by the Triton half of the project; imported only when configured.
    mod = importlib.import_module("inference.triton.client")
    factory = getattr(mod, "create", None) or mod.TritonClient
    return factory(cfg, models_dir)  # type: ignore[no-any-return]


BACKENDS: dict[str, ClientFactory] = {"onnxruntime": _onnxruntime, "triton": _triton}


def create_client(cfg: InferenceService, models_dir: Path | None = None) -> InferenceClient:
    """Create the client of ``cfg.type``.

    Args:
        cfg: The inference service config.
        models_dir: Directory of model files; defaults to ``cfg.models_dir``.

    Raises:
        ValueError: unknown backend type.
    """
    factory = BACKENDS.get(cfg.type)
    if factory is None:
        raise ValueError(f"unknown inference backend {cfg.type!r}; known: {sorted(BACKENDS)}")
    return factory(cfg, Path(models_dir if models_dir is not None else cfg.models_dir))
