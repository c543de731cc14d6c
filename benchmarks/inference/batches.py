"""In-process frames/s per batch size (``citysight bench inference --batches 1,8,32,64``).

For each model and batch size ``B``, on the same frames in the same run:

* ``detect``: ``detector.detect(B frames)`` end to end (pre-processing, the batched ONNX
  Runtime run, decoding; the plate model also reads every plate found), each call taking the
  next ``B`` frames of one cycle of real frames, so every batch size sees the same scenes;
* ``net``: the network alone on an already pre-processed ``[B, 3, H, W]`` input, the part a
  GPU speeds up.

``gain_vs_b1`` is each one's frames/s over its own batch-1 figure. A model whose graph
cannot run batched (``batchable`` false) runs one frame per ONNX Runtime call at every ``B``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from benchmarks.gpus import match_gpu, nvidia_smi
from benchmarks.inference.measure import measure

logger = logging.getLogger(__name__)


GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")


def gpu_name() -> str | None:
    """The planner's name (``H100``, ``L40S``...) of this machine's first NVIDIA GPU, if any."""
    row = nvidia_smi("name")
    spec = match_gpu(row[0]) if row else None
    return spec.name if spec else None


def planner_section(results: dict[str, Any], gpu: str | None) -> dict[str, Any] | None:
    """``citysight plan``'s measured rates: best ``net`` frames/s per model on this GPU.

    Only for models that really ran on a GPU provider; ``None`` when there are none (a CPU
    run must never stand in for a GPU rate).
    """
    if gpu is None:
        return None
    rates = {
        model: max(row["net"]["frames_per_s"] for row in r["batches"].values())
        for model, r in results.items()
        if r["provider"] in GPU_PROVIDERS and all("net" in row for row in r["batches"].values())
    }
    return {"inference_fps_per_gpu": {gpu: rates}} if rates else None


def _net(det: Any) -> Any:
    """The detector's :class:`inference.detectors.batching.BatchedModel`, if it has one (a
    tier whose ``net`` is some other object, such as the temporal fire/smoke tier wrapping
    its network, is measured through ``detect()`` only)."""
    net = getattr(det, "net", None)
    if net is None or not hasattr(det, "preprocess"):
        return None
    if not (hasattr(net, "max_batch") and callable(getattr(net, "run", None))):
        return None
    return net


def bench_batches(
    model: str,
    frames: list[npt.NDArray[np.uint8]],
    models_dir: Path,
    batches: list[int],
    seconds: float,
    ort: Any,
) -> dict[str, Any]:
    """Frames/s and latency of one model at each batch size."""
    from inference.detectors.base import load_detector

    # Any: preprocess() and net belong to the ONNX Runtime tiers, not to the protocol
    det: Any = load_detector(model, models_dir, ort=ort)
    net = _net(det)
    out: dict[str, Any] = {
        "tier": det.tier,
        "model_file": Path(det.model_file).name if det.model_file else None,
        "provider": getattr(det, "provider", None),
        "batchable": bool(getattr(det, "batchable", False)),
        "max_batch": net.max_batch if net is not None else None,
        "batches": {},
    }
    if net is None:
        out["note"] = "no ONNX Runtime network in this tier: detect() only"
    n = len(frames)
    for b in batches:
        row: dict[str, Any] = {}
        if net is not None:
            x = det.preprocess([frames[j % n] for j in range(b)])

            def run_net(_i: int, x: npt.NDArray[np.float32] = x) -> int:
                net.run(x)
                return len(x)

            row["net"] = measure(run_net, seconds)

        def run_detect(i: int, b: int = b) -> int:
            # Call i takes the next b frames of the cycle, so every batch size sees the same
            # mix of scenes (the plate model's cost depends on how many plates it reads).
            idx = [(i * b + j) % n for j in range(b)]
            return len(det.detect([frames[k] for k in idx], [f"b{k % 4}" for k in idx]))

        row["detect"] = measure(run_detect, seconds)
        out["batches"][str(b)] = row
        logger.info("%s batch %d: %s", model, b, row)
    base = out["batches"][str(batches[0])]
    for row in out["batches"].values():
        for part, m in row.items():
            m["gain_vs_b1"] = round(m["frames_per_s"] / max(base[part]["frames_per_s"], 1e-9), 2)
    return out


def run_batches(
    models: list[str],
    models_dir: Path,
    frames: list[npt.NDArray[np.uint8]],
    batches: list[int],
    seconds: float,
    ort: Any,
) -> dict[str, Any]:
    """The ``--batches`` result document."""
    import onnxruntime

    results = {m: bench_batches(m, frames, models_dir, batches, seconds, ort) for m in models}
    doc: dict[str, Any] = {
        "benchmark": "inference-batch",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "provider_requested": ort.provider,
        "onnxruntime": onnxruntime.__version__,
        "available_providers": onnxruntime.get_available_providers(),
        "frame": list(frames[0].shape),
        "batches": batches,
        "seconds_per_measurement": seconds,
        "models": results,
        "notes": "In-process ONNX Runtime, one intra-op thread per session; the same frames "
        "at every batch size in one run, so gain_vs_b1 is comparable within the run. "
        "net: the network alone on pre-processed input; detect: the detector end to end.",
    }
    gpu = gpu_name()
    doc["gpu"] = gpu
    planner = planner_section(results, gpu)
    if planner is not None:
        # The network rate at the best batch size, which is what the planner's assumed
        # figures describe; pre- and post-processing run on CPU cores next to it.
        doc["planner"] = planner
    return doc
