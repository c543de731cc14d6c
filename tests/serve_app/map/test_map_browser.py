"""The map page in real headless Chromium against the real API (uvicorn) and real Redis.

Scenario of the map issue: log in, see cameras, an injected alert reaches the map and the
list within 2 s, open it, acknowledge and resolve it, and the state change reaches a second
browser session; a police viewer never sees an enforcement alert. Screenshots go to
``test-artifacts/map/``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import redis

from benchmarks.fanout.world import ROLES, ServerThread, seed_principals, token_of
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
CHROMIUM_ARGS = bench.CHROMIUM_ARGS  # one list of the flags this machine's Chromium needs
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "map"
CENTER = (20.03, 110.33)
N_CAMERAS = 40
HEALTH = ["running", "stalled", "offline", "failed"]

if shutil.which(CHROMIUM) is None:
    # CI must run the browser tests: a missing browser is a failure there, a skip elsewhere.
    if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
        pytest.fail(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"chromium not installed at {CHROMIUM}", allow_module_level=True)


def _config(overlay: Path) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "departments": [{"id": d} for d in ("fire", "enforcement", "police")],
            "map": {"overlays": [{"name": "districts", "path": str(overlay)}]},
        }
    )


def _camera(i: int) -> CameraConfig:
    return CameraConfig(
        id=f"cam-{i:02d}",
        name=f"Camera {i:02d}",
        url=f"file:///videos/cam{i}.mp4",
        latitude=CENTER[0] + (i % 8) * 0.004,
        longitude=CENTER[1] + (i // 8) * 0.005,
        jurisdiction="longhua",
        heading_deg=(i * 45) % 360,
    )


def _alert(
    n: int, kind: AlertKind, department: str, severity: Severity = Severity.HIGH, camera: int = 3
) -> Alert:
    cam = _camera(camera)
    return Alert(
        id=f"al_map_{kind.value}_{n:04d}",
        kind=kind,
        severity=severity,
        camera_id=cam.id,
        camera_ids=[cam.id],
        location=Location(lat=cam.latitude, lon=cam.longitude),
        department=department,
        started_at=datetime.now(UTC),
        summary=f"{kind.value} test alert {n}",
        plate_text="琼A·12345" if kind is AlertKind.PLATE else None,
        evidence=[EvidenceRef(key=f"ev{n}", boxes=[[40.0, 30.0, 120.0, 100.0]], class_ids=[2])],
    )


class World:
    """The running API plus handles to inject alerts."""

    def __init__(self, r: redis.Redis, cfg: CitysightConfig, base_url: str) -> None:
        from serve_app.store.alerts import AlertStore
        from serve_app.store.evidence import EvidenceStore

        self.r = r
        self.cfg = cfg
        self.base_url = base_url
        self.store = AlertStore(r, cfg)
        self.evidence = EvidenceStore(r, cfg)
        img = np.full((180, 240, 3), (90, 95, 100), np.uint8)
        cv2.rectangle(img, (40, 30), (120, 100), (20, 110, 240), -1)
        self.jpeg = cv2.imencode(".jpg", img)[1].tobytes()

    def inject(self, alert: Alert) -> float:
        """Save an alert (as the rules do) with its snapshot; returns the wall time."""
        self.evidence.put(alert.id, self.jpeg)
        assert [a.id for a in self.store.save_new([alert])] == [alert.id]
        return time.monotonic()


@pytest.fixture(scope="module")
def world(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """Real API under uvicorn over a Redis with principals, cameras and camera health."""
    from serve_app.http import create_api
    from serve_app.store.cameras import CameraRegistry

    r = redis.Redis.from_url(redis_server.url)
    r.flushall()
    seed_principals(r)
    reg = CameraRegistry(r)
    for i in range(N_CAMERAS):
        reg.put(_camera(i))
        st = CameraStatus(
            camera_id=f"cam-{i:02d}",
            state=CameraState(HEALTH[0] if i % 10 else HEALTH[i // 10]),
            metrics={"last_frame_age_s": 0.4},
        )
        r.hset("citysight:camera-health", st.camera_id, st.model_dump_json())
    overlay = tmp_path_factory.mktemp("geo") / "districts.geojson"
    lat0, lon0 = CENTER
    ring = [
        [lon0 - 0.01, lat0 - 0.01],
        [lon0 + 0.05, lat0 - 0.01],
        [lon0 + 0.05, lat0 + 0.04],
        [lon0 - 0.01, lat0 + 0.04],
        [lon0 - 0.01, lat0 - 0.01],
    ]
    overlay.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "Longhua"},
                        "geometry": {"type": "Polygon", "coordinates": [ring]},
                    }
                ],
            }
        )
    )
    cfg = _config(overlay)
    port = free_port()
    server = ServerThread(create_api(cfg, redis_server.url), port).start()
    try:
        yield World(r, cfg, f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        r.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One headless Chromium (each test opens fresh contexts = fresh profiles)."""
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _open(browser: Any, world: World, role: str) -> Any:
    """A fresh context, logged in through the form as ``role``; returns the page."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 800})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page._test_errors = errors  # checked at the end of each test
    page.goto(world.base_url + "/")
    page.get_by_test_id("token-input").fill(token_of(role))
    page.get_by_test_id("login-button").click()
    expect(page.get_by_test_id("login")).to_be_hidden()
    page.wait_for_selector("body[data-ready=true]")
    expect(page.get_by_test_id("ws-status")).to_have_attribute("data-state", "live")
    return page


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def _item(page: Any, alert_id: str) -> Any:
    return page.locator(f"[data-testid=alert-item][data-alert-id='{alert_id}']")


def test_bad_token_is_refused(browser: Any, world: World) -> None:
    ctx = browser.new_context()
    page = ctx.new_page()
    page.goto(world.base_url + "/")
    page.get_by_test_id("token-input").fill("not-a-token")
    page.get_by_test_id("login-button").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("not accepted")
    expect(page.get_by_test_id("login")).to_be_visible()
    ctx.close()


def test_live_alert_dispatch_reaches_second_session(browser: Any, world: World) -> None:
    a = _open(browser, world, "admin")
    b = _open(browser, world, "fire")
    try:
        # Viewer identity and cameras (health colours, overlay) are shown.
        expect(a.get_by_test_id("viewer")).to_contain_text("admin-user · admin · all departments")
        expect(b.get_by_test_id("viewer")).to_contain_text("fire-user · fire · fire")
        expect(a.locator("body")).to_have_attribute("data-cameras", str(N_CAMERAS))
        counts = a.evaluate("""() => { const c = {};
            for (const e of window.citysight.state.cameras.values())
              c[e.marker.options.health] = (c[e.marker.options.health] || 0) + 1;
            return c; }""")
        assert counts == {"running": N_CAMERAS - 3, "stalled": 1, "offline": 1, "failed": 1}
        # The configured GeoJSON overlay (drawn on the canvas renderer).
        assert a.evaluate(
            "Object.entries(window.citysight.state.overlays)"
            ".map(([k, l]) => [k, l.getLayers().length])"
        ) == [["districts", 1]]
        # Zoomed in on the stalled camera (cam-10): unclustered, amber, with its popup.
        cam = _camera(10)
        a.evaluate(
            f"window.citysight.state.map.setView([{cam.latitude}, {cam.longitude}], 18,"
            " {animate: false})"
        )
        marker = a.locator(".cam.cam-stalled[data-camera-id='cam-10']")
        expect(marker).to_be_visible()
        marker.click()
        popup = a.get_by_test_id("camera-popup")
        expect(popup).to_contain_text("Camera 10")
        expect(popup).to_contain_text("stalled")
        expect(popup).to_contain_text("profile")
        expect(popup).to_contain_text("last frame")
        _shot(a, "01-cameras")
        a.keyboard.press("Escape")
        a.evaluate("window.citysight.state.map.setZoom(13, {animate: false})")

        # Inject: on the map and in the list of both sessions within 2 s.
        alert = _alert(1, AlertKind.FIRE, "fire", Severity.CRITICAL)
        world.inject(alert)
        for page in (a, b):
            expect(_item(page, alert.id)).to_be_visible(timeout=2000)
            expect(
                page.locator(f"[data-testid=alert-marker][data-alert-id='{alert.id}']")
            ).to_be_attached(timeout=2000)
        expect(_item(a, alert.id)).to_have_attribute("data-state", "raised")
        expect(a.get_by_test_id("critical-count")).to_have_text("1")
        assert int(a.locator("body").get_attribute("data-beeps") or 0) == 1

        # Open it: detail, snapshot (bearer-fetched blob), timeline, actions.
        _item(a, alert.id).click()
        detail = a.get_by_test_id("alert-detail")
        expect(detail).to_be_visible()
        expect(a.get_by_test_id("detail-state")).to_have_text("raised")
        expect(a.get_by_test_id("snapshot-img")).to_be_visible()
        assert a.get_by_test_id("snapshot-img").evaluate("i => i.naturalWidth") == 240
        expect(a.locator("[data-testid=snapshot-boxes] rect")).to_have_count(1)
        expect(a.get_by_test_id("timeline-event")).to_have_count(1)
        expect(a.get_by_test_id("reveal-form")).to_be_visible()  # admin holds the scope
        _shot(a, "02-alert-detail")

        # Acknowledge: the second session sees it.
        expect(a.get_by_test_id("action-resolve")).to_be_disabled()
        a.get_by_test_id("action-acknowledge").click()
        expect(a.get_by_test_id("detail-state")).to_have_text("acknowledged")
        expect(_item(b, alert.id)).to_have_attribute("data-state", "acknowledged", timeout=2000)

        # Resolve with outcome and note.
        a.get_by_test_id("outcome-select").select_option("handled")
        a.get_by_test_id("note-input").fill("extinguished by E12")
        a.get_by_test_id("action-resolve").click()
        expect(a.get_by_test_id("detail-state")).to_have_text("resolved")
        expect(a.get_by_test_id("detail-outcome")).to_have_text("handled")
        expect(a.get_by_test_id("timeline-event")).to_have_count(3)
        expect(a.get_by_test_id("alert-timeline")).to_contain_text("extinguished by E12")
        expect(_item(b, alert.id)).to_have_attribute("data-state", "resolved", timeout=2000)
        stored = world.store.get(alert.id)
        assert stored is not None and stored.state == "resolved" and stored.outcome == "handled"

        # A refused transition is reported, not applied.
        assert (
            a.evaluate(
                """id => fetch(`/api/alerts/${id}/transitions`, {method: 'POST',
            headers: {Authorization: `Bearer ${window.citysight.state.token}`,
                      'Content-Type': 'application/json'},
            body: JSON.stringify({to: 'acknowledged'})}).then(r => r.status)""",
                alert.id,
            )
            == 409
        )
        _shot(a, "03-resolved")
        # The camera's popup lists its recent alerts.
        a.get_by_test_id("detail-camera").click()  # zooms to the camera, opens its popup
        expect(a.get_by_test_id("camera-popup")).to_contain_text("fire · critical · resolved")
        _shot(b, "04-second-session")

        # Reveal unredacted: asks a reason, audited.
        a.get_by_test_id("reveal-unredacted").click()
        a.get_by_test_id("reveal-reason").fill("incident review 42")
        a.get_by_test_id("reveal-submit").click()
        expect(a.get_by_test_id("snapshot")).to_have_attribute("data-unredacted", "true")
        from serve_app.store.audit import AuditLog

        records = AuditLog(world.r, world.cfg).list(limit=10)
        assert any(
            r["action"] == "evidence.unredacted"
            and r["target"] == alert.id
            and r["reason"] == "incident review 42"
            for r in records
        ), records
        assert a._test_errors == [] and b._test_errors == []
    finally:
        a.context.close()
        b.context.close()


def test_police_never_sees_enforcement_alerts(browser: Any, world: World) -> None:
    p = _open(browser, world, "police")
    try:
        vending = _alert(2, AlertKind.VENDING, "enforcement", Severity.CRITICAL)
        plate = _alert(3, AlertKind.PLATE, "police", Severity.HIGH)
        world.inject(vending)
        world.inject(plate)
        # The police alert (injected after) arrives; the enforcement one never does.
        expect(_item(p, plate.id)).to_be_visible(timeout=2000)
        p.wait_for_timeout(500)
        assert _item(p, vending.id).count() == 0
        assert p.locator(f"[data-alert-id='{vending.id}']").count() == 0
        depts = p.locator("[data-testid=alert-item]").evaluate_all(
            "els => els.map(e => e.dataset.department)"
        )
        assert set(depts) == {"police"}
        expect(p.get_by_test_id("critical-count")).to_have_text("0")
        # Reload (REST listing instead of the feed): still nothing foreign.
        p.reload()
        p.wait_for_selector("body[data-ready=true]")
        expect(_item(p, plate.id)).to_be_visible()
        assert _item(p, vending.id).count() == 0
        # Police holds alerts:dispatch and evidence:unredacted: actions and reveal are offered.
        assert {"alerts:dispatch", "evidence:unredacted"} <= set(ROLES["police"]["scopes"])
        _item(p, plate.id).click()
        expect(p.get_by_test_id("actions")).to_be_visible()
        expect(p.get_by_test_id("reveal-form")).to_be_visible()
        _shot(p, "05-police")
        assert p._test_errors == []
    finally:
        p.context.close()


def test_read_only_viewer_and_resume_after_reconnect(browser: Any, world: World) -> None:
    v = _open(browser, world, "readonly")
    try:
        first = _alert(4, AlertKind.SMOKE, "fire", Severity.MEDIUM)
        world.inject(first)
        expect(_item(v, first.id)).to_be_visible(timeout=2000)
        _item(v, first.id).click()
        expect(v.get_by_test_id("alert-detail")).to_be_visible()
        expect(v.get_by_test_id("actions")).to_be_hidden()
        expect(v.get_by_test_id("reveal-form")).to_be_hidden()

        # A cross-camera incident (two alerts, one incident_id): one marker with a count.
        twins = [
            _alert(n, AlertKind.SMOKE, "fire", Severity.MEDIUM, camera=cam).model_copy(
                update={"incident_id": "inc_map_1", "camera_ids": ["cam-05", "cam-06"]}
            )
            for n, cam in ((6, 5), (7, 6))
        ]
        for t in twins:
            world.inject(t)
        for t in twins:
            expect(_item(v, t.id)).to_be_visible(timeout=2000)
        markers = v.locator("[data-testid=alert-marker][data-count='2']")
        expect(markers).to_have_count(1)
        assert markers.get_attribute("data-alert-id") in {t.id for t in twins}

        # Filters hide list items and markers without re-rendering the rest.
        v.get_by_test_id("filter-kind").select_option("fire")
        for t in twins:
            expect(_item(v, t.id)).to_be_hidden()
        expect(v.locator("[data-testid=alert-marker][data-count='2']")).to_have_count(0)
        v.get_by_test_id("filter-kind").select_option("")
        v.get_by_test_id("filter-state").select_option("resolved")
        expect(_item(v, first.id)).to_be_hidden()
        v.get_by_test_id("filter-state").select_option("open")
        expect(_item(v, first.id)).to_be_visible()
        expect(markers).to_have_count(1)

        # Live camera health from the feed recolours the marker (cam-01: running -> offline).
        from serve_app.store.feed import publish_feed

        st = CameraStatus(camera_id="cam-01", state=CameraState.OFFLINE, reason="no frames")
        pipe = world.r.pipeline(transaction=False)
        publish_feed(
            pipe,
            type="camera_status",
            payload=st.model_dump(mode="json"),
            department="fire",
            kind="camera_offline",
            camera_id="cam-01",
            severity="info",
            lat=CENTER[0],
            lon=CENTER[1],
        )
        pipe.execute()
        v.wait_for_function(
            "window.citysight.state.cameras.get('cam-01').marker.options.health === 'offline'",
            timeout=2000,
        )

        # Drop the socket, inject while disconnected, reconnect: resumed from last_id.
        v.evaluate("""() => { const s = window.citysight.state; const ws = s.ws;
            ws.onclose = null; ws.close(); s.ws = null; }""")
        missed = _alert(5, AlertKind.FIRE, "fire", Severity.HIGH)
        world.inject(missed)
        v.wait_for_timeout(300)
        assert _item(v, missed.id).count() == 0
        v.evaluate("window.citysight.connectWs()")
        expect(_item(v, missed.id)).to_be_visible(timeout=3000)
        assert v._test_errors == []
    finally:
        v.context.close()


def test_camera_not_analysed_has_its_own_marker_colour(browser: Any, world: World) -> None:
    """A running camera whose frames are not analysed is not shown as healthy."""
    from serve_app.store.feed import publish_feed

    def relay(analysed: bool) -> None:
        st = CameraStatus(camera_id="cam-03", state=CameraState.RUNNING, analysed=analysed)
        pipe = world.r.pipeline(transaction=False)
        publish_feed(
            pipe, type="camera_status", payload=st.model_dump(mode="json"), department="fire",
            kind="camera_offline", camera_id="cam-03", severity="info", lat=CENTER[0],
            lon=CENTER[1],
        )  # fmt: skip
        pipe.execute()

    page = _open(browser, world, "admin")
    try:
        health = "window.citysight.state.cameras.get('cam-03').marker.options.health"
        page.wait_for_function(f"{health} === 'running'", timeout=3000)
        relay(False)
        page.wait_for_function(f"{health} === 'not_analysed'", timeout=3000)
        colour = page.evaluate(
            "getComputedStyle(document.body).getPropertyValue('--not-analysed').trim()"
        )
        assert colour and colour != page.evaluate(
            "getComputedStyle(document.body).getPropertyValue('--running').trim()"
        )
        relay(True)
        page.wait_for_function(f"{health} === 'running'", timeout=3000)
        assert page._test_errors == []
    finally:
        page.context.close()


def test_escalated_alert_stays_with_its_owner_and_deleted_camera_leaves_the_map(
    browser: Any, world: World
) -> None:
    """Issue 11: an escalated fire alert is on the fire map *and* the duty map; a camera
    deleted through the API leaves every open map (WebSocket ``camera_removed``)."""
    import httpx

    from serve_app.store.alerts import AlertStore

    seed_principals(world.r, {"duty": {"department": "duty", "scopes": ["alerts:read"]}})
    extra = _camera(N_CAMERAS).model_copy(update={"id": "cam-temp", "name": "Temporary"})
    from serve_app.store.cameras import CameraRegistry

    CameraRegistry(world.r).put(extra)
    fire = _open(browser, world, "fire")
    duty = _open(browser, world, "duty")
    try:
        for page in (fire, duty):
            expect(page.locator("body")).to_have_attribute("data-cameras", str(N_CAMERAS + 1))
        alert = _alert(40, AlertKind.FIRE, "fire", Severity.CRITICAL)
        sla = CitysightConfig.model_validate(
            {"departments": [{"id": "fire", "supervisor": "duty", "ack_sla_s": 60}, {"id": "duty"}]}
        )
        ago = datetime.fromtimestamp(time.time() - 600, UTC)  # raised 10 min ago, not acked
        world.inject(alert.model_copy(update={"raised_at": ago.timestamp(), "started_at": ago}))
        expect(_item(fire, alert.id)).to_be_visible(timeout=2000)
        assert [a.id for a in AlertStore(world.r, sla).escalate_overdue()] == [alert.id]
        # Owner keeps it (with the escalation shown), duty gains it live.
        expect(_item(duty, alert.id)).to_be_visible(timeout=2000)
        expect(_item(fire, alert.id)).to_contain_text("fire + duty", timeout=2000)
        expect(_item(fire, alert.id)).to_have_class(re.compile(r"\bescalated\b"))
        duty.get_by_test_id("filter-department").select_option("duty")
        expect(_item(duty, alert.id)).to_be_visible()
        duty.get_by_test_id("filter-department").select_option("")
        fire.reload()  # the REST listing agrees
        fire.wait_for_selector("body[data-ready=true]")
        expect(_item(fire, alert.id)).to_be_visible()
        # Delete the camera: its marker leaves both maps without a reload.
        r = httpx.delete(
            f"{world.base_url}/api/cameras/cam-temp",
            headers={"Authorization": f"Bearer {token_of('admin')}"},
        )
        assert r.status_code == 204
        for page in (fire, duty):
            expect(page.locator("body")).to_have_attribute(
                "data-cameras", str(N_CAMERAS), timeout=3000
            )
            assert page.evaluate("window.citysight.state.cameras.has('cam-temp')") is False
            assert page.locator(".cam[data-camera-id='cam-temp']").count() == 0
        assert fire._test_errors == [] and duty._test_errors == []
    finally:
        fire.context.close()
        duty.context.close()
        CameraRegistry(world.r).delete("cam-temp")


# ---- the critical counter and the marker layering (own server on Redis db 1, so the
# alerts of the tests above do not count here)


@pytest.fixture(scope="module")
def fresh(redis_server: Any) -> Iterator[World]:
    """A second API over an empty Redis database: principals, a few cameras, their health."""
    from serve_app.http import create_api
    from serve_app.store.cameras import CameraRegistry

    url = redis_server.url.rsplit("/", 1)[0] + "/1"
    r = redis.Redis.from_url(url)
    r.flushdb()
    seed_principals(r)
    reg = CameraRegistry(r)
    for i in range(8):
        reg.put(_camera(i))
        st = CameraStatus(camera_id=f"cam-{i:02d}", state=CameraState.RUNNING)
        r.hset("citysight:camera-health", st.camera_id, st.model_dump_json())
    cfg = CitysightConfig.model_validate(
        {"departments": [{"id": d} for d in ("fire", "enforcement", "police")]}
    )
    port = free_port()
    server = ServerThread(create_api(cfg, url), port).start()
    try:
        yield World(r, cfg, f"http://127.0.0.1:{port}")
    finally:
        server.stop()
        r.flushdb()
        r.close()


def _open_critical(world: World, department: str | None) -> int:
    """What the counter must show: open critical alerts in the department's scope."""
    depts = None if department is None else {department}
    return len(
        world.store.query(
            departments=depts,
            states={"raised", "assigned", "acknowledged"},
            severities={"critical"},
            limit=100_000,
        )
    )


def test_critical_counter_counts_open_critical_alerts_in_scope(browser: Any, fresh: World) -> None:
    """Loaded at sign-in (however old), kept current by the feed; never arrivals."""
    from datetime import timedelta

    old = _alert(1, AlertKind.FIRE, "fire", Severity.CRITICAL).model_copy(
        update={"started_at": datetime.now(UTC) - timedelta(days=2)}
    )
    fresh.inject(old)
    fresh.inject(_alert(2, AlertKind.SMOKE, "fire", Severity.CRITICAL))
    done = _alert(3, AlertKind.FIRE, "fire", Severity.CRITICAL)
    fresh.inject(done)
    fresh.store.transition(done.id, "false_alarm", actor="fire")  # not open any more
    fresh.inject(_alert(4, AlertKind.VENDING, "enforcement", Severity.CRITICAL))
    fresh.inject(_alert(5, AlertKind.FIRE, "fire", Severity.HIGH))  # open, not critical
    # 500 newer fire alerts push the old critical one out of the map's first listing page.
    newer = [
        _alert(100 + i, AlertKind.SMOKE, "fire", Severity.LOW).model_copy(
            update={"started_at": datetime.now(UTC) - timedelta(minutes=5)}
        )
        for i in range(500)
    ]
    assert len(fresh.store.save_new(newer)) == 500
    assert _open_critical(fresh, "fire") == 2 and _open_critical(fresh, None) == 3

    admin = _open(browser, fresh, "admin")
    fire = _open(browser, fresh, "fire")
    police = _open(browser, fresh, "police")
    try:
        expect(admin.get_by_test_id("critical-count")).to_have_text("3")
        expect(fire.get_by_test_id("critical-count")).to_have_text("2")
        expect(police.get_by_test_id("critical-count")).to_have_text("0")
        expect(_item(fire, old.id)).to_be_attached()  # loaded although not among the newest
        assert int(fire.locator("body").get_attribute("data-beeps") or 0) == 0  # none new

        # A new critical alert: counted, and it beeps.
        new = _alert(6, AlertKind.FIRE, "fire", Severity.CRITICAL)
        fresh.inject(new)
        expect(fire.get_by_test_id("critical-count")).to_have_text("3", timeout=3000)
        expect(admin.get_by_test_id("critical-count")).to_have_text("4", timeout=3000)
        assert int(fire.locator("body").get_attribute("data-beeps") or 0) == 1
        # Acknowledged is still open; resolved is not (events from another session).
        fresh.store.transition(new.id, "acknowledged", actor="fire")
        fire.wait_for_timeout(500)
        expect(fire.get_by_test_id("critical-count")).to_have_text("3")
        fresh.store.transition(new.id, "resolved", actor="fire", outcome="handled")
        fresh.store.transition(old.id, "false_alarm", actor="fire")
        expect(fire.get_by_test_id("critical-count")).to_have_text("1", timeout=3000)
        expect(admin.get_by_test_id("critical-count")).to_have_text("2", timeout=3000)
        expect(police.get_by_test_id("critical-count")).to_have_text("0")
        assert _open_critical(fresh, "fire") == 1
        # Clicking the counter does not zero it: it lists the open alerts.
        fire.get_by_test_id("critical-counter").click()
        expect(fire.get_by_test_id("critical-count")).to_have_text("1")
        expect(fire.get_by_test_id("filter-state")).to_have_value("open")
        _shot(fire, "06-critical-counter")
        for p in (admin, fire, police):
            assert p._test_errors == []
    finally:
        for p in (admin, fire, police):
            p.context.close()


def test_alert_icon_leaves_its_camera_visible_and_clickable(browser: Any, fresh: World) -> None:
    """An alert on a camera: the camera's health dot is on top, uncovered, and opens its popup."""
    cam = _camera(2)
    st = CameraStatus(camera_id=cam.id, state=CameraState.STALLED)
    fresh.r.hset("citysight:camera-health", cam.id, st.model_dump_json())
    alert = _alert(7, AlertKind.FIRE, "fire", Severity.CRITICAL, camera=2)
    fresh.inject(alert)
    page = _open(browser, fresh, "admin")
    try:
        page.evaluate(
            f"window.citysight.state.map.setView([{cam.latitude}, {cam.longitude}], 18,"
            " {animate: false})"
        )
        dot = page.locator(f".cam[data-camera-id='{cam.id}']")
        icon = page.locator(f"[data-testid=alert-marker][data-alert-id='{alert.id}']")
        expect(dot).to_be_visible()
        expect(icon).to_be_visible()
        expect(dot).to_have_class(re.compile(r"\bcam-stalled\b"))
        d, i = dot.bounding_box(), icon.bounding_box()
        assert d is not None and i is not None
        # No overlap: the icon sits above the dot, centred on it.
        assert i["y"] + i["height"] <= d["y"], (d, i)
        assert abs((i["x"] + i["width"] / 2) - (d["x"] + d["width"] / 2)) <= 1, (d, i)
        # The topmost element at every point of the dot is the dot (or inside it).
        for fx, fy in ((0.5, 0.5), (0.2, 0.2), (0.8, 0.2), (0.5, 0.1)):
            x, y = d["x"] + fx * d["width"], d["y"] + fy * d["height"]
            top = page.evaluate(
                "([x, y, id]) => { const e = document.elementFromPoint(x, y);"
                " return !!e && !!e.closest(`.cam[data-camera-id='${id}']`); }",
                [x, y, cam.id],
            )
            assert top, (fx, fy)
        colour = dot.evaluate("e => getComputedStyle(e).backgroundColor")
        assert colour == "rgb(224, 162, 27)"  # HEALTH_COLOURS.stalled
        # Clicking the dot opens the camera, clicking the icon opens the alert.
        dot.click()
        expect(page.get_by_test_id("camera-popup")).to_contain_text(cam.name)
        expect(page.get_by_test_id("alert-detail")).to_be_hidden()
        page.keyboard.press("Escape")
        icon.click()
        expect(page.get_by_test_id("alert-detail")).to_be_visible()
        expect(page.get_by_test_id("detail-camera")).to_contain_text(cam.id)
        _shot(page, "07-alert-over-camera")
        assert page._test_errors == []
    finally:
        page.context.close()
