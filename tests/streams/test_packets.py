"""Packet taps: every compressed packet of a real H.264 file reaches the taps, in order,
with what a muxer needs, and a failing tap never stops analytics."""

from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import av

from citysight.config import CameraConfig, CameraProfile
from citysight.contracts import CameraState
from streams.packets import Packet, PacketTaps, StreamInfo
from streams.reader import CameraReader, ReaderOptions


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []
        self.infos: list[StreamInfo] = []
        self.packets: list[Packet] = []

    def opened(self, camera_id: str, info: StreamInfo) -> None:
        self.events.append(("opened", camera_id))
        self.infos.append(info)

    def packet(self, camera_id: str, packet: Packet) -> None:
        self.packets.append(packet)

    def closed(self, camera_id: str) -> None:
        self.events.append(("closed", camera_id))


class Broken:
    def opened(self, camera_id: str, info: StreamInfo) -> None:
        raise RuntimeError("boom")

    def packet(self, camera_id: str, packet: Packet) -> None:
        raise RuntimeError("boom")

    def closed(self, camera_id: str) -> None:
        raise RuntimeError("boom")


def _read(path: Path, taps: PacketTaps | None, loop: bool = False) -> CameraReader:
    cam = CameraConfig(
        id="cam-1",
        url=str(path),
        latitude=0,
        longitude=0,
        profile=CameraProfile(input_width=160, input_height=96, analytics_fps=60, loop=loop),
    )
    frames: list[int] = []
    r = CameraReader(cam, lambda *a: frames.append(1), None, ReaderOptions(pace_files=False), taps)
    r.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and r.state not in (CameraState.STOPPED, CameraState.FAILED):
        time.sleep(0.02)
    r.stop()
    return r


def test_every_packet_reaches_the_tap_and_remuxes_without_reencoding(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    taps = PacketTaps()
    rec = Recorder()
    taps.add(rec)
    taps.add(Broken())  # a failing tap is skipped, never fatal
    r = _read(clips["gop10"], taps)
    assert r.metrics()["frames_out"] == 50  # analytics unaffected by the broken tap
    assert taps.errors >= 50
    assert rec.events == [("opened", "cam-1"), ("closed", "cam-1")]
    info = rec.infos[0]
    assert (info.codec, info.width, info.height) == ("h264", 320, 240)
    assert len(rec.packets) == 50
    assert [p.keyframe for p in rec.packets].count(True) == 5
    assert rec.packets[0].keyframe
    # Annex B: start codes, parameter sets (SPS, NAL type 7) in-band before each keyframe.
    assert all(p.data.startswith(b"\x00\x00\x00\x01") for p in rec.packets)
    assert all((b"\x00\x00\x00\x01\x67" in p.data) == p.keyframe for p in rec.packets)

    # What a tap received is enough to write a playable MP4 without re-encoding.
    out = tmp_path / "remux.mp4"
    with av.open(str(out), "w", options={"movflags": "frag_keyframe+empty_moov+delay_moov"}) as dst:
        st = dst.add_mux_stream(info.codec, width=info.width, height=info.height)
        st.time_base = Fraction(*info.time_base)
        for p in rec.packets:
            pk = av.Packet(p.data)
            pk.pts, pk.dts, pk.is_keyframe = p.pts, p.dts, p.keyframe
            pk.time_base = st.time_base
            pk.stream = st
            dst.mux(pk)
    with av.open(str(out)) as back:
        assert sum(1 for _ in back.decode(video=0)) == 50
        assert back.streams.video[0].codec_context.width == 320


def test_a_looped_file_reopens_the_taps_each_pass(clips: dict[str, Path]) -> None:
    taps = PacketTaps()
    rec = Recorder()
    taps.add(rec)
    cam = CameraConfig(
        id="cam-1",
        url=str(clips["gop10"]),
        latitude=0,
        longitude=0,
        profile=CameraProfile(input_width=160, input_height=96, analytics_fps=60, loop=True),
    )
    r = CameraReader(cam, lambda *a: None, None, ReaderOptions(pace_files=False), taps)
    r.start()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and len(rec.packets) < 120:
        time.sleep(0.02)
    r.stop()
    assert len(rec.packets) >= 120
    opened = [e for e in rec.events if e[0] == "opened"]
    assert len(opened) >= 3  # a pass per loop: timestamps restart after each
    assert rec.events[-1] == ("closed", "cam-1")


def test_a_tap_added_while_a_camera_runs_is_told_it_is_open() -> None:
    taps = PacketTaps()
    info = StreamInfo("h264", 320, 240, 25.0, (1, 12800))
    taps.opened("cam-1", info)
    rec = Recorder()
    taps.add(rec)
    assert rec.events == [("opened", "cam-1")] and rec.infos == [info]
    taps.closed("cam-1")
    taps.remove(rec)
    late = Recorder()
    taps.add(late)
    assert late.events == []


def test_no_tap_no_copy(clips: dict[str, Path]) -> None:
    taps = PacketTaps()
    _read(clips["short"], taps)
    assert taps.packets == 0
