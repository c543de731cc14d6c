"""Capacity model for citysight deployments (pure computation, no I/O).

The planner turns a camera fleet description (:class:`PlanInput`) into the number of GPUs,
Triton instances, Ray worker nodes, Redis shards, ingest bandwidth and rules-layer CPU cores
it needs, for every GPU type in :data:`PUBLISHED`.

Every figure carries its provenance (:class:`Source`): ``measured`` (read from
``benchmarks/results/*.json`` or measured in this project, see RECIPES.md), ``published``
(a vendor datasheet or application note) or ``assumed`` (a planning assumption that should be
replaced by a measurement). A derived number is only as good as its weakest input, so its
source is the weakest of the sources it was computed from.

Capacity is ``ceiling × planning_factor``: published ceilings are reached only on ideal
streams at reference clocks, so the default factor plans for 70 % of them.
"""

from __future__ import annotations

import logging
import math
import re
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from benchmarks.gpus import (
    PUBLISHED,
    REFERENCE_GPU,
    REFERENCE_PIXELS,
    Figure,
    GpuSpec,
    Source,
    weakest,
)

logger = logging.getLogger(__name__)


class PlanError(ValueError):
    """Raised when a plan cannot be computed from the given input."""


#: Decode rate relative to H.264 at the same resolution. NVDEC throughput for HEVC is at
#: least that of H.264 on recent GPUs in our experience, but we have no citable per-engine
#: figure, so plan with parity.
CODEC_RATE_FACTOR: dict[str, Figure] = {
    "h264": Figure(1.0, "x", Source.INPUT, "reference codec of the NVDEC figures"),
    "h265": Figure(1.0, "x", Source.ASSUMED, "HEVC decode assumed at H.264 parity"),
}

#: Typical camera bitrate as bits per pixel per frame (CBR surveillance profiles);
#: 0.08 bpp gives ~4.1 Mb/s for 1080p25 H.264, H.265 ~40 % less.
BITS_PER_PIXEL: dict[str, Figure] = {
    "h264": Figure(0.08, "bit/pixel", Source.ASSUMED, "typical surveillance H.264 CBR"),
    "h265": Figure(0.048, "bit/pixel", Source.ASSUMED, "H.264 bitrate x 0.6 for HEVC"),
}

#: Inference frames/s per H100 at 640x640 with TensorRT FP16 and dynamic batching.
#: Nothing here was measured on a GPU yet: replace with ``inference_fps_per_gpu`` results.
INFERENCE_FPS_H100: dict[str, Figure] = {
    "face": Figure(6000.0, "frames/s", Source.ASSUMED, "YuNet/SCRFD-class detector"),
    "plate": Figure(4000.0, "frames/s", Source.ASSUMED, "plate detector + OCR on crops"),
    "fire_smoke": Figure(12000.0, "frames/s", Source.ASSUMED, "224 px classifier"),
    "vending": Figure(5000.0, "frames/s", Source.ASSUMED, "YOLOX-nano-class detector"),
}

DEFAULT_MODEL_MIX: dict[str, float] = {
    "face": 1.0,
    "plate": 1.0,
    "fire_smoke": 1.0,
    "vending": 0.2,
}

#: RECIPES.md: redis-py pipelined XADD ~41k entries/s on a shared 2-core machine.
REDIS_XADD_PER_SHARD = Figure(
    41000.0, "XADD/s", Source.MEASURED, "RECIPES.md: redis-py pipelined XADD, 2 shared cores"
)
#: Vectorised rules over batched stream reads; no measurement yet.
RULES_RESULTS_PER_CORE = Figure(
    5000.0, "results/s/core", Source.ASSUMED, "vectorised rules, batch reads (not measured)"
)

_NAMED_RESOLUTIONS: dict[str, tuple[int, int]] = {
    "360p": (640, 360),
    "480p": (854, 480),
    "720p": (1280, 720),
    "1080p": (1920, 1080),
    "1440p": (2560, 1440),
    "4k": (3840, 2160),
    "2160p": (3840, 2160),
}
_WXH = re.compile(r"^\s*(\d{2,5})\s*[xX×]\s*(\d{2,5})\s*$")


def parse_resolution(text: str) -> tuple[int, int]:
    """Parse ``1080p``/``720p``/``4k`` or ``WxH`` into ``(width, height)``.

    Args:
        text: Resolution as typed by a user.

    Returns:
        Width and height in pixels.

    Raises:
        PlanError: If the text is not a known name or ``WxH``.
    """
    key = text.strip().lower()
    if key in _NAMED_RESOLUTIONS:
        return _NAMED_RESOLUTIONS[key]
    match = _WXH.match(key)
    if match is None:
        known = ", ".join(_NAMED_RESOLUTIONS)
        raise PlanError(f"unknown resolution {text!r}: use one of {known} or WxH")
    return int(match.group(1)), int(match.group(2))


class DecodeMode(StrEnum):
    """How much of each camera's stream is decoded."""

    FULL = "full"
    KEYFRAME_ONLY = "keyframe_only"
    SUBSTREAM = "substream"


class PlanInput(BaseModel):
    """A camera fleet to plan for."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cameras: int = Field(..., ge=1, le=1_000_000, title="Cameras", description="Fleet size.")
    resolution: str = Field("1080p", title="Main stream resolution", description="1080p or WxH.")
    codec: Literal["h264", "h265"] = Field("h264", title="Codec")
    camera_fps: float = Field(25.0, gt=0, le=240, title="Camera frame rate (frames/s)")
    analytics_fps: float = Field(
        5.0, gt=0, le=240, title="Analytics rate (frames/s)", description="Frames inferred."
    )
    decode_mode: DecodeMode = Field(DecodeMode.FULL, title="Decode mode")
    gop_s: float = Field(2.0, gt=0, le=60, title="GOP length (s)", description="Keyframe interval.")
    substream_resolution: str = Field("720p", title="Sub-stream resolution")
    substream_fps: float = Field(5.0, gt=0, le=240, title="Sub-stream frame rate (frames/s)")
    model_mix: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_MODEL_MIX),
        title="Model mix",
        description="Detector name -> fraction of cameras (0..1] running it.",
    )
    planning_factor: float = Field(
        0.7, gt=0, le=1, title="Planning factor", description="Usable share of ceilings."
    )
    gpu: str | None = Field(None, title="GPU type", description="None plans for every type.")

    @field_validator("resolution", "substream_resolution")
    @classmethod
    def _check_resolution(cls, value: str) -> str:
        parse_resolution(value)
        return value

    @field_validator("model_mix")
    @classmethod
    def _check_mix(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("model_mix must name at least one model")
        for name, fraction in value.items():
            if not 0 < fraction <= 1:
                raise ValueError(f"fraction for {name!r} must be in (0, 1], got {fraction}")
        return value

    @model_validator(mode="after")
    def _check_gpu(self) -> PlanInput:
        if self.gpu is not None and self.gpu.upper() not in PUBLISHED:
            known = ", ".join(PUBLISHED)
            raise ValueError(f"unknown GPU type {self.gpu!r}: use one of {known}")
        return self


class Measurements(BaseModel):
    """Measured rates that override published/assumed defaults.

    Read by the CLI from the ``planner`` key of ``benchmarks/results/*.json``.
    """

    model_config = ConfigDict(extra="forbid")

    nvdec_fps_per_engine: dict[str, float] = Field(
        default_factory=dict, description="GPU type -> 1080p H.264 fps per NVDEC engine."
    )
    inference_fps_per_gpu: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="GPU type -> model -> frames/s on one GPU."
    )
    redis_xadd_per_shard_per_s: float | None = Field(default=None, gt=0)
    rules_results_per_core_per_s: float | None = Field(default=None, gt=0)
    sources: list[str] = Field(default_factory=list, description="Files these came from.")


class Quantity(BaseModel):
    """One output number with unit and provenance."""

    value: float
    unit: str
    source: Source
    basis: str


class GpuPlan(BaseModel):
    """Sizing for one GPU type."""

    gpu: str
    nvdec_capacity_fps: Quantity
    decode_gpus: Quantity
    inference_gpus: Quantity
    gpus_total: Quantity
    binding: Literal["decode", "inference"]
    triton_instances: Quantity
    ray_worker_nodes: Quantity
    cameras_per_node: Quantity


class Plan(BaseModel):
    """The full plan: GPU-independent quantities plus one row per GPU type."""

    input: PlanInput
    decoded_fps_per_camera: Quantity
    decode_load_fps_1080p_equiv: Quantity
    frame_results_per_s: Quantity
    redis_shards: Quantity
    ingest_mbps: Quantity
    rules_cpu_cores: Quantity
    gpus: list[GpuPlan]
    notes: list[str]


def _q(value: float, unit: str, source: Source, basis: str) -> Quantity:
    return Quantity(value=value, unit=unit, source=source, basis=basis)


def _ceil(x: float) -> int:
    # Guard against 34.000000001 from float noise turning into 35.
    return math.ceil(round(x, 9))


def _decoded_stream(inp: PlanInput) -> tuple[float, tuple[int, int], str]:
    """Frames/s decoded per camera, the decoded resolution and a description."""
    if inp.decode_mode is DecodeMode.FULL:
        res = parse_resolution(inp.resolution)
        return inp.camera_fps, res, f"every frame of the {inp.resolution} main stream"
    if inp.decode_mode is DecodeMode.KEYFRAME_ONLY:
        res = parse_resolution(inp.resolution)
        return 1.0 / inp.gop_s, res, f"one keyframe per {inp.gop_s:g} s GOP"
    res = parse_resolution(inp.substream_resolution)
    return inp.substream_fps, res, f"{inp.substream_resolution} sub-stream"


def _inference_rate(model: str, gpu: GpuSpec, meas: Measurements) -> Figure:
    measured = meas.inference_fps_per_gpu.get(gpu.name, {}).get(model)
    if measured is not None:
        return Figure(measured, "frames/s", Source.MEASURED, "benchmarks/results")
    if model not in INFERENCE_FPS_H100:
        known = ", ".join(INFERENCE_FPS_H100)
        raise PlanError(f"unknown model {model!r} with no measured rate: use one of {known}")
    base = INFERENCE_FPS_H100[model]
    ref = PUBLISHED[REFERENCE_GPU].fp16_dense_tflops.value
    scale = gpu.fp16_dense_tflops.value / ref
    # Scaling by tensor TFLOPS is itself an assumption: small models are often bound by
    # pre-processing and memory bandwidth, not math.
    return Figure(base.value * scale, "frames/s", Source.ASSUMED, base.note)


def plan_gpu(inp: PlanInput, gpu_name: str, meas: Measurements | None = None) -> GpuPlan:
    """Size one GPU type for the fleet.

    Args:
        inp: The fleet.
        gpu_name: A key of :data:`PUBLISHED` (case-insensitive).
        meas: Measured rates overriding defaults.

    Returns:
        The GPU plan.

    Raises:
        PlanError: Unknown GPU type or model.
    """
    meas = meas or Measurements()
    spec = PUBLISHED.get(gpu_name.upper())
    if spec is None:
        raise PlanError(f"unknown GPU type {gpu_name!r}: use one of {', '.join(PUBLISHED)}")
    pf = inp.planning_factor

    measured_rate = meas.nvdec_fps_per_engine.get(spec.name)
    rate = (
        Figure(measured_rate, "fps/engine", Source.MEASURED, "benchmarks/results")
        if measured_rate is not None
        else spec.nvdec_fps_per_engine
    )
    codec = CODEC_RATE_FACTOR[inp.codec]
    capacity = spec.nvdec_engines.value * rate.value * codec.value * pf
    # Engine counts are hardware facts; the rate is what carries the uncertainty.
    cap_src = weakest(rate.source, codec.source)
    capacity_q = _q(
        capacity,
        "1080p-equiv fps/GPU",
        cap_src,
        f"{spec.nvdec_engines.value:g} NVDEC x {rate.value:g} fps x {codec.value:g} "
        f"({inp.codec}) x planning factor {pf:g}",
    )

    load = _decode_load(inp)
    decode_gpus = _ceil(load.value / capacity)
    decode_q = _q(
        decode_gpus,
        "GPUs",
        weakest(cap_src, load.source),
        f"ceil({load.value:,.0f} / {capacity:,.0f})",
    )

    gpu_seconds = 0.0
    inf_sources: list[Source] = []
    parts: list[str] = []
    results_per_cam = _analytics_fps(inp)
    for model, fraction in sorted(inp.model_mix.items()):
        fig = _inference_rate(model, spec, meas)
        frames = inp.cameras * fraction * results_per_cam
        gpu_seconds += frames / (fig.value * pf)
        inf_sources.append(fig.source)
        parts.append(f"{model} {frames:,.0f}/{fig.value:,.0f}")
    inference_gpus = _ceil(gpu_seconds)
    inference_q = _q(
        inference_gpus,
        "GPUs",
        weakest(*inf_sources),
        f"ceil(sum(frames/s / (rate x {pf:g})) = {gpu_seconds:.2f}): " + ", ".join(parts),
    )

    # NVDEC engines and SMs are separate units on one GPU, so decode and inference overlap:
    # the fleet needs the larger of the two counts, not their sum.
    total = max(decode_gpus, inference_gpus, 1)
    binding: Literal["decode", "inference"] = (
        "decode" if decode_gpus >= inference_gpus else "inference"
    )
    total_src = weakest(decode_q.source, inference_q.source)
    total_q = _q(total, "GPUs", total_src, f"max(decode {decode_gpus}, inference {inference_gpus})")
    return GpuPlan(
        gpu=spec.name,
        nvdec_capacity_fps=capacity_q,
        decode_gpus=decode_q,
        inference_gpus=inference_q,
        gpus_total=total_q,
        binding=binding,
        # Triton runs next to the decoders on every GPU node, one GPU per instance
        # (nvinferserver supports one GPU per instance); frames never cross the network.
        triton_instances=_q(total, "instances", total_src, "one per GPU node"),
        ray_worker_nodes=_q(
            total, "nodes", total_src, "Ray worker pods in stream-workers, 1 GPU each"
        ),
        cameras_per_node=_q(
            math.ceil(inp.cameras / total), "cameras", total_src, "cameras / worker nodes"
        ),
    )


def _analytics_fps(inp: PlanInput) -> float:
    decoded_fps, _, _ = _decoded_stream(inp)
    return min(inp.analytics_fps, decoded_fps)


def _decode_load(inp: PlanInput) -> Quantity:
    decoded_fps, (w, h), what = _decoded_stream(inp)
    # NVDEC throughput scales with macroblocks, i.e. with pixel count: exact at 1080p,
    # an assumption elsewhere.
    scale = (w * h) / REFERENCE_PIXELS
    value = inp.cameras * decoded_fps * scale
    return _q(
        value,
        "1080p-equiv fps",
        Source.INPUT if (w, h) == (1920, 1080) else Source.ASSUMED,
        f"{inp.cameras} cameras x {decoded_fps:g} fps ({what}) x {scale:.4f} pixel ratio",
    )


def plan(inp: PlanInput, meas: Measurements | None = None) -> Plan:
    """Plan the whole deployment.

    Args:
        inp: The fleet.
        meas: Measured rates overriding published/assumed defaults.

    Returns:
        The plan, with one :class:`GpuPlan` per GPU type (or just ``inp.gpu``).

    Raises:
        PlanError: Unknown GPU type or model.
    """
    meas = meas or Measurements()
    pf = inp.planning_factor
    notes: list[str] = []
    decoded_fps, _, what = _decoded_stream(inp)
    analytics = _analytics_fps(inp)
    if analytics < inp.analytics_fps:
        notes.append(
            f"analytics fps capped at {analytics:g}: only {decoded_fps:g} frames/s per "
            f"camera are decoded ({what})"
        )
    if inp.decode_mode is DecodeMode.KEYFRAME_ONLY:
        notes.append("keyframe-only still receives the whole stream: ingest is unchanged")

    results = inp.cameras * analytics
    results_q = _q(results, "results/s", Source.INPUT, f"{inp.cameras} x {analytics:g} fps")

    redis_rate = (
        Figure(meas.redis_xadd_per_shard_per_s, "XADD/s", Source.MEASURED, "benchmarks/results")
        if meas.redis_xadd_per_shard_per_s is not None
        else REDIS_XADD_PER_SHARD
    )
    shards = max(1, _ceil(results / (redis_rate.value * pf)))
    redis_q = _q(
        shards,
        "shards",
        redis_rate.source,
        f"ceil({results:,.0f} / ({redis_rate.value:,.0f} x {pf:g})); {redis_rate.note}; "
        "each shard has one replica",
    )

    rules_rate = (
        Figure(meas.rules_results_per_core_per_s, "results/s/core", Source.MEASURED, "results")
        if meas.rules_results_per_core_per_s is not None
        else RULES_RESULTS_PER_CORE
    )
    cores = max(1, _ceil(results / (rules_rate.value * pf)))
    rules_q = _q(
        cores,
        "CPU cores",
        rules_rate.source,
        f"ceil({results:,.0f} / ({rules_rate.value:,.0f} x {pf:g})); {rules_rate.note}",
    )

    # The camera sends what is decoded, except keyframe-only: RTSP delivers every packet.
    if inp.decode_mode is DecodeMode.SUBSTREAM:
        w, h = parse_resolution(inp.substream_resolution)
        send_fps = inp.substream_fps
    else:
        w, h = parse_resolution(inp.resolution)
        send_fps = inp.camera_fps
    bpp = BITS_PER_PIXEL[inp.codec]
    per_cam = bpp.value * w * h * send_fps / 1e6
    ingest_q = _q(
        per_cam * inp.cameras,
        "Mb/s",
        bpp.source,
        f"{per_cam:.2f} Mb/s per camera ({w}x{h}@{send_fps:g}, {bpp.value} bit/pixel, "
        f"{inp.codec}) x {inp.cameras}",
    )

    names = [inp.gpu.upper()] if inp.gpu else list(PUBLISHED)
    gpus = [plan_gpu(inp, name, meas) for name in names]
    logger.debug("planned %d cameras for %s", inp.cameras, names)
    return Plan(
        input=inp,
        decoded_fps_per_camera=_q(decoded_fps, "frames/s", Source.INPUT, what),
        decode_load_fps_1080p_equiv=_decode_load(inp),
        frame_results_per_s=results_q,
        redis_shards=redis_q,
        ingest_mbps=ingest_q,
        rules_cpu_cores=rules_q,
        gpus=gpus,
        notes=notes,
    )
