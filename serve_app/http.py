"""The FastAPI application (REST + WebSocket), usable with or without Ray Serve.

:func:`create_api` builds the whole API from a config and a Redis URL; ``serve_app.app``
wraps it in a Ray Serve ingress, tests and the fan-out benchmark run it under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citysight import redisconn
from citysight.config import CitysightConfig
from citysight.keys import metrics_key
from citysight.metrics import PUBLISH_PERIOD_S
from serve_app.api import (
    alerts,
    audit,
    cameras,
    clips,
    evidence,
    health,
    incidents,
    live,
    mapconfig,
    me,
    metrics,
    plates,
    reports,
    stats,
    tickets,
)
from serve_app.api.metrics import Metrics
from serve_app.auth import PrincipalResolver
from serve_app.errors import error_body
from serve_app.ws import endpoint
from serve_app.ws.hub import Hub

if TYPE_CHECKING:
    from serve_app.api.live import LiveHub
    from serve_app.store.alerts import AlertStore
    from serve_app.store.audit import AuditLog
    from serve_app.store.cameras import CameraRegistry
    from serve_app.store.clips import ClipService
    from serve_app.store.evidence import EvidenceStore
    from serve_app.store.plates import PlateReads
    from serve_app.store.reports import ReportStore

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).resolve().parent / "static"


class ApiContext:
    """Everything a request handler needs: config, Redis, stores, the WebSocket hub."""

    def __init__(
        self,
        cfg: CitysightConfig,
        redis_url: str,
        *,
        ws_queue_size: int = 1000,
        ws_heartbeat_s: float = 15.0,
    ):
        """Create the context (connections open lazily).

        Args:
            cfg: The configuration.
            redis_url: Redis holding citysight's state.
            ws_queue_size: Messages buffered per WebSocket subscriber.
            ws_heartbeat_s: Interval of WebSocket heartbeats.
        """
        self.cfg = cfg
        self.redis_url = redis_url
        self.redis = redisconn.connect(
            redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )
        self.resolver = PrincipalResolver(self.redis)
        self.metrics = Metrics()
        http = cfg.services.http
        self.hub = Hub(
            redis_url,
            self.metrics,
            queue_size=ws_queue_size,
            heartbeat_s=ws_heartbeat_s,
            recheck_s=http.ws_recheck_s,
            max_sockets=http.websocket_limit(),
            max_per_principal=http.ws_max_per_principal,
        )

    @cached_property
    def live(self) -> LiveHub:
        """Live-view channels of this replica (``WS /ws/live/{camera_id}``)."""
        from serve_app.api.live import LiveHub

        hub = LiveHub(self.redis_url, self.cfg.services.live, self.metrics.live)
        self.metrics.live_gauges = hub.gauges
        return hub

    @cached_property
    def alerts(self) -> AlertStore:
        """Alert store (rules/store half)."""
        from serve_app.store.alerts import AlertStore

        return AlertStore(self.redis, self.cfg)

    @cached_property
    def evidence(self) -> EvidenceStore:
        """Evidence store."""
        from serve_app.store.evidence import EvidenceStore

        return EvidenceStore(self.redis, self.cfg)

    @cached_property
    def clips(self) -> ClipService:
        """Evidence clips (records, files, the face-blurred copies)."""
        from serve_app.store.clips import ClipService

        return ClipService(self.redis, self.cfg)

    @cached_property
    def audit(self) -> AuditLog:
        """Audit log."""
        from serve_app.store.audit import AuditLog

        return AuditLog(self.redis, self.cfg)

    @cached_property
    def plates(self) -> PlateReads:
        """Plate reads."""
        from serve_app.store.plates import PlateReads

        return PlateReads(self.redis, self.cfg)

    @cached_property
    def cameras(self) -> CameraRegistry:
        """Camera registry."""
        from serve_app.store.cameras import CameraRegistry

        return CameraRegistry(self.redis)

    @cached_property
    def reports(self) -> ReportStore:
        """Field reports (over the alert and evidence stores)."""
        from serve_app.store.reports import ReportStore

        return ReportStore(self.redis, self.cfg, self.alerts, self.evidence, self.cameras.list)

    def close(self) -> None:
        """Release the synchronous Redis pool (and stop the clip rendering thread)."""
        if "clips" in self.__dict__:
            self.clips.close()
        self.redis.close()


class _CountResponses:
    """Pure ASGI middleware counting HTTP responses by method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope.get("method", "")

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.count_request(method, int(message["status"]))
            await send(message)

        await self.app(scope, receive, counting_send)


_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_UPLOAD_PATH = re.compile(r"^/api/(reports|alerts/[^/]+/feedback)$")
"""Routes that take photos: their body limit is the photo limits' (``reports``)."""


class _GuardBodies:
    """Pure ASGI middleware: authenticate before any body is read, and cap bodies (413).

    A request that carries a body (POST/PUT/PATCH, or any request declaring a length or a
    transfer encoding) must present a valid bearer token before a byte of it is read: every
    route that takes a body needs one anyway, and an anonymous caller must not make the
    server buffer and parse megabytes (issue 13 #6). A declared ``Content-Length`` over the
    limit is refused at once; a chunked body is counted as it streams and refused when it
    passes the limit, so at most ``max_body_bytes`` (plus one chunk) is ever held.
    """

    def __init__(self, app: ASGIApp, ctx: ApiContext, max_body_bytes: int) -> None:
        self.app = app
        self.ctx = ctx
        self.default_limit = max_body_bytes
        rc = ctx.cfg.reports
        # Photo uploads: every photo at its limit plus the form's text fields and framing.
        self.upload_limit = max(max_body_bytes, rc.max_photos * rc.max_photo_bytes + 65536)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        length_raw = headers.get(b"content-length")
        chunked = b"transfer-encoding" in headers
        if (
            scope.get("method", "") not in _BODY_METHODS
            and length_raw in (None, b"0")
            and (not chunked)
        ):
            await self.app(scope, receive, send)
            return
        lang = headers.get(b"accept-language", b"").decode("latin-1")
        refusal = await self._authenticate(headers.get(b"authorization", b""))
        if refusal is not None:
            await _send_json(send, *refusal, accept_language=lang)
            return
        limit = (
            self.upload_limit
            if scope.get("method") == "POST" and _UPLOAD_PATH.match(scope.get("path", ""))
            else self.default_limit
        )
        try:
            length = int(length_raw) if length_raw is not None else None
        except ValueError:
            await _send_json(send, 400, "invalid Content-Length", accept_language=lang)
            return
        if length is not None and length > limit:
            await _send_json(
                send, 413, f"request body is larger than {limit} bytes", accept_language=lang
            )
            return
        received = 0
        responded = False

        async def capped_receive() -> Message:
            nonlocal received, responded
            if responded:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    responded = True
                    await _send_json(
                        send,
                        413,
                        f"request body is larger than {limit} bytes",
                        accept_language=lang,
                    )
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not responded:
                await send(message)

        try:
            await self.app(scope, capped_receive, guarded_send)
        except ClientDisconnect:
            if not responded:
                raise

    async def _authenticate(self, authorization: bytes) -> tuple[int, str, dict[str, str]] | None:
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        www = {"WWW-Authenticate": "Bearer"}
        if scheme.lower() != "bearer" or not token.strip():
            return 401, "missing bearer token (Authorization: Bearer <token>)", www
        try:
            principal = await asyncio.to_thread(self.ctx.resolver.resolve, token.strip())
        except (RedisError, OSError) as exc:
            logger.warning("redis error while authenticating: %s", exc)
            return 503, "storage unavailable, retry later", {}
        if principal is None:
            return 401, "invalid or revoked token", www
        return None


async def _send_json(
    send: Send,
    status_code: int,
    detail: str,
    headers: dict[str, str] | None = None,
    *,
    accept_language: str | None = None,
) -> None:
    body = json.dumps(error_body(status_code, detail, accept_language)).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if status_code == 413:
        raw.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status_code, "headers": raw})
    await send({"type": "http.response.body", "body": body})


async def _publish_metrics(ctx: ApiContext, period_s: float) -> None:
    """Publish this replica's counters for the other replicas' ``/metrics`` (forever)."""
    while True:
        try:
            await ctx.hub.redis.hset(
                metrics_key("ingress"),
                ctx.metrics.replica,
                json.dumps(ctx.metrics.snapshot(), separators=(",", ":")),
            )
        except (RedisError, OSError) as exc:
            logger.debug("ingress metrics not published: %s", exc)
        await asyncio.sleep(period_s)


def verify_audit(ctx: ApiContext) -> dict[str, Any]:
    """Verify the audit chain from its start, export its head, keep the result for
    ``/health`` (component ``audit``) and ``/metrics``; never raises."""
    from citysight.keyfiles import SecretError

    result: dict[str, Any]
    try:
        report = ctx.audit.verify_report()
        result = report.to_dict()
        if report.ok:
            try:
                ctx.audit.export_head(report)
            except OSError as exc:
                logger.warning("audit head not exported: %s", exc)
                result["export_error"] = type(exc).__name__
    except SecretError as exc:
        result = {"ok": False, "reason": f"no audit key: {exc}", "verified_at": time.time()}
    except (RedisError, OSError) as exc:
        # Not a verdict on the chain: keep the last one, say why it is old.
        result = {**ctx.metrics.audit, "error": type(exc).__name__}
    ctx.metrics.audit = result
    return result


async def _audit_loop(ctx: ApiContext, period_s: float) -> None:
    """Verify the audit chain every ``period_s`` (forever; errors are in the result)."""
    while True:
        await asyncio.sleep(period_s)
        try:
            await run_in_threadpool(verify_audit, ctx)
        except Exception:  # never let the check die: /health would keep an old verdict
            logger.exception("audit verification failed")


def _install_error_handlers(app: FastAPI) -> None:
    # Every error: the English ``detail`` as before, plus a stable ``code`` and a ``message``
    # in the caller's Accept-Language (serve_app/errors.py). Starlette's own class, so the
    # router's 404/405 answers get the same shape.
    def lang(request: Request) -> str | None:
        return request.headers.get("accept-language")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(
            error_body(exc.status_code, exc.detail, lang(request)),
            status_code=exc.status_code,
            headers=exc.headers,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            errors.append({"loc": loc, "msg": e.get("msg", "invalid")})
        detail = "; ".join(f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in errors)
        body = error_body(422, detail, lang(request), fields=[e["loc"] for e in errors if e["loc"]])
        return JSONResponse({**body, "errors": errors}, status_code=422)

    @app.exception_handler(RedisError)
    async def _redis(request: Request, exc: RedisError) -> JSONResponse:
        logger.warning("redis error: %s", exc)
        return JSONResponse(
            error_body(503, "storage unavailable, retry later", lang(request)), status_code=503
        )

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error: %r", exc, exc_info=exc)
        return JSONResponse(
            error_body(500, "internal server error", lang(request)), status_code=500
        )


def create_api(
    cfg: CitysightConfig,
    redis_url: str,
    *,
    ws_queue_size: int = 1000,
    ws_heartbeat_s: float = 15.0,
    metrics_publish_s: float = PUBLISH_PERIOD_S,
) -> FastAPI:
    """Build the citysight HTTP/WebSocket API.

    Args:
        cfg: The configuration.
        redis_url: Redis URL.
        ws_queue_size: Messages buffered per WebSocket subscriber before it is closed.
        ws_heartbeat_s: Interval of ``{"type": "heartbeat"}`` messages.
        metrics_publish_s: Interval at which this replica publishes its counters to Redis
            for the other replicas' ``GET /metrics``.

    Returns:
        A FastAPI app (OpenAPI at ``/openapi.json``, docs at ``/docs``).
    """
    ctx = ApiContext(cfg, redis_url, ws_queue_size=ws_queue_size, ws_heartbeat_s=ws_heartbeat_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await ctx.hub.start()
        publisher = asyncio.create_task(
            _publish_metrics(ctx, metrics_publish_s), name="citysight-metrics-publish"
        )
        await run_in_threadpool(verify_audit, ctx)  # /health has a verdict from the start
        auditor = asyncio.create_task(
            _audit_loop(ctx, cfg.audit.verify_interval_s), name="citysight-audit-verify"
        )
        try:
            yield
        finally:
            for task in (publisher, auditor):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            with contextlib.suppress(RedisError, OSError):
                await ctx.hub.redis.hdel(metrics_key("ingress"), ctx.metrics.replica)
            await ctx.hub.stop()
            if "live" in ctx.__dict__:  # only when a viewer came
                await ctx.live.close()
            ctx.close()

    app = FastAPI(
        title="citysight",
        version="1",
        description="City video analytics: alerts, dispatch, cameras, evidence and a "
        "scoped WebSocket feed (WS /ws).",
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load their scripts from a CDN: served below from
        # serve_app/static/vendor instead, so they work offline.
        docs_url=None,
        redoc_url=None,
    )
    app.state.ctx = ctx
    _install_error_handlers(app)
    # Added first, so it runs inside the counter: its 401/413 answers are counted too.
    app.add_middleware(_GuardBodies, ctx=ctx, max_body_bytes=cfg.services.http.max_body_bytes)
    app.add_middleware(_CountResponses, metrics=ctx.metrics)
    for module in (
        health,
        metrics,
        me,
        tickets,
        alerts,
        evidence,
        clips,
        reports,
        incidents,
        cameras,
        plates,
        audit,
        mapconfig,
        stats,
        endpoint,
        live,
    ):
        app.include_router(module.router)

    index = STATIC_DIR / "index.html"
    if index.is_file():
        page_headers = map_page_headers(cfg)
        page = map_page_html(index.read_text(encoding="utf-8"), cfg)

        @app.get("/", include_in_schema=False)
        def map_page() -> HTMLResponse:
            return HTMLResponse(page, headers=page_headers)

    report_file = STATIC_DIR / "report.html"
    if report_file.is_file():
        report_headers = map_page_headers(cfg)
        report_html = map_page_html(report_file.read_text(encoding="utf-8"), cfg)

        @app.get("/report", include_in_schema=False)
        def field_report_page() -> HTMLResponse:
            # The grid worker's phone page: same CSP as the map (own scripts only), in the
            # city's default language like the map.
            return HTMLResponse(report_html, headers=report_headers)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_docs(app)
    return app


def map_page_html(html: str, cfg: CitysightConfig) -> str:
    """The map page with the city's default language and zone on its ``<html>`` element.

    The login form is shown before any API call can be made (the config routes need a
    token), so the default language travels in the page itself: ``data-default-language``
    (``ui.language``) and ``lang``; the browser script reads them (no inline script: CSP).
    """
    lang = cfg.ui.language
    attrs = f'lang="{"en" if lang == "auto" else lang}" data-default-language="{lang}"'
    return html.replace('lang="en" data-default-language="auto"', attrs, 1)


def tile_origin(tile_url: str | None) -> str | None:
    """The CSP source of an XYZ tile template (``{s}`` subdomains become ``*``)."""
    if not tile_url:
        return None
    parts = urlsplit(tile_url.replace("{s}", "tiles-subdomain"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    host = parts.hostname.replace("tiles-subdomain", "*")
    if "{" in host or "}" in host:
        return f"{parts.scheme}:"  # a templated host: allow the scheme only
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}"


def map_page_headers(cfg: CitysightConfig) -> dict[str, str]:
    """Security headers of the map page: a Content-Security-Policy and friends.

    Only this server's scripts run (no inline script, no eval); images come from this
    server, ``data:``/``blob:`` (evidence is shown from a blob URL) and the configured tile
    server; XHR and WebSocket only to this server. Inline style *attributes* are allowed
    (Leaflet and the camera icons position and rotate elements with them), ``<style>``
    elements are not.
    """
    img = ["'self'", "data:", "blob:"]
    tiles = tile_origin(cfg.map.tile_url)
    if tiles:
        img.append(tiles)
    csp = "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "style-src-attr 'unsafe-inline'",
            f"img-src {' '.join(img)}",
            # Evidence clips play from a blob URL, live view through Media Source
            # Extensions (a blob: URL too).
            "media-src 'self' blob:",
            "connect-src 'self'",
            "font-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ]
    )
    return {
        "Content-Security-Policy": csp,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


def _install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the vendored assets (no CDN)."""
    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )

    vendor = "/static/vendor"
    oauth2_redirect = "/docs/oauth2-redirect"
    # Nothing but this server: ReDoc's sidebar logo would otherwise be fetched from its CDN
    # (and any third-party request from an operations network is a leak). Both UIs use an
    # inline bootstrap script and inline styles; ReDoc runs its search in a blob: worker.
    csp = {
        "Content-Security-Policy": "default-src 'self'; script-src 'self' 'unsafe-inline'; "
        "style-src 'self' 'unsafe-inline'; img-src 'self' data:; worker-src 'self' blob:; "
        "connect-src 'self'; frame-ancestors 'self'"
    }

    def base(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = base(request)
        page = get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — API",
            swagger_js_url=f"{root}{vendor}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{vendor}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{root}{vendor}/swagger-ui/favicon-32x32.png",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            # The default validator badge calls validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None},
        )
        page.headers.update(csp)
        return page

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = base(request)
        page = get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} — API",
            redoc_js_url=f"{root}{vendor}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{root}{vendor}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )
        page.headers.update(csp)
        return page
