"""N live viewers in their own process (their CPU is not the server's): read and count."""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from websockets.asyncio.client import connect


async def _one(url: str, token: str, seconds: float, out: dict[str, int]) -> None:
    deadline = time.monotonic() + seconds
    async with connect(
        url, additional_headers={"Authorization": f"Bearer {token}"}, max_size=None
    ) as ws:
        while (left := deadline - time.monotonic()) > 0:
            try:
                msg = await asyncio.wait_for(ws.recv(), left)
            except TimeoutError:
                break
            if isinstance(msg, bytes):
                out["bytes"] += len(msg)
                out["messages"] += 1


async def _run(url: str, token: str, n: int, seconds: float) -> dict[str, int]:
    out = {"bytes": 0, "messages": 0}
    await asyncio.gather(*(_one(url, token, seconds, out) for _ in range(n)))
    return out


def main() -> None:
    """``python -m benchmarks.video.viewers URL TOKEN N SECONDS``: prints JSON totals."""
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("token")
    p.add_argument("n", type=int)
    p.add_argument("seconds", type=float)
    a = p.parse_args()
    print(json.dumps(asyncio.run(_run(a.url, a.token, a.n, a.seconds))))


if __name__ == "__main__":
    main()
