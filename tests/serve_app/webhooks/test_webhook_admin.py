"""``citysight webhooks status|dead|replay|purge`` against a real Redis (docs/integrations.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from citysight import keys
from citysight.app.cli import main


def _config(tmp_path: Path) -> Path:
    p = tmp_path / "citysight.yaml"
    p.write_text(
        "webhooks:\n"
        "  - name: ops\n"
        "    url: https://hooks.example.org/citysight\n"
        "    secret_env: OPS_WEBHOOK_SECRET\n",
        encoding="utf-8",
    )
    return p


def _dead(r: redis.Redis, event_id: str) -> None:
    r.xadd(
        keys.webhook_dead("ops"),
        {"event_id": event_id, "body": json.dumps({"id": event_id}), "feed_ms": "1",
         "feed_id": "1-0", "attempts": "12", "last_error": "HTTP 500", "dead_at": "1"},
    )  # fmt: skip


def test_cli_status_dead_replay_purge(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = str(_config(tmp_path))
    r = redis.Redis.from_url(redis_url)
    for eid in ("al_1:0", "al_2:0", "al_3:0"):
        _dead(r, eid)
    base = ["--config", cfg, "--redis-url", redis_url]

    assert main(["webhooks", "status", *base]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["ops"]["dead_letters"] == 3 and status["ops"]["pending"] == 0

    assert main(["webhooks", "dead", *base, "ops"]) == 0
    dead = json.loads(capsys.readouterr().out)
    assert [d["event_id"] for d in dead] == ["al_1:0", "al_2:0", "al_3:0"]
    assert dead[0]["payload"] == {"id": "al_1:0"} and dead[0]["last_error"] == "HTTP 500"

    assert main(["webhooks", "replay", *base, "ops", "--id", dead[1]["dead_id"]]) == 0
    assert "replayed 1 event(s)" in capsys.readouterr().out
    rows = r.xrange(keys.webhook_outbox("ops"))
    assert [x[1][b"event_id"] for x in rows] == [b"al_2:0"]
    assert set(rows[0][1]) == {b"event_id", b"body", b"feed_ms", b"feed_id"}

    assert main(["webhooks", "purge", *base, "ops"]) == 0
    assert "purged 2 dead letter(s)" in capsys.readouterr().out
    assert r.xlen(keys.webhook_dead("ops")) == 0
    r.close()


def test_cli_unknown_webhook_and_bad_config(tmp_path: Path, redis_url: str) -> None:
    cfg = str(_config(tmp_path))
    with pytest.raises(SystemExit, match="no webhook 'nope' \\(known: ops\\)"):
        main(["webhooks", "dead", "--config", cfg, "--redis-url", redis_url, "nope"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("webhooks:\n  - name: x\n    url: ftp://a/\n    secret_env: S\n")
    assert main(["webhooks", "status", "--config", str(bad), "--redis-url", redis_url]) == 2


def test_receive_cli_verifies_and_dedups(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io
    import threading
    import time

    import httpx

    from citysight.app.services.redis_server import free_port
    from serve_app.webhooks.admin import VerifyingReceiver
    from serve_app.webhooks.payload import sign

    secret = "receiver-secret-0123456789"
    monkeypatch.delenv("CITYSIGHT_WEBHOOK_SECRET", raising=False)
    assert main(["webhooks", "receive", "--duration", "0"]) == 2
    assert "set CITYSIGHT_WEBHOOK_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("CITYSIGHT_WEBHOOK_SECRET", secret)
    assert main(["webhooks", "receive", "--port", str(free_port()), "--duration", "0.1"]) == 0
    assert "0 event(s), 0 duplicate(s), 0 refused" in capsys.readouterr().err

    out = io.StringIO()
    rx = VerifyingReceiver(secret, out=out)
    t = threading.Thread(target=rx.serve_forever, daemon=True)
    t.start()
    try:
        body = b'{"id":"al_1:0","type":"alert.raised"}'

        def post(ts: int, key: str = secret, eid: str = "al_1:0") -> int:
            headers = {
                "X-Citysight-Timestamp": str(ts),
                "X-Citysight-Signature": sign(key, ts, body),
                "X-Citysight-Event-Id": eid,
            }
            url = f"http://127.0.0.1:{rx.port}/"
            return httpx.post(url, content=body, headers=headers, trust_env=False).status_code

        now = int(time.time())
        assert post(now) == 200
        assert post(now) == 200  # a retry of the same event: answered, not recorded again
        assert post(now, key="x" * 20) == 401
        assert post(now - 3600) == 400  # an old (replayed) request
        assert rx.duplicates == 1 and rx.refused == 2
        assert [json.loads(x)["id"] for x in out.getvalue().splitlines()] == ["al_1:0"]
    finally:
        rx.shutdown()
