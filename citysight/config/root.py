"""The whole configuration (:class:`CitysightConfig`)."""

from __future__ import annotations

import fnmatch
import logging
import os
from pathlib import Path
from typing import Literal

from pydantic import model_validator

from citysight.config.audit import AuditConfig
from citysight.config.auth import RetentionConfig, Scope, TokenConfig
from citysight.config.base import Strict, _f
from citysight.config.cameras import CameraConfig
from citysight.config.departments import DepartmentConfig, RouteConfig
from citysight.config.jurisdictions import JurisdictionsConfig
from citysight.config.map import MapConfig
from citysight.config.reports import ReportsConfig
from citysight.config.rules import HotlistEntry, RuleConfig
from citysight.config.services import CameraSecret, ServicesConfig
from citysight.config.site import IncidentsConfig, SiteConfig
from citysight.config.ui import UiConfig
from citysight.config.webhooks import WebhookConfig
from citysight.contracts import AlertKind
from citysight.jurisdictions import Hierarchy

logger = logging.getLogger(__name__)

DEFAULT_JURISDICTION = "default"
"""A camera's jurisdiction when the config names none (placed by position when it can)."""


class CitysightConfig(Strict):
    """The whole configuration."""

    version: Literal[1] = _f("Version", "Config format version.", default=1)
    site: SiteConfig = _f("Site", "The city: time zone.", default_factory=SiteConfig)
    ui: UiConfig = _f("User interface", "Default language.", default_factory=UiConfig)
    cameras: list[CameraConfig] = _f("Cameras", "Cameras.", default_factory=list)
    rules: list[RuleConfig] = _f("Rules", "Alert rules.", default_factory=list)
    plate_hotlist: list[HotlistEntry] = _f("Hotlist", "Plates of interest.", default_factory=list)
    jurisdictions: JurisdictionsConfig = _f(
        "Jurisdictions",
        "Administrative hierarchy (city, townships, grids) as GeoJSON polygons: cameras are "
        "placed in it by position, alerts carry their path, routes and tokens match any level.",
        default_factory=JurisdictionsConfig,
    )
    departments: list[DepartmentConfig] = _f("Departments", "Departments.", default_factory=list)
    routing: list[RouteConfig] = _f(
        "Routing", "Kind/jurisdiction to department; first match wins.", default_factory=list
    )
    tokens: list[TokenConfig] = _f("Tokens", "API principals.", default_factory=list)
    incidents: IncidentsConfig = _f(
        "Incidents", "Cross-camera incident merge.", default_factory=IncidentsConfig
    )
    reports: ReportsConfig = _f(
        "Field reports", "Reports from grid workers' phones.", default_factory=ReportsConfig
    )
    retention: RetentionConfig = _f("Retention", "TTLs.", default_factory=RetentionConfig)
    audit: AuditConfig = _f("Audit", "Audit chain key and checks.", default_factory=AuditConfig)
    services: ServicesConfig = _f("Services", "Services.", default_factory=ServicesConfig)
    map: MapConfig = _f("Map", "Map page.", default_factory=MapConfig)
    webhooks: list[WebhookConfig] = _f(
        "Webhooks", "Outbound alert-event webhooks (docs/integrations.md).", default_factory=list
    )

    @model_validator(mode="after")
    def _camera_secrets(self) -> CitysightConfig:
        """Move the deprecated ``cameras[].url_password_env`` into ``camera_secrets``.

        A config file is the operator's, so its names stay trusted; they are bound to the
        camera id *and* its URL's host, so whoever later edits the camera through the API
        cannot send that password elsewhere. The camera registry never carries the name.
        """
        from urllib.parse import urlsplit

        secrets = self.services.streams.camera_secrets
        for cam in self.cameras:
            env = cam.url_password_env
            if env is None:
                continue
            existing = secrets.get(cam.id)
            if existing is not None and existing.password_env != env:
                raise ValueError(
                    f"camera {cam.id}: url_password_env ({env}) and "
                    "services.streams.camera_secrets disagree: keep only camera_secrets"
                )
            if existing is None:
                parts = urlsplit(cam.url)
                host = parts.hostname or ""
                port = parts.port
                bound = f"[{host}]" if ":" in host else host
                hosts = [f"{bound}:{port}" if port else bound] if host else []
                secrets[cam.id] = CameraSecret(password_env=env, hosts=hosts)
                logger.warning(
                    "cameras[%s].url_password_env is deprecated: moved to "
                    "services.streams.camera_secrets (bound to host %s)",
                    cam.id,
                    hosts[0] if hosts else "-",
                )
            cam.url_password_env = None
        return self

    @model_validator(mode="after")
    def _references(self) -> CitysightConfig:
        problems: list[str] = []
        cam_ids = [c.id for c in self.cameras]
        dup = sorted({c for c in cam_ids if cam_ids.count(c) > 1})
        if dup:
            problems.append(f"camera ids repeat: {', '.join(dup)}")
        rule_ids = [r.id for r in self.rules]
        dup = sorted({r for r in rule_ids if rule_ids.count(r) > 1})
        if dup:
            problems.append(f"rule ids repeat: {', '.join(dup)}")
        deps = {d.id for d in self.departments}
        for i, route in enumerate(self.routing):
            if deps and route.department not in deps:
                problems.append(f"routing[{i}].department: unknown department {route.department!r}")
        for i, d in enumerate(self.departments):
            if d.supervisor is not None and d.supervisor not in deps:
                problems.append(f"departments[{i}].supervisor: unknown department {d.supervisor!r}")
        for i, t in enumerate(self.tokens):
            if t.department != "*" and deps and t.department not in deps:
                problems.append(f"tokens[{i}].department: unknown department {t.department!r}")
        names = [w.name for w in self.webhooks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            problems.append(f"webhook names repeat: {', '.join(dup)}")
        for i, w in enumerate(self.webhooks):
            for dep in w.departments:
                if deps and dep not in deps:
                    problems.append(f"webhooks[{i}].departments: unknown department {dep!r}")
        tree = self.jurisdictions.tree()
        for i, t in enumerate(self.tokens):
            if t.jurisdiction == "*":
                continue
            if t.jurisdiction not in tree:
                problems.append(
                    f"tokens[{i}].jurisdiction: unknown jurisdiction {t.jurisdiction!r}"
                    + ("" if tree else " (no jurisdictions are configured)")
                )
            if Scope.AUDIT_READ in t.scopes:
                # The audit log is city-wide: a township token must not read the rest's.
                problems.append(
                    f"tokens[{i}]: a jurisdiction-scoped token cannot hold audit:read "
                    "(the audit log covers the whole city)"
                )
        for i, cam in enumerate(self.cameras):
            if not tree:
                continue
            if cam.jurisdiction == DEFAULT_JURISDICTION:
                cam.jurisdiction = tree.locate(cam.latitude, cam.longitude) or DEFAULT_JURISDICTION
            elif cam.jurisdiction not in tree:
                problems.append(
                    f"cameras[{i}].jurisdiction: unknown jurisdiction {cam.jurisdiction!r} "
                    "(leave it out to place the camera by its position)"
                )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def with_absolute_paths(self, base: str | os.PathLike[str] | None = None) -> CitysightConfig:
        """A copy whose file-system paths are absolute (relative ones taken from ``base``).

        Relative paths mean "relative to where the command was started" (``base``, the
        current directory by default), but the processes that use them may run elsewhere:
        tritonserver runs with its work dir as cwd, Ray actors and Serve replicas in Ray's
        own directories. Paths are therefore made absolute once, where a config enters a
        running deployment: Redis data dir, Ray temp dir, models dir, map overlays and
        file-camera URLs (``~`` is expanded).
        """
        root = Path(base) if base is not None else Path.cwd()

        def absolute(p: str) -> str:
            return os.path.normpath(root / Path(p).expanduser())

        out = self.model_copy(deep=True)
        svc = out.services
        svc.redis.data_dir = absolute(svc.redis.data_dir)
        if out.audit.key_file:
            out.audit.key_file = absolute(out.audit.key_file)
        if out.audit.head_file:
            out.audit.head_file = absolute(out.audit.head_file)
        svc.ray.temp_dir = absolute(svc.ray.temp_dir)
        svc.inference.models_dir = absolute(svc.inference.models_dir)
        if svc.streams.clips.storage.path:
            svc.streams.clips.storage.path = absolute(svc.streams.clips.storage.path)
        if out.jurisdictions.file:
            out.jurisdictions.file = absolute(out.jurisdictions.file)
        for overlay in out.map.overlays:
            overlay.path = absolute(overlay.path)
        for cam in out.cameras:
            if "://" not in cam.url:
                cam.url = absolute(cam.url)
        return out

    def camera(self, camera_id: str) -> CameraConfig | None:
        """The camera with this id, if any."""
        return next((c for c in self.cameras if c.id == camera_id), None)

    def tree(self) -> Hierarchy:
        """The jurisdiction hierarchy (empty when none is configured)."""
        return self.jurisdictions.tree()

    def jurisdiction_path(self, jurisdiction: str) -> list[str]:
        """Ids from the city down to ``jurisdiction`` (``[jurisdiction]`` outside the tree)."""
        return self.tree().path(jurisdiction)

    def place(self, camera: CameraConfig) -> str:
        """A camera's jurisdiction: the configured one, else the area its position lies in."""
        if camera.jurisdiction != DEFAULT_JURISDICTION or not self.tree():
            return camera.jurisdiction
        found = self.tree().locate(camera.latitude, camera.longitude)
        return found or DEFAULT_JURISDICTION

    def route(self, kind: AlertKind | str, jurisdiction: str) -> str | None:
        """Department for an alert kind in a jurisdiction (first matching route).

        A route's jurisdiction glob matches any level of the jurisdiction's path, so a
        route for a township covers its grids, and one for a grid only that grid.
        """
        path = self.jurisdiction_path(jurisdiction) or [jurisdiction]
        for r in self.routing:
            if r.kind in ("*", kind) and any(fnmatch.fnmatchcase(j, r.jurisdiction) for j in path):
                return r.department
        return None
