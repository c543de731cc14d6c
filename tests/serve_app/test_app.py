"""The whole Serve application through real Ray Serve: ingress + rules consumer.

One short test: deploy ``build_app`` on a free port, check health and a scoped REST call,
and open more WebSockets than Serve's default ``max_ongoing_requests`` (5) through the
Serve proxy, each receiving its department's alert.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from benchmarks.fanout.world import make_alert, publish_alerts, seed_principals, token_of
from citysight.app.services.redis_server import free_port

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
                forged = [Subprotocol("citysight-v1"), Subprotocol("ticket.forged")]
                async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=forged):
                    pass
            return info.value.response.status_code

        assert asyncio.run(refused()) == 401
        ticket = httpx.post(base + "/api/ws-tickets", headers=auth, timeout=10).json()["ticket"]

        async def by_ticket() -> str | None:
            # The browser's path through the Serve proxy: the ticket as a subprotocol, and
            # the server must choose citysight-v1 back or a browser drops the socket.
            protos = [Subprotocol("citysight-v1"), Subprotocol(f"ticket.{ticket}")]
            async with connect(f"ws://127.0.0.1:{port}/ws", subprotocols=protos) as ws:
                return ws.subprotocol

        assert asyncio.run(by_ticket()) == "citysight-v1"

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


def test_cluster_app_from_a_config_file(
    ray_local: None, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What serveConfigV2 deploys: ``{"config_path": ...}`` only, a password-protected Redis
    (password from ``services.redis.password_env``) and two rules consumers, each owning its
    own shards under its own consumer name."""
    import yaml
    from ray import serve

    from citysight.app.services.redis_server import EmbeddedRedis
    from citysight.contracts import FrameResult, ObjectClass
    from citysight.keys import RULES_GROUP as GROUP
    from citysight.keys import detections_stream
    from serve_app.app import build_app

    srv = EmbeddedRedis(free_port(), tmp_path / "redis", appendonly=False, password=False).start()
    try:
        redis.Redis.from_url(srv.url).config_set("requirepass", "s3 cr3t/@")
        monkeypatch.setenv("CS_TEST_REDIS_PASSWORD", "s3 cr3t/@")
        cams = [f"c{i}" for i in range(4)]
        cfg = {
            "cameras": [
                {"id": c, "url": f"rtsp://h/{c}", "latitude": 1, "longitude": 2} for c in cams
            ],
            "departments": [{"id": "fire"}],
            "routing": [{"kind": "*", "department": "fire"}],
            "rules": [{"id": "fire", "type": "presence", "kind": "fire", "classes": ["fire"]}],
            "services": {
                "redis": {"url": srv.url, "password_env": "CS_TEST_REDIS_PASSWORD"},
                "streams": {"shards": 4},
                "rules": {"consumers": 2},
            },
        }
        path = tmp_path / "citysight.yaml"
        path.write_text(yaml.safe_dump(cfg))
        serve.run(build_app({"config_path": str(path)}), name="cluster", route_prefix=None)
        r = redis.Redis.from_url(srv.url, password="s3 cr3t/@")
        for shard, cam in enumerate(cams):  # one camera's frames on each shard
            for i in range(5):
                f = FrameResult(
                    camera_id=cam,
                    frame_time=time.time(),
                    frame_no=i,
                    width=10,
                    height=10,
                    boxes=[[1, 1, 5, 5]],
                    scores=[0.9],
                    class_ids=[int(ObjectClass.FIRE)],
                )
                r.xadd(detections_stream(shard), {"d": f.to_msgpack()})
        deadline = time.monotonic() + 60
        while r.zcard("citysight:alerts:all") < 4 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.zcard("citysight:alerts:all") == 4
        owners = {
            shard: {c["name"].decode() for c in r.xinfo_consumers(detections_stream(shard), GROUP)}
            for shard in range(4)
        }
        assert owners == {0: {"rules-0-2"}, 1: {"rules-1-3"}, 2: {"rules-0-2"}, 3: {"rules-1-3"}}
        status = serve.status().applications["cluster"].deployments
        assert {"RulesConsumer-0", "RulesConsumer-1", "Ingress"} <= set(status)
    finally:
        with contextlib.suppress(Exception):
            serve.delete("cluster")
        srv.stop()


def test_app_config_errors_are_clear(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from serve_app.app import app_config

    with pytest.raises(ValueError, match="needs Redis"):
        app_config({"config": {}})
    bad = tmp_path / "bad.yaml"
    bad.write_text("services:\n  redis:\n    urll: redis://x\n")
    with pytest.raises(ValueError, match=r"services\.redis\.urll"):
        app_config({"config_path": str(bad)})
    monkeypatch.delenv("CS_UNSET_PASSWORD", raising=False)
    cfg = {"services": {"redis": {"url": "redis://h:6379/0", "password_env": "CS_UNSET_PASSWORD"}}}
    with pytest.raises(ValueError, match=r"CS_UNSET_PASSWORD \(Redis password\) is not set"):
        app_config({"config": cfg})
    monkeypatch.setenv("CS_UNSET_PASSWORD", "p@ss")
    _, url = app_config({"config": cfg})
    assert url == "redis://:p%40ss@h:6379/0"
    assert redis.connection.parse_url(url)["password"] == "p@ss"


@pytest.mark.parametrize(
    ("extra", "ingress", "rules", "options"),
    [
        ({}, {"num_cpus": 0}, {"num_cpus": 0.5}, None),
        (
            {
                "ingress_actor_options": {"resources": {"serve_node": 0.01}},
                "rules_actor_options": {"num_cpus": 0, "resources": {"serve_node": 0.6}},
                "consumer_options": {"claim_min_idle_ms": 8000},
            },
            {"num_cpus": 0, "resources": {"serve_node": 0.01}},
            {"num_cpus": 0, "resources": {"serve_node": 0.6}},
            {"claim_min_idle_ms": 8000},
        ),
    ],
)
def test_build_app_places_replicas_by_node_role(
    extra: dict[str, Any], ingress: dict[str, Any], rules: dict[str, Any], options: Any
) -> None:
    """Node-role actor options reach every deployment, consumer options every consumer
    (built without a running Ray: only the bound application is inspected)."""
    from serve_app.app import build_app

    cfg = {"services": {"streams": {"shards": 4}, "rules": {"consumers": 2}}}
    app = build_app({"config": cfg, "redis_url": "redis://127.0.0.1:1", **extra})
    dep = app._bound_deployment  # ray keeps the bound deployment here
    assert dep.ray_actor_options == ingress
    bound = [r._bound_deployment for r in dep.init_args[2]]
    assert [b.name for b in bound] == ["RulesConsumer-0", "RulesConsumer-1"]
    assert all(b.ray_actor_options == rules for b in bound)
    assert all(b.init_kwargs == {"options": options} for b in bound)
