"""Live view in real headless Chromium: the camera popup plays the camera (MSE), under the
map page's real Content-Security-Policy."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from typing import Any

import pytest
from livekit import LiveWorld, live_token

from benchmarks.map import run as bench

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = os.environ.get("CITYSIGHT_CHROMIUM", bench.CHROMIUM)

if shutil.which(CHROMIUM) is None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"chromium not installed at {CHROMIUM}", allow_module_level=True)


@pytest.fixture
def world(redis_url: str) -> Iterator[LiveWorld]:
    w = LiveWorld(redis_url)
    yield w
    w.close()


def _poll(page: Any, js: str, timeout_s: float = 30.0) -> Any:
    # Not wait_for_function: it evaluates with eval, which the page's CSP forbids.
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = page.evaluate(js)
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"{js} stayed falsy")


def test_the_camera_popup_plays_live_video(world: LiveWorld) -> None:
    with playwright_api.sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM, args=bench.CHROMIUM_ARGS, headless=True
        )
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(world.http + "/")
            page.get_by_test_id("token-input").fill(live_token("viewer"))
            page.get_by_test_id("login-button").click()
            page.wait_for_selector("body[data-ready=true]")
            page.evaluate(
                f"window.citysight.state.map.setView([{world.cam.latitude}, "
                f"{world.cam.longitude}], 18, {{animate: false}})"
            )
            page.locator(".cam[data-camera-id='clock']").click()
            popup = page.get_by_test_id("camera-popup")
            expect(popup).to_contain_text("Clock camera")
            popup.get_by_test_id("live-button").click()
            expect(popup.get_by_test_id("live-status")).to_have_attribute(
                "data-state", "playing", timeout=20000
            )
            t1 = _poll(
                page,
                "(() => { const v = document.querySelector('[data-testid=live-video]');"
                " return v && v.currentTime > 0.5 ? v.currentTime : 0; })()",
            )
            t2 = _poll(
                page,
                f"(() => {{ const v = document.querySelector('[data-testid=live-video]');"
                f" return v.currentTime > {t1} + 1 ? v.currentTime : 0; }})()",
            )
            assert t2 > t1  # the picture moves
            size = page.evaluate(
                "(() => { const v = document.querySelector('[data-testid=live-video]');"
                " return [v.videoWidth, v.videoHeight]; })()"
            )
            assert size == [320, 240]
            assert not errors, errors
        finally:
            browser.close()
