"""Camera cuts under a real RTSP server (GStreamer, 127.0.0.1) and mutated H.264 input."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from testkit import LOOPBACK_NETWORKS, loopback_policy

from citysight.config import CameraConfig, CameraProfile, StreamsService
from citysight.contracts import CameraState
from streams.reader import CameraReader, ReaderOptions
from streams.testing.h264 import write_clip
from streams.testing.infer import empty_infer_factory
from streams.testing.rtsp_server import RtspTestServer, gst_rtsp_available
from streams.worker import StreamWorker

pytestmark = pytest.mark.skipif(
    not gst_rtsp_available(), reason="needs /usr/bin/python3 with python3-gi and GstRtspServer"
)

NO_FRAME_TIMEOUT_S = 2.0
BACKOFF_MAX_S = 2.0
STEADY_CAMERAS = 8
ANALYTICS_FPS = 5.0


@pytest.fixture(scope="module")
def live_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """90 s, 160x120, 10 fps, a keyframe per second: long enough to outlast a test."""
    return write_clip(
        tmp_path_factory.mktemp("rtsp") / "live.mp4",
        width=160,
        height=120,
        fps=10,
        seconds=90,
        gop=10,
    )


@pytest.fixture
def servers(live_clip: Path) -> Iterator[tuple[RtspTestServer, RtspTestServer]]:
    """One server with the camera to cut, one with the steady cameras."""
    cut = RtspTestServer({"cut": live_clip}).start()
    steady = RtspTestServer({f"cam{i}": live_clip for i in range(STEADY_CAMERAS)}).start()
    yield cut, steady
    cut.stop()
    steady.stop()


def _cam(cid: str, url: str) -> CameraConfig:
    return CameraConfig(
        id=cid,
        url=url,
        latitude=0,
        longitude=0,
        detectors=["fire_smoke"],
        profile=CameraProfile(
            analytics_fps=ANALYTICS_FPS,
            input_width=96,
            input_height=64,
            no_frame_timeout_s=NO_FRAME_TIMEOUT_S,
        ),
    )


def _wait_state(w: StreamWorker, cid: str, state: CameraState, timeout_s: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if w.statuses()[cid].state == state:
            return time.monotonic() - t0
        time.sleep(0.05)
    raise AssertionError(f"{cid} not {state.value} within {timeout_s} s: {w.statuses()[cid]}")


def _frames_out(w: StreamWorker) -> dict[str, float]:
    return {cid: st.metrics["frames_out"] for cid, st in w.statuses().items()}


def _camera_cut(
    servers: tuple[RtspTestServer, RtspTestServer], redis_url: str, cut_s: float
) -> None:
    cut_srv, steady_srv = servers
    cams = [_cam("cut", cut_srv.url("cut"))]
    cams += [_cam(f"cam{i}", steady_srv.url(f"cam{i}")) for i in range(STEADY_CAMERAS)]
    opts = ReaderOptions(
        backoff_base_s=0.25, backoff_max_s=BACKOFF_MAX_S, io_timeout_s=2.0, max_restarts=100
    )
    before = set(threading.enumerate())
    cfg = StreamsService.model_validate(
        {"shards": 1, "max_batch": 8, "push_timeout_ms": 20, "queue_frames": 2,
         "allowed_networks": LOOPBACK_NETWORKS}
    )  # fmt: skip
    w = StreamWorker(cams, cfg, redis_url, empty_infer_factory, reader_options=opts)
    try:
        for c in cams:
            _wait_state(w, c.id, CameraState.RUNNING, 15)
        time.sleep(1.0)
        start = _frames_out(w)
        t_cut = time.monotonic()
        cut_srv.stop()
        took = _wait_state(w, "cut", CameraState.OFFLINE, NO_FRAME_TIMEOUT_S + 2 + 1)
        assert took <= NO_FRAME_TIMEOUT_S + 2, took
        time.sleep(max(0.0, cut_s - (time.monotonic() - t_cut)))
        during = time.monotonic() - t_cut
        end = _frames_out(w)
        assert w.statuses()["cut"].state in (CameraState.OFFLINE, CameraState.FAILED)
        cut_srv.start()
        back = _wait_state(w, "cut", CameraState.RUNNING, BACKOFF_MAX_S + 5)
        assert back <= BACKOFF_MAX_S + 5
        for i in range(STEADY_CAMERAS):
            rate = (end[f"cam{i}"] - start[f"cam{i}"]) / during
            assert rate >= 0.95 * ANALYTICS_FPS, (i, rate)
            assert w.statuses()[f"cam{i}"].state == CameraState.RUNNING
        assert w.statuses()["cut"].metrics["reconnects"] >= 1
    finally:
        w.stop()
    time.sleep(0.2)
    assert set(threading.enumerate()) - before == set()


def test_camera_cut_goes_offline_and_comes_back(
    servers: tuple[RtspTestServer, RtspTestServer], redis_url: str
) -> None:
    _camera_cut(servers, redis_url, cut_s=10.0)


@pytest.mark.slow
def test_camera_cut_30s(servers: tuple[RtspTestServer, RtspTestServer], redis_url: str) -> None:
    _camera_cut(servers, redis_url, cut_s=30.0)


def _mutated_h264(src_clip: Path, out: Path, packets: int, seed: int) -> int:
    """Write an Annex-B stream whose packets are randomly damaged; returns packets written."""
    import av

    raw = out.with_suffix(".src.h264")
    write_clip(raw, width=96, height=64, fps=25, seconds=packets / 25, gop=25)
    rng = np.random.default_rng(seed)
    n = 0
    with av.open(str(raw)) as c, out.open("wb") as f:
        for pkt in c.demux(video=0):
            data = bytearray(bytes(pkt))
            if not data:
                continue
            kind = rng.integers(0, 4)
            if kind == 0:  # flip random bytes
                for pos in rng.integers(0, len(data), max(1, len(data) // 20)):
                    data[pos] ^= int(rng.integers(1, 256))
            elif kind == 1:  # truncate
                data = data[: int(rng.integers(1, len(data) + 1))]
            elif kind == 2:  # garbage after a start code
                data = bytearray(b"\x00\x00\x00\x01") + bytearray(
                    rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
                )
            f.write(data)
            n += 1
    return n


def _mutation_run(tmp_path: Path, clips: dict[str, Path], packets: int) -> None:
    src = tmp_path / "mut.h264"
    n = _mutated_h264(clips["short"], src, packets, seed=1234)
    assert n >= packets * 0.99
    healthy_frames: list[int] = []
    cam = CameraConfig(
        id="mut",
        url=str(src),
        latitude=0,
        longitude=0,
        profile=CameraProfile(analytics_fps=60, input_width=64, input_height=64),
    )
    healthy = CameraConfig(
        id="ok",
        url=str(clips["short"]),
        latitude=0,
        longitude=0,
        profile=CameraProfile(analytics_fps=60, input_width=64, input_height=64, loop=True),
    )
    opts = ReaderOptions(pace_files=False, max_consecutive_errors=10_000)
    r = CameraReader(cam, lambda *a: None, None, opts)
    ok = CameraReader(healthy, lambda c, no, t, f: healthy_frames.append(no), None, opts)
    ok.start()
    r.start()
    deadline = time.monotonic() + 120
    while r.state not in (CameraState.STOPPED, CameraState.FAILED) and time.monotonic() < deadline:
        time.sleep(0.05)
    m = r.metrics()
    r.stop()
    ok.stop()
    assert r.state == CameraState.STOPPED
    assert m["errors"] > 0
    assert m["frames_in"] > 0
    assert len(healthy_frames) > 100  # the other camera kept decoding


def test_mutated_h264_packets_counted_not_fatal(tmp_path: Path, clips: dict[str, Path]) -> None:
    _mutation_run(tmp_path, clips, packets=1000)


@pytest.mark.chaos
def test_mutated_h264_packets_chaos(tmp_path: Path, clips: dict[str, Path]) -> None:
    _mutation_run(tmp_path, clips, packets=20_000)


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


@pytest.mark.slow
def test_flapping_camera_reconnects_each_time_without_memory_growth(
    servers: tuple[RtspTestServer, RtspTestServer],
) -> None:
    cut_srv, _ = servers
    frames: list[int] = []
    reader = CameraReader(
        _cam("flap", cut_srv.url("cut")),
        lambda c, no, t, f: frames.append(no),
        None,
        ReaderOptions(
            backoff_base_s=0.25,
            backoff_max_s=BACKOFF_MAX_S,
            io_timeout_s=2.0,
            max_restarts=100,
            network_policy=loopback_policy(),
        ),
    )
    reader.start()
    rss: list[float] = []
    try:
        for _cycle in range(4):  # up 6 s, down 3 s
            deadline = time.monotonic() + 15
            while reader.state != CameraState.RUNNING and time.monotonic() < deadline:
                time.sleep(0.05)
            assert reader.state == CameraState.RUNNING
            time.sleep(6)
            rss.append(_rss_mb())
            cut_srv.stop()
            time.sleep(3)
            cut_srv.start()
        deadline = time.monotonic() + BACKOFF_MAX_S + 5
        while reader.state != CameraState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert reader.state == CameraState.RUNNING
    finally:
        reader.stop()
    assert reader.metrics()["reconnects"] >= 4
    assert rss[-1] - rss[1] < 30, rss  # MB; the first cycle warms caches
