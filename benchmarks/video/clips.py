"""The evidence-clip part of ``citysight bench video``: what recording costs per camera.

For each source (the demo's synthetic 960x540 10 fps scene, and the real street footage of
``../shared/data/videos`` at 720p and 1080p, 25 fps), the camera's own packets (demuxed and
rewritten to Annex B exactly as the reader offers them to taps) are fed through the real
:class:`streams.clips.PacketRing` on the media clock, looping the file, for a minute of
video:

* ``ring_bytes_per_camera_minute``: what the ring holds for 60 s of that camera (the
  memory a ``ring_max_s: 60`` ring costs; the default 30 s ring holds about half);
* ``tap_us_per_packet`` and ``tap_cpu_pct``: the decode thread's cost of keeping the ring
  (one core, at the camera's frame rate), measured around the appends;
* ``clip_write_ms``: muxing a ``pre_s + post_s`` (20 s) clip from the ring into an MP4 and
  hashing it (no re-encoding), median of 3;
* ``blur_ms``: the face-blurred copy of that clip (decode, YuNet on every frame, H.264
  encode), once, on the demo and 720p sources (1080p with ``--blur-1080p``).

Run it alone with ``python -m benchmarks.video.clips`` or as the ``clips`` part of
``citysight bench video``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from citysight.config import InferenceService
from citysight.redaction import FaceRedactor
from streams.clips import ClipWindow, PacketRing, mux_clip
from streams.decoders import BACKENDS
from streams.packets import Packet

SHARED = Path(os.environ.get("CITYSIGHT_SHARED", Path(__file__).resolve().parents[3] / "shared"))
MINUTE_S = 60.0
CLIP_S = 20.0


def _sources(tmp: Path, small: bool) -> dict[str, Path]:
    from streams.synthetic.clips import DEMO_SCENES, render_clip

    demo = render_clip(DEMO_SCENES[0], tmp / "demo.mp4", seconds=10 if small else 20, fps=10,
                       size=(960, 540))  # fmt: skip
    out = {"demo_960x540": demo}
    for name in ("720p",) if small else ("720p", "1080p"):
        p = SHARED / "data" / "videos" / f"street-{name}.mp4"
        if p.is_file():
            out[name] = p
    return out


def _packets(path: Path) -> tuple[Any, list[Packet], float]:
    """The file's packets as taps get them, its stream info and its length in seconds."""
    session = BACKENDS.get("pyav")().open(
        str(path), options={}, timeout_s=10, keyframe_only=False, threads=1, max_pixels=1 << 26
    )
    try:
        info = session.stream_info()
        if info is None:
            raise ValueError(f"{path}: its packets cannot be remuxed")
        pkts = [session.packet(u) for u in session.units()]
    finally:
        session.close()
    tb = info.time_base[0] / info.time_base[1]
    ts = [p.pts for p in pkts if p.pts is not None]
    length = (max(ts) - min(ts)) * tb + 1 / info.fps if ts else len(pkts) / info.fps
    return info, pkts, length


def _fill(
    info: Any, pkts: list[Packet], length: float, seconds: float
) -> tuple[PacketRing, dict[str, float]]:
    """Loop the packets into a ring for ``seconds`` of media time (wall clock = media clock)."""
    ring = PacketRing(seconds, 4 * 1024**3)
    tb = info.time_base[0] / info.time_base[1]
    t0 = min(p.pts for p in pkts if p.pts is not None)
    n = 0
    tap_s = 0.0
    base = 1_000_000.0
    passes = 0
    while True:
        ring.opened(info)
        for p in pkts:
            wall = base + passes * length + ((p.pts or 0) - t0) * tb
            q = Packet(p.data, p.pts, p.dts, p.keyframe, wall)
            c0 = time.thread_time()
            ring.append(q)
            tap_s += time.thread_time() - c0
            n += 1
        passes += 1
        if passes * length >= seconds + 2 * length:  # a full window, past the first GOPs
            break
    return ring, {"packets": n, "tap_s": tap_s, "end_wall": base + passes * length}


def measure_source(
    name: str, path: Path, *, blur: bool, redactor: FaceRedactor | None
) -> dict[str, Any]:
    """Ring memory, tap cost, clip write and blur time of one source."""
    info, pkts, length = _packets(path)
    ring, fill = _fill(info, pkts, length, MINUTE_S)
    st = ring.stats()
    out: dict[str, Any] = {
        "source": path.name,
        "width": info.width,
        "height": info.height,
        "fps": round(info.fps, 2),
        "bitrate_mbit_s": round(sum(len(p.data) for p in pkts) * 8 / length / 1e6, 3),
        "ring_bytes_per_camera_minute": int(st["ring_bytes"]),
        "ring_mib_per_camera_minute": round(st["ring_bytes"] / 2**20, 2),
        "ring_seconds_held": st["ring_seconds"],
        "tap_us_per_packet": round(1e6 * fill["tap_s"] / fill["packets"], 2),
        "tap_cpu_pct": round(100 * fill["tap_s"] / fill["packets"] * info.fps, 3),
    }
    end = fill["end_wall"]
    win = ring.window(end - CLIP_S - 1, end - 1)
    assert win is not None
    times = []
    with tempfile.TemporaryDirectory() as d:
        clip = Path(d) / "clip.mp4"
        for _ in range(3):
            t0 = time.perf_counter()
            done = mux_clip(ClipWindow(win.info, win.packets, win.wanted_from, win.wanted_to), clip)
            times.append((time.perf_counter() - t0) * 1000)
        out["clip_write_ms"] = round(statistics.median(times), 1)
        out["clip_frames"] = done.frames
        out["clip_duration_s"] = done.duration_s
        out["clip_bytes"] = done.size
        if blur and redactor is not None and redactor.available:
            from serve_app.store.clips import blur_clip

            t0 = time.perf_counter()
            c0 = time.process_time()
            frames = blur_clip(clip, Path(d) / "blurred.mp4", redactor)
            out["blur_ms"] = round((time.perf_counter() - t0) * 1000, 0)
            out["blur_cpu_s"] = round(time.process_time() - c0, 2)
            out["blur_ms_per_frame"] = round(out["blur_ms"] / frames, 1)
            out["blur_tier"] = redactor.tier
    return out


def clip_bench(small: bool = False, blur_1080p: bool = False) -> dict[str, Any]:
    """The evidence-clip measurements (see the module docstring)."""
    models = SHARED / "models"
    redactor = FaceRedactor.from_config(InferenceService(models_dir=str(models)))
    with tempfile.TemporaryDirectory() as d:
        sources = _sources(Path(d), small)
        per = {
            name: measure_source(
                name, path, blur=(name != "1080p" or blur_1080p), redactor=redactor
            )
            for name, path in sources.items()
        }
    return {
        "minute_s": MINUTE_S,
        "clip_s": CLIP_S,
        "blur_tier": redactor.tier or redactor.reason,
        "sources": per,
    }


def table(res: dict[str, Any]) -> str:
    """Markdown table of :func:`clip_bench`'s result."""
    lines = [
        "| source | size | Mbit/s | ring MiB / camera-minute | tap µs/packet | tap CPU % | "
        "20 s clip write ms | blur ms (per frame) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, s in res["sources"].items():
        blur = f"{s['blur_ms']:.0f} ({s['blur_ms_per_frame']})" if "blur_ms" in s else "-"
        lines.append(
            f"| {name} | {s['width']}x{s['height']}@{s['fps']:g} | {s['bitrate_mbit_s']} | "
            f"{s['ring_mib_per_camera_minute']} | {s['tap_us_per_packet']} | {s['tap_cpu_pct']} | "
            f"{s['clip_write_ms']} | {blur} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the clip benchmark alone; prints a table (or JSON) and optionally writes JSON."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.video.clips", description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--small", action="store_true", help="demo and 720p only, shorter demo clip")
    p.add_argument("--blur-1080p", action="store_true", help="also time the 1080p blur")
    a = p.parse_args(argv)
    res = {"clips": clip_bench(a.small, a.blur_1080p)}
    text = json.dumps(res, indent=2)
    if a.out:
        a.out.write_text(text + "\n")
    print(text if a.json else table(res["clips"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
