"""Small real H.264 clips for tests (PyAV + libx264, testsrc-like frames)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_clip(
    path: str | Path,
    *,
    width: int = 320,
    height: int = 240,
    fps: int = 25,
    seconds: float = 4.0,
    gop: int = 25,
    red_square: bool = False,
    faststart: bool = False,
) -> Path:
    """Encode a moving colour-bar clip to MP4 with a fixed GOP (a keyframe every ``gop``).

    Args:
        path: Output file (``.mp4``).
        width: Frame width.
        height: Frame height.
        fps: Frame rate.
        seconds: Duration.
        gop: Frames per GOP; scene-cut keyframes are disabled so the GOP is exact.
        red_square: Draw a moving red square (what ``red_blob_infer`` detects).
        faststart: Put the index (moov) first, as streaming-friendly files do.

    Returns:
        The path written.
    """
    path = Path(path)
    n = round(fps * seconds)
    bars = np.zeros((height, width, 3), np.uint8)
    colours = [
        (255, 255, 255),
        (0, 255, 255),
        (255, 255, 0),
        (0, 255, 0),
        (255, 0, 255),
        (0, 0, 255),
        (128, 128, 128),  # no pure red: red_blob_infer must see only the square
        (16, 16, 16),
    ]
    step = max(1, width // len(colours))
    for i, c in enumerate(colours):
        bars[:, i * step : (i + 1) * step] = c
    opts = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=opts) as out:
        s = out.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.options = {
            "g": str(gop),
            "keyint_min": str(gop),
            "sc_threshold": "0",
            "preset": "ultrafast",
            "bframes": "0",
        }
        for i in range(n):
            img = np.roll(bars, i * 2, axis=1)
            img[: height // 6, :] = (i * 7) % 255  # changing band
            if red_square:
                x = (i * 3) % max(1, width - 40)
                img[height // 2 : height // 2 + 32, x : x + 32] = (255, 0, 0)  # RGB red
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            for pkt in s.encode(frame):
                out.mux(pkt)
        for pkt in s.encode():
            out.mux(pkt)
    return path
