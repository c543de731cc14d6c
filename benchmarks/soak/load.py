"""The soak's users: WebSocket subscribers, a REST poller and a headless Chromium on the map.

Subscribers connect with ``last_id=0-0`` (the whole feed is replayed) and reconnect with their
last feed id after any close, as the protocol asks, so each one should end up with every
alert of its scope. Everything is bounded: sockets have timeouts, loops stop on ``stop()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from benchmarks.common.chromium import CHROMIUM, CHROMIUM_ARGS
from benchmarks.soak.accounting import Subscription, alert_departments

logger = logging.getLogger(__name__)


def started_s(alert: dict[str, Any]) -> float:
    """An alert's ``started_at`` as Unix seconds."""
    v = alert.get("started_at")
    if isinstance(v, int | float):
        return float(v)
    return datetime.fromisoformat(str(v).replace("Z", "+00:00")).timestamp()


@dataclass
class _Sub:
    name: str
    token: str
    department: str
    owner_of: Any
    connected_at: float = 0.0
    last_id: str = "0-0"
    received: dict[str, float] = field(default_factory=dict)
    # (time, kind, alert id, camera id) of each alert's first receipt
    arrivals: list[tuple[float, str, str, str]] = field(default_factory=list)
    foreign: int = 0
    connects: int = 0
    closes: dict[str, int] = field(default_factory=dict)
    messages: int = 0


class Subscribers:
    """``n`` WebSocket subscribers in one asyncio loop (its own thread).

    Args:
        ws_url: ``ws://127.0.0.1:8000/ws``.
        tokens: Role -> bearer token; subscribers take the roles in turn.
        departments: Role -> department (``*`` for all).
        owner_of: Alert kind -> department it is routed to.
        n: Number of subscribers.
    """

    def __init__(
        self,
        ws_url: str,
        tokens: dict[str, str],
        departments: dict[str, str],
        owner_of: Any,
        n: int = 20,
    ) -> None:
        self.ws_url = ws_url
        roles = [r for r in ("admin", "police", "enforcement", "fire") if r in tokens]
        self.subs = [
            _Sub(
                f"ws-{i:02d}-{roles[i % len(roles)]}",
                tokens[roles[i % len(roles)]],
                departments[roles[i % len(roles)]],
                owner_of,
            )
            for i in range(n)
        ]
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Subscribers:
        """Connect every subscriber (in the background)."""
        self._thread = threading.Thread(target=self._run, name="soak-ws", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._stop = asyncio.Event()
        self._loop.run_until_complete(
            asyncio.gather(*(self._subscriber(s) for s in self.subs), return_exceptions=True)
        )

    async def _subscriber(self, sub: _Sub) -> None:
        from websockets.asyncio.client import connect
        from websockets.exceptions import ConnectionClosed

        assert self._stop is not None
        while not self._stop.is_set():
            url = f"{self.ws_url}?last_id={sub.last_id}"
            try:
                async with connect(
                    url,
                    additional_headers={"Authorization": f"Bearer {sub.token}"},
                    open_timeout=20,
                    close_timeout=5,
                    compression=None,
                ) as ws:
                    sub.connects += 1
                    if not sub.connected_at:
                        sub.connected_at = time.time()
                    while not self._stop.is_set():
                        try:
                            raw = await asyncio.wait_for(ws.recv(), timeout=1.0)
                        except TimeoutError:
                            continue
                        self._on_message(sub, raw)
            except ConnectionClosed as exc:
                code = str(exc.rcvd.code) if exc.rcvd else "none"
                sub.closes[code] = sub.closes.get(code, 0) + 1
            except (OSError, TimeoutError, Exception) as exc:  # reconnect on anything
                key = type(exc).__name__
                sub.closes[key] = sub.closes.get(key, 0) + 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), timeout=1.0)

    @staticmethod
    def _on_message(sub: _Sub, raw: str | bytes) -> None:
        msg = json.loads(raw)
        sub.messages += 1
        if isinstance(msg.get("id"), str) and msg.get("type") != "heartbeat":
            sub.last_id = msg["id"]
        if msg.get("type") != "alert":
            return
        a = msg.get("alert") or {}
        aid, kind = str(a.get("id")), str(a.get("kind"))
        if aid in sub.received:
            return
        now = time.time()
        sub.received[aid] = now
        sub.arrivals.append((now, kind, aid, str(a.get("camera_id"))))
        # in scope: the alert's own departments (its owner and any supervisor it was
        # escalated to); analytics_down is raised once per department a camera feeds, so
        # its kind alone does not say who owns it
        depts = alert_departments(a) or {sub.owner_of(kind)}
        if sub.department != "*" and sub.department not in depts:
            sub.foreign += 1

    def stop(self) -> None:
        """Close every subscriber and stop the loop."""
        if self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    def subscriptions(self) -> list[Subscription]:
        """Receipts of every subscriber (for :func:`accounting.alert_losses`)."""
        return [
            Subscription(s.name, s.department, s.connected_at, dict(s.received), s.foreign)
            for s in self.subs
        ]

    def admin_arrivals(self) -> list[tuple[float, str, str, str]]:
        """First receipts (time, kind, id, camera) over all admin subscribers."""
        first: dict[str, tuple[float, str, str, str]] = {}
        for s in self.subs:
            if s.department != "*":
                continue
            for t, kind, aid, cam in list(s.arrivals):
                if aid not in first or t < first[aid][0]:
                    first[aid] = (t, kind, aid, cam)
        return sorted(first.values())

    def summary(self) -> dict[str, Any]:
        """Per subscriber: connects, closes by code, messages, alerts, foreign alerts."""
        return {
            s.name: {
                "connects": s.connects,
                "closes": dict(s.closes),
                "messages": s.messages,
                "alerts": len(s.received),
                "foreign": s.foreign,
            }
            for s in self.subs
        }


class RestPoller:
    """Polls alerts, cameras and the map config every ``period_s`` with one token."""

    def __init__(self, base_url: str, token: str, period_s: float = 2.0) -> None:
        self.base_url = base_url
        self.token = token
        self.period_s = period_s
        self.requests = 0
        self.errors: dict[str, int] = {}
        self.latency_ms: list[float] = []
        self.cameras: list[dict[str, Any]] = []
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> RestPoller:
        """Start polling."""
        self._thread = threading.Thread(target=self._loop, name="soak-rest", daemon=True)
        self._thread.start()
        return self

    def _loop(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"}
        paths = ["/api/alerts?limit=100", "/api/cameras", "/api/config/map", "/api/incidents"]
        with httpx.Client(base_url=self.base_url, headers=headers, timeout=10.0) as client:
            i = 0
            while not self._halt.wait(self.period_s):
                path = paths[i % len(paths)]
                i += 1
                t0 = time.perf_counter()
                try:
                    resp = client.get(path)
                    self.requests += 1
                    self.latency_ms.append((time.perf_counter() - t0) * 1000)
                    if resp.status_code != 200:
                        key = f"{path.split('?')[0]} {resp.status_code}"
                        self.errors[key] = self.errors.get(key, 0) + 1
                    elif path == "/api/cameras":
                        self.cameras = resp.json()
                except httpx.HTTPError as exc:
                    key = f"{path.split('?')[0]} {type(exc).__name__}"
                    self.errors[key] = self.errors.get(key, 0) + 1

    def stop(self) -> None:
        """Stop polling."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(20)

    def summary(self) -> dict[str, Any]:
        """Requests, errors by route and status, latency p50/p99."""
        lat = sorted(self.latency_ms)

        def q(p: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(p * len(lat)))], 1) if lat else None

        return {
            "requests": self.requests,
            "errors": dict(self.errors),
            "p50_ms": q(0.5),
            "p99_ms": q(0.99),
        }


class MapBrowser:
    """Headless Chromium (Playwright, Debian's binary) signed in on the map page.

    Every Playwright call happens in this object's own thread. Every ``period_s`` it records
    the WebSocket state the page shows, the alerts it lists and page errors.
    """

    def __init__(
        self, base_url: str, token: str, period_s: float = 10.0, executable: str = CHROMIUM
    ) -> None:
        self.base_url = base_url
        self.token = token
        self.period_s = period_s
        self.executable = executable
        self.samples: list[dict[str, Any]] = []
        self.page_errors: list[str] = []
        self.error: str | None = None
        self.ready = threading.Event()
        self._halt = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> MapBrowser:
        """Launch and sign in (in the background)."""
        self._thread = threading.Thread(target=self._run, name="soak-browser", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        try:
            from playwright.sync_api import sync_playwright
        except ImportError as exc:
            self.error = f"playwright missing: {exc}"
            self.ready.set()
            return
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(
                    executable_path=self.executable, args=CHROMIUM_ARGS, headless=True
                )
                try:
                    self._session(browser)
                finally:
                    browser.close()
        except Exception as exc:  # the soak records a dead browser, it does not crash
            self.error = f"{type(exc).__name__}: {str(exc)[:300]}"
            logger.warning("map browser: %s", self.error)
        finally:
            self.ready.set()

    def _session(self, browser: Any) -> None:
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.on("pageerror", lambda e: self.page_errors.append(str(e)[:300]))
        page.goto(self.base_url + "/", timeout=60_000)
        page.get_by_test_id("token-input").fill(self.token)
        page.get_by_test_id("login-button").click()
        page.wait_for_selector("body[data-ready=true]", timeout=60_000)
        self.ready.set()
        while not self._halt.wait(self.period_s):
            t = time.time()
            try:
                s = page.evaluate(
                    """() => ({
                      ws: document.querySelector('[data-testid=ws-status]')?.dataset.state,
                      alerts: document.querySelectorAll('[data-testid=alert-item]').length,
                      cameras: Number(document.body.dataset.cameras || 0)})"""
                )
                self.samples.append({"t": t, **s})
            except Exception as exc:
                self.samples.append({"t": t, "error": type(exc).__name__})
        ctx.close()

    def stop(self) -> None:
        """Close the browser."""
        self._halt.set()
        if self._thread is not None:
            self._thread.join(60)

    def summary(self) -> dict[str, Any]:
        """Samples taken, how many showed the feed live, alerts listed last, page errors."""
        live = sum(1 for s in self.samples if s.get("ws") == "live")
        last = self.samples[-1] if self.samples else {}
        return {
            "samples": len(self.samples),
            "live_samples": live,
            "last": last,
            "page_errors": self.page_errors[:10],
            "page_error_count": len(self.page_errors),
            "error": self.error,
        }
