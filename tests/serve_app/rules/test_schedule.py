"""Schedules run in the city's time zone (``site.timezone``), never in the host's."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from citysight.config import CitysightConfig, ScheduleWindow
from citysight.contracts import FrameResult, ObjectClass
from serve_app.rules import RulesEngine, default_rules
from serve_app.rules.schedule import in_schedule

BERLIN = ZoneInfo("Europe/Berlin")
SHANGHAI = ZoneInfo("Asia/Shanghai")


def utc(s: str) -> float:
    return datetime.strptime(s, "%Y-%m-%d %H:%M").replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("start", "end", "days", "at_utc", "active"), [
    # 2024-03-31, the last Sunday of March: Berlin goes from CET (+1) to CEST (+2) at 02:00.
    ("08:00", "09:00", ["sat"], "2024-03-30 07:30", True),    # 08:30 CET
    ("08:00", "09:00", ["sun"], "2024-03-31 06:30", True),    # 08:30 CEST
    ("08:00", "09:00", ["sun"], "2024-03-31 07:30", False),   # 09:30 CEST (08:30 at +1)
    ("02:00", "03:00", ["sun"], "2024-03-31 00:59", False),   # 01:59 CET
    ("02:00", "03:00", ["sun"], "2024-03-31 01:00", False),   # 03:00 CEST: 02:xx never happens
    # Overnight window of the DST night: starts Saturday 22:00 CET, ends Sunday 06:00 CEST.
    ("22:00", "06:00", ["sat"], "2024-03-30 21:00", True),    # sat 22:00 CET
    ("22:00", "06:00", ["sat"], "2024-03-31 03:59", True),    # sun 05:59 CEST
    ("22:00", "06:00", ["sat"], "2024-03-31 04:00", False),   # sun 06:00 CEST (05:00 at +1)
    ("22:00", "06:00", ["sun"], "2024-03-31 03:00", False),   # saturday night, not sunday's
    # 2024-10-27, the last Sunday of October: back to CET at 03:00 CEST.
    ("22:00", "06:00", ["sat"], "2024-10-27 00:30", True),    # sun 02:30 CEST (first pass)
    ("22:00", "06:00", ["sat"], "2024-10-27 04:30", True),    # sun 05:30 CET (06:30 at +2)
    ("22:00", "06:00", ["sat"], "2024-10-27 05:00", False),   # sun 06:00 CET
])  # fmt: skip
def test_windows_in_berlin_across_dst(start, end, days, at_utc, active) -> None:
    window = ScheduleWindow(start=start, end=end, days=days)
    assert in_schedule([window], utc(at_utc), BERLIN) is active


@pytest.mark.parametrize(("at_utc", "active"), [
    ("2023-11-14 13:59", False),  # tue 21:59 in Shanghai
    ("2023-11-14 14:00", True),   # tue 22:00
    ("2023-11-14 21:59", True),   # wed 05:59
    ("2023-11-14 22:00", False),  # wed 06:00 (22:00 in UTC, inside the window there)
])  # fmt: skip
def test_overnight_window_in_shanghai(at_utc: str, active: bool) -> None:
    window = ScheduleWindow(start="22:00", end="06:00", days=["tue"])
    assert in_schedule([window], utc(at_utc), SHANGHAI) is active


@pytest.fixture
def host_tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set this process's own time zone (``TZ``), restored afterwards."""

    def set_tz(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_tz
    monkeypatch.undo()
    time.tzset()


def _face_frames(t0: float) -> list[FrameResult]:
    return [
        FrameResult(
            camera_id="c1",
            frame_time=t0 + i,
            frame_no=i,
            width=100,
            height=100,
            boxes=np.array([[40, 40, 60, 60]], np.float32),
            scores=np.array([0.9], np.float32),
            class_ids=np.array([int(ObjectClass.FACE)], np.int32),
            track_ids=np.array([1], np.int64),
        )
        for i in range(3)
    ]


def _config(timezone: str | None) -> CitysightConfig:
    return CitysightConfig.model_validate({
        "site": {"timezone": timezone},
        "cameras": [{
            "id": "c1", "url": "rtsp://h/1", "latitude": 20.0, "longitude": 110.3,
            "zones": [{"id": "gate", "type": "restricted",
                       "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        }],
        # the default face rule: a face in a restricted zone from 22:00 to 06:00
        "rules": [r.model_dump(mode="json") for r in default_rules()],
    })  # fmt: skip


@pytest.mark.parametrize(("timezone", "night_utc", "day_utc"), [
    # 15:00 UTC is 23:00 in Shanghai but 10:00 on the host; 03:00 UTC is 11:00 / 22:00.
    ("Asia/Shanghai", "2023-11-14 15:00", "2023-11-15 03:00"),
    # Without site.timezone the host's zone applies (this is what the setting fixes).
    (None, "2023-11-15 03:00", "2023-11-14 15:00"),
])  # fmt: skip
def test_engine_evaluates_schedules_in_the_city_zone_not_the_hosts(
    host_tz: Callable[[str], None], timezone: str | None, night_utc: str, day_utc: str
) -> None:
    host_tz("America/New_York")
    assert datetime.fromtimestamp(utc("2023-11-14 15:00")).hour == 10  # the host really is NY
    cfg = _config(timezone)
    assert RulesEngine(cfg).evaluate(_face_frames(utc(day_utc))).alerts == []
    out = RulesEngine(cfg).evaluate(_face_frames(utc(night_utc)))
    assert [a.kind.value for a in out.alerts] == ["face"]


def test_hot_reload_changes_the_zone() -> None:
    eng = RulesEngine(_config("Asia/Shanghai"))
    assert eng.tz == SHANGHAI
    eng.reconfigure(_config("Europe/Berlin"))
    assert eng.tz == BERLIN
    assert RulesEngine(_config("Europe/Berlin"), tz=UTC).tz is UTC  # an explicit override wins
