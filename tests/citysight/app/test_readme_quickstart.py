"""The README's Quick start, verbatim: its first command in a clean clone, as a user runs it.

The first command of the first fenced block under ``## Quick start`` runs as
``bash -c "<line>"`` in a ``git clone`` of the committed ``HEAD`` (uncommitted changes are not
part of a clone: commit before relying on this test), with a user's environment and nothing
the README does not say. The clone's ``.venv`` is prepared from this tier's installed
dependencies so ``setup.sh`` finds it installed (see :mod:`benchmarks.soak.quickstart`); the
setup script and the demo still run for real, from the clone's files only.

Then: ``/health`` answers, an admin WebSocket subscriber gets all five alert kinds within two
minutes of the banner, Ctrl-C (SIGINT to the foreground process group) stops everything, and
no process, port or Ray of the demo is left. The demo's ports are fixed (8000, 6390): the test
holds ``/tmp/citysight-default-ports.lock`` and fails clearly when the ports are taken.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from testkit import IN_CI

from benchmarks.soak.quickstart import (
    ROOT,
    QuickStartError,
    QuickStartRun,
    clean_clone,
    default_ports_lock,
    listening,
    prepare_clone_venv,
    quick_start_commands,
    require_free_ports,
    user_env,
    wait_health,
)

KINDS = {"fire", "smoke", "vending", "plate", "face"}
BASE = "http://127.0.0.1:8000"
# The demo's private Ray (citysight.app.demo): its raylet and GCS carry this path.
RAY_TEMP = f"/tmp/citysight-ray-{os.getuid()}"


def _admin_kinds(token: str, banner_at: float, run: QuickStartRun) -> dict[str, dict]:
    """Alerts per kind an admin WebSocket subscriber gets until 120 s after the banner.

    The subscriber resumes from the start of the feed (``last_id=0-0``), as the map shows
    every alert since the start: an alert raised while ``/health`` was still being polled
    (a slow box) would otherwise be missed until its rule's cooldown (10 min for plates).
    """
    from websockets.sync.client import connect

    seen: dict[str, dict] = {}
    with connect(
        "ws://127.0.0.1:8000/ws?last_id=0-0",
        additional_headers={"Authorization": f"Bearer {token}"},
        open_timeout=30,
    ) as ws:
        while KINDS - set(seen) and time.monotonic() - banner_at < 120 and run.alive():
            try:
                msg = json.loads(ws.recv(timeout=5))
            except TimeoutError:
                continue
            if msg.get("type") == "alert":
                seen.setdefault(msg["alert"]["kind"], msg["alert"])
    return seen


def _inference_detail() -> dict[str, object]:
    """What /health says about inference (frames analysed and dropped), for failure messages."""
    import httpx

    try:
        detail = httpx.get(f"{BASE}/health", timeout=10).json()["components"]["inference"]
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return {"error": type(exc).__name__}
    keys = ("state", "frames_ok", "frames_dropped", "dropped_by_reason", "last_error")
    return {"component_state": detail.get("state"), **{k: detail["detail"].get(k) for k in keys}}


# Clone, install, first-start clip rendering, the banner wait (up to 600 s) and 240 s of
# checks add up past pytest's default 600 s on a loaded 2-core box.
@pytest.mark.timeout(1800)
def test_quick_start_first_command_verbatim_in_a_clean_clone(tmp_path: Path) -> None:
    line = quick_start_commands()[0]
    try:
        clone = clean_clone(tmp_path / "citysight")
    except QuickStartError as exc:
        if IN_CI:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    prepared = prepare_clone_venv(clone)
    run = QuickStartRun(line, clone, tmp_path / "quickstart.log")
    with default_ports_lock():
        require_free_ports()
        try:
            run.start()
            # First start renders the demo clips (about a minute on 2 cores), then starts
            # Redis, Triton, Ray and Serve; without the prepared .venv pip installs first.
            banner_at = run.wait_banner(600 if prepared else 1500)
            health = wait_health(BASE, run, 120)
            for comp in ("redis", "ray", "rules", "inference", "streams"):
                assert comp in health["components"], health
            seen = _admin_kinds(run.tokens["admin"], banner_at, run)
            assert set(seen) >= KINDS, (
                f"kinds an admin subscriber got within 120 s of the banner: {sorted(seen)}; "
                f"inference then: {_inference_detail()}\n{run.output(40)}"
            )
            depts = {k: seen[k]["department"] for k in KINDS}
            assert depts == {
                "fire": "fire",
                "smoke": "fire",
                "vending": "enforcement",
                "plate": "police",
                "face": "police",
            }
            rc = run.interrupt()
        finally:
            run.kill()  # a no-op after a clean stop; the cleanup when anything failed
        assert rc == 0, run.output(40)
        time.sleep(1.0)
        # This run's Ray session (other demos of this user share the Ray temp dir).
        sessions = run.ray_sessions()
        assert sessions, f"no Ray session seen under {RAY_TEMP}: {run.seen_pids}"
        left = run.leftovers(extra_markers=tuple(sessions))
        assert not left, "processes left after Ctrl-C:\n" + "\n".join(left)
        assert not listening(8000) and not listening(6390), "a demo port still listens"
    # The demo ran from the clone's own files (a file missing from the repository fails).
    probe = subprocess.run(
        # -P: python -c would put its cwd first on sys.path (the clone's root itself).
        [
            str(clone / ".venv/bin/python"),
            "-P",
            "-c",
            "import citysight; print(citysight.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
        env=user_env(),
    )
    assert probe.stdout.strip() == str(clone / "citysight" / "__init__.py")
    assert (clone / ".citysight" / "demo-clips").is_dir(), "the default workdir is the clone's"
    if prepared:
        assert "setup: installing the citysight package" not in run.output()


def test_readme_second_command_is_what_ci_runs() -> None:
    second = quick_start_commands()[1]
    assert second == "bash infra/local/test.sh"
    ci = [
        ln.strip()
        for ln in (ROOT / ".ci" / "run").read_text().splitlines()
        if ln.strip() and not ln.lstrip().startswith("#")
    ]
    assert ci[-1] == second, f".ci/run ends with {ci[-1]!r}, the README says {second!r}"
