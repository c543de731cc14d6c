"""The closed loop of issue 16 in real Chromium: a grid worker's phone report reaches the
duty officer's map, is handled with an "after" photo, and the camera re-check closes it.

Real Redis, the real API under uvicorn, the real rules consumer (its thread), Debian's
headless Chromium through Playwright: the phone at 390×844 with geolocation granted takes
the photo through ``<input type=file capture=environment>``, sends it, and follows its
report's state; the enforcement officer's map shows the alert; the officer assigns,
acknowledges and resolves it and adds the after-photo; the camera keeps sending quiet frames
and the re-check verifies and closes it: the phone shows ``closed`` and the map's timeline
says "verified by camera". Screenshots go to ``test-artifacts/report/``.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis
from PIL import Image

from benchmarks.fanout.world import ROLES, ServerThread, seed_principals, token_of
from benchmarks.map import run as bench
from citysight.app.services.redis_server import free_port
from citysight.config import CitysightConfig
from citysight.contracts import FrameResult
from citysight.keys import detections_stream

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = os.environ.get("CITYSIGHT_CHROMIUM", bench.CHROMIUM)
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "report"
PHONE = {"width": 390, "height": 844}
GEO = {"latitude": 20.03962, "longitude": 110.33805, "accuracy": 8}
RECHECK_S = 3

if shutil.which(CHROMIUM) is None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"chromium not installed at {CHROMIUM}", allow_module_level=True)

CFG = CitysightConfig.model_validate({
    "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
    "routing": [{"kind": "vending", "department": "enforcement"},
                {"kind": "*", "department": "fire"}],
    "cameras": [{"id": "cam-vend", "url": "rtsp://10.0.0.1/v", "latitude": 20.0395,
                 "longitude": 110.338, "jurisdiction": "meilan"}],
    "rules": [{"id": "vending", "type": "dwell", "kind": "vending", "classes": ["person"],
               "dwell_s": 5, "recheck_s": RECHECK_S, "recheck_close": True}],
    "services": {"streams": {"shards": 1}},
})  # fmt: skip


@pytest.fixture(scope="module")
def world(redis_server: Any) -> Iterator[tuple[str, redis.Redis, Any]]:
    from serve_app.consumer import DetectionsConsumer
    from serve_app.http import create_api

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    seed_principals(
        r, {**ROLES, "grid": {"department": "enforcement", "scopes": ["reports:write"]}}
    )
    port = free_port()
    server = ServerThread(create_api(CFG, redis_server.url), port).start()
    consumer = DetectionsConsumer(
        redis_server.url, CFG, "rules-0", [0], block_ms=50, replay_s=0, recheck_interval_s=0.2
    )
    consumer.start()
    try:
        yield f"http://127.0.0.1:{port}", r, consumer
    finally:
        consumer.stop()
        server.stop()
        r.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=bench.CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _photo(tmp_path: Path) -> Path:
    arr = np.random.default_rng(7).integers(0, 255, (480, 640, 3), dtype=np.uint8)
    p = tmp_path / "stall.jpg"
    Image.fromarray(arr).save(p, format="JPEG")
    return p


def _after_photo() -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.full((240, 320, 3), 180, np.uint8)).save(out, format="JPEG")
    return out.getvalue()


def _phone(browser: Any, base: str) -> Any:
    ctx = browser.new_context(
        viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
        geolocation={"latitude": GEO["latitude"], "longitude": GEO["longitude"],
                     "accuracy": GEO["accuracy"]},
        permissions=["geolocation"], bypass_csp=True,
    )  # fmt: skip
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page._test_errors = errors
    page.goto(base + "/report")
    return page


def test_a_bad_or_unscoped_token_is_refused_on_the_phone(browser: Any, world: Any) -> None:
    base, _, _ = world
    page = _phone(browser, base)
    for token, needle in (("nope", "not accepted"), (token_of("enforcement"), "reports:write")):
        page.get_by_test_id("report-token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_test_id("report-login-msg")).to_contain_text(needle)
    expect(page.get_by_test_id("report-form")).to_be_hidden()
    assert page._test_errors == []
    page.context.close()


def test_report_from_the_phone_closes_after_the_camera_recheck(
    browser: Any, world: Any, tmp_path: Path
) -> None:
    base, r, consumer = world
    phone = _phone(browser, base)
    phone.get_by_test_id("report-token").fill(token_of("grid"))
    phone.get_by_role("button", name="Sign in").click()
    expect(phone.get_by_test_id("report-form")).to_be_visible()
    # The position comes from the phone (geolocation granted), the photo from the camera input.
    expect(phone.get_by_test_id("report-lat")).to_have_value(f"{GEO['latitude']:.6f}")
    expect(phone.get_by_test_id("report-lon")).to_have_value(f"{GEO['longitude']:.6f}")
    assert phone.get_by_test_id("report-photo").get_attribute("capture") == "environment"
    phone.get_by_test_id("report-kind").select_option("vending")
    phone.get_by_test_id("report-photo").set_input_files(str(_photo(tmp_path)))
    expect(phone.locator("[data-testid=report-thumbs] img")).to_have_count(1)
    phone.get_by_test_id("report-note").fill("stall blocking the pavement")
    # Phone layout: nothing wider than the screen, tap targets at least 44 px high.
    assert phone.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for tid in ("report-send", "report-locate", "report-kind", "report-logout"):
        box = phone.get_by_test_id(tid).bounding_box()
        assert box is not None and box["height"] >= 44, (tid, box)
    _shot(phone, "phone-form")
    t0 = time.perf_counter()
    phone.get_by_test_id("report-send").click()
    expect(phone.get_by_test_id("report-msg")).to_contain_text("new alert")
    upload_ms = (time.perf_counter() - t0) * 1000
    alert_id = phone.get_by_test_id("report-msg").get_attribute("data-alert-id")
    item = phone.locator(f"[data-testid=report-item][data-alert-id='{alert_id}']")
    expect(item.get_by_test_id("report-state")).to_have_text("raised")
    _shot(phone, "phone-sent")

    officer = httpx.Client(
        base_url=base, headers={"Authorization": f"Bearer {token_of('enforcement')}"}
    )
    a = officer.get(f"/api/alerts/{alert_id}").json()
    assert a["source"] == "report" and a["camera_id"] == "cam-vend"
    assert abs(a["location"]["lat"] - GEO["latitude"]) < 1e-6

    # The duty officer's map (enforcement) lists it.
    desk = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
    m = desk.new_page()
    m.goto(base + "/")
    m.get_by_test_id("token-input").fill(token_of("enforcement"))
    m.get_by_test_id("login-button").click()
    m.wait_for_selector("body[data-ready=true]")
    listed = m.locator(f"[data-testid=alert-item][data-alert-id='{alert_id}']")
    expect(listed).to_be_visible()

    for body in ({"to": "assigned", "unit": "team-3"}, {"to": "acknowledged"},
                 {"to": "resolved", "outcome": "stall_removed"}):  # fmt: skip
        res = officer.post(f"/api/alerts/{alert_id}/transitions", json=body)
        assert res.status_code == 200, res.text
    resolved_at = time.monotonic()
    fb = officer.post(
        f"/api/alerts/{alert_id}/feedback", data={"note": "pavement clear"},
        files=[("photos", ("after.jpg", _after_photo(), "image/jpeg"))],
    )  # fmt: skip
    assert fb.status_code == 201, fb.text

    # The camera keeps watching (quiet frames) until the re-check verifies and closes it.
    n = 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        n += 1
        f = FrameResult(
            camera_id="cam-vend", frame_time=time.time(), frame_no=n, width=960, height=540
        )
        r.xadd(detections_stream(0), {"d": f.to_msgpack()})
        if officer.get(f"/api/alerts/{alert_id}").json()["state"] == "closed":
            break
        time.sleep(0.25)
    closed_after = time.monotonic() - resolved_at
    events = officer.get(f"/api/alerts/{alert_id}/events").json()
    assert [e["action"] for e in events] == ["report", "", "", "", "feedback", "verified"]
    assert events[-1]["actor"] == "camera-check" and events[-1]["to_state"] == "closed"
    assert closed_after >= RECHECK_S
    assert consumer.recheck.stats["verified"] == 1

    # The phone follows: closed (it refreshes on its own; a reload is what a worker does).
    phone.reload()
    expect(phone.get_by_test_id("report-form")).to_be_visible()
    expect(item.get_by_test_id("report-state")).to_contain_text("closed")
    _shot(phone, "phone-closed")

    # The officer's timeline says who verified it, and shows the after-photo.
    listed.click()
    tl = m.get_by_test_id("alert-timeline")
    expect(tl.locator("[data-action=verified] [data-testid=timeline-action]")).to_have_text(
        "verified by camera"
    )
    expect(tl.locator("[data-action=feedback] [data-testid=timeline-photo]")).to_have_count(1)
    expect(tl.locator("[data-action=report] [data-testid=timeline-photo]")).to_have_count(1)
    # The thumbnails are real (redacted) images fetched from the API, not broken links.
    m.wait_for_function(
        "[...document.querySelectorAll('[data-testid=timeline-photo]')]"
        ".every((i) => i.complete && i.naturalWidth > 0)",
        timeout=20000,
    )
    expect(m.get_by_test_id("snapshot-img")).to_be_visible(timeout=20000)
    _shot(m, "map-timeline-verified")
    assert phone._test_errors == []
    print(f"phone upload to confirmation {upload_ms:.0f} ms; closed {closed_after:.1f} s after "
          f"resolution (recheck_s {RECHECK_S})")  # fmt: skip
    officer.close()
    desk.close()
    phone.context.close()
