"""The city: its time zone, and the cross-camera incident merge."""

from __future__ import annotations

import zoneinfo

from pydantic import field_validator

from citysight.config.base import Strict, _f


def time_zone(name: str) -> zoneinfo.ZoneInfo:
    """The IANA time zone ``name``.

    Raises:
        ValueError: Unknown name, or no time-zone database on this machine (the message
            says which, and how to fix it).
    """
    try:
        return zoneinfo.ZoneInfo(name)
    except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
        pass
    if not zoneinfo.available_timezones():
        hint = (
            "this machine has no time-zone database: install the tzdata package "
            "(pip install tzdata, or the OS package tzdata)"
        )
    else:
        hint = "not an IANA time zone name (e.g. Asia/Shanghai, Europe/Berlin, UTC)"
    raise ValueError(f"unknown time zone {name!r}: {hint}")


class SiteConfig(Strict):
    """The city (or site) the deployment serves."""

    timezone: str | None = _f(
        "Time zone",
        "IANA time zone of the city, e.g. Asia/Shanghai. Rule schedules are evaluated and "
        "the map shows times in it, whatever zone the hosts run in. Empty: each host's "
        "own zone (containers usually run in UTC).",
        default=None,
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        if v is not None:
            time_zone(v)
        return v

    def zone(self) -> zoneinfo.ZoneInfo | None:
        """The city's time zone (``None``: the host's local zone)."""
        return None if self.timezone is None else time_zone(self.timezone)


class IncidentsConfig(Strict):
    """Cross-camera incident merge: alerts of one kind close in space and time."""

    radius_m: float = _f(
        "Merge radius",
        "An alert joins an open incident of its kind whose first alert lies within this "
        "distance (and within window_s). Merging is global: across cameras, shards and "
        "rules consumers.",
        default=250.0,
        gt=0,
        le=100_000,
    )
    window_s: float = _f(
        "Merge window",
        "An alert joins an open incident only when the incident's latest alert started at "
        "most this many seconds before or after it.",
        default=300.0,
        gt=0,
        le=86_400,
    )
