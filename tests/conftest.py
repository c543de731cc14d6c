"""Shared fixtures: real services (Redis, Ray) and the shared data/models folders."""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import IN_CI, ROOT, SHARED, need_shared

from citysight.app.services.redis_server import EmbeddedRedis, free_port

__all__ = ["IN_CI", "ROOT", "SHARED", "need_shared"]

os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

_EXIT_STATUS: list[int] = []


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    _EXIT_STATUS.append(int(exitstatus))


def _leftover_threads() -> list[threading.Thread]:
    main = threading.main_thread()
    return [t for t in threading.enumerate() if t is not main and not t.daemon and t.is_alive()]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Never hang after the run: a non-daemon thread a test left behind (an event loop whose
    Redis is gone, retrying forever) would keep the interpreter, and CI, waiting until its
    time limit. Wait a little for threads that are finishing, then name each one with its
    stack and exit with pytest's own status."""
    deadline = time.monotonic() + 20
    left = _leftover_threads()
    while left and time.monotonic() < deadline:
        time.sleep(0.5)
        left = _leftover_threads()
    if not left:
        return
    frames = sys._current_frames()
    lines = [f"conftest: {len(left)} non-daemon thread(s) left running after the tests:"]
    for t in left:
        lines.append(f"--- {t.name} ---")
        frame = frames.get(t.ident or -1)
        if frame is not None:
            lines.extend(line.rstrip() for line in traceback.format_stack(frame)[-8:])
    sys.stderr.write("\n".join(lines) + "\n")
    sys.stderr.flush()
    sys.stdout.flush()
    os._exit(_EXIT_STATUS[-1] if _EXIT_STATUS else 1)


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
