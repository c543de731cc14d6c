"""The map in Chinese and English, and the phone layout, in real headless Chromium.

Real API under uvicorn, real Redis. A city whose ``ui.language`` is zh-CN starts in Chinese
whatever the browser's language; the switch moves to English and the choice survives a
reload; ``auto`` follows navigator.languages. At 390×844 (a phone) the page never scrolls
sideways, every control a finger uses is at least 44 px, and the alert detail opens as a
sheet fully inside the viewport. Desktop keeps its layout. Screenshots go to
``test-artifacts/map/``; with ``CITYSIGHT_DOC_SCREENSHOTS=1`` also to ``docs/img/`` (the
ones docs/map.md shows).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from benchmarks.fanout.world import ServerThread, seed_principals, token_of
from benchmarks.map import run as bench
from citysight.app.services.redis_server import free_port
from citysight.config import CameraConfig, CitysightConfig
from citysight.contracts import (
    Alert,
    AlertKind,
    CameraState,
    CameraStatus,
    EvidenceRef,
    Location,
    Severity,
)

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = os.environ.get("CITYSIGHT_CHROMIUM", bench.CHROMIUM)
ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts" / "map"
DOC_IMG = ROOT / "docs" / "img"
CENTER = (20.03, 110.33)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 800}

if shutil.which(CHROMIUM) is None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"chromium not installed at {CHROMIUM}", allow_module_level=True)


def _config(language: str) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "site": {"timezone": "Asia/Shanghai"},
            "ui": {"language": language},
            "departments": [
                {"id": "fire", "name": "Fire and emergency", "names": {"zh-CN": "消防救援"}},
                {"id": "enforcement", "name": "City enforcement", "names": {"zh-CN": "城管执法"}},
                {"id": "police"},
            ],
        }
    )


def _camera(i: int) -> CameraConfig:
    return CameraConfig(
        id=f"cam-{i:02d}",
        name=f"龙华路{i:02d}号",
        url=f"file:///videos/cam{i}.mp4",
        latitude=CENTER[0] + (i % 4) * 0.004,
        longitude=CENTER[1] + (i // 4) * 0.005,
        jurisdiction="longhua",
        heading_deg=(i * 45) % 360,
    )


class World:
    """Two API servers over one Redis: a zh-CN city and an ``auto`` one."""

    def __init__(self, r: redis.Redis, zh: str, auto: str) -> None:
        from serve_app.store.alerts import AlertStore
        from serve_app.store.evidence import EvidenceStore

        self.r = r
        self.zh_url = zh
        self.auto_url = auto
        self.store = AlertStore(r, _config("zh-CN"))
        self.evidence = EvidenceStore(r, _config("zh-CN"))
        img = np.full((180, 240, 3), (90, 95, 100), np.uint8)
        cv2.rectangle(img, (40, 30), (120, 100), (20, 110, 240), -1)
        self.jpeg = cv2.imencode(".jpg", img)[1].tobytes()
        self.n = 0

    def inject(
        self, kind: AlertKind = AlertKind.FIRE, department: str = "fire", camera: int = 1
    ) -> Alert:
        """Save a new alert with its snapshot, as the rules do."""
        self.n += 1
        cam = _camera(camera)
        alert = Alert(
            id=f"al_i18n_{kind.value}_{self.n:04d}",
            kind=kind,
            severity=Severity.CRITICAL if kind is AlertKind.FIRE else Severity.HIGH,
            camera_id=cam.id,
            camera_ids=[cam.id],
            location=Location(lat=cam.latitude, lon=cam.longitude),
            department=department,
            started_at=datetime.now(UTC),
            summary=f"{kind.value} detected (test {self.n})",
            evidence=[EvidenceRef(key=f"ev{self.n}", boxes=[[40.0, 30.0, 120.0, 100.0]])],
        )
        self.evidence.put(alert.id, self.jpeg)
        assert [a.id for a in self.store.save_new([alert])] == [alert.id]
        return alert


@pytest.fixture(scope="module")
def world(redis_server: Any) -> Iterator[World]:
    """The two servers, principals, eight cameras with health, two alerts."""
    from serve_app.http import create_api
    from serve_app.store.cameras import CameraRegistry

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    seed_principals(r)
    reg = CameraRegistry(r)
    for i in range(8):
        reg.put(_camera(i))
        st = CameraStatus(camera_id=f"cam-{i:02d}", state=CameraState.RUNNING)
        r.hset("citysight:camera-health", st.camera_id, st.model_dump_json())
    servers = []
    urls = []
    for lang in ("zh-CN", "auto"):
        port = free_port()
        servers.append(ServerThread(create_api(_config(lang), redis_server.url), port).start())
        urls.append(f"http://127.0.0.1:{port}")
    w = World(r, *urls)
    w.inject(AlertKind.FIRE, "fire", camera=1)
    w.inject(AlertKind.VENDING, "enforcement", camera=5)
    try:
        yield w
    finally:
        for s in servers:
            s.stop()
        r.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (each test opens fresh contexts)."""
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=bench.CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _context(browser: Any, viewport: dict[str, int], locale: str = "en-US") -> Any:
    # bypass_csp: Playwright's wait_for_function uses eval (the CSP is tested elsewhere).
    return browser.new_context(
        viewport=viewport,
        locale=locale,
        bypass_csp=True,
        is_mobile=viewport is PHONE,
        has_touch=viewport is PHONE,
        device_scale_factor=1,
    )


def _login(page: Any, url: str, role: str = "admin") -> None:
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page._test_errors = errors
    page.goto(url + "/")
    page.get_by_test_id("token-input").fill(token_of(role))
    page.get_by_test_id("login-button").click()
    expect(page.get_by_test_id("login")).to_be_hidden()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.get_by_test_id("ws-status")).to_have_attribute("data-state", "live")


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))
    if os.environ.get("CITYSIGHT_DOC_SCREENSHOTS") == "1":
        DOC_IMG.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(DOC_IMG / f"{name}.png"))


def _item(page: Any, alert_id: str) -> Any:
    return page.locator(f'[data-testid="alert-item"][data-alert-id="{alert_id}"]')


def test_city_default_zh_cn_then_switch_to_english_persists(world: World, browser: Any) -> None:
    """zh-CN city: Chinese from the login form on (an en-US browser); en sticks on reload."""
    ctx = _context(browser, DESKTOP, locale="en-US")
    page = ctx.new_page()
    try:
        page.goto(world.zh_url + "/")
        expect(page.get_by_test_id("login-button")).to_have_text("登录")
        assert page.evaluate("document.documentElement.lang") == "zh-CN"
        _login(page, world.zh_url)
        fire = world.inject(AlertKind.FIRE, "fire", camera=2)
        item = _item(page, fire.id)
        expect(item).to_be_visible(timeout=3000)
        expect(item.get_by_test_id("alert-state")).to_have_text("新告警")
        expect(item).to_contain_text("火情")
        expect(item).to_contain_text("消防救援")  # the department's configured zh-CN name
        expect(item).to_contain_text("紧急")
        expect(page.get_by_test_id("ws-status")).to_have_text("实时")
        expect(page.get_by_test_id("time-zone")).to_have_text("UTC+8")
        expect(page.locator(".leaflet-control-layers")).to_contain_text("摄像头")
        expect(page.locator(".filters")).to_contain_text("类型")
        item.click()
        expect(page.get_by_test_id("detail-state")).to_have_text("新告警")
        expect(page.get_by_test_id("action-acknowledge")).to_have_text("受理")
        expect(page.get_by_test_id("detail-started")).to_contain_text("UTC+8")
        expect(page.get_by_test_id("detail-summary")).to_have_text(fire.summary)
        expect(page.get_by_test_id("snapshot-msg")).to_have_text("人脸已模糊")
        # The time is the city's (Asia/Shanghai = UTC+8), not the browser's or UTC.
        local = fire.started_at.astimezone(UTC).hour
        started = page.get_by_test_id("detail-started").inner_text()
        assert f"{(local + 8) % 24:02d}:" in started, started

        page.get_by_test_id("language-switch").select_option("en")
        expect(page.get_by_test_id("detail-state")).to_have_text("raised")
        expect(item.get_by_test_id("alert-state")).to_have_text("raised")
        expect(item).to_contain_text("Fire and emergency")
        expect(item).to_contain_text(fire.summary)
        expect(page.get_by_test_id("action-acknowledge")).to_have_text("Acknowledge")
        expect(page.get_by_test_id("ws-status")).to_have_text("live")
        expect(page.locator(".leaflet-control-layers")).to_contain_text("Cameras")
        assert page.evaluate("document.documentElement.lang") == "en"
        page.get_by_test_id("detail-close").click()
        _shot(page, "desktop-map-en")

        # A reload keeps English (localStorage), even though the city's default is zh-CN
        # (the session's token signs in again by itself).
        page.reload()
        page.wait_for_selector("body[data-ready=true]")
        expect(page.locator(".filters")).to_contain_text("Kind")
        expect(page.get_by_test_id("language-switch")).to_have_value("en")
        assert page._test_errors == []
        # A new tab (no session token): the login form is English too; its switch goes back.
        tab = ctx.new_page()
        tab.goto(world.zh_url + "/")
        expect(tab.get_by_test_id("login-button")).to_have_text("Sign in")
        tab.get_by_test_id("login-language").select_option("zh-CN")
        expect(tab.get_by_test_id("login-button")).to_have_text("登录")
        assert tab.evaluate("localStorage.getItem('citysight.language')") == "zh-CN"
    finally:
        ctx.close()


@pytest.mark.parametrize(
    ("locale", "sign_in", "state_text"),
    [("zh-CN", "登录", "新告警"), ("en-US", "Sign in", "raised"), ("fr-FR", "Sign in", "raised")],
)
def test_auto_follows_the_browser_language(
    world: World, browser: Any, locale: str, sign_in: str, state_text: str
) -> None:
    """``ui.language: auto``: navigator.languages picks (unsupported ones: English)."""
    ctx = _context(browser, DESKTOP, locale=locale)
    page = ctx.new_page()
    try:
        page.goto(world.auto_url + "/")
        expect(page.get_by_test_id("login-button")).to_have_text(sign_in)
        _login(page, world.auto_url)
        expect(page.get_by_test_id("alert-state").first).to_have_text(state_text)
    finally:
        ctx.close()


def test_api_errors_follow_the_page_language(world: World, browser: Any) -> None:
    """A refused action shows the API's localized message (Accept-Language from the page)."""
    ctx = _context(browser, DESKTOP, locale="en-US")
    page = ctx.new_page()
    try:
        page.goto(world.zh_url + "/")
        page.get_by_test_id("token-input").fill("not-a-token")
        page.get_by_test_id("login-button").click()
        expect(page.get_by_test_id("login-error")).to_have_text("令牌未被接受。")
        body = page.evaluate(
            """async () => (await fetch('/api/alerts', {headers: {
                Authorization: 'Bearer nope', 'Accept-Language': 'zh-CN'}})).json()"""
        )
        assert body["code"] == "invalid_token" and body["message"] == "令牌无效或已被吊销。"
    finally:
        ctx.close()


def test_times_carry_their_own_offset(world: World, browser: Any) -> None:
    """Each time is labelled with its zone's offset at that date (summer time included)."""
    ctx = _context(browser, DESKTOP, locale="en-US")
    page = ctx.new_page()
    try:
        page.goto(world.zh_url + "/")
        page.wait_for_function("() => document.body.dataset.language === 'zh-CN'")
        got = page.evaluate(
            """() => { const i = window.citysightI18n;
              i.setTimeZone('Europe/Berlin');
              const w = i.fmtTime('2026-01-15T12:00:00Z'), s = i.fmtTime('2026-07-15T12:00:00Z');
              i.setTimeZone('Asia/Shanghai');
              return [w, s, i.fmtDateTime('2026-07-15T12:00:00Z'), i.fmtTime('')]; }"""
        )
        assert got[0] == "13:00:00 UTC+1" and got[1] == "14:00:00 UTC+2", got
        assert got[2].endswith("20:00:00 UTC+8") and "2026" in got[2], got
        assert got[3] == ""
    finally:
        ctx.close()


def _tap_targets(page: Any) -> list[dict[str, Any]]:
    """Size of every visible control a finger uses (buttons, selects, inputs, list items)."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
            'button, select, input, .alert-item, .leaflet-bar a, .leaflet-control-layers-toggle')]
          .filter((el) => el.offsetParent !== null && getComputedStyle(el).visibility !== 'hidden')
          .map((el) => { const r = el.getBoundingClientRect();
            return {id: el.dataset.testid || el.className || el.tagName,
                    w: Math.round(r.width * 10) / 10, h: Math.round(r.height * 10) / 10}; })"""
    )


def _no_sideways_scroll(page: Any) -> None:
    sw, iw = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
    assert sw <= iw, f"page scrolls sideways: scrollWidth {sw} > innerWidth {iw}"


def test_phone_layout(world: World, browser: Any) -> None:
    """390×844: full-screen map, list and detail as sheets, ≥ 44 px targets, no side scroll."""
    ctx = _context(browser, PHONE, locale="zh-CN")
    page = ctx.new_page()
    try:
        page.goto(world.zh_url + "/")
        _no_sideways_scroll(page)
        small = [t for t in _tap_targets(page) if t["w"] < 44 or t["h"] < 44]
        assert not small, f"login controls under 44 px: {small}"
        _login(page, world.zh_url)
        _no_sideways_scroll(page)
        map_box = page.get_by_test_id("map").bounding_box()
        assert map_box["width"] == PHONE["width"], map_box  # was ~50 px before
        assert map_box["height"] >= PHONE["height"] - 60, map_box
        side = page.locator(".side").bounding_box()
        assert side["x"] == 0 and side["width"] == PHONE["width"], side
        assert side["y"] + side["height"] <= PHONE["height"] + 0.5, side
        small = [t for t in _tap_targets(page) if t["w"] < 44 or t["h"] < 44]
        assert not small, f"controls under 44 px: {small}"
        _shot(page, "phone-map-zh")

        first = page.get_by_test_id("alert-item").first
        first.tap()
        detail = page.get_by_test_id("alert-detail")
        expect(detail).to_be_visible()
        expect(page.get_by_test_id("snapshot-msg")).to_have_text("人脸已模糊")
        _no_sideways_scroll(page)
        box = detail.bounding_box()
        vw, vh = page.evaluate("[window.innerWidth, window.innerHeight]")
        assert box["x"] >= 0 and box["y"] >= 0, box
        assert box["x"] + box["width"] <= vw + 0.5 and box["y"] + box["height"] <= vh + 0.5, box
        in_detail = page.evaluate(
            """() => [...document.querySelectorAll('[data-testid=alert-detail] button,'
                + '[data-testid=alert-detail] select, [data-testid=alert-detail] input')]
              .filter((el) => el.offsetParent !== null)
              .map((el) => { const r = el.getBoundingClientRect();
                return {id: el.dataset.testid, w: r.width, h: r.height}; })"""
        )
        assert len(in_detail) >= 8, in_detail  # close, reveal, unit, actions, outcome, note
        small = [t for t in in_detail if t["w"] < 44 or t["h"] < 44]
        assert not small, f"detail controls under 44 px: {small}"
        _shot(page, "phone-detail-zh")

        # The list sheet folds away (the whole map) and comes back.
        page.get_by_test_id("detail-close").tap()
        expect(detail).to_be_hidden()
        page.get_by_test_id("list-toggle").tap()
        page.wait_for_function(
            "() => document.querySelector('.side').getBoundingClientRect().top >= innerHeight - 1"
        )
        page.get_by_test_id("list-toggle").tap()
        page.wait_for_function(
            "() => document.querySelector('.side').getBoundingClientRect().bottom"
            " <= innerHeight + 1"
        )
        assert page._test_errors == []
    finally:
        ctx.close()


def test_desktop_layout_unchanged(world: World, browser: Any) -> None:
    """At 1280×800 the list stays a 340 px column beside the map, the detail beside it."""
    ctx = _context(browser, DESKTOP)
    page = ctx.new_page()
    try:
        _login(page, world.zh_url)
        side = page.locator(".side").bounding_box()
        assert side["width"] == 340 and side["x"] == DESKTOP["width"] - 340, side
        map_box = page.get_by_test_id("map").bounding_box()
        assert map_box["x"] == 0 and map_box["width"] == DESKTOP["width"] - 340, map_box
        expect(page.get_by_test_id("list-toggle")).to_be_hidden()
        page.get_by_test_id("alert-item").first.click()
        box = page.get_by_test_id("alert-detail").bounding_box()
        assert box["width"] == 400 and box["x"] + box["width"] == DESKTOP["width"] - 350, box
    finally:
        ctx.close()


def test_doc_screenshots_are_committed_and_small() -> None:
    """docs/map.md shows these; each stays under 300 KB."""
    for name in ("phone-map-zh", "phone-detail-zh", "desktop-map-en"):
        p = DOC_IMG / f"{name}.png"
        assert p.is_file(), f"{p} missing: CITYSIGHT_DOC_SCREENSHOTS=1 pytest {__file__}"
        assert p.stat().st_size < 300_000, (p, p.stat().st_size)
        assert f"img/{name}.png" in (ROOT / "docs" / "map.md").read_text()
