"""``citysight bench decode``: citysight reader decode fps vs FFmpeg on the same clip.

For each clip, in one run and one thread each:

* ``ffmpeg_fps``: a plain PyAV demux + decode loop (the FFmpeg inside PyAV, threads=1);
* ``citysight_fps``: frames decoded per second by :class:`streams.reader.CameraReader`
  with file pacing off, over the reader's wall time less the time it spent converting the
  sampled frames (measured inside the reader). Both sides then do the same work — demux and
  decode every frame — and the ratio measures the reader's own overhead (sampling, deadline,
  metrics, callbacks). The conversion of sampled frames (BGR + resize at 5 fps) is reported
  separately (``citysight_convert_ms_per_sampled_frame``, ``citysight_fps_with_convert``);
* CPU seconds per camera-minute for full and keyframe-only decode.

Prints one JSON object (``citysight_fps``, ``ffmpeg_fps``, ``ratio`` of the first clip,
plus a ``clips`` list) and writes it to ``benchmarks/results/decode.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

import av

from citysight.config import CameraConfig, CameraProfile
from citysight.contracts import CameraState
from streams.reader import CameraReader, ReaderOptions

ROOT = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
DEFAULT_CLIPS = [
    SHARED / "data/videos/street-1080p.mp4",
    SHARED / "data/videos/street-720p.mp4",
]
DEFAULT_OUT = ROOT / "benchmarks/results/decode.json"


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def ffmpeg_decode(clip: Path, keyframe_only: bool = False) -> dict[str, float]:
    """Plain demux + decode of every packet with one thread (the reference)."""
    cpu0, t0 = _cpu_s(), time.perf_counter()
    n = 0
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        s.codec_context.thread_count = 1
        s.codec_context.thread_type = "NONE"
        if keyframe_only:
            s.codec_context.skip_frame = "NONKEY"
        duration = float(s.duration * s.time_base) if s.duration and s.time_base else 0.0
        for pkt in c.demux(s):
            for _ in pkt.decode():
                n += 1
    wall = time.perf_counter() - t0
    return {"frames": n, "wall_s": wall, "cpu_s": _cpu_s() - cpu0, "duration_s": duration}


def citysight_decode(
    clip: Path, keyframe_only: bool = False, analytics_fps: float = 5.0
) -> dict[str, float]:
    """Decode the clip with the camera reader (file pacing off, one decode thread)."""
    cam = CameraConfig(
        id="bench",
        url=str(clip),
        latitude=0,
        longitude=0,
        profile=CameraProfile(analytics_fps=analytics_fps, keyframe_only=keyframe_only),
    )
    done = threading.Event()
    reader = CameraReader(
        cam,
        lambda *a: None,
        lambda st: done.set() if st.state in (CameraState.STOPPED, CameraState.FAILED) else None,
        ReaderOptions(pace_files=False, decode_threads=1),
    )
    cpu0, t0 = _cpu_s(), time.perf_counter()
    reader.start()
    done.wait(3600)
    wall = time.perf_counter() - t0
    cpu = _cpu_s() - cpu0
    m = reader.metrics()
    reader.stop()
    if reader.reason and "end of file" not in reader.reason and reader.reason != "stopped":
        raise RuntimeError(f"reader failed on {clip}: {reader.reason}")
    return {
        "frames": m["frames_in"],
        "frames_out": m["frames_out"],
        "wall_s": wall,
        "cpu_s": cpu,
        "convert_s": m["convert_s"],
        "convert_cpu_s": m["convert_cpu_s"],
    }


def _warm(clip: Path, frames: int = 50) -> None:
    """Page the file in and initialise the decoder once, so neither side measures it."""
    clip.read_bytes()
    with av.open(str(clip)) as c:
        n = 0
        for pkt in c.demux(c.streams.video[0]):
            n += len(pkt.decode())
            if n >= frames:
                break


def bench_clip(clip: Path) -> dict[str, Any]:
    """All measurements of one clip."""
    with av.open(str(clip)) as c:
        s = c.streams.video[0]
        info = {
            "clip": str(clip),
            "codec": s.codec_context.name,
            "width": s.width,
            "height": s.height,
            "fps": float(s.average_rate or 0),
        }
    _warm(clip)
    ff = ffmpeg_decode(clip)
    cs = citysight_decode(clip)
    # The whole reader (decode, sampling, conversion, nothing subtracted) at the 1 fps
    # analytics profile that sizes streams per core.
    cs1 = citysight_decode(clip, analytics_fps=1.0)
    ff_key = ffmpeg_decode(clip, keyframe_only=True)
    cs_key = citysight_decode(clip, keyframe_only=True)
    minutes = max(ff["duration_s"], 1e-9) / 60.0
    ffmpeg_fps = ff["frames"] / ff["wall_s"]
    # Like for like: decode of every frame on both sides; conversion reported apart.
    decode_wall = max(cs["wall_s"] - cs["convert_s"], 1e-9)
    citysight_fps = cs["frames"] / decode_wall
    return {
        **info,
        "frames": int(ff["frames"]),
        "duration_s": round(ff["duration_s"], 3),
        "ffmpeg_fps": round(ffmpeg_fps, 1),
        "citysight_fps": round(citysight_fps, 1),
        "ratio": round(citysight_fps / ffmpeg_fps, 3),
        "citysight_fps_with_convert": round(cs["frames"] / cs["wall_s"], 1),
        "citysight_fps_1fps_profile": round(cs1["frames"] / cs1["wall_s"], 1),
        "ratio_1fps_profile": round(cs1["frames"] / cs1["wall_s"] / ffmpeg_fps, 3),
        "citysight_convert_cpu_s": round(cs["convert_cpu_s"], 3),
        "citysight_convert_ms_per_sampled_frame": round(
            1e3 * cs["convert_s"] / max(cs["frames_out"], 1), 3
        ),
        # Per CPU second: robust on a shared machine where wall time includes waiting.
        "ffmpeg_fps_per_cpu_s": round(ff["frames"] / max(ff["cpu_s"], 1e-9), 1),
        "citysight_fps_per_cpu_s": round(
            cs["frames"] / max(cs["cpu_s"] - cs["convert_cpu_s"], 1e-9), 1
        ),
        "cpu_ratio": round(
            (cs["frames"] / max(cs["cpu_s"] - cs["convert_cpu_s"], 1e-9))
            / (ff["frames"] / max(ff["cpu_s"], 1e-9)),
            3,
        ),
        "citysight_frames_out_5fps": int(cs["frames_out"]),
        "full_cpu_s_per_camera_minute": round(cs["cpu_s"] / minutes, 2),
        "keyframe_only_cpu_s_per_camera_minute": round(cs_key["cpu_s"] / minutes, 2),
        "keyframe_only_frames": int(cs_key["frames"]),
        "ffmpeg_full_cpu_s_per_camera_minute": round(ff["cpu_s"] / minutes, 2),
        "ffmpeg_keyframe_only_cpu_s_per_camera_minute": round(ff_key["cpu_s"] / minutes, 2),
    }


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``citysight bench decode``."""
    ap = argparse.ArgumentParser(prog="citysight bench decode", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--clip",
        action="append",
        type=Path,
        help="H.264 clip (repeatable); default: ../shared street 1080p and 720p",
    )
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="results file")
    return ap


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        0 on success, 2 when a clip is missing.
    """
    args = build_parser().parse_args(argv)
    clips: list[Path] = args.clip or DEFAULT_CLIPS
    missing = [str(c) for c in clips if not c.is_file()]
    if missing:
        print(f"clip not found: {', '.join(missing)}", file=sys.stderr)
        return 2
    results = [bench_clip(c) for c in clips]
    first = results[0]
    out: dict[str, Any] = {
        "benchmark": "decode",
        "citysight_fps": first["citysight_fps"],
        "ffmpeg_fps": first["ffmpeg_fps"],
        "ratio": first["ratio"],
        "clips": results,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "pyav": av.__version__,
            "load_avg_1m": round(os.getloadavg()[0], 2),
        },
        "note": "one decode thread each; same clip and run; both decode every frame; "
        "citysight_fps excludes the reader's conversion of its 5 fps samples (measured in "
        "the reader, reported as citysight_convert_ms_per_sampled_frame and included in "
        "citysight_fps_with_convert), so ratio is the reader's overhead over FFmpeg; on a "
        "shared machine wall-clock ratios swing with other load: cpu_ratio (frames per CPU "
        "second, conversion's thread CPU time excluded) is the steadier figure",
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(out))
    else:
        for r in results:
            print(
                f"{Path(r['clip']).name}: citysight {r['citysight_fps']} fps, ffmpeg "
                f"{r['ffmpeg_fps']} fps, ratio {r['ratio']}; CPU s per camera-minute: full "
                f"{r['full_cpu_s_per_camera_minute']}, keyframe-only "
                f"{r['keyframe_only_cpu_s_per_camera_minute']}"
            )
        print(f"written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
