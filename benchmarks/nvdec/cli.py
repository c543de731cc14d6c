"""``citysight bench nvdec``: decode throughput of N concurrent streams, NVDEC or CPU.

For each stream count (default 1, 8, 32, 128) the same H.264 clip is opened N times with one
of the reader's decoder backends (``nvdec``: NVIDIA's PyNvVideoCodec; ``pyav``: FFmpeg on
CPU, one thread per stream, the comparison) and every stream decodes as fast as it can,
looping the file: demux + decode of every frame, nothing converted or sampled, so the
number is the decoder's ceiling for that many streams. Streams run as threads spread over
worker processes (``--procs``, default one per CPU core up to N) so the Python interpreter
lock never caps the rate. Per step: total frames/s, per-stream mean and minimum, errors,
and on NVIDIA GPUs the decoder utilisation and video clock sampled with ``nvidia-smi``
during the window.

On a GPU the total is set against the published ceiling of that GPU (engines x 1080p H.264
fps per engine at reference clock, from the planner's table, scaled by the clip's pixels):
``ratio_to_ceiling``. When a step keeps the decoders at least 90 % busy, the measured rate
per engine is written into the results' ``planner`` section, where ``citysight plan`` picks
it up in place of the published figure.

Prints one JSON object and writes ``benchmarks/results/nvdec-<decoder>.json``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.gpus import REFERENCE_PIXELS, match_gpu, nvidia_smi

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
DEFAULT_CLIP = SHARED / "data/videos/street-1080p.mp4"
RESULTS = ROOT / "benchmarks/results"
DEFAULT_STREAMS = (1, 8, 32, 128)
SATURATED_UTIL_PCT = 90.0
OPEN_TIMEOUT_S = 120.0
MAX_PIXELS = 8192 * 8192

# Per-stream state shared with the worker processes.
_OPENING, _RUNNING, _FAILED = 0, 1, -1


@dataclass(frozen=True)
class _Shared:
    """Per-stream counters and flags shared with the worker processes.

    ``frames``, ``errors`` and ``state`` have one slot per stream, written only by that
    stream's thread, so they need no locks.
    """

    frames: Any
    errors: Any
    state: Any
    messages: Any
    stop: Any


def _open(backend: Any, clip: str) -> Any:
    """Open ``clip`` for plain decoding (every frame, one thread)."""
    return backend.open(
        clip, options={}, timeout_s=10.0, keyframe_only=False, threads=1, max_pixels=MAX_PIXELS
    )


def _decode_stream(backend: Any, clip: str, i: int, sh: _Shared) -> None:
    """Open the clip and decode it in a loop until ``stop``; count frames and errors."""
    try:
        session = _open(backend, clip)
    except Exception as exc:  # reported to the parent, which stops the run
        sh.messages.put(f"stream {i}: cannot open {clip}: {type(exc).__name__}: {exc}")
        sh.state[i] = _FAILED
        return
    sh.state[i] = _RUNNING
    try:
        while not sh.stop.is_set():
            for unit in session.units():
                try:
                    sh.frames[i] += len(session.decode(unit))
                except Exception:  # a corrupt unit is counted, not fatal
                    sh.errors[i] += 1
                if sh.stop.is_set():
                    break
            else:
                session.rewind()
    except Exception as exc:
        sh.messages.put(f"stream {i}: decode loop failed: {type(exc).__name__}: {exc}")
        sh.state[i] = _FAILED
    finally:
        session.close()


def _worker(decoder: str, clip: str, indices: list[int], sh: _Shared) -> None:
    """One process: its streams as threads sharing one decoder backend."""
    from streams.decoders import get_backend

    try:
        backend = get_backend(decoder)
    except Exception as exc:
        sh.messages.put(str(exc))
        for i in indices:
            sh.state[i] = _FAILED
        return
    threads = [
        threading.Thread(
            target=_decode_stream, args=(backend, clip, i, sh), name=f"decode-{i}", daemon=True
        )
        for i in indices
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


# ---------------------------------------------------------------------------- GPU facts


def _number(v: str) -> float | None:
    try:
        return float(v)
    except ValueError:  # "[N/A]", "[Not Supported]"
        return None


class DecoderSampler:
    """Samples NVDEC utilisation and the video clock once a second while running."""

    def __init__(self, interval_s: float = 1.0) -> None:
        self.interval_s = interval_s
        self.util: list[float] = []
        self.clock_mhz: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="nvdec-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            row = nvidia_smi("utilization.decoder,clocks.video")
            if row is None or len(row) < 2:
                continue
            u, c = _number(row[0]), _number(row[1])
            if u is not None:
                self.util.append(u)
            if c is not None:
                self.clock_mhz.append(c)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join(timeout=15)

    def summary(self) -> dict[str, float | None]:
        """Mean decoder utilisation (%) and video clock (MHz) over the samples."""

        def mean(v: list[float]) -> float | None:
            return round(sum(v) / len(v), 1) if v else None

        return {"decoder_util_pct": mean(self.util), "video_clock_mhz": mean(self.clock_mhz)}


# ---------------------------------------------------------------------------- one step


class BenchError(RuntimeError):
    """The step could not run (decoder unavailable, clip unreadable)."""


def run_step(
    decoder: str,
    clip: Path,
    streams: int,
    *,
    procs: int,
    warmup_s: float,
    window_s: float,
    sample_gpu: bool,
) -> dict[str, Any]:
    """Decode ``streams`` concurrent copies of ``clip`` and measure the window.

    Raises:
        BenchError: a stream failed to open or the decoder is unavailable.
    """
    ctx = mp.get_context("spawn")
    sh = _Shared(
        frames=ctx.Array("q", streams, lock=False),
        errors=ctx.Array("q", streams, lock=False),
        state=ctx.Array("b", streams, lock=False),
        messages=ctx.Queue(),
        stop=ctx.Event(),
    )
    nproc = max(1, min(procs, streams))
    chunks = [list(range(streams))[k::nproc] for k in range(nproc)]
    workers = [
        ctx.Process(target=_worker, args=(decoder, str(clip), chunk, sh), daemon=True)
        for chunk in chunks
    ]
    for w in workers:
        w.start()
    try:
        deadline = time.monotonic() + OPEN_TIMEOUT_S
        while any(s == _OPENING for s in sh.state) and time.monotonic() < deadline:
            if _FAILED in sh.state[:] or not any(w.is_alive() for w in workers):
                break
            time.sleep(0.05)
        failed = [i for i, s in enumerate(sh.state) if s != _RUNNING]
        if failed:
            reasons: list[str] = []
            while not sh.messages.empty() and len(reasons) < 3:
                reasons.append(sh.messages.get_nowait())
            why = "; ".join(reasons) or f"{len(failed)} stream(s) did not open in time"
            raise BenchError(f"{decoder}: {why}")
        time.sleep(warmup_s)
        sampler = DecoderSampler() if sample_gpu else None
        if sampler:
            sampler.start()
        f0, e0, t0 = sh.frames[:], sh.errors[:], time.perf_counter()
        time.sleep(window_s)
        f1, e1, t1 = sh.frames[:], sh.errors[:], time.perf_counter()
        if sampler:
            sampler.stop()
        lost = [i for i, s in enumerate(sh.state) if s != _RUNNING]
    finally:
        sh.stop.set()
        for w in workers:
            w.join(timeout=20)
            if w.is_alive():
                w.terminate()
                w.join(timeout=5)
    dt = t1 - t0
    per = [(b - a) / dt for a, b in zip(f0, f1, strict=True)]
    step: dict[str, Any] = {
        "streams": streams,
        "processes": nproc,
        "total_fps": round(sum(per), 1),
        "per_stream_fps_mean": round(sum(per) / streams, 1),
        "per_stream_fps_min": round(min(per), 1),
        "errors": sum(b - a for a, b in zip(e0, e1, strict=True)),
        "streams_failed_during_window": len(lost),
        "window_s": round(dt, 2),
    }
    if sampler:
        step.update(sampler.summary())
    return step


# ---------------------------------------------------------------------------- command


def probe_clip(decoder: str, clip: Path) -> tuple[int, int]:
    """Open ``clip`` once with ``decoder`` in this process: its size, or a clear error.

    Raises:
        BenchError: the decoder is unavailable here or cannot open the clip.
    """
    from streams.decoders import get_backend

    try:
        backend = get_backend(decoder)
    except Exception as exc:
        raise BenchError(f"decoder {decoder!r} unavailable here: {exc}") from exc
    try:
        session = _open(backend, str(clip))
    except Exception as exc:
        raise BenchError(f"{decoder}: cannot read clip {clip}: {exc}") from exc
    try:
        return session.width, session.height
    finally:
        session.close()


def _gpu_facts() -> dict[str, Any] | None:
    row = nvidia_smi("name,driver_version,memory.total")
    if row is None or len(row) < 3:
        return None
    return {"name": row[0], "driver": row[1], "memory_mib": _number(row[2])}


def _ceiling(gpu: dict[str, Any] | None, pixels: int) -> dict[str, Any] | None:
    spec = match_gpu(gpu["name"]) if gpu else None
    if spec is None:
        return None
    scale = REFERENCE_PIXELS / pixels
    fps = spec.nvdec_engines.value * spec.nvdec_fps_per_engine.value * scale
    return {
        "gpu": spec.name,
        "engines": spec.nvdec_engines.value,
        "fps_per_engine_1080p": spec.nvdec_fps_per_engine.value,
        "source": spec.nvdec_fps_per_engine.source.value,
        "basis": spec.nvdec_fps_per_engine.note,
        "pixel_scale": round(scale, 3),
        "fps": round(fps, 1),
    }


def planner_section(
    steps: list[dict[str, Any]], ceiling: dict[str, Any] | None
) -> dict[str, Any] | None:
    """The measured 1080p fps per NVDEC engine, from the best step with busy decoders.

    ``None`` unless some step kept the decoders at least 90 % busy: an unsaturated step says
    nothing about what an engine can do.
    """
    if not ceiling:
        return None
    busy = [s for s in steps if (s.get("decoder_util_pct") or 0.0) >= SATURATED_UTIL_PCT]
    if not busy:
        return None
    best = max(s["total_fps"] for s in busy)
    per_engine = best / ceiling["pixel_scale"] / ceiling["engines"]
    return {"nvdec_fps_per_engine": {ceiling["gpu"]: round(per_engine, 1)}}


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``citysight bench nvdec``."""
    ap = argparse.ArgumentParser(prog="citysight bench nvdec", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--decoder",
        default="nvdec",
        choices=["nvdec", "pyav"],
        help="nvdec (PyNvVideoCodec, GPU) or pyav (FFmpeg on CPU, the comparison)",
    )
    ap.add_argument("--clip", type=Path, default=DEFAULT_CLIP, help="H.264 clip (1080p default)")
    ap.add_argument(
        "--streams",
        default=",".join(map(str, DEFAULT_STREAMS)),
        help="comma-separated concurrent stream counts",
    )
    ap.add_argument(
        "--procs", type=int, default=os.cpu_count() or 1, help="worker processes (at most N)"
    )
    ap.add_argument("--warmup-s", type=float, default=3.0, help="settling time per step")
    ap.add_argument("--window-s", type=float, default=10.0, help="measurement window per step")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--out", type=Path, default=None, help="results file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success; 2 for bad arguments, a missing clip or an unavailable decoder.
    """
    args = build_parser().parse_args(argv)
    try:
        counts = [int(s) for s in args.streams.split(",") if s.strip()]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1 or max(counts) > 1024:
        print(f"--streams wants counts between 1 and 1024, got {args.streams!r}", file=sys.stderr)
        return 2
    if not args.clip.is_file():
        print(f"clip not found: {args.clip}", file=sys.stderr)
        return 2
    if args.procs < 1 or args.window_s <= 0 or args.warmup_s < 0:
        print("--procs must be >= 1, --window-s > 0 and --warmup-s >= 0", file=sys.stderr)
        return 2
    try:
        width, height = probe_clip(args.decoder, args.clip)
    except BenchError as exc:
        print(f"bench nvdec: {exc}", file=sys.stderr)
        return 2
    gpu = _gpu_facts()
    on_gpu = args.decoder == "nvdec"
    ceiling = _ceiling(gpu, width * height) if on_gpu else None
    steps: list[dict[str, Any]] = []
    for n in counts:
        try:
            step = run_step(
                args.decoder,
                args.clip,
                n,
                procs=args.procs,
                warmup_s=args.warmup_s,
                window_s=args.window_s,
                sample_gpu=on_gpu and gpu is not None,
            )
        except BenchError as exc:
            print(f"bench nvdec: {exc}", file=sys.stderr)
            if not steps:
                return 2
            break
        if ceiling:
            step["ratio_to_ceiling"] = round(step["total_fps"] / ceiling["fps"], 3)
        steps.append(step)
        if not args.json:
            print(json.dumps(step), file=sys.stderr)
    out: dict[str, Any] = {
        "benchmark": "nvdec",
        "decoder": args.decoder,
        "clip": args.clip.name,
        "resolution": f"{width}x{height}",
        "steps": steps,
        "ceiling": ceiling,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "gpu": gpu,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "note": "demux + decode of every frame, no conversion; the clip looped as fast as the "
        "decoder goes; one thread per stream over worker processes",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    section = planner_section(steps, ceiling)
    if section:
        out["planner"] = section
    path: Path = args.out or RESULTS / f"nvdec-{args.decoder}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
