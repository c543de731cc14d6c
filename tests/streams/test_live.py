"""Live publisher (worker side of live view): a real H.264 file read by the real reader,
packets published to real Redis only while someone watches, from a keyframe, with
timestamps that stay monotonic across passes; a full queue drops instead of blocking."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
from testkit import loopback_policy

from citysight import keys
from citysight.config import CameraConfig, CameraProfile, LiveService
from streams.live import NVDEC_UNAVAILABLE, LivePublisher
from streams.packets import Packet, PacketTaps, StreamInfo
from streams.reader import CameraReader, ReaderOptions
from streams.testing.h264 import write_clip
from streams.testing.rtsp_server import RtspTestServer, gst_rtsp_available


@pytest.fixture
def r(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def _wait(pred: Callable[[], bool], timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


def _reader(path: Path, taps: PacketTaps) -> CameraReader:
    cam = CameraConfig(
        id="cam-1",
        url=str(path),
        latitude=0,
        longitude=0,
        profile=CameraProfile(input_width=160, input_height=96, analytics_fps=5, loop=True),
    )
    return CameraReader(cam, lambda *a: None, None, ReaderOptions(pace_files=True), taps)


def test_packets_are_published_only_while_watched_from_a_keyframe_and_monotonic(
    r: redis.Redis, clips: dict[str, Path]
) -> None:
    pub = LivePublisher(r, LiveService(interest_ttl_s=2), poll_s=0.05).start()
    taps = PacketTaps()
    taps.add(pub)
    reader = _reader(clips["gop10"], taps)  # 2 s a pass: several passes below
    reader.start()
    key = keys.live_packets_key("cam-1")
    try:
        _wait(lambda: taps.packets > 30)
        assert r.xlen(key) == 0  # nobody watches: nothing leaves the worker
        r.set(keys.live_interest_key("cam-1"), "1", ex=30)
        _wait(lambda: r.xlen(key) > 120)  # more than two passes of 50 packets
        entries = r.xrange(key)
        first = entries[0][1]
        assert first[b"k"] == b"1" and b"i" in first  # a viewer can start at once
        assert first[b"v"].startswith(b"\x00\x00\x00\x01")
        dts = [int(f[b"d"]) for _, f in entries]
        assert all(b > a for a, b in itertools.pairwise(dts)), "dts must not restart"
        assert all(int(f[b"p"]) >= int(f[b"d"]) for _, f in entries)
        # Nobody watches any more: publishing stops once the interest is gone.
        r.delete(keys.live_interest_key("cam-1"))
        _wait(lambda: "cam-1" not in pub.stats()["watched"])
        n = r.xlen(key)
        seen = taps.packets
        _wait(lambda: taps.packets > seen + 20)
        assert r.xlen(key) == n
    finally:
        reader.stop()
        pub.stop()
    assert pub.errors == 0 and pub.dropped == 0


def test_a_full_queue_drops_and_never_blocks_the_decode_thread(r: redis.Redis) -> None:
    # The publisher thread is not started: nothing drains the queue (Redis "stalled").
    pub = LivePublisher(r, LiveService(publish_queue_packets=10))
    info = StreamInfo("h264", 320, 240, 25.0, (1, 12800))
    pub.opened("cam-1", info)
    pub._cams["cam-1"].want = True
    t0 = time.perf_counter()
    for i in range(200):
        pub.packet(
            "cam-1",
            Packet(b"\x00\x00\x00\x01\x65" + bytes(100), i * 512, i * 512, i % 25 == 0, 0.0),
        )
    assert pub.dropped > 0
    assert len(pub._cams["cam-1"].queue) <= 10
    assert time.perf_counter() - t0 < 5  # generous: a blocking call would hang instead


@pytest.mark.parametrize(
    ("unavailable", "codec", "expected"),
    [
        (NVDEC_UNAVAILABLE, None, "NVDEC"),  # no StreamInfo at all from GPU decode
        ("", "hevc", "codec hevc"),  # browsers' MSE plays H.264 only
    ],
)
def test_a_watched_camera_without_playable_packets_says_why(
    r: redis.Redis, unavailable: str, codec: str | None, expected: str
) -> None:
    pub = LivePublisher(r, LiveService(), lambda: ["cam-1"], unavailable=unavailable, poll_s=0.05)
    if codec is not None:
        pub.opened("cam-1", StreamInfo(codec, 320, 240, 25.0, (1, 90000)))
    r.set(keys.live_interest_key("cam-1"), "1", ex=30)
    pub.start()
    try:
        _wait(lambda: r.xlen(keys.live_packets_key("cam-1")) > 0)
    finally:
        pub.stop()
    (_, fields), *_ = r.xrange(keys.live_packets_key("cam-1"))
    assert expected in fields[b"x"].decode()


needs_rtsp = pytest.mark.skipif(
    not gst_rtsp_available(), reason="needs /usr/bin/python3 with python3-gi and GstRtspServer"
)


@needs_rtsp
def test_a_watched_camera_with_a_substream_is_served_from_it(
    r: redis.Redis, clips: dict[str, Path], tmp_path: Path
) -> None:
    """The analysed stream is 320x240; live view reads the 160x120 sub-stream from a real
    RTSP server, only while watched, with the reader's URL policy."""
    small = write_clip(tmp_path / "sub.mp4", width=160, height=120, fps=10, seconds=30, gop=10)
    with RtspTestServer({"sub": small}) as rtsp:
        cam = CameraConfig(
            id="cam-1",
            url=str(clips["gop10"]),
            substream_url=rtsp.url("sub"),
            latitude=0,
            longitude=0,
            profile=CameraProfile(input_width=160, input_height=96, analytics_fps=5, loop=True),
        )
        opts = ReaderOptions(network_policy=loopback_policy())
        pub = LivePublisher(
            r,
            LiveService(),
            lambda: ["cam-1"],
            poll_s=0.05,
            camera_of=lambda c: cam,
            reader_options=opts,
        ).start()
        taps = PacketTaps()
        taps.add(pub)
        reader = CameraReader(cam, lambda *a: None, None, ReaderOptions(pace_files=True), taps)
        reader.start()
        key = keys.live_packets_key("cam-1")
        try:
            _wait(lambda: taps.packets > 20)
            assert pub.stats()["substreams"] == [] and r.xlen(key) == 0  # nobody watches
            r.set(keys.live_interest_key("cam-1"), "1", ex=30)
            _wait(lambda: r.xlen(key) > 20)
            infos = [f[b"i"] for _, f in r.xrange(key) if b"i" in f]
            assert infos and all(b'"width": 160' in i for i in infos)  # the sub-stream only
            assert pub.stats()["substreams"] == ["cam-1"]
            r.delete(keys.live_interest_key("cam-1"))
            _wait(lambda: pub.stats()["substreams"] == [])
        finally:
            reader.stop()
            pub.stop()


def test_a_substream_outside_the_allow_list_is_refused_and_said(r: redis.Redis) -> None:
    cam = CameraConfig(
        id="cam-1",
        url="rtsp://10.1.2.3/main",
        substream_url="rtsp://127.0.0.1:8554/sub",  # loopback: not in the default allow-list
        latitude=0,
        longitude=0,
    )
    pub = LivePublisher(r, LiveService(), lambda: ["cam-1"], poll_s=0.05, camera_of=lambda c: cam)
    r.set(keys.live_interest_key("cam-1"), "1", ex=30)
    pub.start()
    try:
        _wait(lambda: r.xlen(keys.live_packets_key("cam-1")) > 0)
    finally:
        pub.stop()
    (_, fields), *_ = r.xrange(keys.live_packets_key("cam-1"))
    assert "sub-stream refused" in fields[b"x"].decode()
