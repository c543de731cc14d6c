"""The audit chain's key, its exported head and its verification schedule."""

from __future__ import annotations

from typing import Final

from citysight.config.base import Strict, _f

DEFAULT_KEY_FILE: Final = ".citysight/audit.key"
"""The key file of a process started without ``citysight run`` (tests, a bare Serve app)."""


class AuditConfig(Strict):
    """Where the audit chain's HMAC key comes from and how the chain is checked.

    The key never lives in Redis: a process that can write Redis cannot forge or re-link
    audit records without it.
    """

    key_env: str | None = _f(
        "Key variable",
        "Environment variable with the audit chain's HMAC key (at least 32 characters); "
        "what a cluster uses (one Secret for every replica). Empty: key_file.",
        default=None,
    )
    key_file: str | None = _f(
        "Key file",
        "File with the HMAC key when key_env is not set; created with a random key (mode "
        "0600) by the first citysight process that needs it. Every process of one "
        "deployment must read the same key. Empty: <workdir>/audit.key under citysight "
        "run/demo, else .citysight/audit.key.",
        default=None,
    )
    head_file: str | None = _f(
        "Head file",
        "File the chain head (last record id and hash) is exported to after each "
        "verification (mode 0600); the next verification checks the chain still contains "
        "it, so deleting the newest records is detected. Empty: <workdir>/audit-head.json "
        "under citysight run/demo, else no export.",
        default=None,
    )
    verify_interval_s: float = _f(
        "Verify interval",
        "The chain is verified from its first record this often (result in /health "
        "component audit and in /metrics), then its head is exported.",
        default=60.0,
        ge=0.5,
        le=86400,
    )
