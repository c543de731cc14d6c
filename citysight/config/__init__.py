"""The configuration tree: typed, bounded, and strict about typos.

Every model forbids unknown keys (``extra="forbid"``), every field has a title and a
description, numeric fields have bounds and carry their unit in the name. Secrets never
live in the YAML: tokens and passwords are read from environment variables (or files)
named in the config. :func:`load_config` reports *every* problem with its path in the
file, e.g. ``cameras[3].zones[0].polygon: needs at least 3 points``.

One module per section (``cameras``, ``rules``, ``site``, ``departments``, ``auth``,
``services``, ``map``, ``jurisdictions``, ``webhooks``), the root model in ``root``, loading
in ``loader`` and the generated schema and reference in ``reference``; every public name is
re-exported here, so
``from citysight.config import X`` is the way to import them.
"""

from citysight.choices import (
    DECODERS,
    DETECTOR_TIERS,
    INFERENCE_BACKENDS,
    DecoderName,
    InferenceBackend,
)
from citysight.config.audit import AuditConfig
from citysight.config.auth import RetentionConfig, Scope, TokenConfig
from citysight.config.base import ID_PATTERN, Strict
from citysight.config.cameras import (
    CameraConfig,
    CameraProfile,
    Detector,
    FireSmokeCameraConfig,
    FireSmokeSensitivity,
    LineConfig,
    Point,
    ZoneConfig,
    ZoneType,
)
from citysight.config.clips import ClipsConfig, ClipStorage
from citysight.config.departments import DepartmentConfig, RouteConfig
from citysight.config.jurisdictions import JurisdictionArea, JurisdictionsConfig
from citysight.config.live import LiveService
from citysight.config.loader import ConfigError, format_validation_error, load_config, parse_config
from citysight.config.map import GeoOverlay, MapConfig
from citysight.config.reference import json_schema, schema_reference_markdown
from citysight.config.reports import ReportsConfig
from citysight.config.root import CitysightConfig
from citysight.config.rules import (
    HotlistEntry,
    PersistenceConfig,
    RuleConfig,
    RuleType,
    ScheduleWindow,
)
from citysight.config.services import (
    AllowedNetwork,
    CameraSecret,
    HttpService,
    InferenceService,
    RayService,
    RedisService,
    RulesService,
    ServicesConfig,
    StreamsService,
)
from citysight.config.site import IncidentsConfig, SiteConfig, time_zone
from citysight.config.ui import UI_LANGUAGES, UiConfig
from citysight.config.webhooks import WEBHOOK_EVENTS, WebhookConfig

__all__ = [
    "DECODERS",
    "DETECTOR_TIERS",
    "ID_PATTERN",
    "INFERENCE_BACKENDS",
    "UI_LANGUAGES",
    "WEBHOOK_EVENTS",
    "AllowedNetwork",
    "AuditConfig",
    "CameraConfig",
    "CameraProfile",
    "CameraSecret",
    "CitysightConfig",
    "ClipStorage",
    "ClipsConfig",
    "ConfigError",
    "DecoderName",
    "DepartmentConfig",
    "Detector",
    "FireSmokeCameraConfig",
    "FireSmokeSensitivity",
    "GeoOverlay",
    "HotlistEntry",
    "HttpService",
    "IncidentsConfig",
    "InferenceBackend",
    "InferenceService",
    "JurisdictionArea",
    "JurisdictionsConfig",
    "LineConfig",
    "LiveService",
    "MapConfig",
    "PersistenceConfig",
    "Point",
    "RayService",
    "RedisService",
    "ReportsConfig",
    "RetentionConfig",
    "RouteConfig",
    "RuleConfig",
    "RuleType",
    "RulesService",
    "ScheduleWindow",
    "Scope",
    "ServicesConfig",
    "SiteConfig",
    "StreamsService",
    "Strict",
    "TokenConfig",
    "UiConfig",
    "WebhookConfig",
    "ZoneConfig",
    "ZoneType",
    "format_validation_error",
    "json_schema",
    "load_config",
    "parse_config",
    "schema_reference_markdown",
    "time_zone",
]
