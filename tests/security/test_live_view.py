"""Live view, negative authorization matrix (WS /ws/live/{camera_id}).

Every refusal happens before the upgrade, with an HTTP status and no video byte: no token,
a forged or URL-borne ticket, a token without ``video:live``, a camera of another
department (answered like a missing one, so ids cannot be probed), an unknown camera, live
view switched off, and an audit log that cannot record the session (fail closed). A token
revoked under an open session ends it (4401). Real Redis, the production app in process.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from livekit import LIVE_ROLES, live_token, seed
from starlette.testclient import WebSocketDenialResponse

from citysight import keys
from citysight.config import CameraConfig, CitysightConfig
from serve_app.http import create_api
from serve_app.store.cameras import CameraRegistry


def _cfg(**services: Any) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "departments": [{"id": "fire"}, {"id": "police"}],
            "routing": [
                {"kind": "*", "jurisdiction": "longhua", "department": "fire"},
                {"kind": "*", "jurisdiction": "xiuying", "department": "police"},
            ],
            **({"services": services} if services else {}),
        }
    )


def _client(redis_url: str, cfg: CitysightConfig) -> Iterator[tuple[TestClient, redis.Redis]]:
    r = redis.Redis.from_url(redis_url)
    seed(r)
    reg = CameraRegistry(r)
    for cid, where in (("cam-fire", "longhua"), ("cam-police", "xiuying")):
        reg.put(
            CameraConfig(
                id=cid, url=f"rtsp://10.0.0.9/{cid}", latitude=1, longitude=1, jurisdiction=where
            )
        )
    with TestClient(create_api(cfg, redis_url)) as client:
        yield client, r
    r.close()


@pytest.fixture
def api(redis_url: str) -> Iterator[tuple[TestClient, redis.Redis]]:
    yield from _client(redis_url, _cfg(live={"start_timeout_s": 30}))


def _h(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {live_token(role)}"}


@pytest.mark.parametrize(
    ("role", "path", "status"),
    [
        (None, "/ws/live/cam-fire", 401),
        ("noscope", "/ws/live/cam-fire", 403),
        ("reader", "/ws/live/cam-fire", 403),  # alerts:read alone is not live view
        ("viewer", "/ws/live/cam-police", 404),  # another department's camera
        ("foreign", "/ws/live/cam-fire", 404),
        ("viewer", "/ws/live/no-such-camera", 404),  # same answer as a foreign one
        ("viewer", "/ws/live/" + "x" * 300, 404),
        (None, "/ws/live/cam-fire?ticket=forged", 400),  # tickets never ride in URLs
    ],
)
def test_refused_before_any_byte(
    api: tuple[TestClient, redis.Redis], role: str | None, path: str, status: int
) -> None:
    client, r = api
    headers = _h(role) if role else {}
    with (
        pytest.raises(WebSocketDenialResponse) as info,
        client.websocket_connect(path, headers=headers),
    ):
        pass
    assert info.value.status_code == status
    assert "detail" in info.value.json()
    # No session was opened: no audit record, no viewer slot, no interest for the worker.
    assert not [f for _, f in r.xrange(keys.AUDIT_STREAM) if f[b"action"].startswith(b"live.")]
    assert not r.exists(keys.live_interest_key("cam-fire"), keys.live_interest_key("cam-police"))


def test_in_scope_viewers_are_accepted_with_ticket_or_bearer(
    api: tuple[TestClient, redis.Redis],
) -> None:
    client, r = api
    for role, cam in (("viewer", "cam-fire"), ("foreign", "cam-police"), ("admin", "cam-police")):
        with client.websocket_connect(f"/ws/live/{cam}", headers=_h(role)):
            pass
    t = client.post("/api/ws-tickets", headers=_h("viewer")).json()["ticket"]
    with client.websocket_connect(
        "/ws/live/cam-fire", subprotocols=["citysight-v1", f"ticket.{t}"]
    ) as ws:
        assert ws.accepted_subprotocol == "citysight-v1"
    # A ticket is good for one handshake.
    with (
        pytest.raises(WebSocketDenialResponse) as info,
        client.websocket_connect("/ws/live/cam-fire", subprotocols=["citysight-v1", f"ticket.{t}"]),
    ):
        pass
    assert info.value.status_code == 401
    deadline = time.monotonic() + 10
    actions: list[bytes] = []
    while time.monotonic() < deadline and actions.count(b"live.end") < 4:
        actions = [f[b"action"] for _, f in r.xrange(keys.AUDIT_STREAM)]
        time.sleep(0.05)
    assert actions.count(b"live.start") == actions.count(b"live.end") == 4


def test_a_revoked_token_ends_the_session(redis_url: str) -> None:
    for client, r in _client(redis_url, _cfg(http={"ws_recheck_s": 0.2})):
        with client.websocket_connect("/ws/live/cam-fire", headers=_h("viewer")) as ws:
            r.hdel(keys.PRINCIPALS, hashlib.sha256(live_token("viewer").encode()).hexdigest())
            msg = ws.receive()  # nothing else is sent: no worker reads the camera
            assert msg["type"] == "websocket.close" and msg["code"] == 4401, msg


def test_a_scope_taken_away_ends_the_session(redis_url: str) -> None:
    for client, r in _client(redis_url, _cfg(http={"ws_recheck_s": 0.2})):
        with client.websocket_connect("/ws/live/cam-fire", headers=_h("viewer")) as ws:
            rec = {"name": "viewer-user", "role": "viewer", **LIVE_ROLES["reader"]}
            r.hset(
                keys.PRINCIPALS,
                hashlib.sha256(live_token("viewer").encode()).hexdigest(),
                json.dumps(rec),
            )
            msg = ws.receive()  # nothing else is sent: no worker reads the camera
            assert msg["type"] == "websocket.close" and msg["code"] == 4403, msg


@pytest.mark.parametrize(
    ("services", "detail"),
    [
        ({"live": {"enabled": False}}, "disabled"),
        # No audit key can be read: no record, so no video (fail closed).
        ({"live": {}}, "audit"),
    ],
)
def test_off_or_unaudited_refuses(redis_url: str, services: dict[str, Any], detail: str) -> None:
    cfg = _cfg(**services)
    if detail == "audit":
        cfg = cfg.model_copy(
            update={
                "audit": cfg.audit.model_copy(update={"key_env": "CITYSIGHT_NO_SUCH_AUDIT_KEY"})
            }
        )
    for client, _ in _client(redis_url, cfg):
        with (
            pytest.raises(WebSocketDenialResponse) as info,
            client.websocket_connect("/ws/live/cam-fire", headers=_h("viewer")),
        ):
            pass
        assert info.value.status_code == 503
        assert detail in info.value.json()["detail"]


@pytest.mark.parametrize(
    ("substream", "status", "detail"),
    [
        ("rtsp://admin:secret@10.0.0.9/sub", 422, "password"),
        ("rtsp://127.0.0.1:8554/sub", 422, "substream_url"),  # loopback: not allowed
        ("file:///etc/passwd", 422, "substream_url"),
        ("rtsp://10.0.0.9:554/sub", 201, ""),
    ],
)
def test_a_substream_url_passes_the_same_url_policy(
    api: tuple[TestClient, redis.Redis], substream: str, status: int, detail: str
) -> None:
    client, r = api
    rec = {"name": "ops", "role": "admin", "department": "*", "scopes": ["cameras:write"]}
    r.hset(keys.PRINCIPALS, hashlib.sha256(b"ops-token-0123456789").hexdigest(), json.dumps(rec))
    body = {
        "id": "cam-new",
        "url": "rtsp://10.0.0.9:554/main",
        "substream_url": substream,
        "latitude": 1,
        "longitude": 1,
    }
    res = client.post(
        "/api/cameras", json=body, headers={"Authorization": "Bearer ops-token-0123456789"}
    )
    assert res.status_code == status, res.text
    if detail:
        assert detail in res.text
        assert CameraRegistry(r).get("cam-new") is None
    else:
        assert res.json()["substream_url"] == substream
        assert res.json()["live_url"] == "/ws/live/cam-new"


def test_the_per_node_cap_refuses_the_next_viewer(redis_url: str) -> None:
    for client, _ in _client(redis_url, _cfg(live={"max_viewers_per_node": 1})):
        with client.websocket_connect("/ws/live/cam-fire", headers=_h("viewer")):
            with (
                pytest.raises(WebSocketDenialResponse) as info,
                client.websocket_connect("/ws/live/cam-police", headers=_h("admin")),
            ):
                pass
            assert info.value.status_code == 503
            assert "capacity" in info.value.json()["detail"]
        assert client.app.state.ctx.metrics.live["refused_node_cap"] == 1  # type: ignore[attr-defined]
        # The slot is free again once the first viewer left.
        with client.websocket_connect("/ws/live/cam-police", headers=_h("admin")):
            pass
