"""The ``nvdec`` decoder backend: a clear error without PyNvVideoCodec/GPU, real decode on one."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from citysight.config import CameraConfig, CameraProfile
from citysight.contracts import CameraState, CameraStatus
from streams.decoders import DecoderUnavailable, get_backend
from streams.reader import CameraReader, ReaderOptions

HAVE_NVC = importlib.util.find_spec("PyNvVideoCodec") is not None


def _cam(url: Path) -> CameraConfig:
    return CameraConfig(
        id="gpu-1",
        url=str(url),
        latitude=0,
        longitude=0,
        profile=CameraProfile(analytics_fps=25, input_width=96, input_height=96),
    )


@pytest.mark.skipif(HAVE_NVC, reason="PyNvVideoCodec is installed here")
@pytest.mark.parametrize("name", ["nvdec", "nvdec-cuda"])
def test_missing_pynvvideocodec_is_a_clear_error(name: str) -> None:
    with pytest.raises(DecoderUnavailable, match="PyNvVideoCodec"):
        get_backend(name)


@pytest.mark.skipif(HAVE_NVC, reason="PyNvVideoCodec is installed here")
def test_reader_with_nvdec_fails_with_the_reason(clips: dict[str, Path]) -> None:
    statuses: list[CameraStatus] = []
    r = CameraReader(
        _cam(clips["short"]), lambda *a: None, statuses.append, ReaderOptions(decoder="nvdec")
    )
    r.start()
    deadline = time.monotonic() + 10
    while r.state != CameraState.FAILED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert r.state == CameraState.FAILED
    assert "PyNvVideoCodec" in r.reason and "pip install PyNvVideoCodec" in r.reason
    r.stop()
    assert [s.state for s in statuses][-2:] == [CameraState.FAILED, CameraState.STOPPED]
    assert r.metrics()["frames_out"] == 0


@pytest.mark.gpu
def test_nvdec_decodes_a_clip_on_the_gpu(clips: dict[str, Path]) -> None:
    pytest.importorskip("PyNvVideoCodec")
    frames: list[np.ndarray] = []
    r = CameraReader(
        _cam(clips["short"]),
        lambda cam, no, t, bgr: frames.append(bgr),
        None,
        ReaderOptions(decoder="nvdec", pace_files=False),
    )
    r.start()
    deadline = time.monotonic() + 30
    while r.state not in (CameraState.STOPPED, CameraState.FAILED) and time.monotonic() < deadline:
        time.sleep(0.05)
    r.stop()
    assert r.metrics()["frames_in"] == 100, r.reason
    assert len(frames) == 100
    assert frames[0].shape == (96, 96, 3) and frames[0].dtype == np.uint8
