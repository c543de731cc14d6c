"""The runtime's service start-up: an external, password-protected Redis."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from citysight.config import parse_config
from citysight.runtime import Runtime
from citysight.services.redis_server import EmbeddedRedis, ServiceError, free_port

PASSWORD = "pa:ss@word/1"


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
