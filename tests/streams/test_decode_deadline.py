"""Per-frame decode deadline: a frame decoded too slowly is counted ``late`` and skipped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import streams.reader as reader_mod
from citysight.config import CameraConfig, CameraProfile
from citysight.contracts import CameraState
from streams.decoders import PyAVBackend, PyAVSession
from streams.mux import FrameMux
from streams.reader import CameraReader, ReaderOptions


class SlowSession:
    """A PyAV session whose every ``slow_every``-th packet decodes ``delay_s`` slower."""

    def __init__(self, inner: PyAVSession, slow_every: int, delay_s: float) -> None:
        self.inner = inner
        self.width, self.height, self.fps = inner.width, inner.height, inner.fps
        self.slow_every = slow_every
        self.delay_s = delay_s
        self.n = 0

    def units(self) -> Iterator[Any]:
        return self.inner.units()

    def decode(self, unit: Any) -> list[Any]:
        self.n += 1
        if self.slow_every and self.n % self.slow_every == 0:
            time.sleep(self.delay_s)
        return self.inner.decode(unit)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class SlowBackend:
    name = "slow"

    def __init__(self, slow_every: int, delay_s: float) -> None:
        self.slow_every, self.delay_s = slow_every, delay_s

    def open(self, url: str, **kw: Any) -> SlowSession:
        return SlowSession(PyAVBackend().open(url, **kw), self.slow_every, self.delay_s)


@pytest.mark.parametrize(
    ("deadline_ms", "slow_every", "late", "out"),
    [
        (500.0, 0, 0, 100),  # default-sized deadline, normal decode: nothing late
        (40.0, 10, 10, 90),  # every 10th packet takes 80 ms: exactly those are skipped
        (1e-6, 0, 100, 0),  # an impossible deadline: every frame late, none delivered
    ],
)
def test_late_frames_counted_and_never_reach_the_mux(
    clips: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    deadline_ms: float,
    slow_every: int,
    late: int,
    out: int,
) -> None:
    monkeypatch.setattr(reader_mod, "get_backend", lambda name: SlowBackend(slow_every, 0.08))
    cam = CameraConfig(
        id="cam-1",
        url=str(clips["short"]),
        latitude=0,
        longitude=0,
        profile=CameraProfile(analytics_fps=25, input_width=96, input_height=96),
    )
    # Nobody consumes the mux: pushes must still never block the decoder.
    mux = FrameMux(queue_frames=2)
    mux.add_camera("cam-1")
    r = CameraReader(
        cam, mux.push, None, ReaderOptions(pace_files=False, decode_deadline_ms=deadline_ms)
    )
    r.start()
    deadline = time.monotonic() + 15
    while r.state not in (CameraState.STOPPED, CameraState.FAILED) and time.monotonic() < deadline:
        time.sleep(0.02)
    r.stop()
    m = r.metrics()
    assert (m["frames_in"], m["late"], m["frames_out"]) == (100, late, out)
    assert mux.stats()["cam-1"]["pushed"] == out
    assert m["decode_s"] > 0


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [({"decode_deadline_ms": 0}, ValueError), ({"decoder": "nope"}, ValueError), ({}, None)],
)
def test_reader_options_validation(kwargs: dict[str, Any], exc: type[Exception] | None) -> None:
    if exc is None:
        assert ReaderOptions(**kwargs).decode_deadline_ms == 500.0
    else:
        with pytest.raises(exc):
            ReaderOptions(**kwargs)
