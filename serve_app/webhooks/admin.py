"""Operator commands on webhook delivery: status, dead letters, replay, purge.

``citysight webhooks status|dead|replay|purge --config FILE [--redis-url URL] [NAME]``
(wired by ``citysight.app.cli``). Replay moves dead-lettered events back to the *end* of
the webhook's outbox (they are delivered after what is queued now, with their original
event ids, so receivers de-duplicate as usual).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, cast

import redis

from citysight import keys, redisconn
from citysight.config import CitysightConfig, ConfigError, WebhookConfig, load_config
from serve_app.webhooks.delivery import webhook_status

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
