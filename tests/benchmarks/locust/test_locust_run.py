"""The locust runner: target policy, and a tiny real run against a local citysight API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from benchmarks.city.scenario import city_config_dict, make_tokens, principals
from benchmarks.locust.run import check_target, main, summarise
from citysight.app.services.redis_server import free_port
from citysight.config import parse_config
from citysight.contracts import Alert, AlertKind, Location, Severity

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("http://127.0.0.1:8000", True),
        ("redis://127.0.0.1:6390/0", True),
        ("http://localhost:8000", False),
        ("http://10.1.2.3:8000", False),
        ("http://example.com", False),
        ("http://127.0.0.1.example.com:80", False),
    ],
)
def test_only_loopback_targets(url: str, ok: bool) -> None:
    if ok:
        check_target(url)
    else:
        with pytest.raises(ValueError, match=r"127\.0\.0\.1"):
            check_target(url)


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "http://192.168.1.5:8000"],
        ["--host", "http://127.0.0.1:1", "--redis-url", "redis://10.0.0.1:6379"],
        ["--host", "http://127.0.0.1:1", "--users", "100000"],
        ["--host", "http://127.0.0.1:1", "--run-time", "0"],
        ["--host", "http://127.0.0.1:1", "NoSuchUser"],
        [],
        ["--host", "http://127.0.0.1:1", "--start-city", "10"],
        ["--start-city", "100000"],
    ],
)
def test_refused_runs_exit_2_without_starting_locust(argv: list[str], tmp_path: Path) -> None:
    assert main([*argv, "--out-dir", str(tmp_path)]) == 2
    assert not list(tmp_path.iterdir())


def test_summarise_percentiles() -> None:
    stats = [
        {
            "method": "GET",
            "name": "/x",
            "num_requests": 100,
            "num_failures": 1,
            "response_times": {str(i): 1 for i in range(1, 101)},
            "max_response_time": 100,
            "start_time": 0.0,
            "last_request_timestamp": 10.0,
        }
    ]
    s = summarise(stats)["GET /x"]
    assert (s["p50_ms"], s["p99_ms"], s["rps"], s["num_failures"]) == (50.0, 99.0, 10.0, 1)


@pytest.fixture
def api(redis_url: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """The real citysight API under uvicorn, with a thread raising alerts every 0.2 s."""
    port = free_port()
    cfg = city_config_dict(10, http_port=port, shards=2)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    tokens = make_tokens()
    r = redis.Redis.from_url(redis_url)
    r.hset("citysight:principals", mapping=principals(tokens))
    code = (
        "import json,sys,uvicorn\n"
        "from citysight.config import parse_config\n"
        "from serve_app.http import create_api\n"
        f"cfg = parse_config(json.load(open({str(cfg_path)!r})), 'test')\n"
        f"uvicorn.run(create_api(cfg, {redis_url!r}), host='127.0.0.1', port={port},"
        " log_level='warning')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(base + "/health", timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("API did not start") from None
                time.sleep(0.3)
        from serve_app.store.alerts import AlertStore

        store = AlertStore(r, parse_config(cfg, "test"))
        stop = threading.Event()

        def raise_alerts() -> None:
            i = 0
            while not stop.wait(0.2):
                i += 1
                now = time.time()
                store.save_new(
                    [
                        Alert(
                            id=f"al_test{i:06d}",
                            kind=AlertKind.FIRE if i % 2 else AlertKind.PLATE,
                            severity=Severity.HIGH,
                            camera_id="sim-00001",
                            location=Location(lat=20.0, lon=110.3),
                            department="fire" if i % 2 else "police",
                            started_at=datetime.now(UTC),
                            detected_at=now,
                        )
                    ]
                )

        t = threading.Thread(target=raise_alerts, daemon=True)
        t.start()
        yield base, tokens
        stop.set()
        t.join()
    finally:
        server.terminate()
        server.wait(timeout=20)
        r.close()


def test_tiny_locust_run(
    api: tuple[str, dict[str, str]], redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, tokens = api
    monkeypatch.setenv("CITYSIGHT_LOCUST_TOKENS", json.dumps(tokens))
    monkeypatch.setenv("CITYSIGHT_LOCUST_CAMERAS", "sim-00001,sim-00002")
    monkeypatch.setenv("CITYSIGHT_LOCUST_SHARDS", "2")
    # two users of each of the four classes, spawned at once, for long enough that each
    # runs its tasks even on a loaded 2-core CI box
    argv = ["--host", base, "--redis-url", redis_url, "-u", "8", "-r", "8", "-t", "8"]
    rc = main([*argv, "--name", "t", "--out-dir", str(tmp_path)])
    assert rc == 0
    doc = json.loads((tmp_path / "locust-t.json").read_text())
    s = doc["summary"]
    assert s["WS alert (raised→recv)"]["num_requests"] > 0
    assert s["WS alert (raised→recv)"]["p99_ms"] < 5000
    assert s["GET /api/alerts"]["num_requests"] > 0
    assert s["GET /api/alerts"]["num_failures"] == 0
    assert any(k.startswith("XADD") and v["num_requests"] > 0 for k, v in s.items())
    assert not any(k.startswith("WS duplicate") for k in s)
    assert (tmp_path / "locust-t.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "locust-t_stats_history.csv").exists()
    r = redis.Redis.from_url(redis_url)
    assert r.xlen("citysight:detections:0") + r.xlen("citysight:detections:1") > 0
