"""Fixtures of the streams tests: small real H.264 clips made once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.testing.h264 import write_clip


@pytest.fixture(scope="session")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``short``: 320x240 25 fps 4 s GOP 25; ``red``: same with a red square;
    ``gop10``: 2 s with a keyframe every 10 frames."""
    d = tmp_path_factory.mktemp("clips")
    return {
        "short": write_clip(d / "short.mp4", seconds=4.0),
        "red": write_clip(d / "red.mp4", seconds=4.0, red_square=True),
        "gop10": write_clip(d / "gop10.mp4", seconds=2.0, gop=10),
        "faststart": write_clip(d / "faststart.mp4", seconds=4.0, faststart=True),
    }
