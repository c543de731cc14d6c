"""Evidence clips on the stream side: the packet ring's bounds, rebasing across passes, and a
real MP4 written by a real worker around a real clip request (real Redis, real H.264 from a
real RTSP server), read back; honest failures; retention."""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import av
import pytest
import redis
from testkit import LOOPBACK_NETWORKS

from citysight import keys
from citysight.clips import (
    ClipRecord,
    ClipState,
    LocalClipStore,
    original_name,
    read_record,
    redacted_name,
    sweep_expired,
    write_record,
)
from citysight.config import (
    CameraConfig,
    CameraProfile,
    CitysightConfig,
    ClipsConfig,
)
from citysight.contracts import Alert, AlertKind, Location, Severity
from serve_app.store.clips import request_clips
from streams.clips import CLOCK, ClipRecorder, PacketRing
from streams.packets import Packet, PacketTaps, StreamInfo
from streams.reader import CameraReader, ReaderOptions
from streams.testing.h264 import write_clip
from streams.testing.infer import empty_infer_factory
from streams.testing.rtsp_server import RtspTestServer, gst_rtsp_available
from streams.worker import StreamWorker

INFO = StreamInfo("h264", 320, 240, 25.0, (1, 12800))


def _pk(i: int, *, size: int = 1000, key_every: int = 25, t0: float = 1000.0) -> Packet:
    """Packet ``i`` of a 25 fps stream: a keyframe every ``key_every`` frames."""
    return Packet(b"x" * size, i * 512, i * 512, i % key_every == 0, t0 + i / 25)


# -- the ring's bounds --------------------------------------------------------------------

RING_CASES = [
    # (max_s, max_bytes, packets, size, key_every) -> expectations checked below
    (4.0, 10_000_000, 500, 1000, 25),  # seconds bound: ~4-5 s kept
    (60.0, 60_000, 500, 1000, 25),  # bytes bound: whole GOPs dropped, counted
    (60.0, 10_000, 200, 1000, 25),  # a GOP larger than the bound: dropped until a keyframe
]


@pytest.mark.parametrize(("max_s", "max_bytes", "n", "size", "key_every"), RING_CASES)
def test_ring_is_bounded_by_seconds_and_bytes(
    max_s: float, max_bytes: int, n: int, size: int, key_every: int
) -> None:
    ring = PacketRing(max_s, max_bytes)
    ring.opened(INFO)
    peak = 0
    for i in range(n):
        ring.append(_pk(i, size=size, key_every=key_every))
        peak = max(peak, ring.nbytes)
        assert ring.nbytes <= max_bytes
    st = ring.stats()
    held = [p for g in ring._gops for p in g.packets]
    assert st["ring_packets"] == len(held)
    assert st["ring_bytes"] == sum(len(p[4]) + 120 for p in held)  # the accounting is exact
    assert st["ring_packets"] + st["ring_evicted"] + st["ring_dropped"] == n
    if held:
        assert held[0][3], "the ring starts at a keyframe"
    gop_s = key_every / 25
    if max_bytes >= n * (size + 120):  # seconds bound only
        assert st["ring_dropped"] == 0
        assert max_s <= st["ring_seconds"] <= max_s + gop_s
    else:
        assert st["ring_dropped"] > 0
    if max_bytes < key_every * (size + 120):  # no whole GOP fits: each is dropped
        assert st["ring_seconds"] < gop_s


def test_ring_skips_until_a_keyframe_and_rebases_each_pass_forward() -> None:
    ring = PacketRing(600, 1 << 24)
    ring.opened(INFO)
    ring.append(Packet(b"p", 0, 0, False, 1.0))  # no keyframe yet: undecodable alone
    assert ring.stats()["ring_skipped"] == 1 and ring.npackets == 0
    for i in range(50):
        ring.append(_pk(i))
    # A looped file's rewind (or a reconnect): timestamps restart, at another time base.
    ring.opened(StreamInfo("h264", 320, 240, 25.0, (1, 90000)))
    for i in range(50):
        p = _pk(i, t0=1002.0)
        ring.append(Packet(p.data, i * 3600, i * 3600, p.keyframe, p.wall_s))
    dts = [p[1] for g in ring._gops for p in g.packets]
    assert len(dts) == 100
    assert all(b > a for a, b in itertools.pairwise(dts)), "monotonic across passes"
    assert dts[50] - dts[49] == CLOCK // 25  # the second pass continues one frame later
    # New stream parameters: one MP4 stream cannot change size, so the ring starts over.
    ring.opened(StreamInfo("h264", 640, 480, 25.0, (1, 90000)))
    assert ring.npackets == 0 and ring.resets == 1


@pytest.mark.parametrize(
    "packets", [3000, pytest.param(100_000, marks=pytest.mark.soak, id="soak-100k")]
)
def test_ring_memory_stays_within_its_bound_over_a_long_looped_run(
    clips: dict[str, Path], packets: int
) -> None:
    """Soak (bounded in packets: 3 000 here, 100 000 in the soak tier): a looped real H.264
    file read unpaced; the ring's bytes never pass the bound, whole GOPs go, passes rebase."""
    cfg = ClipsConfig(ring_max_s=1.5, ring_max_bytes=64 * 1024, pre_s=0.5, post_s=0.5)
    rec = ClipRecorder(cfg, None, list, store=LocalClipStore("/nonexistent"))  # type: ignore[arg-type]
    taps = PacketTaps()
    taps.add(rec)
    peak = [0]

    class Probe:
        def opened(self, camera_id: str, info: StreamInfo) -> None:
            pass

        def packet(self, camera_id: str, packet: Packet) -> None:
            peak[0] = max(peak[0], int(rec.ring_stats(camera_id).get("ring_bytes", 0)))

        def closed(self, camera_id: str) -> None:
            pass

    taps.add(Probe())
    cam = CameraConfig(
        id="soak",
        url=str(clips["gop10"]),
        latitude=0,
        longitude=0,
        profile=CameraProfile(input_width=96, input_height=64, analytics_fps=1, loop=True),
    )
    r = CameraReader(cam, lambda *a: None, None, ReaderOptions(pace_files=False), taps)
    r.start()
    try:
        deadline = time.monotonic() + 60 + packets / 100
        while taps.packets < packets and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        r.stop()
    st = rec.ring_stats("soak")
    assert taps.packets >= packets and taps.errors == 0
    assert 0 < peak[0] <= 64 * 1024
    assert st["ring_passes"] >= packets // 60  # 50 packets a pass
    assert st["ring_evicted"] + st["ring_dropped"] > packets - 200


# -- a real clip from a real camera --------------------------------------------------------

needs_rtsp = pytest.mark.skipif(
    not gst_rtsp_available(), reason="needs /usr/bin/python3 with python3-gi and GstRtspServer"
)

PRE_S, POST_S, GOP_S = 2.0, 2.0, 1.0


@pytest.fixture(scope="module")
def camera_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 s, 320x240, 10 fps, a keyframe a second."""
    return write_clip(
        tmp_path_factory.mktemp("rtsp-clip") / "cam.mp4",
        width=320, height=240, fps=10, seconds=60, gop=10,
    )  # fmt: skip


def _cfg(store: Path, **clips: float) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "services": {
                "streams": {
                    "shards": 1,
                    "allowed_networks": LOOPBACK_NETWORKS,
                    "clips": {
                        "pre_s": PRE_S, "post_s": POST_S, "ring_max_s": 8,
                        "storage": {"path": str(store)}, **clips,
                    },
                }
            }
        }
    )  # fmt: skip


def _alert(aid: str, camera_id: str, t: float, kind: AlertKind = AlertKind.FIRE) -> Alert:
    return Alert(
        id=aid, kind=kind, severity=Severity.HIGH, camera_id=camera_id,
        location=Location(lat=1.0, lon=2.0), department="fire",
        started_at=datetime.fromtimestamp(t, UTC), detected_at=t,
    )  # fmt: skip


def _wait_record(r: redis.Redis, aid: str, timeout_s: float = 30) -> ClipRecord:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rec = read_record(r, aid)
        if rec is not None and rec.state != ClipState.PENDING:
            return rec
        time.sleep(0.1)
    raise AssertionError(f"clip of {aid} still {read_record(r, aid)}")


@pytest.fixture
def worker_and_server(
    camera_clip: Path, redis_url: str, tmp_path: Path
) -> Iterator[tuple[StreamWorker, CitysightConfig, redis.Redis]]:
    before = set(threading.enumerate())
    srv = RtspTestServer({"cam": camera_clip}).start()
    cfg = _cfg(tmp_path / "clips")
    cam = CameraConfig(
        id="cam-clip", url=srv.url("cam"), latitude=0, longitude=0,
        profile=CameraProfile(input_width=96, input_height=64, analytics_fps=2),
    )  # fmt: skip
    w = StreamWorker([cam], cfg.services.streams, redis_url, empty_infer_factory)
    r = redis.Redis.from_url(redis_url)
    try:
        yield w, cfg, r
    finally:
        w.stop()
        srv.stop()
        r.close()
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(threading.enumerate()) - before == set()


@needs_rtsp
def test_a_clip_is_written_around_a_real_request_and_reads_back(
    worker_and_server: tuple[StreamWorker, CitysightConfig, redis.Redis], tmp_path: Path
) -> None:
    w, cfg, r = worker_and_server
    assert w.clips is not None
    # Wait for the pre-roll to be in the ring, then raise the alert "now".
    deadline = time.monotonic() + 30
    while w.clips.ring_stats("cam-clip").get("ring_seconds", 0) < PRE_S + GOP_S:
        assert time.monotonic() < deadline, w.clips.ring_stats("cam-clip")
        time.sleep(0.1)
    t = time.time()
    alerts = [
        _alert("al_clip_1", "cam-clip", t),
        _alert("al_sys", "cam-clip", t, AlertKind.CAMERA_OFFLINE),
    ]
    assert request_clips(r, cfg, alerts) == 1  # system alerts get no clip
    assert read_record(r, "al_clip_1").state == ClipState.PENDING  # type: ignore[union-attr]
    assert read_record(r, "al_sys") is None
    rec = _wait_record(r, "al_clip_1")
    assert rec.state == ClipState.READY, rec
    path = tmp_path / "clips" / original_name("al_clip_1")
    data = path.read_bytes()
    assert hashlib.sha256(data).hexdigest() == rec.sha256 and len(data) == rec.size
    with av.open(str(path)) as back:
        st = back.streams.video[0]
        assert (st.codec_context.name, st.codec_context.width) == ("h264", 320)
        frames = list(back.decode(st))
    assert len(frames) == rec.frames
    pts = [int(f.pts or 0) for f in frames]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)
    duration = frames[-1].time - frames[0].time + 0.1
    # pre + post, starting at the keyframe before the pre-roll: at most a GOP (and the
    # RTSP arrival jitter) more.
    assert PRE_S + POST_S - 0.5 <= duration <= PRE_S + POST_S + GOP_S + 0.5, duration
    assert abs(rec.duration_s - duration) < 0.25
    assert rec.start_at <= t - PRE_S + 0.2
    # Ring memory and the writer's work are in the worker's stats and camera health.
    stats = w.stats()
    assert stats["clips"]["written"] == 1 and stats["clips"]["ring_bytes"] > 0
    assert w.statuses()["cam-clip"].metrics["ring_bytes"] > 0
    # A request answered is acknowledged and deleted: nothing left pending.
    assert r.xlen(keys.clip_requests_stream("cam-clip")) == 0
    # A retried rules output does not turn the ready clip back into a pending one.
    request_clips(r, cfg, alerts[:1])
    assert read_record(r, "al_clip_1").state == ClipState.READY  # type: ignore[union-attr]


@needs_rtsp
def test_no_video_around_the_alert_is_reported_unavailable_with_a_reason(
    worker_and_server: tuple[StreamWorker, CitysightConfig, redis.Redis],
) -> None:
    _, cfg, r = worker_and_server
    # An alert an hour old: the ring moved past it long ago.
    request_clips(r, cfg, [_alert("al_old", "cam-clip", time.time() - 3600)])
    rec = _wait_record(r, "al_old")
    assert rec.state == ClipState.UNAVAILABLE and "no video" in rec.reason


def test_a_camera_no_worker_reads_is_reported_unavailable_after_the_grace(
    redis_url: str, tmp_path: Path
) -> None:
    r = redis.Redis.from_url(redis_url)
    cfg = _cfg(tmp_path, write_grace_s=5)
    t = time.time() - (PRE_S + POST_S + 6)
    request_clips(r, cfg, [_alert("al_orphan", "cam-gone", t)])
    rec = read_record(r, "al_orphan")
    assert rec is not None and rec.state == ClipState.PENDING
    shown = rec.to_api()
    assert shown["state"] == "unavailable" and "no stream worker" in shown["reason"]
    r.close()


def test_a_recorder_without_a_ring_for_the_camera_says_so(redis_url: str, tmp_path: Path) -> None:
    r = redis.Redis.from_url(redis_url)
    rec = ClipRecorder(ClipsConfig(storage={"path": str(tmp_path)}), r, list)  # type: ignore[arg-type]
    out = rec.write(ClipRecord(alert_id="al_x", camera_id="nope", event_at=time.time()))
    assert out.state == ClipState.UNAVAILABLE and "not being read" in out.reason
    assert read_record(r, "al_x").state == ClipState.UNAVAILABLE  # type: ignore[union-attr]
    # No store configured: the recorder reports failed, never silently nothing.
    bad = ClipRecorder(ClipsConfig(), r, list)
    assert bad.stats()["state"] == "failed" and "path is empty" in bad.stats()["reason"]
    out = bad.write(ClipRecord(alert_id="al_y", camera_id="nope", event_at=time.time()))
    assert out.state == ClipState.FAILED and "store unavailable" in out.reason
    r.close()


def test_retention_deletes_clips_and_their_blurred_copies(redis_url: str, tmp_path: Path) -> None:
    r = redis.Redis.from_url(redis_url)
    store = LocalClipStore(tmp_path)
    src = tmp_path / "src.mp4"
    src.write_bytes(b"\x00" * 100)
    now = time.time()
    for aid, expires in (("al_old", now - 1), ("al_new", now + 3600)):
        store.put_file(original_name(aid), src)
        store.put_file(redacted_name(aid, "f" * 24), src)
        write_record(r, ClipRecord(alert_id=aid, camera_id="c", event_at=now, state=ClipState.READY,
                                   object=original_name(aid), expires_at=expires))  # fmt: skip
        r.zadd(keys.CLIPS_EXPIRY, {aid: expires})
    assert sweep_expired(r, store, now=now) == 1
    assert not store.exists(original_name("al_old"))
    assert not store.exists(redacted_name("al_old", "f" * 24))
    assert not (tmp_path / "al_old").exists()
    assert read_record(r, "al_old") is None
    assert store.exists(original_name("al_new")) and store.exists(redacted_name("al_new", "f" * 24))
    assert sweep_expired(r, store, now=now) == 0  # idempotent
    r.close()


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b", "", "a b", "al_1/../../etc"])
def test_the_local_store_refuses_names_outside_it(tmp_path: Path, name: str) -> None:
    store = LocalClipStore(tmp_path)
    with pytest.raises(ValueError, match="invalid clip object name"):
        store.exists(name)


def test_the_s3_store_over_http(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The S3 store against an S3-compatible server over HTTP on 127.0.0.1 (moto's server:
    an emulator, MinIO is not installable from the registries): put, ranges, delete."""
    pytest.importorskip("boto3")
    server_mod = pytest.importorskip("moto.server")
    import boto3

    from citysight.clips import ClipStoreError, S3ClipStore, open_store
    from citysight.config import ClipStorage

    srv = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=0)
    srv.start()
    try:
        host, port = srv.get_host_and_port()
        url = f"http://{host}:{port}"
        monkeypatch.setenv("CLIP_AK", "testing")
        monkeypatch.setenv("CLIP_SK", "testing")
        cfg = ClipStorage(type="s3", endpoint_url=url, bucket="clips", access_key_env="CLIP_AK",
                          secret_key_env="CLIP_SK")  # fmt: skip
        boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="testing",
                     aws_secret_access_key="testing").create_bucket(Bucket="clips")  # fmt: skip
        store = open_store(cfg)
        assert isinstance(store, S3ClipStore)
        src = tmp_path / "c.mp4"
        src.write_bytes(bytes(range(256)) * 40)
        store.put_file(original_name("al_s3"), src)
        store.put_file(redacted_name("al_s3", "a" * 24), src)
        assert store.size(original_name("al_s3")) == 10240 and store.exists(original_name("al_s3"))
        assert store.open_range(original_name("al_s3"), 10, 19) == bytes(range(10, 20))
        assert store.get("al_s3/none.mp4") is None and store.size("al_s3/none.mp4") is None
        with pytest.raises(KeyError):
            store.open_range("al_s3/none.mp4", 0, 1)
        assert store.delete_prefix("al_s3/") == 2
        assert not store.exists(original_name("al_s3"))
        with pytest.raises(ValueError, match="invalid clip object name"):
            store.exists("../x")
        bad = S3ClipStore(cfg.model_copy(update={"bucket": "no-such-bucket"}))
        with pytest.raises(ClipStoreError):
            bad.put_file(original_name("al_s3"), src)
    finally:
        srv.stop()
