"""Issue 13, findings 8-10: sessions, the embedded Redis, the audit chain and bounds.

Every test here is a negative test that fails on the code before the fix (the row or
docstring says what the old code did). Real parts only: a real redis-server, the production
FastAPI app under uvicorn (and once under Ray Serve), real WebSocket clients, real H.264
files through a real stream worker.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import stat
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from benchmarks.fanout.world import (
    ROLES,
    ServerThread,
    make_alert,
    publish_alerts,
    seed_principals,
    token_of,
)
from citysight import keys
from citysight.app.services.redis_server import EmbeddedRedis, free_port, password_path
from citysight.config import CameraConfig, CameraProfile, CitysightConfig, StreamsService
from citysight.contracts import CameraState, CameraStatus, FrameBatch, FrameResult, ObjectClass
from serve_app.http import create_api
from serve_app.store.audit import GENESIS, AuditLog

# -- helpers -------------------------------------------------------------------------------


def _wait(cond: Callable[[], Any], timeout_s: float = 10.0, step_s: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(step_s)
    return cond()


def _auth(role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_of(role)}"}


def _token_key(role: str) -> str:
    return hashlib.sha256(token_of(role).encode()).hexdigest()


def _config(tmp: Path, **http: Any) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
            "services": {"http": {"ws_recheck_s": 0.2, **http}},
            "audit": {
                "key_file": str(tmp / "audit.key"),
                "head_file": str(tmp / "audit-head.json"),
                "verify_interval_s": 0.5,
            },
        }
    )


@pytest.fixture
def served(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The production app under uvicorn; ``request.param``: extra ``services.http`` keys."""
    http = getattr(request, "param", {})
    r = redis.Redis.from_url(redis_url)
    seed_principals(r)
    port = free_port()
    cfg = _config(tmp_path, **http)
    app = create_api(cfg, redis_url, ws_heartbeat_s=0.3)
    srv = ServerThread(app, port).start()
    yield {"ws": f"ws://127.0.0.1:{port}/ws", "http": f"http://127.0.0.1:{port}", "r": r,
           "app": app, "cfg": cfg}  # fmt: skip
    srv.stop()
    r.close()


async def _until_closed(ws: Any, timeout_s: float) -> tuple[int | None, str, list[dict[str, Any]]]:
    """Read until the server closes (code, reason) or the timeout (None); non-heartbeats kept."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            msg = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
        except TimeoutError:
            break
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            return (rcvd.code if rcvd else None), (rcvd.reason if rcvd else ""), got
        if msg.get("type") != "heartbeat":
            got.append(msg)
    return None, "", got


async def _refusal(url: str, headers: dict[str, str]) -> tuple[int, str]:
    """How a handshake is refused: (HTTP status or close code, detail/reason)."""
    try:
        async with connect(url, additional_headers=headers, open_timeout=5) as ws:
            code, reason, _ = await _until_closed(ws, 3)
            return (code or 0), reason
    except InvalidStatus as exc:
        return exc.response.status_code, exc.response.body.decode(errors="replace")


# -- finding 8: WebSocket sessions --------------------------------------------------------


def _revoke(r: redis.Redis, role: str) -> None:
    r.hdel(keys.PRINCIPALS, _token_key(role))


def _narrow(r: redis.Redis, role: str, **change: Any) -> None:
    rec = {"name": f"{role}-user", "role": role, **ROLES[role], **change}
    r.hset(keys.PRINCIPALS, _token_key(role), json.dumps(rec))


@pytest.mark.parametrize(
    ("how", "change", "code", "reason"),
    [
        # Old code: the socket kept streaming after every one of these.
        ("bearer", lambda r: _revoke(r, "fire"), 4401, "token revoked"),
        ("ticket", lambda r: _revoke(r, "fire"), 4401, "token revoked"),
        ("bearer", lambda r: _narrow(r, "fire", scopes=[]), 4403, "principal changed"),
        ("bearer", lambda r: _narrow(r, "fire", department="police"), 4403, "principal changed"),
    ],
    ids=["revoked", "revoked-ticket-socket", "scopes-removed", "department-changed"],
)
def test_open_socket_is_closed_when_its_principal_changes(
    served: dict[str, Any],
    how: str,
    change: Callable[[redis.Redis], None],
    code: int,
    reason: str,
) -> None:
    """A socket is re-checked every ``ws_recheck_s`` (0.2 s here) and closed with a reason."""

    async def run() -> tuple[int | None, str, list[dict[str, Any]], float]:
        url, headers = served["ws"], _auth("fire")
        protos: list[Subprotocol] | None = None
        if how == "ticket":  # a browser's socket: the ticket rides as a subprotocol
            async with httpx.AsyncClient() as h:
                t = (await h.post(served["http"] + "/api/ws-tickets", headers=headers)).json()
            headers = {}
            protos = [Subprotocol("citysight-v1"), Subprotocol(f"ticket.{t['ticket']}")]
        async with connect(url, additional_headers=headers, subprotocols=protos) as ws:
            publish_alerts(served["r"], [make_alert(1, "fire")])
            code_, reason_, before = await _until_closed(ws, 0.8)
            assert code_ is None and [m["type"] for m in before] == ["alert"]
            t0 = time.monotonic()
            change(served["r"])
            publish_alerts(served["r"], [make_alert(2, "fire")])
            code_, reason_, after = await _until_closed(ws, 5)
            return code_, reason_, after, time.monotonic() - t0

    got_code, got_reason, _after, took = asyncio.run(run())
    assert (got_code, got_reason.split(":")[0]) == (code, reason)
    # a few re-check intervals (0.2 s), well inside the 5 s token cache
    assert took < 4.5


def test_replay_rechecks_the_principal_before_sending_history(served: dict[str, Any]) -> None:
    """Within the 5 s token cache a revoked token still opens a socket, but ``?last_id=``
    replays nothing: the principal is read again from Redis before each replay page. Old
    code: the whole history was replayed to the revoked token."""
    publish_alerts(served["r"], [make_alert(i, "fire") for i in range(5)])
    assert httpx.get(served["http"] + "/api/me", headers=_auth("fire")).status_code == 200
    _revoke(served["r"], "fire")  # the resolver's cache still holds the principal

    async def run() -> tuple[int | None, str, list[dict[str, Any]]]:
        async with connect(served["ws"] + "?last_id=0-0", additional_headers=_auth("fire")) as ws:
            return await _until_closed(ws, 3)

    code, reason, got = asyncio.run(run())
    assert [m for m in got if m["type"] == "alert"] == []
    assert (code, reason) == (4401, "token revoked")


@pytest.mark.parametrize(
    ("served", "extra", "status", "detail"),
    [
        # Old code: every one of these sockets was accepted (no cap at all).
        ({"ws_max_per_principal": 2}, ["fire"], 429, "too many WebSockets"),
        ({"max_connections": 10, "max_websockets": 3}, ["admin"], 503, "capacity"),
    ],
    indirect=["served"],
    ids=["per-principal-cap", "replica-capacity"],
)
def test_socket_caps_refuse_the_extra_socket_and_rest_keeps_answering(
    served: dict[str, Any], extra: list[str], status: int, detail: str
) -> None:
    """The extra socket is refused with a clear reason; REST answers meanwhile; a closed
    socket gives its slot back."""

    async def run() -> None:
        held = ["fire", "fire", "police"]
        socks = [await connect(served["ws"], additional_headers=_auth(r)) for r in held]
        try:
            for role in extra:
                got = await _refusal(served["ws"], _auth(role))
                assert got[0] in (status, 4000 + status) and detail in got[1], got
            async with httpx.AsyncClient(timeout=5) as h:
                me = await h.get(served["http"] + "/api/me", headers=_auth("admin"))
                assert me.status_code == 200
        finally:
            await socks[0].close()
        # The slot comes back (released at close, not only when it expires).
        t0 = time.monotonic()
        while True:
            try:
                async with connect(served["ws"], additional_headers=_auth(extra[0])) as ws:
                    code, _, _ = await _until_closed(ws, 0.5)
                    assert code is None
                    break
            except InvalidStatus:
                assert time.monotonic() - t0 < 3, "slot not released"
                await asyncio.sleep(0.1)
        for s in socks[1:]:
            await s.close()

    asyncio.run(run())


def test_a_flood_of_sockets_cannot_starve_rest_through_serve(
    ray_local: None, redis_url: str, tmp_path: Path
) -> None:
    """Through the real Serve proxy every socket holds a ``max_ongoing_requests`` slot. With
    ``max_connections`` 6 the hub takes at most 4 sockets, so REST keeps 2 slots. Old code:
    6 sockets took all 6 and the next REST call hung until they closed."""
    from ray import serve

    from serve_app.app import build_app

    r = redis.Redis.from_url(redis_url)
    seed_principals(r)
    cfg = _config(tmp_path, max_connections=6, ws_max_per_principal=10).model_dump(mode="json")
    cfg["services"]["streams"] = {"shards": 1}
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        serve.run(
            build_app({"config": cfg, "redis_url": redis_url, "rules": False}),
            name="flood",
            route_prefix="/",
        )
        base, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws"

        async def run() -> tuple[list[int], int]:
            held: list[Any] = []
            outcomes: list[int] = []
            for _ in range(6):
                try:
                    held.append(await connect(ws_url, additional_headers=_auth("fire")))
                    outcomes.append(101)
                except InvalidStatus as exc:
                    outcomes.append(exc.response.status_code)
            try:
                async with httpx.AsyncClient(timeout=5) as h:
                    me = await h.get(base + "/api/me", headers=_auth("admin"))
                return outcomes, me.status_code
            finally:
                for s in held:
                    await s.close()

        outcomes, rest = asyncio.run(run())
        assert outcomes == [101] * 4 + [503] * 2
        assert rest == 200
    finally:
        serve.delete("flood")
        serve.shutdown()
        r.close()


def test_sessions_that_cannot_be_rechecked_are_closed(tmp_path: Path) -> None:
    """Fail closed, late: Redis gone for longer than the grace (3 re-checks, at least 2 s),
    every socket is closed with 4503 and /health says the re-check fails. Old code: the
    socket stayed open, unverified, for as long as the outage lasted."""
    srv = EmbeddedRedis(free_port(), tmp_path / "redis", appendonly=False).start()
    r = redis.Redis.from_url(srv.url)
    seed_principals(r)
    port = free_port()
    app = create_api(_config(tmp_path), srv.url, ws_heartbeat_s=0.3)
    server = ServerThread(app, port).start()
    try:

        async def run() -> tuple[int | None, str, float]:
            async with connect(f"ws://127.0.0.1:{port}/ws", additional_headers=_auth("fire")) as ws:
                await asyncio.sleep(0.5)
                t0 = time.monotonic()
                srv.kill()
                code, reason, _ = await _until_closed(ws, 8)
                return code, reason, time.monotonic() - t0

        code, reason, took = asyncio.run(run())
        assert (code, reason.split(";")[0]) == (4503, "session cannot be verified")
        assert 2.0 <= took < 6.0
        assert app.state.ctx.hub.health()["state"] == "degraded"
    finally:
        server.stop()
        srv.stop()
        r.close()


def test_hub_reader_survives_an_undecodable_feed_entry(served: dict[str, Any]) -> None:
    """A feed entry whose bytes are not UTF-8 made the reader raise UnicodeDecodeError (not
    a Redis error) and die: the feed stopped for every socket. Now it is read raw, skipped,
    counted, and /health says the ingress is degraded."""

    async def run() -> list[dict[str, Any]]:
        async with connect(served["ws"], additional_headers=_auth("fire")) as ws:
            served["r"].xadd(keys.FEED_STREAM, {"type": "alert", "d": b"\xff\xfe{"})
            await asyncio.sleep(0.5)
            publish_alerts(served["r"], [make_alert(3, "fire")])
            _, _, got = await _until_closed(ws, 5)
            return got

    got = asyncio.run(run())
    assert [m["alert"]["id"] for m in got if m["type"] == "alert"] == ["al_fire_000003"]
    ingress = httpx.get(served["http"] + "/health").json()["components"]["ingress"]
    assert ingress["state"] == "degraded" and "feed reader failing" in ingress["detail"]["reason"]
    assert ingress["detail"]["feed_read_errors"] >= 1
    assert ingress["detail"]["feed_skipped_entries"] == 1


# -- finding 9: the embedded Redis -------------------------------------------------------


def _embedded(data_dir: Path) -> Iterator[EmbeddedRedis]:
    srv = EmbeddedRedis(free_port(), data_dir, appendonly=False, maxmemory_mb=8)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def embedded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """An embedded Redis as ``citysight run`` starts it (password on, 8 MiB noeviction)."""
    yield from _embedded(tmp_path_factory.mktemp("embedded") / "redis")


@pytest.fixture
def full_embedded(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """Like ``embedded``, its own (the test fills it up)."""
    yield from _embedded(tmp_path / "redis")


def _cmdline(pid: int) -> bytes:
    return Path(f"/proc/{pid}/cmdline").read_bytes()


@pytest.mark.parametrize(
    ("probe", "expect"),
    [
        # Old code: no password, so the first two rows answered PONG / wrote a principal.
        ("no password", redis.AuthenticationError),
        ("wrong password", redis.AuthenticationError),
        ("own url", "PONG"),
        ("password file mode", 0o600),
        ("data dir mode", 0o700),
        ("password on the command line", False),
        ("maxmemory policy", "noeviction"),
    ],
)
def test_embedded_redis_requires_its_generated_password(
    embedded: EmbeddedRedis, probe: str, expect: Any
) -> None:
    """Any local process could add a principal with department ``*``; now it needs the
    password kept in the data dir (0600), never visible in ``ps``."""
    port = embedded.port
    pw_file = password_path(embedded.data_dir)

    def attempt() -> Any:
        if probe == "no password":
            c = redis.Redis(port=port, socket_timeout=2)
            c.hset(keys.PRINCIPALS, "x" * 64, json.dumps({"name": "evil", "department": "*"}))
            return "wrote"
        if probe == "wrong password":
            return redis.Redis(port=port, password="guess", socket_timeout=2).ping()
        if probe == "own url":
            return "PONG" if redis.Redis.from_url(embedded.url).ping() else "?"
        if probe == "password file mode":
            return stat.S_IMODE(pw_file.stat().st_mode)
        if probe == "data dir mode":
            return stat.S_IMODE(embedded.data_dir.stat().st_mode)
        if probe == "password on the command line":
            assert embedded.proc is not None and embedded.password
            return embedded.password.encode() in _cmdline(embedded.proc.pid)
        if probe == "maxmemory policy":
            c = redis.Redis.from_url(embedded.url)
            assert int(c.config_get("maxmemory")["maxmemory"]) == 8 * 1024 * 1024
            return c.config_get("maxmemory-policy")["maxmemory-policy"]
        raise AssertionError(probe)

    if isinstance(expect, type) and issubclass(expect, Exception):
        with pytest.raises(expect):
            attempt()
    else:
        assert attempt() == expect


def test_embedded_redis_password_survives_a_restart(tmp_path: Path) -> None:
    """A restarted embedded Redis (soak fault ``redis_restart``) keeps the same password,
    so clients that hold the URL reconnect."""
    port = free_port()
    with EmbeddedRedis(port, tmp_path / "r", appendonly=False) as a:
        url = a.url
        assert redis.Redis.from_url(url).set("k", "v")
    with EmbeddedRedis(port, tmp_path / "r", appendonly=False) as b:
        assert b.url == url and redis.Redis.from_url(url).ping()


def test_full_embedded_redis_refuses_writes_and_evicts_nothing(
    full_embedded: EmbeddedRedis,
) -> None:
    """noeviction + maxmemory: a full Redis answers OOM errors (writers log and count them)
    and every entry already written is still there. Old code: no maxmemory at all."""
    embedded = full_embedded
    c = redis.Redis.from_url(embedded.url)
    first = c.xadd(keys.FEED_STREAM, {"type": "alert", "d": "{}"})
    blob = b"x" * (256 * 1024)
    with pytest.raises(redis.exceptions.ResponseError, match="maxmemory"):
        for i in range(200):  # 50 MiB at most: far past 8 MiB
            c.set(f"fill:{i}", blob)
    assert c.xrange(keys.FEED_STREAM, min=first, max=first)  # not evicted
    assert c.exists("fill:0") == 1
    from fastapi.testclient import TestClient

    # a loopback caller reads the /health detail (services.http.local_monitoring)
    with TestClient(
        create_api(CitysightConfig(), embedded.url), client=("127.0.0.1", 50000)
    ) as client:
        red = client.get("/health").json()["components"]["redis"]
    assert red["state"] == "degraded" and "noeviction" in red["detail"]["reason"]


# -- finding 9: the audit chain ---------------------------------------------------------


def _plain_hash(rec: dict[str, Any]) -> str:
    """The old, unkeyed record hash: all an attacker with Redis access needs to re-link."""
    fields = ("actor", "action", "target", "reason", "at", "prev")
    body = json.dumps({k: str(rec[k]) for k in fields}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


def _rewrite(r: redis.Redis, edit: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]) -> None:
    """Rewrite the audit stream as an attacker with Redis access would: apply ``edit``,
    re-link every record with the plain hash, keep the ids, reset the head."""
    rows = [
        {"id": i.decode(), **{k.decode(): v.decode() for k, v in f.items()}}
        for i, f in r.xrange(keys.AUDIT_STREAM)
    ]
    rows = edit(rows)
    prev = rows[0]["prev"] if rows else GENESIS
    r.delete(keys.AUDIT_STREAM)
    for rec in rows:
        rec["prev"] = prev
        rec["hash"] = _plain_hash(rec)
        prev = rec["hash"]
        r.xadd(keys.AUDIT_STREAM, {k: v for k, v in rec.items() if k != "id"}, id=rec["id"])
    r.set(keys.AUDIT_HEAD, prev)


def _edit_reason(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows[1]["reason"] = "routine check"
    return rows


def _forge(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    fake = {**rows[-1], "id": f"{int(time.time() * 1000) + 5}-0", "actor": "nobody"}
    return [*rows, fake]


TAMPERING = [
    # (name, edit of the stream, what the old code's verify() said)
    ("edit a reason, re-link", _edit_reason, True),
    ("forge a record, re-link", _forge, True),
    ("delete the oldest record", lambda rows: rows[1:], True),
    ("delete the newest record, reset head", lambda rows: rows[:-1], True),
    ("delete a middle record, re-link", lambda rows: rows[:2] + rows[3:], True),
]


@pytest.fixture
def audit(redis_url: str, tmp_path: Path) -> Iterator[AuditLog]:
    """A keyed audit log (key file and head file in tmp) with five records, head exported."""
    r = redis.Redis.from_url(redis_url)
    log = AuditLog(r, _config(tmp_path))
    for i in range(5):
        log.append(actor="alice", action="evidence:unredacted", target=f"al_{i}", reason="case")
    report = log.verify_report()
    assert report.ok and report.records == 5
    log.export_head(report)
    yield log
    r.close()


@pytest.mark.parametrize(("name", "edit", "_old"), TAMPERING, ids=[t[0] for t in TAMPERING])
def test_tampered_audit_chain_fails_verification(
    audit: AuditLog, name: str, edit: Callable[..., Any], _old: bool
) -> None:
    """Whoever can write Redis could rewrite the plain hash chain and verify() still said
    ok (column ``_old``). The HMAC key is outside Redis, the oldest record is anchored and
    the exported head must stay in the chain."""
    _rewrite(audit.r, edit)
    report = audit.verify_report()
    assert not report.ok and report.reason


def test_retention_trim_keeps_the_chain_verifiable(audit: AuditLog) -> None:
    """The positive control: retention drops the oldest records, the keyed anchor vouches
    for the new first one; appends after a trim of everything still verify."""
    assert audit.cfg is not None
    later = time.time() + audit.cfg.retention.audit_ttl_s
    # the fixture's records may share a millisecond on a fast box: append one a few ms
    # later and cut at its millisecond, so the trim drops every older record and keeps it
    time.sleep(0.01)
    audit.append(actor="al", action="plates:query", target="XY999", reason="case 6")
    newest = audit.list(1)[0]["id"]
    cut = keys.stream_id(newest)[0] / 1000 + audit.cfg.retention.audit_ttl_s
    assert audit.trim(now=cut) >= 1
    assert audit.r.xlen(keys.AUDIT_STREAM) >= 1
    assert audit.verify_report().ok
    assert audit.trim(now=later + 10) >= 1 and audit.r.xlen(keys.AUDIT_STREAM) == 0
    assert audit.verify_report().ok
    audit.append(actor="bob", action="plates:query", target="AB123", reason="case 7")
    assert audit.verify_report().ok


def test_audit_key_lives_outside_redis(audit: AuditLog, tmp_path: Path) -> None:
    """The key file is 0600 and its key appears in no Redis value."""
    key_file = tmp_path / "audit.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip().encode()
    for k in audit.r.scan_iter():
        t = audit.r.type(k)
        vals: list[bytes] = []
        if t == b"string":
            vals = [audit.r.get(k) or b""]
        elif t == b"stream":
            vals = [v for _, f in audit.r.xrange(k) for v in f.values()]
        assert all(key not in v for v in vals)


def test_broken_audit_chain_is_never_ok_in_health_and_metrics(
    served: dict[str, Any],
) -> None:
    """Tamper with Redis under a running API: within a verification interval /health has
    ``audit`` failed (status not ok) and /metrics ``citysight_audit_chain_ok 0``. Old code:
    /health had no audit component; the chain was only checked on GET /api/audit."""
    ctx = served["app"].state.ctx
    for i in range(3):
        ctx.audit.append(actor="alice", action="evidence:unredacted", target=f"a{i}", reason="c")

    def audit_state() -> str:
        return str(httpx.get(served["http"] + "/health").json()["components"]["audit"]["state"])

    head_file = Path(served["cfg"].audit.head_file)
    assert _wait(lambda: json.loads(head_file.read_text())["records"] == 3, 5)  # exported
    assert audit_state() == "running"
    _rewrite(served["r"], _edit_reason)
    assert _wait(lambda: audit_state() == "failed", 5)
    body = httpx.get(served["http"] + "/health").json()
    assert body["status"] != "ok"
    assert "altered or forged" in body["components"]["audit"]["detail"]["reason"]
    text = httpx.get(served["http"] + "/metrics").text
    assert any(
        ln.startswith("citysight_audit_chain_ok{") and ln.endswith(" 0") for ln in text.splitlines()
    )
    listed = httpx.get(served["http"] + "/api/audit", headers=_auth("admin")).json()
    assert listed["chain_ok"] is False


# -- finding 10: bounds and loops that survive -------------------------------------------


def _status(cid: str, i: int) -> CameraStatus:
    return CameraStatus(camera_id=cid, state=CameraState.RUNNING, reason=f"r{i}")


def _rules_consumer(redis_url: str, **cfg: Any) -> Any:
    from serve_app.consumer import DetectionsConsumer

    c = DetectionsConsumer(
        redis_url, CitysightConfig.model_validate(cfg), "a", [0], block_ms=5,
        claim_min_idle_ms=100, claim_interval_s=0.0, retry_interval_s=0.0, max_deliveries=1,
    )  # fmt: skip
    c.setup()
    return c


def _status_stream_capped(redis_url: str) -> int:
    """3,000 status changes through a stream worker's publishing (cap 1,000)."""
    from streams.worker import StreamWorker

    w = StreamWorker([], StreamsService(status_max_entries=1000), redis_url, lambda: None,
                     autostart=False)  # type: ignore[arg-type,return-value]  # fmt: skip
    try:
        for i in range(3000):
            w._put_status(_status("c1", i))
            if i % 500 == 499:
                w._drain_status()
        w._drain_status()
        return int(w.redis.xlen(keys.CAMERA_STATUS_STREAM))
    finally:
        w.redis.close()


def _status_stream_aged(redis_url: str) -> int:
    """Acknowledged status entries two hours old, then the consumers' upkeep."""
    r = redis.Redis.from_url(redis_url)
    c = _rules_consumer(redis_url)
    old_ms = int((time.time() - 7200) * 1000)
    for i in range(50):
        r.xadd(
            keys.CAMERA_STATUS_STREAM, {"d": _status("c1", i).to_msgpack()}, id=f"{old_ms + i}-0"
        )
    for _ in range(5):
        c.step()
    c.maintain()
    return int(r.xlen(keys.CAMERA_STATUS_STREAM))


def _dead_letters_capped(redis_url: str) -> int:
    """400 poison entries dead-lettered with ``dead_letter_max_entries`` 100."""
    r = redis.Redis.from_url(redis_url)
    c = _rules_consumer(redis_url, retention={"dead_letter_max_entries": 100})
    for _ in range(400):
        r.xadd(keys.detections_stream(0), {"d": b"\xc1garbage"})
    for _ in range(60):
        c.step()
    assert c.stats["dead"] == 400
    return int(r.xlen(keys.DEAD_LETTER_STREAM))


def _cooldowns_pruned(redis_url: str) -> int:
    """Cooldowns of 500 plates seen ten days ago (longest cooldown: 300 s) and one fresh."""
    r = redis.Redis.from_url(redis_url)
    old = time.time() - 10 * 86400
    r.hset(keys.RULES_COOLDOWN, mapping={f"c1|plate|P{i:04d}": old for i in range(500)})
    r.hset(keys.RULES_COOLDOWN, "c1|plate|FRESH", time.time())
    _rules_consumer(redis_url).maintain()
    assert r.hexists(keys.RULES_COOLDOWN, "c1|plate|FRESH")
    return int(r.hlen(keys.RULES_COOLDOWN))


BOUNDS = [
    # (structure, fill it, bound now, what the old code left)
    ("camera-status cap", _status_stream_capped, 1100, 3000),
    ("camera-status age trim", _status_stream_aged, 0, 50),
    ("dead-letter cap", _dead_letters_capped, 200, 400),
    ("cooldowns pruned", _cooldowns_pruned, 1, 501),
]


@pytest.mark.parametrize(("name", "fill", "bound", "_old"), BOUNDS, ids=[b[0] for b in BOUNDS])
def test_every_structure_is_bounded(
    redis_url: str, name: str, fill: Callable[[str], int], bound: int, _old: int
) -> None:
    """Each structure grew without bound (column ``_old``: its size on the old code)."""
    assert fill(redis_url) <= bound


def test_supervisor_watch_survives_an_undecodable_change_notice(redis_url: str) -> None:
    """A registry-change notice that is not UTF-8 raised UnicodeDecodeError in the watch
    loop, which caught only Redis errors: camera changes stopped being applied. Now the
    loop logs, counts, backs off and goes on; ``watch_health`` (in /health) says so."""
    from streams.supervisor import StreamSupervisor

    r = redis.Redis.from_url(redis_url)
    sup = StreamSupervisor(StreamsService(), redis_url, lambda: None, resync_s=3600,
                           autostart=False)  # type: ignore[arg-type,return-value]  # fmt: skip
    sup.ring.add("stream-worker-0")  # a ring member without an actor: assignments only

    def listeners() -> int:
        return int(r.pubsub_numsub(keys.CAMERAS_CHANGED)[0][1])

    others = listeners()  # the session Redis may still have other tests' subscribers
    sup.start_watching()
    try:
        assert _wait(lambda: listeners() == others + 1, 5)
        r.publish(keys.CAMERAS_CHANGED, b"\xff\xfe")
        cam = CameraConfig(id="cam-1", url="rtsp://10.0.0.5/x", latitude=0, longitude=0)
        r.hset(keys.CAMERAS, cam.id, cam.model_dump_json())
        r.publish(keys.CAMERAS_CHANGED, cam.id)
        assert _wait(lambda: "cam-1" in sup.owner, 5)
        health = sup.watch_health()
        assert health["errors"] >= 1 and health["last_error"] == "UnicodeDecodeError"
        assert health["state"] == "degraded"
    finally:
        sup._stop.set()
        if sup._thread is not None:
            sup._thread.join(5)
        sup.redis.close()
        r.close()


def _numpy_scalar_infer() -> Callable[[FrameBatch], list[FrameResult]]:
    """A detector bug seen in the wild: numpy scalars in ``extra`` (msgpack cannot pack
    them) for camera ``bad``; camera ``good`` gets a clean result."""

    def infer(batch: FrameBatch) -> list[FrameResult]:
        out = []
        for cid, no, t in zip(batch.camera_ids, batch.frame_nos, batch.frame_times, strict=True):
            score = np.float32(0.9) if cid == "bad" else 0.9
            out.append(FrameResult(
                camera_id=cid, frame_time=t, frame_no=no, width=160, height=120,
                boxes=[[1, 1, 20, 20]], scores=[0.9], class_ids=[int(ObjectClass.PLATE)],
                extra={"plate_text": ["AB123"], "plate_score": [score]},
            ))  # fmt: skip
        return out

    return infer


def test_one_crashing_stream_does_not_stop_its_workers_other_cameras(
    redis_url: str, tmp_path: Path
) -> None:
    """Old code: the first malformed result of camera ``bad`` raised out of ``_publish``,
    killed the inference thread and every camera of the worker stopped being analysed. Now
    the bad result is dropped alone and counted; ``good`` keeps flowing."""
    from streams.testing.h264 import write_clip
    from streams.worker import StreamWorker

    clip = write_clip(tmp_path / "c.mp4", seconds=2.0)
    prof = CameraProfile(input_width=160, input_height=120, loop=True)
    cams = [CameraConfig(id=c, url=str(clip), latitude=0, longitude=0, detectors=["plate"],
                         profile=prof) for c in ("good", "bad")]  # fmt: skip
    r = redis.Redis.from_url(redis_url)
    w = StreamWorker(cams, StreamsService(shards=1, max_batch=4), redis_url, _numpy_scalar_infer)
    try:
        assert _wait(lambda: w.bad_results >= 3, 20)
        before = r.xlen(keys.detections_stream(0))
        assert _wait(lambda: r.xlen(keys.detections_stream(0)) > before + 5, 10)
        published = {
            FrameResult.from_msgpack(f[b"d"]).camera_id
            for _, f in r.xrange(keys.detections_stream(0))
        }
        assert published == {"good"}
        assert w.stats()["bad_results"] >= 3
    finally:
        w.stop()
        r.close()


def test_an_append_during_verification_is_not_a_broken_chain(
    redis_url: str, tmp_path: Path
) -> None:
    """Live-view sessions append records at any moment: one landing between the last page
    read and the head read made the old verification report the chain broken."""

    class AppendBeforeHeadRead(redis.Redis):
        appender: AuditLog | None = None

        def get(self, name: Any) -> Any:
            if name == keys.AUDIT_HEAD and self.appender is not None:
                appender, self.appender = self.appender, None  # once, at the worst moment
                appender.append(actor="viewer", action="live.start", target="cam-1")
            return super().get(name)

    cfg = _config(tmp_path)
    plain = redis.Redis.from_url(redis_url)
    racy = AppendBeforeHeadRead.from_url(redis_url)
    writer, verifier = AuditLog(plain, cfg), AuditLog(racy, cfg)
    for i in range(3):
        writer.append(actor="alice", action="evidence:unredacted", target=f"al_{i}", reason="x")
    racy.appender = writer
    report = verifier.verify_report()
    assert report.ok, report.reason
    assert report.records == 4
    plain.close()
    racy.close()
