"""Renders the synthetic demo clips that ``citysight demo`` streams as cameras.

Each scene is drawn procedurally (numpy + OpenCV, Pillow for plate text), gets light
sensor noise, and is encoded as H.264 (yuv420p, libx264) with a keyframe every 2 s so
keyframe-only decoding still sees a frame every 2 s. Output is deterministic and
cached: a JSON sidecar next to each MP4 records the parameters and
`GENERATOR_VERSION`; a matching sidecar means the clip is reused as it is.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import av
import cv2
import numpy as np

from streams.synthetic.drawing import SensorNoise
from streams.synthetic.plates import DEMO_PLATES, PLATE_PATTERN, format_plate
from streams.synthetic.scenes import SCENES
from streams.synthetic.scenes.vending import VENDING_APPEAR_S, VENDING_STALL_REGION

logger = logging.getLogger(__name__)

#: Bump when any scene's pixels change, so cached clips are re-rendered.
GENERATOR_VERSION = 4

#: Names of the demo scenes, in render order (keys of `render_demo_clips`' result).
DEMO_SCENES: tuple[str, ...] = tuple(SCENES)

#: Seconds between keyframes (the GOP length is this times fps).
KEYFRAME_INTERVAL_S = 2

__all__ = [
    "DEMO_PLATES",
    "DEMO_SCENES",
    "GENERATOR_VERSION",
    "KEYFRAME_INTERVAL_S",
    "PLATE_PATTERN",
    "VENDING_APPEAR_S",
    "VENDING_STALL_REGION",
    "format_plate",
    "render_clip",
    "render_demo_clips",
]


def _sidecar_params(scene: str, seconds: float, fps: int, size: tuple[int, int]) -> dict[str, Any]:
    return {
        "generator_version": GENERATOR_VERSION,
        "scene": scene,
        "seconds": float(seconds),
        "fps": int(fps),
        "size": [int(size[0]), int(size[1])],
        "keyframe_interval_s": KEYFRAME_INTERVAL_S,
        "codec": "libx264",
        "pix_fmt": "yuv420p",
    }


def _sidecar_path(clip: Path) -> Path:
    return clip.with_suffix(".json")


def _is_current(clip: Path, params: dict[str, Any]) -> bool:
    sidecar = _sidecar_path(clip)
    if not clip.is_file() or clip.stat().st_size == 0 or not sidecar.is_file():
        return False
    try:
        stored = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(stored == params)


def render_clip(
    scene: str,
    path: Path,
    *,
    seconds: float = 20.0,
    fps: int = 10,
    size: tuple[int, int] = (960, 540),
) -> Path:
    """Renders one scene to an H.264 MP4 and writes its JSON sidecar.

    The MP4 is written to a temporary name and renamed into place, so a crash never
    leaves a truncated clip that looks current.

    Args:
        scene: One of `DEMO_SCENES`.
        path: Output MP4 path.
        seconds: Clip duration in seconds.
        fps: Frames per second.
        size: Frame ``(width, height)``; both must be even (yuv420p).

    Returns:
        ``path``.

    Raises:
        KeyError: Unknown scene.
        ValueError: Invalid size, fps or duration.
    """
    width, height = size
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"size must be positive and even for yuv420p, got {size}")
    if fps <= 0 or seconds <= 0:
        raise ValueError(f"fps and seconds must be positive, got {fps}, {seconds}")
    drawer = SCENES[scene](size, fps, seconds)
    noise = SensorNoise(np.random.default_rng(drawer.seed + 1000), size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.mp4")
    started = time.perf_counter()
    try:
        with av.open(str(tmp), "w", format="mp4") as container:
            stream = container.add_stream(
                "libx264",
                rate=fps,
                options={
                    "g": str(KEYFRAME_INTERVAL_S * fps),
                    # Fixed GOP: no scene-cut keyframes, so keyframes are exactly 2 s apart.
                    "sc_threshold": "0",
                    "preset": "veryfast",
                    "crf": "23",
                },
            )
            stream.width, stream.height = width, height
            stream.pix_fmt = "yuv420p"
            for index in range(drawer.num_frames):
                rgb = noise.apply(drawer.draw(index), index)
                # OpenCV's I420 conversion is much faster than libswscale's default.
                yuv = np.asarray(cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420), np.uint8)
                frame = av.VideoFrame.from_ndarray(yuv, format="yuv420p")
                frame.pts = index
                container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    params = _sidecar_params(scene, seconds, fps, size)
    _sidecar_path(path).write_text(json.dumps(params, indent=2) + "\n", "utf-8")
    logger.info(
        "rendered %s: %d frames in %.1f s -> %s",
        scene,
        drawer.num_frames,
        time.perf_counter() - started,
        path,
    )
    return path


def render_demo_clips(
    out_dir: Path,
    *,
    seconds: float = 20.0,
    fps: int = 10,
    size: tuple[int, int] = (960, 540),
    force: bool = False,
    scenes: Iterable[str] = DEMO_SCENES,
) -> dict[str, Path]:
    """Renders (or reuses) the demo clips, one MP4 per scene, into ``out_dir``.

    Args:
        out_dir: Directory for ``<scene>.mp4`` and ``<scene>.json`` files.
        seconds: Clip duration in seconds.
        fps: Frames per second.
        size: Frame ``(width, height)`` in pixels, both even.
        force: Re-render even when a clip with matching parameters exists.
        scenes: Subset of `DEMO_SCENES` to render.

    Returns:
        Scene name to MP4 path, in `DEMO_SCENES` order.
    """
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    for scene in scenes:
        path = out_dir / f"{scene}.mp4"
        if not force and _is_current(path, _sidecar_params(scene, seconds, fps, size)):
            logger.debug("reusing %s", path)
        else:
            render_clip(scene, path, seconds=seconds, fps=fps, size=size)
        paths[scene] = path
    return paths
