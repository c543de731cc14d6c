"""The map's statistics panel in real headless Chromium against the real API and Redis.

Alerts over several days in two townships: the panel's bars match ``by_day`` of
``GET /api/stats``, its table has one row per township (and a total), a township officer's
panel shows only its township, and the CSV export downloads the scoped list. A screenshot
goes to ``test-artifacts/map/stats-panel.png``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from benchmarks.fanout.world import ServerThread
from benchmarks.map import run as bench
from citysight import keys
from citysight.app.services.redis_server import free_port
from citysight.config import CitysightConfig
from citysight.contracts import Alert, AlertKind, AlertState, Location, Severity

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = os.environ.get("CITYSIGHT_CHROMIUM", bench.CHROMIUM)
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "map"

if shutil.which(CHROMIUM) is None:
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"chromium not installed at {CHROMIUM}", allow_module_level=True)


def _box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


CFG = CitysightConfig.model_validate(
    {
        "site": {"timezone": "Asia/Shanghai"},
        "jurisdictions": {
            "areas": [
                {"id": "city", "level": "city", "geometry": _box(110.0, 20.0, 110.2, 20.2)},
                {
                    "id": "north",
                    "name": "North town",
                    "level": "township",
                    "parent": "city",
                    "geometry": _box(110.0, 20.1, 110.2, 20.2),
                },
                {
                    "id": "south",
                    "name": "South town",
                    "level": "township",
                    "parent": "city",
                    "geometry": _box(110.0, 20.0, 110.2, 20.1),
                },
            ]
        },
        "departments": [{"id": "fire", "ack_sla_s": 300}],
    }
)
POS = {"north": (20.15, 110.05), "south": (20.05, 110.05)}
ROLES = {
    "admin": {"department": "*", "scopes": ["alerts:read", "alerts:dispatch"]},
    "north": {"department": "*", "jurisdiction": "north", "scopes": ["alerts:read"]},
}
# (township, days ago, count): 6 north alerts over three days, 2 south.
SEED = [("north", 0, 2), ("north", 1, 3), ("north", 3, 1), ("south", 1, 2)]


def _tok(role: str) -> str:
    return f"tok-panel-{role}-0123456789"


@pytest.fixture(scope="module")
def base_url(redis_server: Any) -> Iterator[str]:
    from serve_app.http import create_api
    from serve_app.store.alerts import AlertStore

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    for role, p in ROLES.items():
        rec = {"name": f"{role}-user", "role": role, **p}
        r.hset(keys.PRINCIPALS, hashlib.sha256(_tok(role).encode()).hexdigest(), json.dumps(rec))
    store = AlertStore(r, CFG)
    now = time.time()
    alerts = []
    for town, ago, n in SEED:
        for i in range(n):
            t = now - ago * 86400 - 60 * (i + 1)
            lat, lon = POS[town]
            alerts.append(
                Alert(
                    id=f"al_{town}_{ago}_{i}",
                    kind=AlertKind.FIRE,
                    severity=Severity.HIGH,
                    camera_id=f"cam-{town}",
                    location=Location(lat=lat, lon=lon),
                    department="fire",
                    started_at=datetime.fromtimestamp(t, UTC),
                    raised_at=t,
                )
            )
    store.save_new(alerts)
    store.transition("al_north_1_0", AlertState.FALSE_ALARM, actor="t", outcome="false_alarm")
    store.transition("al_north_1_1", AlertState.ACKNOWLEDGED, actor="t")
    store.transition("al_north_1_1", AlertState.RESOLVED, actor="t", outcome="removed")
    port = free_port()
    server = ServerThread(create_api(CFG, redis_server.url), port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        r.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=bench.CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _open_panel(browser: Any, base_url: str, role: str) -> tuple[Any, Any]:
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(base_url + "/")
    page.get_by_test_id("token-input").fill(_tok(role))
    page.get_by_test_id("login-button").click()
    page.wait_for_selector("body[data-ready=true]")
    page.get_by_test_id("stats-toggle").click()
    expect(page.get_by_test_id("stats-panel")).to_have_attribute("data-loaded", "true")
    assert not errors, errors
    return ctx, page


def _rows(page: Any) -> dict[str, list[str]]:
    out = {}
    for row in page.get_by_test_id("stats-row").all():
        out[row.get_attribute("data-key")] = [c.inner_text() for c in row.locator("td").all()]
    return out


def test_panel_shows_the_days_and_townships(browser: Any, base_url: str) -> None:
    ctx, page = _open_panel(browser, base_url, "admin")
    try:
        api = httpx.get(
            base_url + "/api/stats?group_by=jurisdiction&level=township",
            headers={"Authorization": f"Bearer {_tok('admin')}"},
        ).json()
        bars = {
            b.get_attribute("data-date"): int(b.get_attribute("data-total") or -1)
            for b in page.get_by_test_id("stats-bar").all()
        }
        assert bars == {d["date"]: d["total"] for d in api["by_day"]}
        assert sum(bars.values()) == 8 and len(bars) == 8  # 7 days back and today
        rows = _rows(page)
        assert set(rows) == {"north", "south", "*"}
        assert rows["north"][:4] == ["North town", "6", "4", "2"]  # total, open, handled
        assert rows["south"][:2] == ["South town", "2"]
        assert rows["*"][1] == "8"
        assert rows["north"][-1] == "50 %"  # one confirmed, one false alarm
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.get_by_test_id("stats-panel").screenshot(path=str(ARTIFACTS / "stats-panel.png"))
        # A shorter range redraws from the server.
        page.get_by_test_id("stats-panel").evaluate("p => p.dataset.loaded = ''")
        page.get_by_test_id("stats-range").select_option("14")
        expect(page.get_by_test_id("stats-panel")).to_have_attribute("data-loaded", "true")
        assert len(page.get_by_test_id("stats-bar").all()) == 15
    finally:
        ctx.close()


def test_township_officer_sees_its_township_and_exports_it(browser: Any, base_url: str) -> None:
    ctx, page = _open_panel(browser, base_url, "north")
    try:
        rows = _rows(page)
        assert set(rows) == {"north"} and rows["north"][1] == "6"
        assert page.get_by_test_id("stats-panel").get_attribute("data-total") == "6"
        with page.expect_download() as dl:
            page.get_by_test_id("stats-csv").click()
        text = Path(dl.value.path()).read_text(encoding="utf-8-sig")
        ids = {r["id"] for r in csv.DictReader(io.StringIO(text))}
        assert ids == {
            f"al_north_{ago}_{i}" for t, ago, n in SEED if t == "north" for i in range(n)
        }
    finally:
        ctx.close()


def test_panel_reads_in_chinese_and_fits_a_phone(browser: Any, base_url: str) -> None:
    """The panel's strings come from the catalogues (zh-CN after the switch); at 390x844
    the page does not scroll sideways and the panel stays on screen."""
    ctx = browser.new_context(viewport={"width": 390, "height": 844})
    page = ctx.new_page()
    try:
        page.goto(base_url + "/")
        page.get_by_test_id("token-input").fill(_tok("admin"))
        page.get_by_test_id("login-button").click()
        page.wait_for_selector("body[data-ready=true]")
        page.get_by_test_id("language-switch").select_option("zh-CN")
        expect(page.get_by_test_id("stats-toggle")).to_have_attribute("title", "统计")
        # Every top-bar control stays on screen (the statistics button shows its icon only).
        # On a phone the statistics button is a map button (icon only, 44 px), out of the
        # top bar's flow: the other controls sit where they would without it.
        b = page.get_by_test_id("stats-toggle").bounding_box()
        assert b is not None and b["x"] >= 0 and b["x"] + b["width"] <= 390, b
        assert b["height"] >= 44 and b["width"] >= 44, b
        xs = "() => [...document.querySelectorAll('.topbar > *')].filter(e => e.dataset.testid"
        xs += " !== 'stats-toggle').map(e => Math.round(e.getBoundingClientRect().x))"
        with_button = page.evaluate(xs)
        page.evaluate(
            "() => { const b = document.querySelector('[data-testid=stats-toggle]');"
            " window._statsNext = b.nextSibling; window._statsButton = b; b.remove(); }"
        )
        assert page.evaluate(xs) == with_button
        page.evaluate(
            "() => window._statsNext.parentNode"
            ".insertBefore(window._statsButton, window._statsNext)"
        )
        page.get_by_test_id("stats-toggle").click()
        panel = page.get_by_test_id("stats-panel")
        expect(panel).to_have_attribute("data-loaded", "true")
        expect(panel.locator("h2")).to_have_text("统计")
        expect(panel.locator("th").first).to_have_text("辖区")
        assert len(page.get_by_test_id("stats-row").all()) == 3
        box = panel.bounding_box()
        assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= 390
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "stats-panel-phone-zh.png"))
    finally:
        ctx.close()
