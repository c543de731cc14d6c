"""WebSocket subscribers of the fan-out benchmark (run in their own process).

Opens N connections, prints ``READY`` once all are open, records the latency of every
alert (receive time minus the alert's ``raised_at``, set by the publisher) until
``STOP <alerts published>`` arrives on stdin and the backlog has drained (or stalled for
5 s), then prints one JSON line with the results.

Usage: ``python -m benchmarks.fanout.subscribers URL N TOKEN``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CONNECT_BATCH = 50
IDLE_S = 5.0


async def _reader(
    ws: ClientConnection, lat: list[tuple[int, float]], state: dict[str, int]
) -> None:
    try:
        async for raw in ws:
            now = time.time()
            msg = json.loads(raw)
            if msg.get("type") == "alert":
                a = msg["alert"]
                # Alert ids end in the publisher's sequence number (its rate step).
                seq = int(a["id"].rsplit("_", 1)[1])
                lat.append((seq, (now - a["raised_at"]) * 1000.0))
    except ConnectionClosed:
        state["closed"] += 1


async def run(url: str, n: int, token: str) -> dict[str, Any]:
    """Subscribe ``n`` clients and collect latencies until STOP on stdin."""
    headers = {"Authorization": f"Bearer {token}"}
    socks: list[ClientConnection] = []
    for i in range(0, n, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, n - i)
        socks += await asyncio.gather(
            *(
                connect(url, additional_headers=headers, ping_interval=None, max_queue=None)
                for _ in range(batch)
            )
        )
    lat: list[tuple[int, float]] = []
    state = {"closed": 0}
    tasks = [asyncio.create_task(_reader(ws, lat, state)) for ws in socks]
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    expected = 0
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line or line.startswith("STOP"):
            parts = line.split()
            expected = int(parts[1]) * n if len(parts) > 1 else 0
            break
    # Drain: wait for everything published, or until nothing arrived for IDLE_S.
    t_stop = time.monotonic()
    seen, t_seen = len(lat), time.monotonic()
    while len(lat) < expected and time.monotonic() - t_seen < IDLE_S:
        await asyncio.sleep(0.2)
        if len(lat) != seen:
            seen, t_seen = len(lat), time.monotonic()
    drain_s = time.monotonic() - t_stop
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for ws in socks:
        ws.transport.abort()
    return {
        "latencies_ms": [[seq, round(ms, 3)] for seq, ms in lat],
        "closed": state["closed"],
        "drain_s": round(drain_s, 2),
    }


def main(argv: list[str]) -> int:
    """``subscribers.py URL N TOKEN``."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    url, n, token = argv[0], int(argv[1]), argv[2]
    out = asyncio.run(run(url, n, token))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
