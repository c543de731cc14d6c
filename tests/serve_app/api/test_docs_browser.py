"""``/docs`` (Swagger UI) and ``/redoc`` render in real headless Chromium with the network off.

Every request that is not to the API under test is aborted and recorded: the pages must
render the operations from the vendored assets alone (FastAPI's defaults load them from a
CDN, which left ``/docs`` blank offline).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from testkit import IN_CI

from benchmarks.fanout.world import ServerThread, world_config
from benchmarks.map import run as bench
from citysight.app.services.redis_server import free_port

playwright_api = pytest.importorskip("playwright.sync_api")
expect = playwright_api.expect

CHROMIUM = os.environ.get("CITYSIGHT_CHROMIUM", bench.CHROMIUM)

if shutil.which(CHROMIUM) is None:
    if IN_CI:
        pytest.fail(f"chromium not installed at {CHROMIUM} (apt-get install chromium)")
    pytest.skip(f"chromium not installed at {CHROMIUM}", allow_module_level=True)


@pytest.fixture(scope="module")
def base_url(redis_server: Any) -> Iterator[str]:
    from serve_app.http import create_api

    port = free_port()
    server = ServerThread(create_api(world_config(), redis_server.url), port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=bench.CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


def _offline_page(browser: Any, base_url: str) -> tuple[Any, list[str], list[str]]:
    """A page whose requests outside ``base_url`` are aborted (and listed)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    outside: list[str] = []
    errors: list[str] = []

    def route(r: Any) -> None:
        if r.request.url.startswith(base_url + "/"):
            r.continue_()
        else:
            outside.append(r.request.url)
            r.abort("internetdisconnected")

    ctx.route("**/*", route)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    return page, outside, errors


def _operations(base_url: str) -> list[tuple[str, str, str]]:
    import json
    import urllib.request

    spec = json.loads(urllib.request.urlopen(base_url + "/openapi.json", timeout=10).read())
    return [
        (method.upper(), path, op.get("summary", ""))
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]


def test_swagger_ui_renders_every_operation_offline(browser: Any, base_url: str) -> None:
    page, outside, errors = _offline_page(browser, base_url)
    try:
        res = page.goto(base_url + "/docs")
        assert res is not None and res.ok
        ops = _operations(base_url)
        assert len(ops) >= 15
        blocks = page.locator(".opblock")
        expect(blocks).to_have_count(len(ops), timeout=15000)
        paths = page.locator(".opblock-summary-path").all_inner_texts()
        assert {p.replace("\u200b", "") for p in paths} == {p for _, p, _ in ops}
        expect(page.locator(".opblock-summary-description").first).to_be_visible()
        expect(page.get_by_text("List alerts in the caller's scope, newest first")).to_be_visible()
        assert outside == [] and errors == []
    finally:
        page.context.close()


def test_redoc_renders_operations_offline(browser: Any, base_url: str) -> None:
    page, outside, errors = _offline_page(browser, base_url)
    try:
        res = page.goto(base_url + "/redoc")
        assert res is not None and res.ok
        heading = page.locator("h2", has_text="List alerts in the caller's scope, newest first")
        expect(heading).to_be_visible(timeout=15000)
        assert page.locator("[data-section-id^='operation/']").count() >= len(_operations(base_url))
        assert outside == [] and errors == []
    finally:
        page.context.close()


def test_docs_pages_reference_only_local_assets(base_url: str) -> None:
    """Local script URLs, and a policy that lets the browser fetch nothing from elsewhere."""
    import urllib.request

    for path in ("/docs", "/redoc"):
        with urllib.request.urlopen(base_url + path, timeout=10) as res:
            html = res.read().decode()
            csp = res.headers["Content-Security-Policy"]
        assert "cdn." not in html and "fonts.googleapis" not in html, path
        assert "/static/vendor/" in html
        assert "default-src 'self'" in csp and "http" not in csp, csp
