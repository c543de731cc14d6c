"""An embedded ``redis-server``: own port, own data dir, AOF on, bound to 127.0.0.1.

Used by ``citysight demo``/``run`` when no external Redis is configured, and by the tests
(a real server, never a mock).
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

logger = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A service could not start; the message says why and what to do."""


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something already listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def find_redis_binary() -> str:
    """Path of ``redis-server``; raises :class:`ServiceError` naming the apt package."""
    for cand in ("redis-server", "/usr/bin/redis-server", "/usr/sbin/redis-server"):
        path = shutil.which(cand)
        if path:
            return path
    raise ServiceError(
        "redis-server not found: install it with `apt-get install redis-server` "
        "(the README's setup command does this) or set services.redis.url"
    )


class EmbeddedRedis:
    """A private ``redis-server`` process.

    Args:
        port: TCP port on 127.0.0.1.
        data_dir: Directory for the AOF and RDB files (created).
        appendonly: Keep the append-only file (durable hand-offs survive a restart).
    """

    def __init__(self, port: int, data_dir: str | Path, *, appendonly: bool = True) -> None:
        self.port = port
        self.data_dir = Path(data_dir)
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://`` URL of the server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING."""
        binary = find_redis_binary()
        if port_in_use(self.port):
            raise ServiceError(
                f"port {self.port} is already in use: stop what listens there or set "
                "services.redis.embedded_port to a free port"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.data_dir / "redis.log"
        args = [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.data_dir.resolve()),
            "--appendonly",
            "yes" if self.appendonly else "no",
            "--appendfsync",
            "everysec",
            "--save",
            "",
            "--daemonize",
            "no",
            "--protected-mode",
            "yes",
            "--logfile",
            str(log.resolve()),
        ]
        # Its own session: a terminal's Ctrl-C (SIGINT to the whole foreground group) must not
        # stop Redis before the stream workers and the Serve app have stopped writing to it;
        # the runtime stops it last.
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = (self.proc.stderr.read() if self.proc.stderr else b"").decode()[-500:]
                tail = log.read_text()[-500:] if log.exists() else ""
                raise ServiceError(f"redis-server exited at start: {err or tail}".strip())
            if self.ping():
                logger.info("embedded redis on 127.0.0.1:%s (data %s)", self.port, self.data_dir)
                return self
            time.sleep(0.05)
        self.stop()
        raise ServiceError(f"redis-server did not answer within {timeout_s:.0f} s")

    def ping(self) -> bool:
        """Whether the server answers a raw PING."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the server (SIGTERM lets it flush the AOF), then kill if needed."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self.proc = None

    def kill(self) -> None:
        """Kill the server abruptly (chaos tests)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
