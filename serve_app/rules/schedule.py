"""Rule schedules: daily local-time windows, including windows that cross midnight."""

from __future__ import annotations

from datetime import datetime, tzinfo

from citysight.config import ScheduleWindow

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _minutes(hhmm: str) -> int:
    h, m = hhmm.split(":")
    return int(h) * 60 + int(m)


def in_schedule(windows: list[ScheduleWindow], t: float, tz: tzinfo | None = None) -> bool:
    """Whether unix time ``t`` falls in any window (no windows: always).

    A window whose end is before its start crosses midnight; its ``days`` name the day
    the window starts on (``fri 22:00-06:00`` covers Saturday 03:00).

    Args:
        windows: Active windows.
        t: Unix time.
        tz: Time zone of the deployment; ``None`` uses the machine's local zone.
    """
    if not windows:
        return True
    local = datetime.fromtimestamp(t, tz) if tz else datetime.fromtimestamp(t).astimezone()
    now = local.hour * 60 + local.minute
    today = DAYS[local.weekday()]
    yesterday = DAYS[(local.weekday() - 1) % 7]
    for w in windows:
        start, end = _minutes(w.start), _minutes(w.end)
        if start <= end:
            if today in w.days and start <= now < end:
                return True
        elif (today in w.days and now >= start) or (yesterday in w.days and now < end):
            return True
    return False
