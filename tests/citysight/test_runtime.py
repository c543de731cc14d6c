"""The runtime's service start-up: an external, password-protected Redis."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import redis

from citysight.config import parse_config
from citysight.runtime import Runtime, token_hash
from citysight.services.redis_server import EmbeddedRedis, ServiceError, free_port

PASSWORD = "pa:ss@word/1"
TOKEN = "secret-token-0123456789"


@pytest.fixture
def locked_redis(tmp_path: Path):
    srv = EmbeddedRedis(free_port(), tmp_path / "redis", appendonly=False).start()
    redis.Redis.from_url(srv.url).config_set("requirepass", PASSWORD)
    yield srv
    srv.stop()


def _runtime(url: str, tmp_path: Path) -> Runtime:
    cfg = parse_config(
        {"services": {"redis": {"url": url, "password_env": "CS_RT_REDIS_PASSWORD"}}}, "test"
    )
    return Runtime(cfg, tmp_path)


def test_every_client_gets_the_password(
    locked_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CS_RT_REDIS_PASSWORD", PASSWORD)
    rt = _runtime(locked_redis.url, tmp_path)
    rt._start_redis()
    # redis_url is what Serve replicas, stream workers and the seeding step connect with.
    assert redis.Redis.from_url(rt.redis_url).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(locked_redis.url).ping()


def test_unset_or_wrong_password_is_a_clear_error(
    locked_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CS_RT_REDIS_PASSWORD", raising=False)
    with pytest.raises(ServiceError, match=r"password_env.*CS_RT_REDIS_PASSWORD"):
        _runtime(locked_redis.url, tmp_path)._start_redis()
    monkeypatch.setenv("CS_RT_REDIS_PASSWORD", "wrong")
    with pytest.raises(ServiceError, match="unreachable") as info:
        _runtime(locked_redis.url, tmp_path)._start_redis()
    assert "wrong" not in str(info.value)


def test_no_serve_is_the_cluster_control_process(
    redis_url: str, tmp_path: Path, models_dir: Path
) -> None:
    """``citysight run --no-serve``: seeds Redis and runs the cameras, deploys no Serve app."""
    import json
    import subprocess
    import sys
    import time

    import yaml

    from citysight.contracts import detections_stream
    from citysight.runtime import COMPONENTS_KEY, PRINCIPALS_KEY
    from citysight.services.redis_server import port_in_use
    from streams.testing.h264 import write_clip

    clip = write_clip(tmp_path / "cam.mp4", width=160, height=120, fps=10, seconds=2)
    http_port = free_port()
    cfg = {
        "cameras": [
            {"id": "k1", "url": str(clip), "latitude": 20.0, "longitude": 110.0,
             "detectors": ["fire_smoke"], "profile": {"analytics_fps": 5}},
        ],
        "tokens": [{"name": "ops", "role": "admin", "department": "*", "token_env": "CS_T_OPS"}],
        "services": {
            "redis": {"url": redis_url},
            "inference": {"type": "onnxruntime", "models_dir": str(models_dir)},
            "http": {"port": http_port},
            "streams": {"shards": 1},
            "ray": {"temp_dir": f"/tmp/csr{os.getpid()}", "num_cpus": 2},
        },
    }  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-m", "citysight.cli", "run", "--config", str(path), "--workdir",
         str(tmp_path / "w"), "--no-serve", "--duration", "12"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root,
        env={**os.environ, "CS_T_OPS": TOKEN},
    )  # fmt: skip
    r = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 90
        while r.xlen(detections_stream(0)) == 0 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.3)
        assert r.xlen(detections_stream(0)) > 0  # the camera runs and publishes results
        assert not port_in_use(http_port)  # no Serve app, no HTTP
        principal = r.hget(PRINCIPALS_KEY, token_hash(TOKEN)) or b"{}"
        assert json.loads(principal)["name"] == "ops"
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(f"/tmp/csr{os.getpid()}", ignore_errors=True)
    assert proc.returncode == 0, out
    assert "stream supervisor for 1 cameras" in out
    assert b"streams" in r.hkeys(COMPONENTS_KEY)


def test_relative_paths_never_reach_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's defaults are relative (``.citysight``, ``model_repo/files``); the runtime
    hands only absolute paths to Redis, Triton and Ray, whose processes run elsewhere."""
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({"services": {"inference": {"type": "triton"}}}, "test")
    rt = Runtime(cfg, Path(".citysight"))
    assert rt.workdir == tmp_path / ".citysight"
    assert rt.cfg.services.redis.data_dir == str(tmp_path / ".citysight/redis")
    assert rt.cfg.services.inference.models_dir == str(tmp_path / "model_repo/files")
    from inference.triton.server import LocalTriton

    server = LocalTriton.for_config(rt.cfg.services.inference, workdir=rt.workdir / "triton")
    assert server.workdir.is_absolute() and server.models_dir.is_absolute()
    assert server.command(server.workdir / "tritonserver/bin/tritonserver")[0].startswith("/")
