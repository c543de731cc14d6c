"""Published GPU facts with their provenance: NVDEC engines, per-engine decode rates, TFLOPS.

Kept free of third-party imports so GPU-side benchmarks (``citysight bench nvdec``) run on a
bare GPU node; :mod:`benchmarks.planner.model` builds its capacity arithmetic on these.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from enum import StrEnum


class Source(StrEnum):
    """Provenance of a number, strongest first.

    ``input`` marks exact arithmetic on the user's input (e.g. cameras x fps).
    """

    INPUT = "input"
    MEASURED = "measured"
    PUBLISHED = "published"
    ASSUMED = "assumed"


_STRENGTH = {Source.INPUT: 3, Source.MEASURED: 2, Source.PUBLISHED: 1, Source.ASSUMED: 0}


def weakest(*sources: Source) -> Source:
    """Return the least trustworthy of ``sources`` (assumed < published < measured).

    Args:
        *sources: Sources of the inputs a number was computed from.

    Returns:
        The weakest source; ``input`` when no source is given.
    """
    if not sources:
        return Source.INPUT
    return min(sources, key=lambda s: _STRENGTH[s])


@dataclass(frozen=True)
class Figure:
    """A number with its provenance.

    Attributes:
        value: The number.
        unit: Unit of ``value``.
        source: Where it comes from.
        note: Citation or reasoning, one line.
    """

    value: float
    unit: str
    source: Source
    note: str


@dataclass(frozen=True)
class GpuSpec:
    """Published (or, where flagged, assumed) facts about one GPU type.

    Attributes:
        name: GPU type as accepted by ``--gpu``.
        nvdec_engines: Number of NVDEC engines.
        nvdec_fps_per_engine: 1080p H.264 decode rate of one engine at reference clock.
        fp16_dense_tflops: Dense FP16 tensor throughput, used only to scale inference rates
            between GPU types when nothing was measured.
    """

    name: str
    nvdec_engines: Figure
    nvdec_fps_per_engine: Figure
    fp16_dense_tflops: Figure


_NVDEC_NOTE = (
    "NVIDIA Video Codec SDK 12.x 'NVDEC Application Note', NVDEC performance table "
    "(1920x1080 H.264, per engine, reference clocks)"
)
# Only the Hopper figure (~771 fps/engine) is taken from the application note as cited in
# docs/architecture.md, "Where things run". The same note's capability table puts Turing,
# GA100 and Hopper in one NVDEC generation and Ada with GA10x in the next; we could not
# re-check the per-engine rates for those GPUs offline, so they reuse 771 fps and are marked
# ``assumed`` until a measurement (nvidia-smi dmon -s u while decoding) replaces them.
_HOPPER_RATE = Figure(771.0, "fps/engine", Source.PUBLISHED, _NVDEC_NOTE)
_SAME_GEN_RATE = Figure(
    771.0,
    "fps/engine",
    Source.ASSUMED,
    "Hopper's 771 fps reused: not verified for this GPU; measure before buying",
)


def _engines(count: int, doc: str) -> Figure:
    return Figure(float(count), "engines", Source.PUBLISHED, f"NVIDIA {doc} datasheet")


def _tflops(value: float, doc: str) -> Figure:
    return Figure(value, "TFLOPS", Source.PUBLISHED, f"NVIDIA {doc} datasheet, dense FP16")


#: Published GPU facts. Engine counts and dense FP16 tensor TFLOPS come from NVIDIA's
#: product datasheets (H100/H200 SXM, A100 SXM, L4, L40S, T4); per-engine NVDEC rates from
#: the Video Codec SDK NVDEC Application Note (see ``_NVDEC_NOTE`` for which are verified).
PUBLISHED: dict[str, GpuSpec] = {
    "H100": GpuSpec("H100", _engines(7, "H100"), _HOPPER_RATE, _tflops(989.0, "H100 SXM")),
    "H200": GpuSpec("H200", _engines(7, "H200"), _HOPPER_RATE, _tflops(989.0, "H200 SXM")),
    "A100": GpuSpec("A100", _engines(5, "A100"), _SAME_GEN_RATE, _tflops(312.0, "A100")),
    "L4": GpuSpec("L4", _engines(4, "L4"), _SAME_GEN_RATE, _tflops(121.0, "L4")),
    "L40S": GpuSpec("L40S", _engines(3, "L40S"), _SAME_GEN_RATE, _tflops(362.0, "L40S")),
    "T4": GpuSpec("T4", _engines(2, "T4"), _SAME_GEN_RATE, _tflops(65.0, "T4")),
}

REFERENCE_PIXELS = 1920 * 1080
REFERENCE_GPU = "H100"


def match_gpu(name: str) -> GpuSpec | None:
    """The planner's published spec for a GPU name such as ``NVIDIA H200`` (longest key)."""
    upper = name.upper()
    for key in sorted(PUBLISHED, key=len, reverse=True):
        if key in upper:
            return PUBLISHED[key]
    return None


def nvidia_smi(fields: str) -> list[str] | None:
    """One CSV row of ``nvidia-smi --query-gpu`` for GPU 0 (``None`` without one)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run(
            [exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    row = out.strip().splitlines()
    return [v.strip() for v in row[0].split(",")] if row else None
