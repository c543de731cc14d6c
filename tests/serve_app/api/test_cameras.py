"""Camera lifecycle through the real API (uvicorn), the real rules consumer and real Redis.

Deleting a camera removes its health entry, tells WebSocket subscribers (``camera_removed``,
the map drops the marker) and closes its open ``camera_offline`` alerts with an event by
``system`` (issue 11).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.client import connect

from benchmarks.fanout.world import ServerThread, seed_principals, token_of
from citysight.app.services.redis_server import free_port
from citysight.config import CameraConfig, CitysightConfig
from citysight.contracts import CameraState, CameraStatus
from citysight.keys import CAMERA_STATUS_STREAM
from serve_app.consumer import DetectionsConsumer
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore
from serve_app.store.cameras import CameraRegistry

CFG = CitysightConfig.model_validate(
    {
        "departments": [{"id": d} for d in ("fire", "enforcement", "police", "duty")],
        "routing": [{"kind": "camera_offline", "department": "duty"}],
    }
)
DUTY = {"duty": {"department": "duty", "scopes": ["alerts:read", "alerts:dispatch"]}}


def _h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"}


@pytest.fixture
def served(redis_url: str) -> Iterator[dict[str, Any]]:
    r = redis.Redis.from_url(redis_url)
    seed_principals(r)
    seed_principals(r, DUTY)
    port = free_port()
    srv = ServerThread(create_api(CFG, redis_url, ws_heartbeat_s=0.3), port).start()
    yield {"http": f"http://127.0.0.1:{port}", "ws": f"ws://127.0.0.1:{port}/ws", "r": r}
    srv.stop()
    r.close()


def _offline(r: redis.Redis, redis_url: str, cams: list[str]) -> list[str]:
    """The real consumer raises a camera_offline alert per camera; returns their ids."""
    c = DetectionsConsumer(redis_url, CFG, "cams", [0], block_ms=5)
    c.setup()
    for cid in cams:
        st = CameraStatus(camera_id=cid, state=CameraState.OFFLINE, reason="no frames")
        r.xadd(CAMERA_STATUS_STREAM, {"d": st.to_msgpack()})
        r.hset("citysight:camera-health", cid, st.model_dump_json())
    for _ in range(3):
        c.step()
    alerts = AlertStore(r, CFG).query(kinds={"camera_offline"})
    assert sorted(a.camera_id for a in alerts) == sorted(cams)
    return [a.id for a in sorted(alerts, key=lambda a: a.camera_id)]


def test_delete_camera_removes_health_marker_and_closes_offline_alerts(
    served: dict[str, Any], redis_url: str
) -> None:
    r = served["r"]
    reg = CameraRegistry(r)
    for cid, lat in (("cam-gone", 20.01), ("cam-stays", 20.02)):
        reg.put(CameraConfig(id=cid, url="rtsp://10.0.0.1/s", latitude=lat, longitude=110.3))
    gone_alert, stays_alert = _offline(r, redis_url, ["cam-gone", "cam-stays"])
    base = served["http"]

    async def run() -> dict[str, list[dict[str, Any]]]:
        socks = {
            role: await connect(served["ws"], additional_headers=_h(role), close_timeout=2)
            for role in ("admin", "duty", "police")
        }
        await asyncio.sleep(0.3)  # subscribed: the hub tails the feed from here
        async with httpx.AsyncClient() as http:
            resp = await http.delete(f"{base}/api/cameras/cam-gone", headers=_h("admin"))
            assert resp.status_code == 204, resp.text
            again = await http.delete(f"{base}/api/cameras/cam-gone", headers=_h("admin"))
            assert again.status_code == 404
        got: dict[str, list[dict[str, Any]]] = {}
        for role, ws in socks.items():
            msgs: list[dict[str, Any]] = []
            deadline = time.monotonic() + (5 if role != "police" else 1.5)
            while time.monotonic() < deadline and len(msgs) < 2:
                try:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 0.5))
                except TimeoutError:
                    continue
                if m["type"] != "heartbeat":
                    msgs.append(m)
            got[role] = msgs
            await ws.close()
        return got

    got = asyncio.run(run())
    # Health, registry, listings: gone; the other camera untouched.
    assert r.hget("citysight:camera-health", "cam-gone") is None
    assert r.hget("citysight:camera-health", "cam-stays") is not None
    listed = httpx.get(f"{base}/api/cameras", headers=_h("admin")).json()
    assert [c["id"] for c in listed] == ["cam-stays"]
    mp = httpx.get(f"{base}/api/config/map", headers=_h("duty")).json()
    assert [c["id"] for c in mp["cameras"]] == ["cam-stays"]
    # Its offline alert is closed by the system; the other camera's stays open.
    store = AlertStore(r, CFG)
    closed = store.get(gone_alert)
    assert closed.state == "closed" and closed.outcome == "camera_removed"
    ev = store.events(gone_alert)[-1]
    assert (ev.actor, ev.from_state, ev.to_state) == ("system", "raised", "closed")
    assert "deleted by admin-user" in ev.note
    assert store.get(stays_alert).state == "raised"
    # Every subscriber learns the camera is gone; those who see the alert, that it closed.
    for role in ("admin", "duty"):
        types = [(m["type"], m.get("camera_id") or m.get("alert", {}).get("id")) for m in got[role]]
        assert types == [("camera_removed", "cam-gone"), ("alert_event", gone_alert)], role
    assert [m["type"] for m in got["police"]] == ["camera_removed"]
    # Audited.
    audit = httpx.get(f"{base}/api/audit", headers=_h("admin")).json()["records"]
    assert any(x["action"] == "camera.delete" and x["target"] == "cam-gone" for x in audit)
