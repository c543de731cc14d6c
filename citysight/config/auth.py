"""API principals and their scopes; retention of what they can read."""

from __future__ import annotations

import enum

from citysight.config.base import ID_PATTERN, Strict, _f


class Scope(enum.StrEnum):
    """Rights a token can carry."""

    ALERTS_READ = "alerts:read"
    ALERTS_DISPATCH = "alerts:dispatch"
    CAMERAS_WRITE = "cameras:write"
    RULES_WRITE = "rules:write"
    EVIDENCE_UNREDACTED = "evidence:unredacted"
    PLATES_QUERY = "plates:query"
    AUDIT_READ = "audit:read"
    MONITORING_READ = "monitoring:read"
    REPORTS_WRITE = "reports:write"
    """Send field reports (``POST /api/reports``) and read one's own (``GET /api/reports``)."""
    VIDEO_LIVE = "video:live"


class TokenConfig(Strict):
    """An API principal; its secret token comes from the environment."""

    name: str = _f("Name", "Principal name (appears in the audit log).", pattern=ID_PATTERN)
    role: str = _f("Role", "Role name, e.g. admin, police.", pattern=ID_PATTERN)
    department: str = _f("Department", "Department id, or * for all departments.")
    jurisdiction: str = _f(
        "Jurisdiction",
        "Jurisdiction id (jurisdictions) the principal is limited to, with everything below "
        "it, or * for the whole city. A township officer sees only that township's alerts, "
        "cameras, evidence and statistics.",
        default="*",
        max_length=64,
    )
    scopes: list[Scope] = _f("Scopes", "Rights.", default_factory=lambda: [Scope.ALERTS_READ])
    token_env: str = _f(
        "Token variable",
        "Environment variable holding the bearer token.",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
    )


class RetentionConfig(Strict):
    """How long data is kept (enforced with Redis TTLs)."""

    alert_ttl_s: int = _f(
        "Alert TTL", "Seconds alerts and their events are kept.", default=30 * 86400, ge=60
    )
    evidence_ttl_s: int = _f(
        "Evidence TTL", "Seconds snapshots are kept.", default=7 * 86400, ge=60
    )
    clip_ttl_s: int = _f(
        "Clip TTL",
        "Seconds evidence clips (and their face-blurred copies) are kept.",
        default=7 * 86400,
        ge=60,
    )
    plate_read_ttl_s: int = _f(
        "Plate-read TTL", "Seconds plate reads are kept.", default=3 * 86400, ge=60
    )
    audit_ttl_s: int = _f(
        "Audit TTL", "Seconds audit records are kept.", default=365 * 86400, ge=86400
    )
    detections_max_age_s: int = _f(
        "Detections age",
        "Acknowledged stream entries older than this are trimmed.",
        default=3600,
        ge=60,
    )
    dead_letter_max_entries: int = _f(
        "Dead-letter entries",
        "Entries kept in the dead-letter stream (citysight:detections:dead; oldest dropped "
        "first, approximately: Redis trims whole nodes).",
        default=100_000,
        ge=100,
        le=100_000_000,
    )
