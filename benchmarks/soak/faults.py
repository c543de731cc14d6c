"""Faults the soak injects into the running demo, one at a time, and the RTSP camera it adds.

Processes are found in the demo's own process tree (never by a machine-wide name), so other
runs on the machine are never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Any

import msgpack
import psutil
import redis

from citysight.app.services.redis_server import EmbeddedRedis
from citysight.contracts import shard_of
from citysight.keys import detections_stream

FAULTS = ("triton_kill", "stream_worker_kill", "redis_restart", "rtsp_camera_stop", "poison_entry")


class FaultError(RuntimeError):
    """A fault could not be injected (e.g. its process is not there)."""


def descendants(root_pid: int) -> list[psutil.Process]:
    """Every living descendant of ``root_pid``."""
    try:
        return list(psutil.Process(root_pid).children(recursive=True))
    except psutil.Error:
        return []


def find_process(root_pid: int, name: str) -> psutil.Process:
    """The descendant whose process name or command line starts with ``name``.

    Raises:
        FaultError: none found.
    """
    for p in descendants(root_pid):
        with contextlib.suppress(psutil.Error):
            cmd = " ".join(p.cmdline())
            if p.name() == name or cmd.startswith(name) or f"/{name} " in cmd:
                return p
    raise FaultError(f"no process {name!r} under pid {root_pid}")


def kill_triton(root_pid: int) -> dict[str, Any]:
    """SIGKILL tritonserver and its python stubs (its process group): a crash."""
    p = find_process(root_pid, "tritonserver")
    pgid = os.getpgid(p.pid)
    stubs = [c.pid for c in p.children(recursive=True)]
    os.killpg(pgid, signal.SIGKILL)
    psutil.wait_procs([p], timeout=10)
    return {"pid": p.pid, "stubs": len(stubs)}


def kill_stream_worker(root_pid: int) -> dict[str, Any]:
    """SIGKILL the stream-worker Ray actor's process (the supervisor must replace it)."""
    p = find_process(root_pid, "ray::StreamWorker")
    p.kill()
    psutil.wait_procs([p], timeout=10)
    return {"pid": p.pid}


def redis_pid(root_pid: int, port: int) -> int | None:
    """Pid of the redis-server listening on ``port`` (the demo's, or a restarted one)."""
    for c in psutil.net_connections("tcp"):
        if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
            return int(c.pid)
    with contextlib.suppress(FaultError):
        return int(find_process(root_pid, "redis-server").pid)
    return None


def restart_redis(root_pid: int, port: int, data_dir: Path, down_s: float) -> EmbeddedRedis:
    """Stop Redis cleanly (SIGTERM: it writes its AOF), wait ``down_s``, start it again.

    The new server has the same port, data dir and options as the embedded one (the same
    :class:`EmbeddedRedis`), so it reloads the AOF. It belongs to the soak: stop it after the
    demo.
    """
    pid = redis_pid(root_pid, port)
    if pid is None:
        raise FaultError(f"no redis-server on port {port}")
    p = psutil.Process(pid)
    p.terminate()
    gone, _ = psutil.wait_procs([p], timeout=20)
    if not gone:
        p.kill()
        psutil.wait_procs([p], timeout=5)
    time.sleep(down_s)
    return EmbeddedRedis(port, data_dir).start(timeout_s=30)


def poison_entry(redis_url: str, camera_id: str, shards: int) -> str:
    """Append one malformed frame result (``n: inf``) to the camera's detections stream.

    The entry is a real recent entry of that camera with its frame number replaced by
    infinity: valid msgpack, right fields, but ``int(inf)`` raises ``OverflowError`` in the
    decoder (issue 11, defect 3). Returns the entry id.
    """
    r = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        key = detections_stream(shard_of(camera_id, shards))
        template: dict[str, Any] | None = None
        rows: list[Any] = r.xrevrange(key, count=200) or []
        for _eid, fields in rows:
            d = msgpack.unpackb(fields[b"d"], raw=False)
            if isinstance(d, dict) and d.get("cam") == camera_id:
                template = d
                break
        if template is None:
            raise FaultError(f"no recent entry of {camera_id} on {key} to copy")
        template["n"] = float("inf")
        eid = r.xadd(key, {"d": msgpack.packb(template, use_bin_type=True)})
        return eid.decode() if isinstance(eid, bytes) else str(eid)
    finally:
        r.close()


def looped_clip(src: Path, dst: Path, seconds: float) -> Path:
    """Remux ``src`` (H.264 MP4) back to back until it lasts ``seconds`` (no re-encoding).

    The GStreamer test server plays a file once; a camera in a soak must stream for its whole
    duration.
    """
    import av

    with av.open(str(src)) as inp:
        vin = inp.streams.video[0]
        packets = [p for p in inp.demux(vin) if p.dts is not None]
        dts = [int(p.dts or 0) for p in packets]
        tb = vin.time_base
        if tb is None or len(dts) < 2:
            raise FaultError(f"{src}: not a clip to loop")
        span = dts[-1] - dts[0] + (dts[1] - dts[0])
        loops = max(1, int(seconds / float(span * tb)) + 1)
        with av.open(str(dst), "w", format="mp4") as out:
            vout = out.add_stream_from_template(vin)
            for i in range(loops):
                for p in packets:
                    q = av.Packet(bytes(p))
                    q.pts = (p.pts or 0) + i * span
                    q.dts = int(p.dts or 0) + i * span
                    q.is_keyframe = p.is_keyframe
                    q.time_base = tb
                    q.stream = vout
                    out.mux(q)
    return dst
