"""The runtime's service start-up: an external, password-protected Redis."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import redis

from citysight.app.runtime import Runtime, token_hash
from citysight.app.services.redis_server import EmbeddedRedis, ServiceError, free_port
from citysight.config import parse_config

PASSWORD = "pa:ss@word/1"
TOKEN = "secret-token-0123456789"


@pytest.fixture
def locked_redis(tmp_path: Path):
    srv = EmbeddedRedis(free_port(), tmp_path / "redis", appendonly=False).start()
    redis.Redis.from_url(srv.url).config_set("requirepass", PASSWORD)
    yield srv
    srv.stop()


def _runtime(url: str, tmp_path: Path) -> Runtime:
    cfg = parse_config(
        {"services": {"redis": {"url": url, "password_env": "CS_RT_REDIS_PASSWORD"}}}, "test"
    )
    return Runtime(cfg, tmp_path)


def test_every_client_gets_the_password(
    locked_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CS_RT_REDIS_PASSWORD", PASSWORD)
    rt = _runtime(locked_redis.url, tmp_path)
    rt._start_redis()
    # redis_url is what Serve replicas, stream workers and the seeding step connect with.
    assert redis.Redis.from_url(rt.redis_url).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis.from_url(locked_redis.url).ping()


def test_unset_or_wrong_password_is_a_clear_error(
    locked_redis: EmbeddedRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CS_RT_REDIS_PASSWORD", raising=False)
    with pytest.raises(ServiceError, match=r"password_env.*CS_RT_REDIS_PASSWORD"):
        _runtime(locked_redis.url, tmp_path)._start_redis()
    monkeypatch.setenv("CS_RT_REDIS_PASSWORD", "wrong")
    with pytest.raises(ServiceError, match="unreachable") as info:
        _runtime(locked_redis.url, tmp_path)._start_redis()
    assert "wrong" not in str(info.value)


def test_no_serve_is_the_cluster_control_process(
    redis_url: str, tmp_path: Path, models_dir: Path
) -> None:
    """``citysight run --no-serve``: seeds Redis and runs the cameras, deploys no Serve app."""
    import json
    import subprocess
    import sys
    import time

    import yaml

    from citysight.app.services.redis_server import port_in_use
    from citysight.keys import COMPONENTS as COMPONENTS_KEY
    from citysight.keys import PRINCIPALS as PRINCIPALS_KEY
    from citysight.keys import detections_stream
    from streams.testing.h264 import write_clip

    clip = write_clip(tmp_path / "cam.mp4", width=160, height=120, fps=10, seconds=2)
    http_port = free_port()
    cfg = {
        "cameras": [
            {"id": "k1", "url": str(clip), "latitude": 20.0, "longitude": 110.0,
             "detectors": ["fire_smoke"], "profile": {"analytics_fps": 5}},
        ],
        "tokens": [{"name": "ops", "role": "admin", "department": "*", "token_env": "CS_T_OPS"}],
        "services": {
            "redis": {"url": redis_url},
            "inference": {"type": "onnxruntime", "models_dir": str(models_dir)},
            "http": {"port": http_port},
            "streams": {"shards": 1},
            "ray": {"temp_dir": f"/tmp/csr{os.getpid()}", "num_cpus": 2},
        },
    }  # fmt: skip
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(cfg))
    root = Path(__file__).resolve().parents[3]
    proc = subprocess.Popen(
        [sys.executable, "-m", "citysight", "run", "--config", str(path), "--workdir",
         str(tmp_path / "w"), "--no-serve", "--duration", "12"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=root,
        env={**os.environ, "CS_T_OPS": TOKEN},
    )  # fmt: skip
    r = redis.Redis.from_url(redis_url)
    try:
        deadline = time.monotonic() + 90
        while r.xlen(detections_stream(0)) == 0 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            time.sleep(0.3)
        assert r.xlen(detections_stream(0)) > 0  # the camera runs and publishes results
        assert not port_in_use(http_port)  # no Serve app, no HTTP
        principal = r.hget(PRINCIPALS_KEY, token_hash(TOKEN)) or b"{}"
        assert json.loads(principal)["name"] == "ops"
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(f"/tmp/csr{os.getpid()}", ignore_errors=True)
    assert proc.returncode == 0, out
    assert "stream supervisor for 1 cameras" in out
    assert b"streams" in r.hkeys(COMPONENTS_KEY)


def test_the_runtimes_triton_is_restarted_when_its_process_dies(
    tmp_path: Path, models_dir: Path
) -> None:
    """The stream workers know only the URL of the runtime's Triton: when its process dies
    (SIGKILL, as the OOM killer does) the runtime restarts it on the same ports and the
    workers' inference flows again."""
    import signal
    import time

    import numpy as np

    from citysight.app.runtime import make_infer
    from citysight.contracts import FrameBatch

    cfg = parse_config(
        {"services": {"inference": {"type": "triton", "models_dir": str(models_dir)}}}, "test"
    )
    rt = Runtime(cfg, tmp_path)
    infer = None
    try:
        rt._start_triton()
        # The runtime works on its own (absolute-path) copy of the config: that copy
        # carries the started server's URL, as the stream workers' factory does.
        inf = rt.cfg.services.inference
        infer = make_infer(inf.model_dump_json(), str(models_dir))  # what a worker builds
        frame = np.full((120, 160, 3), 90, np.uint8)
        batch = FrameBatch([frame], ["rt-cam"], [0], [1.0], [frozenset({"fire_smoke"})])
        assert len(infer(batch)) == 1
        os.kill(rt.triton.proc.pid, signal.SIGKILL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(infer(batch)) != 1:
            time.sleep(0.5)
        h = infer.health()
        assert h["state"] == "running" and h["frames_ok"] >= 2, h
        # the client may reach the new server before the watchdog has finished waiting for
        # readiness and counted the restart
        while time.monotonic() < deadline and rt.triton_watchdog.health()["restarts"] < 1:
            time.sleep(0.2)
        assert rt.triton_watchdog.health()["restarts"] == 1
        assert rt.triton_watchdog.health()["state"] == "running"
    finally:
        if infer is not None:
            infer.client.close()
        rt.stop()
    assert rt.triton is None


def _w(state: str = "running", ok: int = 10, dropped: int = 0) -> dict:
    err = "" if state == "running" else "deadline exceeded"
    h = {"backend": "triton", "state": state, "frames_ok": ok, "frames_dropped": dropped}
    return {"inference": {**h, "last_error": err}}


@pytest.mark.parametrize(
    ("workers", "previous", "server", "state", "per"),
    [
        ({"w0": _w(), "w1": _w()}, {}, None, "running", {"w0": "running", "w1": "running"}),
        ({"w0": _w(), "w1": _w("down")}, {}, None, "degraded", {"w1": "down"}),
        ({"w0": _w("down"), "w1": _w("down")}, {}, None, "down", {"w0": "down"}),
        # Running client, but every frame since the last report was dropped.
        ({"w0": _w(ok=10, dropped=50)}, {"w0": (10, 20)}, None, "degraded", {"w0": "degraded"}),
        ({"w0": _w(ok=12, dropped=50)}, {"w0": (10, 20)}, None, "running", {"w0": "running"}),
        ({"w0": _w(), "w1": {"error": "GetTimeoutError"}}, {}, None, "degraded", {"w1": "unknown"}),
        ({"w0": _w()}, {}, {"state": "failed", "restarts": 5}, "down", {"w0": "running"}),
        ({}, {}, None, "unknown", {}),
    ],
)  # fmt: skip
def test_inference_component_is_the_truth_over_every_worker(
    workers: dict, previous: dict, server: dict | None, state: str, per: dict[str, str]
) -> None:
    from citysight.app.runtime import inference_component

    got, detail = inference_component(workers, dict(previous), server)
    assert got == state, detail
    for name, st in per.items():
        assert detail["workers"][name]["state"] == st
    assert detail["frames_ok"] == sum(w["inference"]["frames_ok"] for w in workers.values()
                                      if "inference" in w)  # fmt: skip
    assert "state" not in detail  # the component's state is the truth, not one worker's


def test_relative_paths_never_reach_the_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo's defaults are relative (``.citysight``, ``model_repo/files``); the runtime
    hands only absolute paths to Redis, Triton and Ray, whose processes run elsewhere."""
    monkeypatch.chdir(tmp_path)
    cfg = parse_config({"services": {"inference": {"type": "triton"}}}, "test")
    rt = Runtime(cfg, Path(".citysight"))
    assert rt.workdir == tmp_path / ".citysight"
    assert rt.cfg.services.redis.data_dir == str(tmp_path / ".citysight/redis")
    assert rt.cfg.services.inference.models_dir == str(tmp_path / "model_repo/files")
    from inference.triton.server import LocalTriton

    server = LocalTriton.for_config(rt.cfg.services.inference, workdir=rt.workdir / "triton")
    assert server.workdir.is_absolute() and server.models_dir.is_absolute()
    assert server.command(server.workdir / "tritonserver/bin/tritonserver")[0].startswith("/")


def test_a_ray_start_that_times_out_under_load_is_retried_without_leftovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ray gives its raylet a fixed 30 s to register; under load (the README's demo on a
    2-core box with other jobs) it failed with 'The current node timed out during startup'
    and `citysight demo` exited. The runtime stops what the failed start left (processes
    naming its temp dir) and starts Ray again; any other error is not retried."""
    import subprocess
    import sys
    import tempfile

    import ray

    temp = Path(tempfile.mkdtemp(prefix="cs-rt-", dir="/tmp"))  # short: Ray's socket paths
    cfg = parse_config({"services": {"ray": {"temp_dir": str(temp), "num_cpus": 1}}}, "test")
    left: list[subprocess.Popen[bytes]] = []
    second: list[dict[str, object]] = []

    def init_once_timing_out(*args: object, **kw: object) -> object:
        if not left:  # what a failed start leaves: a process naming the temp dir
            code = "import time; time.sleep(600)"
            left.append(subprocess.Popen([sys.executable, "-c", code, str(temp)]))
            raise Exception("The current node timed out during startup. This could happen")
        # the second start is only recorded: a real one is what the demo tests run, and
        # on a loaded box it is the very thing that times out
        second.append(kw)
        return None

    monkeypatch.setattr(ray, "init", init_once_timing_out)
    rt = Runtime(cfg, tmp_path)
    try:
        rt._start_ray()
        assert rt.ray_started
        assert [kw["_temp_dir"] for kw in second] == [str(temp)]
        assert left[0].wait(timeout=10) is not None  # killed, not orphaned
    finally:
        for p in left:
            p.kill()
        shutil.rmtree(temp, ignore_errors=True)

    def init_failing(*args: object, **kw: object) -> object:
        raise ValueError("bad option")

    monkeypatch.setattr(ray, "init", init_failing)
    with pytest.raises(ValueError, match="bad option"):
        Runtime(cfg, tmp_path)._start_ray()
