"""Health tells the truth, end to end: ``citysight run`` as a subprocess (real Redis, the
bundled Triton, Ray, Serve, a stream worker decoding real H.264, the rules consumer).

Triton is frozen (SIGSTOP: alive, answering nothing, as under overload), so the Triton client
marks it down while it stays alive. Within 30 s ``/health`` must stop saying ``ok`` (inference
``down``, the camera ``not_analysed``) and an ``analytics_down`` alert must reach duty and the
camera's departments; once Triton runs again (SIGCONT) frames must flow (the client keeps the
regions the server still holds), the alerts resolve by ``system`` and ``/health`` is ``ok``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from citysight.app.services.redis_server import free_port
from streams.testing.h264 import write_clip

ROOT = Path(__file__).resolve().parents[3]
TOKEN = "health-e2e-admin-token-0001"
RESULTS: dict[str, float] = {}


def _config(tmp_path: Path, redis_url: str, models_dir: Path, port: int) -> Path:
    clip = write_clip(tmp_path / "gate.mp4", width=320, height=240, fps=10, seconds=4)
    cfg = {
        "cameras": [
            {"id": "gate", "url": str(clip), "latitude": 20.0, "longitude": 110.3,
             "detectors": ["fire_smoke", "plate"], "profile": {"analytics_fps": 2, "loop": True}},
        ],
        "departments": [
            {"id": "duty"}, {"id": "fire", "supervisor": "duty"},
            {"id": "police", "supervisor": "duty"},
        ],
        "routing": [
            {"kind": "fire", "department": "fire"}, {"kind": "smoke", "department": "fire"},
            {"kind": "plate", "department": "police"},
            {"kind": "camera_offline", "department": "duty"},
            {"kind": "analytics_down", "department": "duty"},
        ],
        "tokens": [{"name": "ops", "role": "admin", "department": "*",
                    "token_env": "CS_HEALTH_E2E_TOKEN"}],
        "services": {
            "redis": {"url": redis_url},
            "inference": {"type": "triton", "models_dir": str(models_dir)},
            "http": {"port": port},
            "streams": {"shards": 1},
            "ray": {"temp_dir": f"/tmp/csh{os.getpid()}", "num_cpus": 2},
        },
    }  # fmt: skip
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _get(base: str, path: str) -> Any:
    r = httpx.get(base + path, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
    return r.json()


def _until(what: str, cond: Any, timeout_s: float, proc: subprocess.Popen[str]) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"citysight exited ({proc.returncode}) while waiting for {what}")
        try:
            last = cond()
        except (httpx.HTTPError, ValueError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(1)
    pytest.fail(f"{what}: not within {timeout_s:.0f} s (last: {str(last)[:3000]})")


def _tritonserver(workdir: Path) -> psutil.Process:
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if p.info["name"] == "tritonserver" and str(workdir) in cmd:
            return p
    pytest.fail("tritonserver of this run not found")


def test_frozen_triton_degrades_health_alerts_and_recovers(
    tmp_path: Path, redis_url: str, models_dir: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    workdir = tmp_path / "w"
    proc = subprocess.Popen(
        [sys.executable, "-m", "citysight", "run", "--config",
         str(_config(tmp_path, redis_url, models_dir, port)), "--workdir", str(workdir)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        env={**os.environ, "CS_HEALTH_E2E_TOKEN": TOKEN}, start_new_session=True,
    )  # fmt: skip
    triton = None
    try:

        def ok_and_counting() -> dict[str, Any] | None:
            h = _get(base, "/health")
            inf = h["components"]["inference"]["detail"]
            return h if h["status"] == "ok" and inf.get("frames_ok", 0) > 0 else None

        health = _until("health ok", ok_and_counting, 240, proc)
        ok_before = health["components"]["inference"]["detail"]["frames_ok"]
        assert ok_before > 0 and health["components"]["cameras"]["detail"]["analysed"] == ["gate"]

        triton = _tritonserver(workdir)
        triton.suspend()  # SIGSTOP: the process lives, nothing answers
        t0 = time.monotonic()
        alerts = _until(
            "analytics_down alerts",
            lambda: len(a := _get(base, "/api/alerts?kind=analytics_down")) >= 3 and a,
            60,
            proc,
        )
        RESULTS["alert_s"] = time.monotonic() - t0
        assert sorted(a["department"] for a in alerts) == ["duty", "fire", "police"]
        assert {a["severity"] for a in alerts} == {"high"} and {a["camera_id"] for a in alerts} == {
            "gate"
        }
        health = _until(
            "health shows it",
            lambda: (
                (h := _get(base, "/health"))["components"]["inference"]["state"] == "down" and h
            ),
            30,
            proc,
        )
        RESULTS["health_s"] = time.monotonic() - t0
        assert health["status"] == "down", health["status"]  # the only camera is not analysed
        assert health["components"]["cameras"]["detail"]["not_analysed"] == ["gate"]
        assert RESULTS["alert_s"] <= 30, RESULTS

        triton.resume()  # SIGCONT: the same server, still holding the client's regions
        t1 = time.monotonic()
        health = _until(
            "health ok again",
            lambda: (h := _get(base, "/health"))["status"] == "ok" and h,
            90,
            proc,
        )
        RESULTS["recovered_s"] = time.monotonic() - t1
        inf = health["components"]["inference"]["detail"]
        assert inf["frames_ok"] > ok_before and inf["server_resets"] == 0, inf
        assert inf["regions_kept"] >= 1 and inf["recoveries"] >= 1, inf

        def all_resolved() -> list[dict[str, Any]]:
            got = _get(base, "/api/alerts?kind=analytics_down")
            return got if got and all(a["state"] == "resolved" for a in got) else []

        resolved = _until("alerts resolved", all_resolved, 30, proc)
        assert len(resolved) == 3
        events = _get(base, f"/api/alerts/{resolved[0]['id']}/events")
        last = events[-1] if isinstance(events, list) else events["items"][-1]
        assert last["actor"] == "system" and last["to_state"] == "resolved"
    finally:
        if triton is not None and triton.is_running():
            triton.resume()
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # as the demo test: the runtime stops the rest
            try:
                proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        out = proc.stdout.read() if proc.stdout else ""
        print(json.dumps(RESULTS), out[-3000:])
    assert proc.returncode == 0, out[-3000:]
