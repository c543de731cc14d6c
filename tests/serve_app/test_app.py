"""The whole Serve application through real Ray Serve: ingress + rules consumer.

One short test: deploy ``build_app`` on a free port, check health and a scoped REST call,
and open more WebSockets than Serve's default ``max_ongoing_requests`` (5) through the
Serve proxy, each receiving its department's alert.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from benchmarks.fanout.world import make_alert, publish_alerts, seed_principals, token_of
from citysight.services.redis_server import free_port

N_SOCKETS = 8


def test_build_app_serves_rest_and_websockets(ray_local: None, redis_url: str) -> None:
    """Health, a scoped list and 8 concurrent sockets through the Serve proxy."""
    from ray import serve

    from serve_app.app import build_app

    r = redis.Redis.from_url(redis_url)
    seed_principals(r)
    cfg: dict[str, Any] = {
        "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
        "services": {"http": {"max_connections": 64}, "streams": {"shards": 1}},
    }
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(
            build_app({"config": cfg, "redis_url": redis_url}), name="citysight", route_prefix="/"
        )
        base = f"http://127.0.0.1:{port}"
        h = httpx.get(base + "/health", timeout=10)
        assert h.status_code == 200
        assert h.json()["components"]["ray"]["state"] == "running"
        auth = {"Authorization": f"Bearer {token_of('fire')}"}
        assert httpx.get(base + "/api/alerts", headers=auth, timeout=10).json() == []
        assert httpx.get(base + "/api/alerts", timeout=10).status_code == 401

        async def refused() -> int:
            with pytest.raises(InvalidStatus) as info:
                async with connect(f"ws://127.0.0.1:{port}/ws?ticket=forged"):
                    pass
            return info.value.response.status_code

        assert asyncio.run(refused()) == 401

        async def run() -> list[list[dict[str, Any]]]:
            socks = [
                await connect(f"ws://127.0.0.1:{port}/ws", additional_headers=auth)
                for _ in range(N_SOCKETS)
            ]
            await asyncio.sleep(0.5)
            publish_alerts(r, [make_alert(1, "police"), make_alert(1, "fire")])
            out = []
            for s in socks:
                msg = {"type": "heartbeat"}
                while msg["type"] == "heartbeat":
                    msg = json.loads(await asyncio.wait_for(s.recv(), 10))
                out.append([msg])
                await s.close()
            return out

        t0 = time.monotonic()
        got = asyncio.run(run())
        assert time.monotonic() - t0 < 30
        assert [m[0]["alert"]["id"] for m in got] == ["al_fire_000001"] * N_SOCKETS
    finally:
        serve.delete("citysight")
        serve.shutdown()
        r.close()
