"""WebSocket feed: handshake auth, scope and filters, resume, slow-client isolation, limits.

The production FastAPI app runs under uvicorn on 127.0.0.1 against a real Redis; clients
are real WebSocket clients (``websockets``) or a raw socket that never reads.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from benchmarks.fanout.world import (
    ServerThread,
    make_alert,
    publish_alerts,
    seed_principals,
    token_of,
    world_config,
)
from citysight.app.services.redis_server import free_port
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore

DEPTS = ("fire", "enforcement", "police")


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"}


@pytest.fixture
def served(redis_url: str) -> Iterator[dict[str, Any]]:
    """citysight's app under uvicorn (small queues, fast heartbeats)."""
    r = redis.Redis.from_url(redis_url)
    seed_principals(r)
    port = free_port()
    app = create_api(world_config(), redis_url, ws_queue_size=64, ws_heartbeat_s=0.3)
    srv = ServerThread(app, port).start()
    yield {
        "url": f"ws://127.0.0.1:{port}/ws",
        "http": f"http://127.0.0.1:{port}",
        "r": r,
        "app": app,
    }
    srv.stop()
    r.close()


async def _collect(ws: Any, n: int, timeout_s: float) -> list[dict[str, Any]]:
    """Up to ``n`` non-heartbeat messages, or what arrived before the timeout."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(out) < n:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            msg = json.loads(await asyncio.wait_for(ws.recv(), left))
        except (TimeoutError, ConnectionClosed):
            break
        if msg["type"] != "heartbeat":
            out.append(msg)
    return out


@pytest.mark.parametrize(
    ("headers", "query", "status"),
    [
        ({}, "", 401),
        ({"Authorization": "Bearer nope"}, "", 401),
        ({"Authorization": "Basic abc"}, "", 401),
        ({}, "?ticket=forged", 401),
        (_auth("noscope"), "", 403),
        (_auth("fire"), "?last_id=../../x", 400),
        (_auth("fire"), "?kinds=dragon", 400),
        # Non-finite or impossible numbers never pass as a filter that matches nothing.
        (_auth("fire"), "?bbox=nan,0,1,1", 400),
        (_auth("fire"), "?bbox=0,0,inf,1", 400),
        (_auth("fire"), "?bbox=-200,0,1,1", 400),
        (_auth("fire"), "?bbox=0,-95,1,1", 400),
    ],
)
def test_refused_handshakes_get_no_frames(
    served: dict[str, Any], headers: dict[str, str], query: str, status: int
) -> None:
    """The upgrade is refused with an HTTP status; no WebSocket frame is ever delivered."""

    async def run() -> None:
        publish_alerts(served["r"], [make_alert(1, "fire")])
        with pytest.raises(InvalidStatus) as info:
            async with connect(served["url"] + query, additional_headers=headers):
                pytest.fail("handshake should have been refused")
        assert info.value.response.status_code == status
        assert b"detail" in info.value.response.body

    asyncio.run(run())


def test_ticket_is_one_time(served: dict[str, Any]) -> None:
    """A ticket from POST /api/ws-tickets opens one socket; its reuse is refused."""
    import httpx

    t = httpx.post(served["http"] + "/api/ws-tickets", headers=_auth("fire")).json()["ticket"]

    async def run() -> None:
        async with connect(f"{served['url']}?ticket={t}") as ws:
            publish_alerts(served["r"], [make_alert(7, "fire"), make_alert(7, "police")])
            got = await _collect(ws, 1, 5)
            assert got[0]["alert"]["department"] == "fire"
        with pytest.raises(InvalidStatus) as info:
            async with connect(f"{served['url']}?ticket={t}"):
                pass
        assert info.value.response.status_code == 401

    asyncio.run(run())


def test_scope_and_filters_narrow_only(served: dict[str, Any]) -> None:
    """Each role gets its department only; filters narrow; a subscribe cannot widen."""
    subs = {
        "admin": ("admin", ""),
        "fire": ("fire", ""),
        "police": ("police", ""),
        "police_kinds_fire": ("police", "?kinds=fire"),
        "fire_high": ("fire", "?min_severity=high"),
        "fire_bbox_elsewhere": ("fire", "?bbox=0,0,1,1"),
        "admin_camera": ("admin", "?cameras=cam-enforcement"),
        "enf_subscribe_fire": ("enforcement", ""),
    }
    n_per = 10

    async def run() -> dict[str, list[dict[str, Any]]]:
        socks = {}
        for name, (role, q) in subs.items():
            socks[name] = await connect(
                served["url"] + q, additional_headers=_auth(role), close_timeout=2
            )
        await socks["enf_subscribe_fire"].send(json.dumps({"type": "subscribe", "kinds": ["fire"]}))
        ack = await _collect(socks["enf_subscribe_fire"], 1, 5)
        assert ack[0]["type"] == "subscribed" and ack[0]["department"] == "enforcement"
        alerts = [make_alert(i, d) for i in range(n_per) for d in DEPTS]
        publish_alerts(served["r"], alerts)
        got = {"admin": await _collect(socks["admin"], len(alerts), 10)}
        # The others are read concurrently for a further second (they expect fewer).
        others = [n for n in subs if n != "admin"]
        lists = await asyncio.gather(*(_collect(socks[n], len(alerts), 1.0) for n in others))
        got.update(zip(others, lists, strict=True))
        for s in socks.values():
            await s.close()
        return got

    got = asyncio.run(run())
    depts = {k: [m["alert"]["department"] for m in v] for k, v in got.items()}
    assert len(got["admin"]) == 3 * n_per
    assert depts["fire"] == ["fire"] * n_per
    assert depts["police"] == ["police"] * n_per
    assert depts["police_kinds_fire"] == []
    assert depts["enf_subscribe_fire"] == []
    assert depts["fire_bbox_elsewhere"] == []
    assert depts["admin_camera"] == ["enforcement"] * n_per
    assert [m["alert"]["severity"] for m in got["fire_high"]] == ["high"] * (n_per // 2)
    ids = [m["id"] for m in got["admin"]]
    assert ids == sorted(ids, key=lambda x: tuple(map(int, x.split("-"))))


def test_alert_events_and_heartbeats(served: dict[str, Any]) -> None:
    """Lifecycle events arrive as alert_event with event + alert; heartbeats keep flowing."""
    store = AlertStore(served["r"], world_config())

    async def run() -> list[dict[str, Any]]:
        async with connect(served["url"], additional_headers=_auth("fire")) as ws:
            store.save_new([make_alert(1, "fire"), make_alert(1, "police")])
            store.transition("al_fire_000001", "acknowledged", actor="fire-user")
            store.transition("al_police_000001", "acknowledged", actor="police-user")
            out = await _collect(ws, 2, 5)
            beats = []
            t0 = time.monotonic()
            while not beats and time.monotonic() - t0 < 5:
                m = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if m["type"] == "heartbeat":
                    beats.append(m)
            return out + beats

    msgs = asyncio.run(run())
    assert [m["type"] for m in msgs] == ["alert", "alert_event", "heartbeat"]
    ev = msgs[1]
    assert ev["event"]["to_state"] == "acknowledged" and ev["alert"]["state"] == "acknowledged"
    assert ev["alert"]["id"] == "al_fire_000001"


@pytest.mark.parametrize("offline_s", [0.0, pytest.param(30.0, marks=pytest.mark.slow)])
def test_resume_replays_the_whole_gap_in_order(served: dict[str, Any], offline_s: float) -> None:
    """Alerts written while disconnected are all replayed, in order, scope-filtered."""
    r = served["r"]
    n = 300

    async def run() -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
        async with connect(served["url"], additional_headers=_auth("fire")) as ws:
            publish_alerts(r, [make_alert(0, "fire")])
            first = await _collect(ws, 1, 5)
        last_id = first[0]["id"]
        # While offline: n alerts per department (more than the 64-slot live queue).
        publish_alerts(r, [make_alert(i, d) for i in range(1, n + 1) for d in DEPTS])
        await asyncio.sleep(offline_s)
        async with connect(
            f"{served['url']}?last_id={last_id}", additional_headers=_auth("fire")
        ) as ws:
            gap = await _collect(ws, n, 15)
            publish_alerts(r, [make_alert(n + 1, "police"), make_alert(n + 1, "fire")])
            live = await _collect(ws, 1, 5)
        return last_id, gap, live

    last_id, gap, live = asyncio.run(run())
    assert [m["alert"]["id"] for m in gap] == [f"al_fire_{i:06d}" for i in range(1, n + 1)]
    assert all(m["id"] > last_id for m in gap)
    assert [m["alert"]["id"] for m in live] == [f"al_fire_{n + 1:06d}"]


def _raw_subscriber(port: int, role: str) -> socket.socket:
    """A WebSocket handshake on a raw socket with a tiny receive buffer that is never read."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect(("127.0.0.1", port))
    s.sendall(
        (
            "GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token_of(role)}\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


def test_slow_client_is_closed_and_isolated(served: dict[str, Any]) -> None:
    """A subscriber that stops reading is closed; the others still get every message."""
    port = int(served["http"].rsplit(":", 1)[1])
    n = 1500
    slow = _raw_subscriber(port, "admin")

    async def run() -> list[dict[str, Any]]:
        async with connect(served["url"], additional_headers=_auth("admin")) as ws:
            publish_alerts(served["r"], [make_alert(i, "fire", pad=2000) for i in range(n)])
            return await _collect(ws, n, 30)

    got = asyncio.run(run())
    slow.close()
    assert len(got) == n
    metrics = served["app"].state.ctx.metrics
    assert metrics.ws_closed_slow >= 1


def test_inbound_size_limit_and_bad_messages(served: dict[str, Any]) -> None:
    """Malformed messages get an error reply; oversized ones close the socket (1009)."""

    async def run() -> tuple[list[dict[str, Any]], int | None]:
        async with connect(served["url"], additional_headers=_auth("fire")) as ws:
            await ws.send("not json")
            await ws.send(json.dumps({"type": "ping"}))
            await ws.send(json.dumps({"type": "subscribe", "min_severity": "apocalyptic"}))
            replies = await _collect(ws, 3, 5)
            await ws.send("x" * 10_000)
            with pytest.raises(ConnectionClosed):
                await asyncio.wait_for(_collect(ws, 100, 5), 6)
                await ws.recv()
            return replies, ws.close_code

    replies, code = asyncio.run(run())
    assert [m["type"] for m in replies] == ["error", "pong", "error"]
    assert code == 1009


def test_resume_while_live_traffic_continues(served: dict[str, Any]) -> None:
    """Replay and live entries meet without gaps or duplicates while writes keep coming."""
    r = served["r"]
    ids = publish_alerts(r, [make_alert(0, "fire")])
    publish_alerts(r, [make_alert(i, "fire") for i in range(1, 1001)])

    async def produce() -> None:
        for k in range(20):
            base = 1001 + 25 * k
            publish_alerts(r, [make_alert(base + j, "fire") for j in range(25)])
            await asyncio.sleep(0.005)

    async def run() -> list[dict[str, Any]]:
        async with connect(
            f"{served['url']}?last_id={ids[0]}", additional_headers=_auth("fire")
        ) as ws:
            prod = asyncio.create_task(produce())
            got = await _collect(ws, 1500, 20)
            await prod
            return got

    got = asyncio.run(run())
    assert [m["alert"]["id"] for m in got] == [f"al_fire_{i:06d}" for i in range(1, 1501)]


def test_escalation_event_reaches_owner_and_supervisor_only(served: dict[str, Any]) -> None:
    """Issue 11: the escalation's alert_event goes to the owner (fire) and the supervisor
    (duty); later events of the alert reach both; police and enforcement get nothing."""
    from citysight.config import CitysightConfig

    r = served["r"]
    seed_principals(r, {"duty": {"department": "duty", "scopes": ["alerts:read"]}})
    cfg = CitysightConfig.model_validate(
        {
            "departments": [
                {"id": "fire", "supervisor": "duty", "ack_sla_s": 60},
                {"id": "enforcement"},
                {"id": "police"},
                {"id": "duty"},
            ]
        }
    )
    store = AlertStore(r, cfg)
    now = time.time()
    late = make_alert(1, "fire", t=now - 600).model_copy(update={"raised_at": now - 600})
    roles = ("fire", "duty", "police", "enforcement", "admin")

    async def run() -> dict[str, list[dict[str, Any]]]:
        socks = {
            role: await connect(served["url"], additional_headers=_auth(role), close_timeout=2)
            for role in roles
        }
        store.save_new([late])
        assert [a.id for a in store.escalate_overdue(now=now)] == [late.id]
        store.transition(late.id, "acknowledged", actor="duty-user")
        # A sentinel per department: each socket reads up to its own (stream order).
        publish_alerts(r, [make_alert(9, d) for d in ("police", "enforcement")])
        got: dict[str, list[dict[str, Any]]] = {}
        for role in roles:
            want = {"fire": 3, "duty": 2, "admin": 5}.get(role, 1)
            got[role] = await _collect(socks[role], want, 5)
            await socks[role].close()
        return got

    got = asyncio.run(run())

    def kinds(role: str) -> list[tuple[str, str]]:
        return [
            (m["type"], (m.get("event") or {}).get("actor", ""))
            for m in got[role]
            if m["alert"]["id"] == late.id
        ]

    assert kinds("fire") == [("alert", ""), ("alert_event", "sla"), ("alert_event", "duty-user")]
    assert kinds("duty") == [("alert_event", "sla"), ("alert_event", "duty-user")]
    assert kinds("police") == [] and kinds("enforcement") == []
    assert [m["alert"]["id"] for m in got["police"]] == ["al_police_000009"]
    esc = next(m for m in got["duty"] if m["event"]["actor"] == "sla")
    assert esc["alert"]["department"] == "fire" and esc["alert"]["escalated_to"] == ["duty"]
