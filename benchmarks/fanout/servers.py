"""The two servers the fan-out benchmark compares, each run in its own process.

* ``citysight``: the production FastAPI app (:func:`serve_app.http.create_api`) under
  uvicorn: bearer auth, department scope, filters, bounded per-client queues.
* ``baseline``: a bare ASGI WebSocket broadcast server under the same uvicorn: one Redis
  feed reader, every message sent to every socket, no auth, no scoping, no queues.

Both read a feed stream (the baseline its own key) and send the same JSON text, so the
difference is citysight's own overhead.

Usage: ``python -m benchmarks.fanout.servers {citysight|baseline} PORT REDIS_URL``.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any, cast

import redis.asyncio as aredis
import uvicorn

BASELINE_FEED_KEY = "citysight:bench:baseline-feed"
"""The baseline reads its own stream so the two servers can be loaded in turn."""
# XRANGE replies of the ``decode_responses=True`` (RESP2) client: (id, fields) pairs.
_Entries = list[tuple[str, dict[str, str]]]


class BroadcastApp:
    """Minimal ASGI broadcast server (the baseline)."""

    def __init__(self, redis_url: str) -> None:
        """Create the app; the feed reader starts with the first connection."""
        self.redis_url = redis_url
        self.sends: set[Any] = set()
        self.reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        r = aredis.Redis.from_url(self.redis_url, decode_responses=True)
        last = cast(_Entries, await r.xrevrange(BASELINE_FEED_KEY, count=1))
        last_id = last[0][0] if last else "0-0"
        while True:
            resp = cast(
                "list[tuple[str, _Entries]] | None",
                await r.xread({BASELINE_FEED_KEY: last_id}, block=1000, count=1000),
            )
            for _stream, entries in resp or []:
                for eid, fields in entries:
                    last_id = eid
                    text = f'{{"type":"alert","id":"{eid}","alert":{fields["d"]}}}'
                    for send in list(self.sends):
                        try:
                            await send({"type": "websocket.send", "text": text})
                        except Exception:
                            self.sends.discard(send)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """ASGI entry point: accept every WebSocket and keep it until it disconnects."""
        if scope["type"] == "lifespan":
            while True:
                msg = await receive()
                if msg["type"] == "lifespan.startup":
                    self.reader = asyncio.create_task(self._read())
                    await send({"type": "lifespan.startup.complete"})
                elif msg["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "websocket":
            await send({"type": "http.response.start", "status": 404, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        self.sends.add(send)
        try:
            while (await receive())["type"] != "websocket.disconnect":
                pass
        finally:
            self.sends.discard(send)


def build(kind: str, redis_url: str) -> Any:
    """The ASGI app of one benchmark server."""
    if kind == "baseline":
        return BroadcastApp(redis_url)
    from benchmarks.fanout.world import world_config
    from serve_app.http import create_api

    return create_api(world_config(), redis_url, ws_queue_size=1000)


def main(argv: list[str]) -> int:
    """``servers.py KIND PORT REDIS_URL``."""
    kind, port, redis_url = argv[0], int(argv[1]), argv[2]
    uvicorn.run(
        build(kind, redis_url),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        backlog=4096,
        ws_ping_interval=None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
