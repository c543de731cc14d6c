"""``citysight bench video``: what video costs (live view; evidence clips add their part).

Live part (:func:`live_bench`): one stream worker reading a live 25 fps H.264 camera with a
burnt-in clock, every frame analysed; glass-to-glass delay read back from frames decoded off
the WebSocket; then the analytics frame rate and this process's CPU (worker + ingress)
with 0, 4 and 16 viewers (viewers in their own process), in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.video.live import LiveViewer, percentile
from benchmarks.video.world import LiveWorld, live_token
from citysight.app.services.redis_server import EmbeddedRedis, free_port
from streams.testing.infer import red_blob_infer_factory


async def _delay(world: LiveWorld, seconds: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    viewer = LiveViewer(warmup_s=1.5)
    hdr = {"Authorization": f"Bearer {live_token('admin')}"}
    deadline = time.monotonic() + seconds
    async with connect(world.ws_url, additional_headers=hdr, max_size=None) as ws:
        while time.monotonic() < deadline:
            msg = await asyncio.wait_for(ws.recv(), 15)
            if isinstance(msg, bytes):
                viewer.feed(msg)
    viewer.close()
    d = viewer.delays_ms
    return {
        "frames_decoded": viewer.frames,
        "frames_with_clock": len(d),
        "p50_ms": round(percentile(d, 0.5), 1),
        "p95_ms": round(percentile(d, 0.95), 1),
        "max_ms": round(max(d), 1) if d else None,
        "errors": viewer.errors,
    }


def _phase(world: LiveWorld, viewers: int, seconds: float) -> dict[str, Any]:
    proc = None
    if viewers:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.video.viewers",
                world.ws_url,
                live_token("admin"),
                str(viewers),
                str(seconds + 4),
            ],
            stdout=subprocess.PIPE,
        )
        deadline = time.monotonic() + 20  # every viewer connected before measuring
        while world.app.state.ctx.live.viewers < viewers and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # past the fast-start burst
    a0, c0, t0 = world.analysed(), time.process_time(), time.monotonic()
    time.sleep(seconds)
    a1, c1, t1 = world.analysed(), time.process_time(), time.monotonic()
    out: dict[str, Any] = {
        "viewers": viewers,
        "analytics_fps": round((a1 - a0) / (t1 - t0), 2),
        "server_cpu_pct": round(100 * (c1 - c0) / (t1 - t0), 1),
        "viewers_connected": world.app.state.ctx.live.viewers,
    }
    if proc is not None:
        stdout, _ = proc.communicate(timeout=60)
        totals = json.loads(stdout or b"{}")
        out["mbit_s_per_viewer"] = round(
            totals.get("bytes", 0) * 8 / 1e6 / (seconds + 4) / viewers, 3
        )
    return out


def live_bench(seconds: float = 8.0, width: int = 640, height: int = 360) -> dict[str, Any]:
    """The live-view measurements (see the module docstring)."""
    with tempfile.TemporaryDirectory() as d:
        redis = EmbeddedRedis(free_port(), d, appendonly=False, password=False)
        redis.start()
        world = LiveWorld(
            redis.url,
            live={"max_viewers_per_camera": 32},
            camera={"width": width, "height": height, "fps": 25},
            infer_factory=red_blob_infer_factory,
        )
        try:
            deadline = time.monotonic() + 30
            while world.analysed() < 25 and time.monotonic() < deadline:
                time.sleep(0.1)
            delay = asyncio.run(_delay(world, seconds))
            phases = [_phase(world, n, seconds) for n in (0, 4, 16)]
        finally:
            world.close()
            redis.stop()
    base = phases[0]
    for p in phases:
        p["analytics_ratio"] = (
            round(p["analytics_fps"] / base["analytics_fps"], 3) if base["analytics_fps"] else None
        )
    cpu = {
        str(p["viewers"]): round((p["server_cpu_pct"] - base["server_cpu_pct"]) / p["viewers"], 2)
        for p in phases[1:]
    }
    return {
        "camera": {"width": width, "height": height, "fps": 25, "gop": 25},
        "seconds_per_phase": seconds,
        "delay_glass_to_glass": delay,
        "phases": phases,
        "cpu_pct_per_viewer": cpu,
        "goal": {
            "delay_p95_ms_max": 2000,
            "analytics_ratio_min": 0.95,
            "met": bool(
                delay["p95_ms"] <= 2000 and all((p["analytics_ratio"] or 0) >= 0.95 for p in phases)
            ),
        },
    }


def _table(res: dict[str, Any]) -> str:
    d = res["delay_glass_to_glass"]
    lines = [
        f"glass-to-glass delay: p50 {d['p50_ms']} ms, p95 {d['p95_ms']} ms, max {d['max_ms']} ms "
        f"({d['frames_with_clock']} frames)",
        "| viewers | analytics fps | ratio | server CPU % | Mbit/s per viewer |",
        "|---:|---:|---:|---:|---:|",
    ]
    for p in res["phases"]:
        lines.append(
            f"| {p['viewers']} | {p['analytics_fps']} | {p['analytics_ratio']} | "
            f"{p['server_cpu_pct']} | {p.get('mbit_s_per_viewer', '')} |"
        )
    lines.append(f"CPU % per viewer: {res['cpu_pct_per_viewer']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the video benchmark; prints a table (or JSON) and optionally writes JSON."""
    p = argparse.ArgumentParser(prog="citysight bench video", description=__doc__)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--out", type=Path, help="also write the JSON here")
    p.add_argument("--seconds", type=float, default=8.0, help="length of each phase")
    p.add_argument("--small", action="store_true", help="320x240 camera, 3 s phases (CI)")
    a = p.parse_args(argv)
    res = {"live": live_bench(3.0, 320, 240) if a.small else live_bench(a.seconds)}
    text = json.dumps(res, indent=2)
    if a.out:
        a.out.write_text(text + "\n")
    print(text if a.json else _table(res["live"]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
