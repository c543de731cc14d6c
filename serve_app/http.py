"""The FastAPI application (REST + WebSocket), usable with or without Ray Serve.

:func:`create_api` builds the whole API from a config and a Redis URL; ``serve_app.app``
wraps it in a Ray Serve ingress, tests and the fan-out benchmark run it under uvicorn.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import redis
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from citysight.config import CitysightConfig
from citysight.keys import metrics_key
from citysight.metrics import PUBLISH_PERIOD_S
from serve_app.api import (
    alerts,
    audit,
    cameras,
    evidence,
    health,
    incidents,
    mapconfig,
    me,
    metrics,
    plates,
    tickets,
)
from serve_app.api.metrics import Metrics
from serve_app.auth import PrincipalResolver
from serve_app.ws import endpoint
from serve_app.ws.hub import Hub

if TYPE_CHECKING:
    from serve_app.store.alerts import AlertStore
    from serve_app.store.audit import AuditLog
    from serve_app.store.cameras import CameraRegistry
    from serve_app.store.evidence import EvidenceStore
    from serve_app.store.plates import PlateReads

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
        self.redis = redis.Redis.from_url(
            redis_url, socket_timeout=5, socket_connect_timeout=2, health_check_interval=30
        )
        self.resolver = PrincipalResolver(self.redis)
        self.metrics = Metrics()
        self.hub = Hub(
            redis_url, self.metrics, queue_size=ws_queue_size, heartbeat_s=ws_heartbeat_s
        )

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

    def close(self) -> None:
        """Release the synchronous Redis pool."""
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


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def _http(_: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            {"detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = []
        for e in exc.errors():
            loc = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            errors.append({"loc": loc, "msg": e.get("msg", "invalid")})
        detail = "; ".join(f"{e['loc']}: {e['msg']}" if e["loc"] else e["msg"] for e in errors)
        return JSONResponse({"detail": detail, "errors": errors}, status_code=422)

    @app.exception_handler(RedisError)
    async def _redis(_: Request, exc: RedisError) -> JSONResponse:
        logger.warning("redis error: %s", exc)
        return JSONResponse({"detail": "storage unavailable, retry later"}, status_code=503)

    @app.exception_handler(Exception)
    async def _internal(_: Request, exc: Exception) -> JSONResponse:
        logger.error("unhandled error: %r", exc, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)


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
        try:
            yield
        finally:
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
            with contextlib.suppress(RedisError, OSError):
                await ctx.hub.redis.hdel(metrics_key("ingress"), ctx.metrics.replica)
            await ctx.hub.stop()
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
    app.add_middleware(_CountResponses, metrics=ctx.metrics)
    for module in (
        health,
        metrics,
        me,
        tickets,
        alerts,
        evidence,
        incidents,
        cameras,
        plates,
        audit,
        mapconfig,
        endpoint,
    ):
        app.include_router(module.router)

    index = STATIC_DIR / "index.html"
    if index.is_file():

        @app.get("/", include_in_schema=False)
        def map_page() -> FileResponse:
            return FileResponse(index)

    if STATIC_DIR.is_dir():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _install_docs(app)
    return app


def _install_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) and ``/redoc`` from the vendored assets (no CDN)."""
    from fastapi.openapi.docs import (
        get_redoc_html,
        get_swagger_ui_html,
        get_swagger_ui_oauth2_redirect_html,
    )
    from fastapi.responses import HTMLResponse

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
