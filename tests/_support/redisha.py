"""Real Redis primaries, replicas and Sentinels on 127.0.0.1 for tests (no root needed)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import redis
from testkit import IN_CI

from citysight.app.services.redis_server import free_port


def _wait(pred: object, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if pred():  # type: ignore[operator]
                return
        except redis.RedisError:
            pass
        time.sleep(0.05)
    raise TimeoutError(what)


class Proc:
    """One redis-server or redis-sentinel process on a free port of 127.0.0.1."""

    def __init__(self, folder: Path, *args: str, sentinel: bool = False) -> None:
        self.port = free_port()
        folder.mkdir(parents=True, exist_ok=True)
        binary = shutil.which("redis-sentinel" if sentinel else "redis-server")
        if binary is None:
            msg = "redis-sentinel is not installed (infra/local/setup.sh --test installs it)"
            if IN_CI:
                pytest.fail(msg)
            pytest.skip(msg)
        if sentinel:
            conf = folder / "sentinel.conf"  # Sentinel rewrites its config: one file per process
            conf.write_text("\n".join(args) + "\n")
            argv = [binary, str(conf), "--port", str(self.port), "--bind", "127.0.0.1"]
        else:
            argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            argv += ["--appendonly", "no", "--dir", str(folder), *args]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait(lambda: self.client().ping(), 10.0, f"{argv[0]} on {self.port} answers PING")

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"

    def client(self) -> redis.Redis:
        """A direct client."""
        return redis.Redis(port=self.port, socket_timeout=1)

    def kill(self) -> None:
        """SIGKILL (a crash, not a shutdown)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def add_replica(folder: Path, primary: Proc) -> Proc:
    """A replica of ``primary``, returned once in sync (the caller kills it)."""
    rep = Proc(folder, "--replicaof", "127.0.0.1", str(primary.port))
    _wait(
        lambda: rep.client().info("replication")["master_link_status"] == "up",
        15.0,
        "replica in sync",
    )
    return rep


@contextmanager
def sentinel_pair(
    folder: Path, master: str = "citysight", *, replica: bool = True
) -> Iterator[tuple[Proc, Proc | None, Proc]]:
    """A primary, its replica (unless ``replica=False``) and one Sentinel (quorum 1).

    Yields ``(primary, replica, sentinel)``; everything is killed on exit.
    """
    procs: list[Proc] = []
    try:
        primary = Proc(folder / "a")
        procs.append(primary)
        rep = None
        if replica:
            rep = add_replica(folder / "b", primary)
            procs.append(rep)
        sentinel = Proc(
            folder / "s",
            f"sentinel monitor {master} 127.0.0.1 {primary.port} 1",
            f"sentinel down-after-milliseconds {master} 1000",
            f"sentinel failover-timeout {master} 4000",
            sentinel=True,
        )
        procs.append(sentinel)

        def replica_known() -> bool:
            # a replica is promotable once the Sentinel itself talks to it (flags exactly
            # "slave", link ok); knowing it from the primary's INFO is not enough
            for rep in sentinel.client().sentinel_slaves(master):
                if rep.get("flags") == "slave" and rep.get("master-link-status") == "ok":
                    return True
            return False

        if rep is not None:
            _wait(replica_known, 20.0, "the Sentinel talks to the replica")
        yield primary, rep, sentinel
    finally:
        for p in procs:
            p.kill()
