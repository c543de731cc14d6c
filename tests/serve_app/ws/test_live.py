"""Live view end to end: a live H.264 camera, a real stream worker, real Redis, the real API
under uvicorn and real WebSocket clients that decode what they receive."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from livekit import LiveWorld, live_token
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from benchmarks.video.live import LiveViewer, percentile
from citysight import keys


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live_token(role)}"}


@pytest.fixture
def world(redis_url: str) -> Iterator[LiveWorld]:
    w = LiveWorld(redis_url, live={"max_viewers_per_camera": 3, "viewer_queue_fragments": 40})
    yield w
    w.close()


async def _watch(
    url: str, headers: dict[str, str], seconds: float
) -> tuple[list[str], LiveViewer, int]:
    viewer = LiveViewer(warmup_s=1.0)
    texts: list[str] = []
    n = 0
    deadline = time.monotonic() + seconds
    async with connect(url, additional_headers=headers, max_size=None) as ws:
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(ws.recv(), 15)
            if isinstance(msg, str):
                texts.append(msg)
            else:
                viewer.feed(msg)
                n += 1
    viewer.close()
    return texts, viewer, n


def _wait(pred: Any, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.05)


def test_a_viewer_gets_playable_fragmented_mp4_within_two_seconds_and_is_audited(
    world: LiveWorld,
) -> None:
    texts, viewer, n = asyncio.run(_watch(world.ws_url, _auth("viewer"), 5.0))
    init = json.loads(texts[0])
    assert init["type"] == "init" and init["width"] == 320
    assert init["mime"].startswith('video/mp4; codecs="avc1.')
    assert not viewer.errors
    assert viewer.frames >= 25 and n >= 25  # decodable frames, not just bytes
    # Glass to glass: the clock burnt in by the camera, read back from decoded frames.
    assert len(viewer.delays_ms) >= 10
    assert percentile(viewer.delays_ms, 0.5) <= 2000, viewer.delays_ms

    # One audit record before the first byte, one with the bytes at the end.
    def records() -> list[dict[bytes, bytes]]:
        return [f for _, f in world.r.xrange(keys.AUDIT_STREAM)]

    _wait(lambda: any(r.get(b"action") == b"live.end" for r in records()))
    start = next(r for r in records() if r.get(b"action") == b"live.start")
    end = next(r for r in records() if r.get(b"action") == b"live.end")
    assert start[b"actor"] == end[b"actor"] == b"viewer-user"
    assert start[b"target"] == b"clock"
    detail = json.loads(end[b"reason"])
    assert detail["bytes"] > 10_000 and detail["ended_at"] >= detail["started_at"]
    # The worker stops publishing once nobody watches (the interest key expires).
    assert world.worker is not None and world.worker.live is not None


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 401),
        ({"Authorization": "Bearer nope"}, "", 401),
        ({}, "?ticket=forged", 400),
        (_auth("noscope"), "", 403),
        (_auth("reader"), "", 403),  # alerts:read without video:live
        (_auth("foreign"), "", 404),  # a camera outside the department: like a missing one
    ],
)
def test_refused_viewers_get_no_bytes(
    world: LiveWorld, headers: dict[str, str], query: str, status: int
) -> None:
    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(world.ws_url + query, additional_headers=headers):
                pytest.fail("handshake should have been refused")
        assert info.value.response.status_code == status
        assert b"video/mp4" not in info.value.response.body

    asyncio.run(run())


def test_unknown_camera_and_ticket_subprotocol(world: LiveWorld) -> None:
    async def run() -> None:
        with pytest.raises(InvalidStatus) as info:
            async with connect(
                world.ws_url.replace("clock", "nope"), additional_headers=_auth("admin")
            ):
                pass
        assert info.value.response.status_code == 404
        t = httpx.post(world.http + "/api/ws-tickets", headers=_auth("viewer")).json()["ticket"]
        protos = [Subprotocol("citysight-v1"), Subprotocol(f"ticket.{t}")]
        async with connect(world.ws_url, subprotocols=protos) as ws:
            assert ws.subprotocol == "citysight-v1"
            assert json.loads(await asyncio.wait_for(ws.recv(), 15))["type"] == "init"

    asyncio.run(run())


def test_cameras_and_map_config_carry_the_live_url(world: LiveWorld) -> None:
    cams = httpx.get(world.http + "/api/cameras", headers=_auth("viewer")).json()
    assert [c["live_url"] for c in cams] == ["/ws/live/clock"]
    mp = httpx.get(world.http + "/api/config/map", headers=_auth("viewer")).json()
    assert [c["live_url"] for c in mp["cameras"]] == ["/ws/live/clock"]


def test_the_per_camera_cap_refuses_the_next_viewer(world: LiveWorld) -> None:
    async def run() -> None:
        async with (
            connect(world.ws_url, additional_headers=_auth("viewer")) as a,
            connect(world.ws_url, additional_headers=_auth("viewer")) as b,
            connect(world.ws_url, additional_headers=_auth("admin")) as c,
        ):
            for ws in (a, b, c):
                assert json.loads(await asyncio.wait_for(ws.recv(), 15))["type"] == "init"
            with pytest.raises(InvalidStatus) as info:
                async with connect(world.ws_url, additional_headers=_auth("viewer")):
                    pass
            assert info.value.response.status_code == 429
        # Slots come back when viewers leave (their sessions end after the close).
        deadline = time.monotonic() + 15
        while world.app.state.ctx.live.viewers and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert world.r.zcard(keys.live_viewers_key("clock")) == 0
        async with connect(world.ws_url, additional_headers=_auth("viewer")) as d:
            assert json.loads(await asyncio.wait_for(d.recv(), 15))["type"] == "init"

    asyncio.run(run())
    assert world.app.state.ctx.metrics.live["refused_camera_cap"] == 1


@pytest.fixture
def noisy(redis_url: str) -> Iterator[LiveWorld]:
    # A high bit rate fills the never-reading socket's kernel buffers within seconds.
    w = LiveWorld(redis_url, live={"viewer_queue_fragments": 40}, noise=True)
    yield w
    w.close()


def test_a_viewer_that_never_reads_is_dropped_and_analytics_go_on(noisy: LiveWorld) -> None:
    """A raw socket that completes the handshake and then never reads: its queue fills, it
    is closed, and the worker's analysis keeps going."""
    world = noisy
    _wait(lambda: world.analysed() > 0)
    sock = socket.create_connection(("127.0.0.1", world.port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        b"GET /ws/live/clock HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\nAuthorization: Bearer "
        + live_token("viewer").encode()
        + b"\r\n\r\n"
    )
    metrics = world.app.state.ctx.metrics
    try:
        # A reading viewer alongside keeps getting video while the other is dropped.
        async def reader() -> int:
            got = 0
            async with connect(
                world.ws_url, additional_headers=_auth("admin"), max_size=None
            ) as ws:
                deadline = time.monotonic() + 60
                while metrics.live["dropped_slow"] < 1 and time.monotonic() < deadline:
                    msg = await asyncio.wait_for(ws.recv(), 15)
                    got += isinstance(msg, bytes)
            return got

        before = world.analysed()
        got = asyncio.run(reader())
        assert metrics.live["dropped_slow"] >= 1
        assert got > 0
        _wait(lambda: world.analysed() > before + 5)  # analysis never waited for the viewer
        assert world.worker is not None and world.worker.live is not None
        assert world.worker.live.dropped == 0  # the worker side never waited either
    finally:
        sock.close()


def test_a_camera_read_by_no_worker_closes_with_no_video(redis_url: str) -> None:
    w = LiveWorld(redis_url, live={"start_timeout_s": 1}, worker=False)
    try:

        async def run() -> None:
            async with connect(w.ws_url, additional_headers=_auth("viewer")) as ws:
                with pytest.raises(ConnectionClosed) as info:
                    await asyncio.wait_for(ws.recv(), 15)
            assert info.value.rcvd is not None and info.value.rcvd.code == 4504

        asyncio.run(run())
    finally:
        w.close()
