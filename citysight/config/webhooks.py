"""Outbound webhooks: where alert events are sent, which ones, and how delivery retries."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import field_validator, model_validator

from citysight.config.base import ID_PATTERN, Strict, _f
from citysight.contracts import AlertKind
from citysight.outbound import check_outbound_url, parse_networks

WebhookEvent = Literal[
    "raised",
    "assigned",
    "acknowledged",
    "resolved",
    "feedback",
    "closed",
    "false_alarm",
    "reopened",
    "escalated",
    "updated",
    "report",
    "verified",
    "recheck_failed",
]
WEBHOOK_EVENTS: tuple[str, ...] = get_args(WebhookEvent)
"""Event types a webhook receives (payload ``type`` is ``alert.<event>``)."""


class WebhookConfig(Strict):
    """One outbound webhook: alert events as signed JSON POSTs, in order, retried.

    Filters combine with AND; an empty list matches everything. ``jurisdictions`` and
    ``match`` compare alert fields with shell-style patterns (``*``, ``?``): a field holding a
    list matches when any of its items does, so a jurisdiction hierarchy (a path such as
    ``city/township/grid``, or a list of ancestors) works with the same config.
    """

    name: str = _f(
        "Name", "Unique id (Redis keys, metrics label, CLI argument).", pattern=ID_PATTERN
    )
    url: str = _f(
        "URL",
        "http(s) URL the events are POSTed to. Loopback, link-local and CGNAT addresses are "
        "refused unless allow_networks holds them; cloud metadata endpoints always are.",
        max_length=2048,
    )
    enabled: bool = _f("Enabled", "Deliver to this webhook.", default=True)
    secret_env: str = _f(
        "Secret variable",
        "Environment variable holding the HMAC-SHA256 signing secret (16+ characters); "
        "citysight refuses to start when it is unset.",
        pattern=r"^[A-Z_][A-Z0-9_]*$",
    )
    kinds: list[AlertKind] = _f("Kinds", "Alert kinds sent; empty: all.", default_factory=list)
    departments: list[str] = _f(
        "Departments",
        "Departments (owner or escalated-to) whose alerts are sent; empty: all.",
        default_factory=list,
    )
    jurisdictions: list[str] = _f(
        "Jurisdictions",
        "Patterns on the alert's jurisdiction (e.g. 'boao*'); empty: all.",
        default_factory=list,
    )
    match: dict[str, list[str]] = _f(
        "Match",
        "More field filters: alert field name → patterns, e.g. {severity: [high, critical]}.",
        default_factory=dict,
    )
    events: list[WebhookEvent] = _f("Events", "Event types sent; empty: all.", default_factory=list)
    include_plates: bool = _f(
        "Include plates",
        "Send plate text (plate_text, and subject/summary of plate alerts); otherwise it is "
        "withheld as for a reader without plates:query.",
        default=False,
    )
    evidence_base_url: str = _f(
        "Evidence base URL",
        "Public base of the API (https://ops.example.org) for the evidence links in payloads; "
        "empty: links are paths. Evidence bytes are never sent.",
        default="",
        max_length=512,
    )
    timeout_s: float = _f("Timeout", "Seconds per delivery attempt.", default=10.0, gt=0, le=120)
    max_attempts: int = _f(
        "Max attempts",
        "Attempts of one event before it goes to the dead-letter stream.",
        default=12,
        ge=1,
        le=1000,
    )
    backoff_initial_s: float = _f(
        "Initial backoff", "Wait after the first failed attempt.", default=1.0, gt=0, le=3600
    )
    backoff_max_s: float = _f(
        "Backoff cap", "Longest wait between attempts.", default=300.0, gt=0, le=86400
    )
    max_pending: int = _f(
        "Outbox bound",
        "Undelivered events kept; beyond it the oldest are dropped and counted "
        "(citysight_webhook_trimmed_total, logged).",
        default=100_000,
        ge=10,
        le=10_000_000,
    )
    ca_file: str = _f(
        "CA file",
        "PEM file of the CAs trusted for this receiver's TLS certificate (an intranet CA); "
        "empty: the system's trust store. The certificate is always verified.",
        default="",
        max_length=4096,
    )
    allow_networks: list[str] = _f(
        "Allowed networks",
        "CIDRs where loopback/link-local/CGNAT receivers are allowed (e.g. 127.0.0.1/32).",
        default_factory=list,
        max_length=64,
    )

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        parse_networks(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> WebhookConfig:
        check_outbound_url(self.url, self.allow_networks)
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s is below backoff_initial_s")
        if self.evidence_base_url:
            check_outbound_url(self.evidence_base_url, ["0.0.0.0/0", "::/0"])
        return self
