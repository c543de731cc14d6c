"""CameraReader on real H.264 files: sampling, keyframes, loop, pacing, failures."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from citysight.config import CameraConfig, CameraProfile
from citysight.contracts import CameraState, CameraStatus
from streams.reader import CameraReader, ReaderOptions


def _cam(url: str | Path, **profile: object) -> CameraConfig:
    return CameraConfig(
        id="cam-1",
        url=str(url),
        latitude=0,
        longitude=0,
        profile=CameraProfile(input_width=160, input_height=96, **profile),  # type: ignore[arg-type]
    )


class Sink:
    """Collects frames and statuses from a reader."""

    def __init__(self) -> None:
        self.frames: list[tuple[int, float, tuple[int, ...]]] = []
        self.statuses: list[CameraStatus] = []

    def on_frame(self, cam: str, no: int, t: float, bgr: np.ndarray) -> None:
        self.frames.append((no, t, bgr.shape))

    def on_status(self, st: CameraStatus) -> None:
        self.statuses.append(st)

    def states(self) -> list[CameraState]:
        return [s.state for s in self.statuses]


def _run(
    cam: CameraConfig,
    opts: ReaderOptions,
    until: Callable[[CameraReader, Sink], bool],
    timeout_s: float = 20.0,
) -> tuple[CameraReader, Sink]:
    sink = Sink()
    r = CameraReader(cam, sink.on_frame, sink.on_status, opts)
    r.start()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not until(r, sink):
        time.sleep(0.02)
    r.stop()
    assert not r.is_alive()
    return r, sink


def _ended(r: CameraReader, _: Sink) -> bool:
    return r.state in (CameraState.STOPPED, CameraState.FAILED)


FAST = ReaderOptions(pace_files=False)


@pytest.mark.parametrize(("fps", "expected"), [(5.0, 20), (12.5, 50), (60.0, 100)])
def test_fps_sampling_by_pts(clips: dict[str, Path], fps: float, expected: int) -> None:
    r, sink = _run(_cam(clips["short"], analytics_fps=fps), FAST, _ended)
    m = r.metrics()
    assert m["frames_in"] == 100
    assert abs(len(sink.frames) - expected) <= 1
    assert m["frames_out"] == len(sink.frames)
    assert {s for _, _, s in sink.frames} == {(96, 160, 3)}
    assert [n for n, _, _ in sink.frames] == list(range(1, len(sink.frames) + 1))
    assert sink.states()[:2] == [CameraState.STARTING, CameraState.RUNNING]
    assert "end of file" in sink.statuses[-1].reason


def test_keyframe_only_decodes_only_keyframes(clips: dict[str, Path]) -> None:
    # 50 frames with a keyframe every 10 -> 5 decoded frames.
    r, sink = _run(_cam(clips["gop10"], analytics_fps=60, keyframe_only=True), FAST, _ended)
    assert r.metrics()["frames_in"] == 5
    assert len(sink.frames) == 5


def test_loop_replays_file_with_increasing_frame_numbers(clips: dict[str, Path]) -> None:
    cam = _cam(clips["gop10"], analytics_fps=60, loop=True)
    r, sink = _run(cam, FAST, lambda _r, s: len(s.frames) >= 130)
    assert len(sink.frames) >= 130  # the file holds 50
    nos = [n for n, _, _ in sink.frames]
    assert nos == sorted(nos) and len(set(nos)) == len(nos)
    assert r.metrics()["reconnects"] == 0


def test_file_paced_at_native_rate(clips: dict[str, Path]) -> None:
    sink = Sink()
    r = CameraReader(_cam(clips["short"], analytics_fps=25), sink.on_frame, sink.on_status)
    r.start()
    time.sleep(1.0)
    n = len(sink.frames)
    r.stop()
    assert 15 <= n <= 35, n  # ~25 frames in one second, not the whole file at once


def test_missing_file_fails_with_reason(tmp_path: Path) -> None:
    _, sink = _run(_cam(tmp_path / "nope.mp4"), FAST, _ended)
    assert sink.states() == [CameraState.STARTING, CameraState.FAILED, CameraState.STOPPED]
    assert "file not found" in sink.statuses[1].reason


def test_max_pixels_guard_refuses_before_decoding(clips: dict[str, Path]) -> None:
    r, sink = _run(
        _cam(clips["short"]), ReaderOptions(pace_files=False, max_pixels=100 * 100), _ended
    )
    assert CameraState.FAILED in sink.states()
    assert "320x240" in sink.statuses[1].reason
    assert r.metrics()["frames_in"] == 0


def test_forbidden_scheme_fails(tmp_path: Path) -> None:
    cam = CameraConfig(id="c", url="concat:/a.mp4|/b.mp4", latitude=0, longitude=0)
    _, sink = _run(cam, FAST, _ended)
    assert sink.statuses[1].state == CameraState.FAILED
    assert "not allowed" in sink.statuses[1].reason


@pytest.mark.parametrize(
    ("clip", "expect_state", "expect_frames"),
    [
        ("short", CameraState.FAILED, False),  # index at the end: cut off, nothing decodable
        ("faststart", CameraState.STOPPED, True),  # index first: the first half plays
    ],
)
def test_truncated_file_no_crash(
    clips: dict[str, Path],
    tmp_path: Path,
    clip: str,
    expect_state: CameraState,
    expect_frames: bool,
) -> None:
    data = clips[clip].read_bytes()
    p = tmp_path / "trunc.mp4"
    p.write_bytes(data[: len(data) // 2])
    r, sink = _run(_cam(p, analytics_fps=60), FAST, _ended)
    final = [st for st in sink.statuses if st.reason != "stopped"][-1]
    assert final.state == expect_state, sink.statuses
    assert (len(sink.frames) > 0) == expect_frames
    if expect_state == CameraState.FAILED:
        assert "cannot read file" in final.reason
        assert r.metrics()["errors"] >= 1


def test_corrupt_payload_counts_errors_and_keeps_decoding(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    data = bytearray(clips["short"].read_bytes())
    rng = np.random.default_rng(7)
    # Keep the moov box intact (written last by PyAV's mp4 muxer? find it) and damage mdat.
    mdat = data.find(b"mdat")
    moov = data.find(b"moov")
    lo, hi = mdat + 8, (moov if moov > mdat else len(data)) - 1
    for pos in rng.integers(lo, hi, 400):
        data[pos] = int(rng.integers(0, 256))
    p = tmp_path / "corrupt.mp4"
    p.write_bytes(bytes(data))
    r, _ = _run(_cam(p, analytics_fps=60), FAST, _ended)
    m = r.metrics()
    assert m["frames_out"] > 0
    assert m["errors"] > 0 or m["frames_in"] < 100


def test_on_frame_exception_is_counted_not_fatal(clips: dict[str, Path]) -> None:
    calls = []

    def bad(cam: str, no: int, t: float, f: np.ndarray) -> None:
        calls.append(no)
        raise RuntimeError("sink broke")

    r = CameraReader(_cam(clips["gop10"], analytics_fps=60), bad, None, FAST)
    r.start()
    deadline = time.monotonic() + 10
    while r.state != CameraState.STOPPED and time.monotonic() < deadline:
        time.sleep(0.02)
    r.stop()
    assert len(calls) == 50
    assert r.metrics()["errors"] == 50


def test_unreachable_rtsp_backs_off_then_fails_after_restart_budget() -> None:
    from citysight.app.services.redis_server import free_port

    cam = CameraConfig(
        id="cam-x",
        url=f"rtsp://127.0.0.1:{free_port()}/none",
        latitude=0,
        longitude=0,
        profile=CameraProfile(no_frame_timeout_s=0.3),
    )
    opts = ReaderOptions(
        max_restarts=3,
        restart_window_s=60,
        backoff_base_s=0.2,
        backoff_max_s=1.0,
        io_timeout_s=1.0,
    )
    r, sink = _run(cam, opts, lambda r, _s: r.state == CameraState.FAILED, timeout_s=15)
    states = sink.states()
    assert CameraState.OFFLINE in states
    assert states[-2] == CameraState.FAILED, states
    assert "3 restarts" in sink.statuses[-2].reason
    assert r.metrics()["reconnects"] == 3


def test_stop_leaves_no_threads(clips: dict[str, Path]) -> None:
    before = {t.name for t in threading.enumerate()}
    readers = [
        CameraReader(_cam(clips["short"], loop=True), lambda *a: None, None) for _ in range(4)
    ]
    for r in readers:
        r.start()
    time.sleep(0.3)
    for r in readers:
        r.stop()
    assert {t.name for t in threading.enumerate()} - before == set()


def test_copying_clip_is_not_needed(clips: dict[str, Path], tmp_path: Path) -> None:
    # Paths with spaces open as files (no protocol parsing of local paths).
    p = tmp_path / "with space.mp4"
    shutil.copy(clips["gop10"], p)
    _, sink = _run(_cam(p, analytics_fps=60), FAST, _ended)
    assert len(sink.frames) == 50


def test_source_errors_never_carry_the_camera_password(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """PyAV's error texts quote the URL it opened, password included: the reader's status
    reasons (shown by GET /api/cameras) and its log lines carry it scrubbed."""
    from citysight.app.services.redis_server import free_port

    monkeypatch.setenv("CAM_X_PASSWORD", "s3cret-pw")
    cam = CameraConfig(
        id="cam-x",
        url=f"rtsp://admin@127.0.0.1:{free_port()}/none",
        url_password_env="CAM_X_PASSWORD",
        latitude=0,
        longitude=0,
        profile=CameraProfile(no_frame_timeout_s=0.3),
    )
    opts = ReaderOptions(
        max_restarts=1, restart_window_s=60, backoff_base_s=0.1, backoff_max_s=0.2,
        io_timeout_s=1.0,
    )  # fmt: skip
    with caplog.at_level("DEBUG"):
        _, sink = _run(cam, opts, lambda r, _s: r.state == CameraState.FAILED, timeout_s=15)
    reasons = [s.reason for s in sink.statuses]
    assert any("Connection refused" in r or "rtsp://" in r for r in reasons), reasons
    assert not [r for r in reasons if "s3cret-pw" in r], reasons
    assert "s3cret-pw" not in caplog.text
