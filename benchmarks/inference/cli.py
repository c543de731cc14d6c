"""``citysight bench inference``: per-model latency and frames/s, in-process vs Triton.

All figures come from one run on the same host, so their ratios are meaningful:

* ``ort``: the detector called in-process (``inference.detectors``), one frame per call;
* ``triton_c1``: one client thread, batch-1 requests over gRPC (plain payload);
* ``triton_c8``: eight client threads, batch-1 requests: Triton's dynamic batcher may merge
  them (``batching_gain`` = c8 / c1 frames/s; ``avg_batch`` from Triton's own statistics);
* ``shm`` vs ``plain``: batch-8 requests through :class:`inference.triton.client.TritonClient`
  with frames in system shared memory versus in the gRPC payload.

With ``--batches 1,8,32,64`` it measures in-process frames/s per batch size instead (see
:mod:`benchmarks.inference.batches`; ``inference-batch.json``). ``--provider`` picks the ONNX
Runtime execution provider of both the in-process detectors and Triton's python models.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.inference.measure import measure

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "benchmarks" / "results"
DEFAULT_OUT = RESULTS / "inference.json"
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
MODELS = ("face", "plate", "fire_smoke", "vending")


def load_frames(
    n: int, width: int, height: int, data_dir: Path | None
) -> list[npt.NDArray[np.uint8]]:
    """``n`` frames of ``width``×``height``: real eval images when found, else noise."""
    files: list[Path] = []
    if data_dir is not None and data_dir.is_dir():
        for task in ("plates", "faces", "fire"):
            files += sorted((data_dir / task / "images").glob("*.*"))[: max(1, n // 3)]
    frames: list[npt.NDArray[np.uint8]] = []
    for f in files[:n]:
        img = cv2.imread(str(f))
        if img is not None:
            frames.append(np.asarray(cv2.resize(img, (width, height)), np.uint8))
    rng = np.random.default_rng(0)
    while len(frames) < n:
        frames.append(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    return frames


def _model_stats(http_url: str, model: str) -> tuple[int, int]:
    """``(inference_count, execution_count)`` of a model from Triton's statistics."""
    with urllib.request.urlopen(f"http://{http_url}/v2/models/{model}/stats", timeout=5) as r:
        stats = json.loads(r.read())["model_stats"][0]
    return int(stats["inference_count"]), int(stats["execution_count"])


def _infer_batch(client: Any, batch: Any, _i: int) -> int:
    return len(client.infer(batch))


def bench_model(
    model: str,
    frames: list[npt.NDArray[np.uint8]],
    triton: Any,
    models_dir: Path,
    seconds: float,
    ort: Any = None,
) -> dict[str, Any]:
    """All measurements of one model."""
    import tritonclient.grpc as grpcclient

    from citysight.config import InferenceService
    from citysight.contracts import FrameBatch
    from inference.detectors.base import load_detector
    from inference.triton.client import TritonClient

    out: dict[str, Any] = {}
    det = load_detector(model, models_dir, ort=ort)
    out["tier"] = det.tier
    out["provider"] = getattr(det, "provider", None)
    out["batchable"] = bool(getattr(det, "batchable", False))
    out["ort"] = measure(
        lambda i: len(det.detect([frames[i % len(frames)]], [f"o{i % 4}"])), seconds
    )

    local = threading.local()

    def one(i: int) -> int:
        if not hasattr(local, "c"):
            local.c = grpcclient.InferenceServerClient(triton.grpc_url)
        f = frames[i % len(frames)][None]
        a = grpcclient.InferInput("FRAMES", list(f.shape), "UINT8")
        a.set_data_from_numpy(f)
        b = grpcclient.InferInput("CAMERA_IDS", [1, 1], "BYTES")
        b.set_data_from_numpy(np.asarray([[f"t{i % 4}".encode()]], dtype=object))
        local.c.infer(model, [a, b], client_timeout=60)
        return 1

    for conc in (1, 8):
        before = _model_stats(triton.http_url, model)
        out[f"triton_c{conc}"] = measure(one, seconds, threads=conc)
        after = _model_stats(triton.http_url, model)
        infers, execs = after[0] - before[0], after[1] - before[1]
        out[f"triton_c{conc}"]["avg_batch"] = round(infers / max(execs, 1), 2)
    out["batching_gain_c8_vs_c1"] = round(
        out["triton_c8"]["frames_per_s"] / max(out["triton_c1"]["frames_per_s"], 1e-9), 2
    )
    out["triton_vs_ort_c1"] = round(
        out["triton_c1"]["frames_per_s"] / max(out["ort"]["frames_per_s"], 1e-9), 2
    )

    batch8 = frames[:8] if len(frames) >= 8 else (frames * 8)[:8]
    for mode, use_shm in (("shm", True), ("plain", False)):
        client = TritonClient(
            InferenceService(type="triton", timeout_ms=60000, max_inflight=2),
            server=triton,
            url=triton.grpc_url,
            use_shm=use_shm,
        )
        fb = FrameBatch(
            frames=batch8,
            camera_ids=[f"s{k % 4}" for k in range(8)],
            frame_nos=list(range(8)),
            frame_times=[0.0] * 8,
            detectors=[frozenset({model})] * 8,
        )
        try:
            out[f"batch8_{mode}"] = measure(functools.partial(_infer_batch, client, fb), seconds)
        finally:
            client.close()
    out["shm_vs_plain_batch8"] = round(
        out["batch8_shm"]["frames_per_s"] / max(out["batch8_plain"]["frames_per_s"], 1e-9), 2
    )
    return out


def run(
    models: list[str],
    models_dir: Path,
    seconds: float,
    width: int,
    height: int,
    data_dir: Path | None,
    ort_opts: Any = None,
) -> dict[str, Any]:
    """Start Triton, benchmark ``models``, stop it; the result document."""
    import onnxruntime as ort

    from inference.triton.server import LocalTriton

    frames = load_frames(12, width, height, data_dir)
    t0 = time.perf_counter()
    with LocalTriton(models_dir=models_dir, models=["canary", *models], ort=ort_opts) as triton:
        startup_s = time.perf_counter() - t0
        results = {m: bench_model(m, frames, triton, models_dir, seconds, ort_opts) for m in models}
    return {
        "benchmark": "inference",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": {
            "cpus": os.cpu_count(),
            "machine": platform.machine(),
            "providers": ort.get_available_providers(),
        },
        "frame": [height, width, 3],
        "provider_requested": ort_opts.provider if ort_opts is not None else "cpu",
        "seconds_per_measurement": seconds,
        "triton_startup_s": round(startup_s, 2),
        "models": results,
        "notes": "Python-backend models calling ONNX Runtime, every frame of a Triton batch in "
        "one batched ONNX Runtime run; shared host, so absolute numbers vary run to run: "
        "compare ratios within this run.",
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``citysight bench inference``)."""
    p = argparse.ArgumentParser(prog="citysight bench inference", description=__doc__)
    p.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    p.add_argument(
        "--models-dir",
        type=Path,
        default=None,
        help="model files (default: model_repo/files, else ../shared/models)",
    )
    p.add_argument("--data-dir", type=Path, default=SHARED / "data" / "eval")
    p.add_argument("--seconds", type=float, default=3.0, help="per measurement")
    p.add_argument("--width", type=int, default=960)
    p.add_argument("--height", type=int, default=540)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="result file (default inference.json; with --batches inference-batch.json, "
        "inference-batch-<provider>.json for a GPU provider)",
    )
    p.add_argument(
        "--batches",
        default="",
        help="in-process frames/s at these batch sizes instead of the Triton run, e.g. 1,8,32,64",
    )
    p.add_argument(
        "--provider",
        choices=["cpu", "cuda", "tensorrt"],
        default="cpu",
        help="ONNX Runtime execution provider (unavailable ones fall back to cpu, warned)",
    )
    p.add_argument(
        "--max-batch",
        type=int,
        default=None,
        help="frames per ONNX Runtime call (default: the largest of --batches, else the "
        "provider's default)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    args = p.parse_args(argv)
    models = [m for m in args.models.split(",") if m]
    if unknown := set(models) - set(MODELS):
        print(f"error: unknown model(s) {sorted(unknown)}; known: {list(MODELS)}", file=sys.stderr)
        return 2
    try:
        batches = [int(b) for b in args.batches.split(",") if b.strip()]
    except ValueError:
        batches = [0]
    if any(b < 1 for b in batches):
        print(f"error: --batches wants positive integers, got {args.batches!r}", file=sys.stderr)
        return 2
    models_dir = args.models_dir
    if models_dir is None:
        files = ROOT / "model_repo" / "files"
        models_dir = files if any(files.glob("*.onnx")) else SHARED / "models"
    from inference.detectors.common import OrtOptions

    # A sweep runs each batch size as one call; the Triton run keeps the provider's default.
    max_batch = args.max_batch or (max(batches) if batches else None)
    ort_opts = OrtOptions(provider=args.provider, max_batch=max_batch)
    if batches:
        from benchmarks.inference.batches import run_batches

        suffix = "" if args.provider == "cpu" else f"-{args.provider}"
        out = args.out or RESULTS / f"inference-batch{suffix}.json"
        # 16 frames: 8, 32 and 64 are whole cycles of them.
        frames = load_frames(16, args.width, args.height, args.data_dir)
        result = run_batches(models, models_dir, frames, batches, args.seconds, ort_opts)
    else:
        out = args.out or DEFAULT_OUT
        result = run(
            models, models_dir, args.seconds, args.width, args.height, args.data_dir, ort_opts
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    elif batches:
        _print_batches(result)
    else:
        for m, r in result["models"].items():
            print(
                f"{m:11} ort {r['ort']['frames_per_s']:7.1f} f/s  triton c1 "
                f"{r['triton_c1']['frames_per_s']:7.1f}  c8 {r['triton_c8']['frames_per_s']:7.1f}"
                f" (x{r['batching_gain_c8_vs_c1']}, avg batch {r['triton_c8']['avg_batch']})"
                f"  shm/plain x{r['shm_vs_plain_batch8']}"
            )
    print(f"written {out}")
    return 0


def _print_batches(result: dict[str, Any]) -> None:
    for m, r in result["models"].items():
        print(f"{m} ({r['tier']}, {r['provider']}, batchable={r['batchable']})")
        for b, row in r["batches"].items():
            parts = "  ".join(
                f"{part} {v['frames_per_s']:8.1f} f/s x{v['gain_vs_b1']:<5} "
                f"p50 {v['latency_ms_p50']:8.1f} ms"
                for part, v in row.items()
            )
            print(f"  batch {b:>3}: {parts}")


if __name__ == "__main__":
    sys.exit(main())
