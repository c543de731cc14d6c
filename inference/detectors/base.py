"""Detector protocol, per-frame output and the tiered registry.

Each :class:`citysight.config.Detector` value maps to an ordered list of tiers, strongest
first (:data:`TIERS`; the names are ``citysight.choices.DETECTOR_TIERS``).
:func:`load_detector` tries them in order; a tier whose model file is missing or corrupt
logs a warning and the next tier is tried, so a bad file never takes the process down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from citysight.choices import DETECTOR_TIERS
from citysight.config import Detector
from citysight.registry import Registry

if TYPE_CHECKING:
    from inference.detectors.common import OrtOptions

logger = logging.getLogger(__name__)


class DetectorLoadError(RuntimeError):
    """A detector tier cannot be loaded (missing or corrupt model file...)."""


@dataclass(slots=True)
class DetectorOutput:
    """Detections of one detector on one frame (the detector's part of a FrameResult).

    Attributes:
        boxes: ``(N, 4)`` float32 ``x1, y1, x2, y2`` in frame pixels.
        scores: ``(N,)`` float32 confidences.
        class_ids: ``(N,)`` int32 :class:`citysight.contracts.ObjectClass` values.
        extra: Further per-detection columns, each a list of length N.
    """

    boxes: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: npt.NDArray[np.float32] = field(default_factory=lambda: np.zeros(0, np.float32))
    class_ids: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros(0, np.int32))
    extra: dict[str, list[Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.scores)
        self.boxes = np.asarray(self.boxes, np.float32).reshape(n, 4)
        self.scores = np.asarray(self.scores, np.float32).reshape(n)
        self.class_ids = np.asarray(self.class_ids, np.int32).reshape(n)

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def concat(cls, parts: list[DetectorOutput]) -> DetectorOutput:
        """Merge outputs on the same frame (missing extra columns become ``None``)."""
        keys = sorted({k for p in parts for k in p.extra})
        if not parts:
            return cls()
        return cls(
            boxes=np.concatenate([p.boxes for p in parts]),
            scores=np.concatenate([p.scores for p in parts]),
            class_ids=np.concatenate([p.class_ids for p in parts]),
            extra={k: [v for p in parts for v in p.extra.get(k, [None] * len(p))] for k in keys},
        )


@runtime_checkable
class DetectorBackend(Protocol):
    """One loaded detector tier.

    Attributes:
        name: Detector name (a :class:`citysight.config.Detector` value).
        tier: Tier name (``"yunet"``, ``"haar"``...).
        model_file: Model file in use, empty when the tier needs none.
    """

    name: str
    tier: str
    model_file: str

    def detect(
        self, frames: list[npt.NDArray[np.uint8]], camera_ids: list[str]
    ) -> list[DetectorOutput]:
        """Detect on BGR ``uint8`` frames; one output per frame, boxes in frame pixels."""
        ...


TierFactory = Callable[[Path], DetectorBackend]

#: Module (under ``inference.detectors``) holding each detector's tier factories.
_MODULES = {
    Detector.FACE: "face",
    Detector.PLATE: "plate",
    Detector.FIRE_SMOKE: "fire_smoke",
    Detector.VENDING: "vending",
}

# The tiers of each detector, strongest first: names from citysight.choices.DETECTOR_TIERS,
# factories imported on first use (a tier's module, and its optional deps, cost nothing
# until a config asks for it).
TIERS: dict[str, Registry[TierFactory]] = {
    det: Registry(
        f"{det} tier",
        {name: f"inference.detectors.{_MODULES[Detector(det)]}:{name}" for name in names},
        names=names,
    )
    for det, names in DETECTOR_TIERS.items()
}


def available_tiers(detector: str) -> list[str]:
    """Tier names of ``detector``, strongest first."""
    reg = TIERS.get(detector)
    return reg.names() if reg is not None else []


def load_detector(
    detector: str,
    models_dir: Path,
    tiers: list[str] | None = None,
    ort: OrtOptions | None = None,
) -> DetectorBackend:
    """Load the strongest working tier of ``detector``.

    Args:
        detector: A :class:`citysight.config.Detector` value.
        models_dir: Directory holding operator-supplied model files.
        tiers: Tier names to try, in order; ``None`` tries all, strongest first.
        ort: ONNX Runtime provider and max batch of the tier's sessions; ``None`` reads
            them from the environment (:meth:`inference.detectors.common.OrtOptions.from_env`).

    Raises:
        KeyError: ``detector`` or a named tier is unknown.
        DetectorLoadError: no tier could be loaded.
    """
    from inference.detectors.common import using_ort_options

    if detector not in TIERS:
        raise KeyError(f"unknown detector {detector!r}; known: {sorted(TIERS)}")
    registered = TIERS[detector]
    names = tiers if tiers is not None else registered.names()
    for name in names:
        if name not in registered:
            raise KeyError(f"unknown tier {name!r} of {detector!r}; known: {registered.names()}")
    problems = []
    for name in names:
        try:
            with using_ort_options(ort):
                backend = registered.get(name)(Path(models_dir))
        except Exception as exc:  # a bad model file may raise anything: never crash
            logger.warning(
                "detector %s: tier %s unavailable (%s); trying next tier", detector, name, exc
            )
            problems.append(f"{name}: {exc}")
            continue
        logger.info(
            "detector %s: using tier %s (%s)", detector, name, backend.model_file or "no model file"
        )
        return backend
    raise DetectorLoadError(f"no tier of {detector!r} could be loaded: {'; '.join(problems)}")
