"""Operator commands on webhook delivery: status, dead letters, replay, purge, a receiver.

``citysight webhooks status|dead|replay|purge --config FILE [--redis-url URL] [NAME]``
(wired by ``citysight.app.cli``); ``citysight webhooks receive`` is a small verifying
receiver for trying a webhook out (the demo, a staging check). Replay moves dead-lettered
events back to the *end* of the webhook's outbox (they are delivered after what is queued
now, with their original event ids, so receivers de-duplicate as usual).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import redis

from citysight import keys, redisconn
from citysight.config import CitysightConfig, ConfigError, WebhookConfig, load_config
from serve_app.webhooks.delivery import MIN_SECRET_LENGTH, webhook_status
from serve_app.webhooks.payload import (
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    verify,
)

_OUTBOX_FIELDS = ("event_id", "body", "feed_ms", "feed_id")


def dead_letters(r: redis.Redis, name: str, count: int = 100) -> list[dict[str, Any]]:
    """The oldest ``count`` dead letters of webhook ``name`` (body decoded)."""
    rows = cast("list[Any]", r.xrange(keys.webhook_dead(name), min="-", max="+", count=count))
    out = []
    for eid, raw in rows:
        f = {keys.text(k) or "": keys.text(v) or "" for k, v in raw.items()}
        body = f.pop("body", "")
        try:
            parsed: Any = json.loads(body)
        except ValueError:
            parsed = body
        out.append({"dead_id": keys.text(eid), **f, "payload": parsed})
    return out


def replay(r: redis.Redis, name: str, ids: list[str] | None = None) -> int:
    """Move dead letters of ``name`` (all, or ``ids``) back into its outbox; returns how many.

    Each move is one transaction (append to the outbox, delete the dead letter), so a crash
    replays an event once or not at all.
    """
    dead, outbox = keys.webhook_dead(name), keys.webhook_outbox(name)
    rows = cast("list[Any]", r.xrange(dead, min="-", max="+"))
    want = set(ids) if ids else None
    moved = 0
    for eid, raw in rows:
        did = keys.text(eid) or ""
        if want is not None and did not in want:
            continue
        f = {keys.text(k) or "": keys.text(v) or "" for k, v in raw.items()}
        pipe = r.pipeline(transaction=True)
        pipe.xadd(outbox, {k: f.get(k, "") for k in _OUTBOX_FIELDS})
        pipe.xdel(dead, did)
        pipe.hincrby(keys.webhook_stats(name), "replayed", 1)
        pipe.execute()
        moved += 1
    return moved


def purge(r: redis.Redis, name: str) -> int:
    """Drop every dead letter of ``name``; returns how many."""
    n = int(r.xlen(keys.webhook_dead(name)))
    r.delete(keys.webhook_dead(name))
    return n


def _find(cfg: CitysightConfig, name: str) -> WebhookConfig:
    w = next((w for w in cfg.webhooks if w.name == name), None)
    if w is None:
        known = ", ".join(w.name for w in cfg.webhooks) or "none configured"
        raise SystemExit(f"citysight webhooks: no webhook {name!r} (known: {known})")
    return w


def main(argv: list[str], command: str) -> int:
    """One sub-command (``status``, ``dead``, ``replay``, ``purge``)."""
    p = argparse.ArgumentParser(prog=f"citysight webhooks {command}")
    p.add_argument("--config", required=True, help="citysight YAML config")
    p.add_argument("--redis-url", help="Redis URL (default: services.redis of the config)")
    p.add_argument("name", nargs="?" if command == "status" else None, help="webhook name")
    if command == "dead":
        p.add_argument("--count", type=int, default=100)
    if command == "replay":
        p.add_argument("--id", action="append", dest="ids", help="dead-letter id (repeat)")
    args = p.parse_args(argv)
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"citysight webhooks: {exc}", file=sys.stderr)
        return 2
    url = args.redis_url or cfg.services.redis.connection_url()
    if not url:
        print("citysight webhooks: no Redis URL (--redis-url or services.redis.url)")
        return 2
    r = redisconn.connect(url, socket_timeout=5)
    try:
        if command == "status":
            hooks = [_find(cfg, args.name)] if args.name else cfg.webhooks
            out = {w.name: {"state": (s := webhook_status(r, w)).state, **s.detail} for w in hooks}
            print(json.dumps(out, indent=2))
        elif command == "dead":
            _find(cfg, args.name)
            print(json.dumps(dead_letters(r, args.name, args.count), indent=2, ensure_ascii=False))
        elif command == "replay":
            _find(cfg, args.name)
            print(f"replayed {replay(r, args.name, args.ids)} event(s) into {args.name}'s outbox")
        else:
            _find(cfg, args.name)
            print(f"purged {purge(r, args.name)} dead letter(s) of {args.name}")
    except redis.RedisError as exc:
        print(f"citysight webhooks: Redis error: {exc}", file=sys.stderr)
        return 1
    finally:
        r.close()
    return 0


def status_main(argv: list[str]) -> int:
    """``citysight webhooks status``: every webhook's delivery status as JSON."""
    return main(argv, "status")


def dead_main(argv: list[str]) -> int:
    """``citysight webhooks dead NAME``: its dead letters as JSON."""
    return main(argv, "dead")


def replay_main(argv: list[str]) -> int:
    """``citysight webhooks replay NAME [--id ID]...``: dead letters back into the outbox."""
    return main(argv, "replay")


def purge_main(argv: list[str]) -> int:
    """``citysight webhooks purge NAME``: drop its dead letters."""
    return main(argv, "purge")


class VerifyingReceiver:
    """A webhook receiver that checks what a production one should.

    Signature over ``<timestamp>.<body>``, a timestamp within ``tolerance_s`` of now
    (replays of old requests are refused), de-duplication by event id; each new event is
    written as one JSON line to ``out``. Answers 401 to a bad signature, 400 to a stale
    timestamp, 200 otherwise (also to a duplicate: the sender may move on).
    """

    def __init__(
        self, secret: str, host: str = "127.0.0.1", port: int = 0, tolerance_s: float = 300.0,
        out: Any = None,
    ) -> None:  # fmt: skip
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.out = out or sys.stdout
        self.seen: set[str] = set()
        self.events: list[dict[str, Any]] = []
        self.duplicates = 0
        self.refused = 0
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        rx = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._reply(rx.accept(dict(self.headers.items()), body))

            def _reply(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler

    def accept(self, headers: dict[str, str], body: bytes) -> int:
        """Check one request; returns the HTTP status to answer."""
        h = {k.lower(): v for k, v in headers.items()}
        ts = h.get(TIMESTAMP_HEADER.lower(), "")
        if not verify(self.secret, ts, body, h.get(SIGNATURE_HEADER.lower(), "")):
            with self._lock:
                self.refused += 1
            return 401
        if abs(time.time() - int(ts)) > self.tolerance_s:
            with self._lock:
                self.refused += 1
            return 400
        eid = h.get(EVENT_ID_HEADER.lower(), "")
        with self._lock:
            if eid in self.seen:
                self.duplicates += 1
                return 200
            self.seen.add(eid)
            event = json.loads(body)
            self.events.append(event)
            print(json.dumps(event, ensure_ascii=False), file=self.out, flush=True)
        return 200

    def serve_forever(self) -> None:
        """Serve until :meth:`shutdown`."""
        self.server.serve_forever()

    def shutdown(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()


def receive_main(argv: list[str]) -> int:
    """``citysight webhooks receive``: print verified events as JSON lines until Ctrl-C."""
    p = argparse.ArgumentParser(prog="citysight webhooks receive")
    p.add_argument("--port", type=int, default=9000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--secret-env", default="CITYSIGHT_WEBHOOK_SECRET", help="secret variable")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    args = p.parse_args(argv)
    secret = os.environ.get(args.secret_env, "")
    if len(secret) < MIN_SECRET_LENGTH:
        print(
            f"citysight webhooks receive: set {args.secret_env} to the webhook's secret "
            f"({MIN_SECRET_LENGTH}+ characters)",
            file=sys.stderr,
        )
        return 2
    rx = VerifyingReceiver(secret, args.host, args.port)
    print(f"receiving on http://{args.host}:{rx.port}/ (Ctrl-C stops)", file=sys.stderr)
    t = threading.Thread(target=rx.serve_forever, daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + args.duration if args.duration else None
        while deadline is None or time.monotonic() < deadline:
            time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        rx.shutdown()
    print(
        f"{len(rx.events)} event(s), {rx.duplicates} duplicate(s), {rx.refused} refused",
        file=sys.stderr,
    )
    return 0
