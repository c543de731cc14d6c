"""Command line for the capacity planner (``citysight plan [--json]``).

Measured rates are read from ``benchmarks/results/*.json``: any file whose top-level object
has a ``planner`` key contributes it, with these optional fields (files are read in name
order; later files override earlier ones)::

    {"planner": {
        "nvdec_fps_per_engine": {"H100": 760.0},
        "inference_fps_per_gpu": {"H100": {"face": 5200.0, "plate": 3100.0}},
        "redis_xadd_per_shard_per_s": 38000.0,
        "rules_results_per_core_per_s": 9000.0
    }}
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from benchmarks.gpus import PUBLISHED
from benchmarks.planner.model import (
    DEFAULT_MODEL_MIX,
    DecodeMode,
    Measurements,
    Plan,
    PlanError,
    PlanInput,
    Quantity,
    plan,
)

logger = logging.getLogger(__name__)

DEFAULT_RESULTS_DIR = Path(__file__).resolve().parents[1] / "results"
EXIT_USAGE = 2


def load_measurements(results_dir: Path) -> Measurements:
    """Merge the ``planner`` sections of every ``*.json`` file in ``results_dir``.

    Args:
        results_dir: Folder of benchmark result files; a missing folder means no results.

    Returns:
        The merged measurements (empty when nothing was found).

    Raises:
        PlanError: If a file is not valid JSON or its ``planner`` section is malformed.
    """
    merged: dict[str, Any] = {
        "nvdec_fps_per_engine": {},
        "inference_fps_per_gpu": {},
        "sources": [],
    }
    if not results_dir.is_dir():
        return Measurements()
    for path in sorted(results_dir.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise PlanError(f"cannot read results file {path}: {exc}") from exc
        section = data.get("planner") if isinstance(data, dict) else None
        if not isinstance(section, dict):
            continue
        try:
            part = Measurements.model_validate(section)
        except ValidationError as exc:
            raise PlanError(f"bad 'planner' section in {path}: {exc}") from exc
        merged["nvdec_fps_per_engine"].update(
            {k.upper(): v for k, v in part.nvdec_fps_per_engine.items()}
        )
        for gpu, rates in part.inference_fps_per_gpu.items():
            merged["inference_fps_per_gpu"].setdefault(gpu.upper(), {}).update(rates)
        for key in ("redis_xadd_per_shard_per_s", "rules_results_per_core_per_s"):
            value = getattr(part, key)
            if value is not None:
                merged[key] = value
        merged["sources"].append(str(path))
        logger.info("planner measurements from %s", path)
    return Measurements.model_validate(merged)


def _parse_mix(items: list[str] | None) -> dict[str, float]:
    if not items:
        return dict(DEFAULT_MODEL_MIX)
    mix: dict[str, float] = {}
    for item in items:
        name, sep, fraction = item.partition("=")
        if not sep or not name:
            raise PlanError(f"--model expects NAME=FRACTION, got {item!r}")
        try:
            mix[name.strip()] = float(fraction)
        except ValueError as exc:
            raise PlanError(f"--model {item!r}: fraction is not a number") from exc
    return mix


def build_parser() -> argparse.ArgumentParser:
    """Return the ``citysight plan`` argument parser."""
    p = argparse.ArgumentParser(
        prog="citysight plan",
        description="Size GPUs, Triton, Ray nodes, Redis shards, bandwidth and rules CPU.",
    )
    p.add_argument("--cameras", type=int, default=7500, help="number of cameras")
    p.add_argument("--resolution", default="1080p", help="main stream: 720p, 1080p, 4k, WxH")
    p.add_argument("--codec", choices=["h264", "h265"], default="h264")
    p.add_argument("--camera-fps", type=float, default=25.0, help="camera frame rate")
    p.add_argument("--analytics-fps", type=float, default=5.0, help="frames/s inferred")
    p.add_argument(
        "--decode",
        choices=[m.value for m in DecodeMode],
        default=DecodeMode.FULL.value,
        help="full | keyframe_only | substream",
    )
    p.add_argument("--gop-s", type=float, default=2.0, help="GOP length for keyframe_only")
    p.add_argument("--substream-resolution", default="720p")
    p.add_argument("--substream-fps", type=float, default=5.0)
    p.add_argument(
        "--model",
        action="append",
        metavar="NAME=FRACTION",
        help="detector and the fraction of cameras running it (repeat; replaces the default "
        f"mix {DEFAULT_MODEL_MIX})",
    )
    p.add_argument("--planning-factor", type=float, default=0.7, help="share of ceilings")
    p.add_argument("--gpu", help=f"one of {', '.join(PUBLISHED)}; default: all")
    p.add_argument("--results-dir", type=Path, default=DEFAULT_RESULTS_DIR)
    p.add_argument("--no-measured", action="store_true", help="ignore benchmarks/results")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def _fmt(q: Quantity) -> str:
    value = f"{q.value:,.0f}" if q.value >= 100 or q.value == int(q.value) else f"{q.value:.2f}"
    return f"{value} [{q.source.value}]"


def render_table(result: Plan) -> str:
    """Render a plan as a readable text table.

    Args:
        result: The plan.

    Returns:
        Multi-line text.
    """
    inp = result.input
    lines = [
        f"citysight capacity plan: {inp.cameras} cameras, {inp.resolution} {inp.codec} "
        f"@{inp.camera_fps:g} fps, decode={inp.decode_mode.value}, "
        f"analytics {inp.analytics_fps:g} fps, planning factor {inp.planning_factor:g}",
        "",
    ]
    shared = [
        ("decoded frames/s per camera", result.decoded_fps_per_camera),
        ("decode load (1080p-equiv fps)", result.decode_load_fps_1080p_equiv),
        ("frame results/s", result.frame_results_per_s),
        ("Redis shards", result.redis_shards),
        ("ingest Mb/s", result.ingest_mbps),
        ("rules CPU cores", result.rules_cpu_cores),
    ]
    width = max(len(name) for name, _ in shared)
    for name, q in shared:
        lines.append(f"  {name:<{width}}  {_fmt(q):<22} {q.basis}")
    lines.append("")
    cols = ["GPU", "NVDEC cap/GPU", "decode", "inference", "total", "binds", "Triton", "Ray"]
    rows = [
        [
            g.gpu,
            _fmt(g.nvdec_capacity_fps),
            _fmt(g.decode_gpus),
            _fmt(g.inference_gpus),
            _fmt(g.gpus_total),
            g.binding,
            f"{g.triton_instances.value:,.0f}",
            f"{g.ray_worker_nodes.value:,.0f}",
        ]
        for g in result.gpus
    ]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        lines.append("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    if result.notes:
        lines.append("")
        lines.extend(f"note: {n}" for n in result.notes)
    lines.append("")
    lines.append(
        "sources: input = arithmetic on your input; measured = benchmarks/results or "
        "RECIPES.md; published = NVIDIA datasheets / NVDEC application note; assumed = "
        "replace with a measurement"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the planner.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success, 2 on invalid input.
    """
    args = build_parser().parse_args(argv)
    try:
        inp = PlanInput(
            cameras=args.cameras,
            resolution=args.resolution,
            codec=args.codec,
            camera_fps=args.camera_fps,
            analytics_fps=args.analytics_fps,
            decode_mode=DecodeMode(args.decode),
            gop_s=args.gop_s,
            substream_resolution=args.substream_resolution,
            substream_fps=args.substream_fps,
            model_mix=_parse_mix(args.model),
            planning_factor=args.planning_factor,
            gpu=args.gpu,
        )
        meas = Measurements() if args.no_measured else load_measurements(args.results_dir)
        result = plan(inp, meas)
    except ValidationError as exc:
        msgs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'input'}: {e['msg']}" for e in exc.errors()
        )
        print(f"citysight plan: error: {msgs}", file=sys.stderr)
        return EXIT_USAGE
    except PlanError as exc:
        print(f"citysight plan: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.json:
        print(json.dumps(result.model_dump(mode="json"), sort_keys=True))
    else:
        print(render_table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
