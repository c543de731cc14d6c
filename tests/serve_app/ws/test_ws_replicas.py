"""Fan-out across ingress replicas: two app instances share only Redis.

Subscribers on different replicas receive the same scoped stream, in the same order, and a
dispatch action taken on one replica reaches subscribers of the other.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import redis
from websockets.asyncio.client import connect

from benchmarks.fanout.world import (
    ServerThread,
    make_alert,
    seed_principals,
    token_of,
    world_config,
)
from citysight.app.services.redis_server import free_port
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore


async def _read(url: str, role: str, want: int, timeout_s: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    headers = {"Authorization": f"Bearer {token_of(role)}"}
    async with connect(url, additional_headers=headers) as ws:
        deadline = time.monotonic() + timeout_s
        while len(out) < want and time.monotonic() < deadline:
            try:
                msg = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
            except TimeoutError:
                break
            if msg["type"] in ("alert", "alert_event"):
                out.append(msg)
    return out


def test_two_replicas_deliver_the_same_scoped_stream(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    seed_principals(r)
    cfg = world_config()
    ports = [free_port(), free_port()]
    servers = [ServerThread(create_api(cfg, redis_url), p).start() for p in ports]
    urls = [f"ws://127.0.0.1:{p}/ws" for p in ports]
    fire = [make_alert(i, "fire", t=time.time()) for i in range(20)]
    police = [make_alert(i, "police", t=time.time()) for i in range(20)]
    try:

        async def scenario() -> list[list[dict[str, Any]]]:
            readers = [
                asyncio.create_task(_read(urls[0], "fire", 21, 30)),
                asyncio.create_task(_read(urls[1], "fire", 21, 30)),
                asyncio.create_task(_read(urls[1], "admin", 41, 30)),
            ]
            await asyncio.sleep(1.0)  # all three sockets are open
            store = AlertStore(r, cfg)
            for f, p in zip(fire, police, strict=True):
                store.save_new([f, p])
            # A dispatch action on replica 0 reaches subscribers of replica 1.
            res = httpx.post(
                f"http://127.0.0.1:{ports[0]}/api/alerts/{fire[0].id}/transitions",
                headers={"Authorization": f"Bearer {token_of('fire')}"},
                json={"to": "acknowledged", "note": "on our way"},
                timeout=10,
            )
            assert res.status_code == 200, res.text
            return list(await asyncio.gather(*readers))

        fire_a, fire_b, admin_b = asyncio.run(scenario())
    finally:
        for s in servers:
            s.stop()
        r.close()

    def ids(msgs: list[dict[str, Any]]) -> list[tuple[str, str]]:
        return [(m["type"], m["alert"]["id"]) for m in msgs]

    expected_fire = [("alert", a.id) for a in fire] + [("alert_event", fire[0].id)]
    assert ids(fire_a) == expected_fire
    assert ids(fire_b) == expected_fire
    assert [m["id"] for m in fire_a] == [m["id"] for m in fire_b]  # same feed ids, same order
    assert {m["alert"]["department"] for m in fire_a + fire_b} == {"fire"}
    assert len(admin_b) == 41
    assert {m["alert"]["id"] for m in admin_b} == {a.id for a in fire + police}
