"""Real Chromium plays an alert's evidence clip in the alert detail (issue 15).

The alert's clip is still being written when the detail opens: the panel says so and shows
the snapshot as the video's poster. Once the worker's record says ready, the page's poll
fetches the face-blurred MP4 (bearer token, blob URL) and the video element plays it:
``currentTime`` advances. No Content-Security-Policy violation on the way.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import cv2
import numpy as np
import pytest
import redis

from benchmarks.common.chromium import CHROMIUM, CHROMIUM_ARGS
from benchmarks.fanout.world import ROLES, ServerThread, seed_principals, token_of
from citysight.app.services.redis_server import free_port
from citysight.clips import ClipRecord, ClipState, LocalClipStore, original_name, write_record
from citysight.config import CitysightConfig
from citysight.contracts import Alert, AlertKind, EvidenceRef, Location, Severity
from serve_app.http import create_api
from serve_app.store.alerts import AlertStore
from serve_app.store.evidence import EvidenceStore
from streams.testing.h264 import write_clip


def test_the_alert_detail_plays_the_clip_after_showing_the_snapshot(
    redis_url: str, tmp_path: Path
) -> None:
    playwright_api = pytest.importorskip("playwright.sync_api")
    if shutil.which(CHROMIUM) is None:
        pytest.skip(f"no Chromium at {CHROMIUM}")
    r = redis.Redis.from_url(redis_url)
    seed_principals(r, ROLES)
    store = tmp_path / "clips"
    cfg = CitysightConfig.model_validate(
        {
            "site": {"timezone": "Asia/Shanghai"},
            "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
            # Haar needs no model file; the YuNet path is tested in tests/security.
            "services": {
                "inference": {"tiers": {"face": ["haar"]}},
                "streams": {"clips": {"storage": {"path": str(store)}}},
            },
        }
    )
    now = time.time()
    alert = Alert(
        id="al_clip_ui", kind=AlertKind.FIRE, severity=Severity.HIGH, camera_id="cam-1",
        location=Location(lat=22.0, lon=110.0), department="fire",
        started_at=datetime.fromtimestamp(now, UTC), detected_at=now, summary="fire at cam-1",
        evidence=[EvidenceRef(key="citysight:evidence:al_clip_ui")],
    )  # fmt: skip
    AlertStore(r, cfg).save_new([alert])
    EvidenceStore(r, cfg).put(
        alert.id, cv2.imencode(".jpg", np.full((240, 320, 3), 90, np.uint8))[1].tobytes()
    )
    pending = ClipRecord(alert_id=alert.id, camera_id="cam-1", event_at=now, expires_at=now + 3600)
    write_record(r, pending)
    src = write_clip(tmp_path / "clip.mp4", seconds=4.0, faststart=True)
    port = free_port()
    server = ServerThread(create_api(cfg, redis_url), port).start()
    try:
        with playwright_api.sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            page.add_init_script(
                "window.__csp = []; document.addEventListener('securitypolicyviolation',"
                " (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(f"http://127.0.0.1:{port}/")
            page.get_by_test_id("token-input").fill(token_of("fire"))
            page.get_by_test_id("login-button").click()
            page.wait_for_selector("body[data-ready=true]")
            expect = playwright_api.expect
            page.locator(f"[data-testid=alert-item][data-alert-id='{alert.id}']").click()
            clip = page.get_by_test_id("clip")
            expect(clip).to_have_attribute("data-state", "pending", timeout=10_000)
            expect(page.get_by_test_id("clip-msg")).to_contain_text("being written")
            video = page.get_by_test_id("clip-video")
            assert (video.get_attribute("poster") or "").startswith("blob:")  # the snapshot
            # The worker finishes the clip: the page's poll picks it up.
            LocalClipStore(store).put_file(original_name(alert.id), src)
            data = src.read_bytes()
            write_record(
                r,
                pending.model_copy(
                    update={
                        "state": ClipState.READY, "object": original_name(alert.id),
                        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data),
                        "frames": 100, "duration_s": 4.0, "start_at": now - 2,
                    }
                ),
            )  # fmt: skip
            expect(clip).to_have_attribute("data-state", "ready", timeout=20_000)
            assert (video.get_attribute("src") or "").startswith("blob:")
            page.evaluate("document.querySelector('[data-testid=clip-video]').play()")
            # Polled from here (the page's CSP forbids the eval wait_for_function needs).
            deadline = time.monotonic() + 15
            played = 0.0
            while played <= 0.5 and time.monotonic() < deadline:
                page.wait_for_timeout(100)
                played = float(video.evaluate("v => v.currentTime"))
            assert played > 0.5, (played, video.evaluate("v => v.error && v.error.message"))
            label = page.get_by_test_id("clip-msg").inner_text()
            assert "UTC+8" in label and " – " in label, label  # both ends, with the site's zone
            assert page.evaluate("window.__csp") == [], page.evaluate("window.__csp")
            assert errors == [], errors
            browser.close()
    finally:
        server.stop()
        r.close()
