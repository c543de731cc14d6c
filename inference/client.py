"""The inference client interface and its backend registry (``services.inference.type``)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from citysight.config import INFERENCE_BACKENDS, InferenceService
from citysight.contracts import FrameBatch, FrameResult
from citysight.registry import Registry

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

# services.inference.type -> factory(cfg, models_dir); imported only when chosen.
BACKENDS: Registry[ClientFactory] = Registry(
    "inference backend",
    {
        "onnxruntime": "inference.backends.onnxruntime:create",
        "triton": "inference.triton.client:TritonClient",
    },
    names=INFERENCE_BACKENDS,
)


def create_client(cfg: InferenceService, models_dir: Path | None = None) -> InferenceClient:
    """Create the client of ``cfg.type``.

    Args:
        cfg: The inference service config.
        models_dir: Directory of model files; defaults to ``cfg.models_dir``.

    Raises:
        ValueError: unknown backend type.
    """
    if cfg.type not in BACKENDS:
        raise ValueError(f"unknown inference backend {cfg.type!r}; known: {sorted(BACKENDS)}")
    factory = BACKENDS.get(cfg.type)
    return factory(cfg, Path(models_dir if models_dir is not None else cfg.models_dir))
