"""Shared fixtures: real services (Redis, Ray) and the shared data/models folders."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import IN_CI, ROOT, SHARED, need_shared

from citysight.app.services.redis_server import EmbeddedRedis, free_port

__all__ = ["IN_CI", "ROOT", "SHARED", "need_shared"]

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """The ../shared folder (data and models)."""
    return need_shared(".")


@pytest.fixture(scope="session")
def models_dir() -> Path:
    """../shared/models (model files no pip package carries)."""
    return need_shared("models")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data (labelled eval sets and videos)."""
    return need_shared("data")


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """A real redis-server for the whole session, on a free port of 127.0.0.1."""
    srv = EmbeddedRedis(free_port(), tmp_path_factory.mktemp("redis"), appendonly=False)
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> Iterator[str]:
    """URL of the session Redis, emptied before each test."""
    import redis

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    r.close()
    yield redis_server.url


@pytest.fixture(scope="session")
def ray_local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """A private local Ray (never attaches to another Ray on the machine)."""
    import ray

    tmp = Path("/tmp") / f"csray-{os.getpid()}"
    ray.init(
        address="local",
        include_dashboard=False,
        _temp_dir=str(tmp),
        num_cpus=4,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    try:
        from ray import serve

        serve.shutdown()
    except Exception:
        pass
    ray.shutdown()
