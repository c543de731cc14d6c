"""A real HTTP webhook receiver on 127.0.0.1 for the delivery tests.

It verifies each request's signature as a receiver would (the code of docs/integrations.md),
answers what the test tells it to, and records every request. ``stop()`` closes the socket,
so the sender sees refused connections until ``start()`` listens on the same port again.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from citysight.app.services.redis_server import free_port


@dataclass
class Request:
    """One request as received."""

    event_id: str
    attempt: int
    timestamp: str
    signature_ok: bool
    status: int
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)


class Receiver:
    """Records requests; ``answer(n)`` gives the status for the n-th request (from 0)."""

    def __init__(
        self,
        secret: str,
        answer: Callable[[int], int] = lambda n: 200,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.secret = secret
        self.answer = answer
        self.tls = tls  # (certificate, key) PEM files: HTTPS on "localhost"
        self.port = free_port()
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        if self.tls:
            return f"https://localhost:{self.port}/hook"
        return f"http://127.0.0.1:{self.port}/hook"

    def accepted(self) -> list[Request]:
        """Requests answered 2xx, in the order they arrived."""
        with self._lock:
            return [q for q in self.requests if 200 <= q.status < 300]

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                ts = self.headers.get("X-Citysight-Timestamp", "")
                sig = self.headers.get("X-Citysight-Signature", "")
                mac = hmac.new(outer.secret.encode(), ts.encode() + b"." + body, hashlib.sha256)
                ok = hmac.compare_digest("sha256=" + mac.hexdigest(), sig)
                with outer._lock:
                    status = outer.answer(len(outer.requests))
                    outer.requests.append(
                        Request(
                            self.headers.get("X-Citysight-Event-Id", ""),
                            int(self.headers.get("X-Citysight-Attempt") or 0),
                            ts,
                            ok,
                            status,
                            json.loads(body),
                            dict(self.headers.items()),
                        )
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        if self.tls:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self._server.socket = ctx.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
