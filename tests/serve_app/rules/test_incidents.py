"""Cross-camera incident merge in a real Redis: global across consumers, replay-safe, atomic."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import numpy as np
import pytest
import redis

from citysight import keys
from citysight.config import CitysightConfig, IncidentsConfig
from citysight.contracts import Alert, AlertKind, FrameResult, Location, ObjectClass, Severity
from citysight.keys import RULES_GROUP as GROUP
from citysight.keys import detections_stream
from serve_app.consumer import DetectionsConsumer
from serve_app.rules.incidents import IncidentIndex
from serve_app.store import AlertStore

T0 = 1_700_000_000.0
LAT, LON = 20.03, 110.33
M_PER_DEG_LAT = 111_195.0  # metres per degree of latitude (sphere)


def alert(n: int, cam: str, *, north_m: float = 0.0, dt: float = 0.0, kind: str = "fire") -> Alert:
    t = T0 + dt
    return Alert(
        id=f"al_{n:04d}", kind=AlertKind(kind), severity=Severity.HIGH, camera_id=cam,
        camera_ids=[cam], location=Location(lat=LAT + north_m / M_PER_DEG_LAT, lon=LON),
        jurisdiction="longhua", department="fire", rule_id=kind, subject="*",
        started_at=datetime.fromtimestamp(t, UTC), detected_at=t,
    )  # fmt: skip


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, protocol=2)


@pytest.fixture
def index(r: redis.Redis) -> IncidentIndex:
    return IncidentIndex(r, IncidentsConfig(radius_m=250, window_s=300))


def open_incidents(r: redis.Redis, kind: str = "fire") -> int:
    return int(r.hlen(keys.incident_index_keys(kind)[2]))


@pytest.mark.parametrize(("second", "merged"), [
    ({"north_m": 100, "dt": 30}, True),
    ({"north_m": 240, "dt": -290}, True),               # an earlier start still within the window
    ({"north_m": 400, "dt": 30}, False),                # outside the radius
    ({"north_m": 100, "dt": 301}, False),               # outside the window
    ({"north_m": 100, "dt": 30, "kind": "smoke"}, False),  # another kind
    ({"north_m": 0, "dt": 0, "kind": "camera_offline"}, False),  # never merged
])  # fmt: skip
def test_merge_by_kind_distance_and_time(index: IncidentIndex, second: dict, merged: bool) -> None:
    a, b = index.assign([alert(1, "c1"), alert(2, "c2", **second)])
    assert a.incident_id == "in_0001" and a.camera_ids == ["c1"]
    if merged:
        assert b.incident_id == "in_0001" and b.camera_ids == ["c1", "c2"]
    elif b.kind is AlertKind.CAMERA_OFFLINE:
        assert b.incident_id is None and b.camera_ids == ["c2"]
    else:
        assert b.incident_id == "in_0002" and b.camera_ids == ["c2"]


def test_joins_measure_from_the_first_alert_and_the_latest_time(index: IncidentIndex) -> None:
    # c2 joins 200 m north; c3 at 400 m is 200 m from c2 but 400 m from the first alert.
    _, b, c = index.assign(
        [alert(1, "c1"), alert(2, "c2", north_m=200), alert(3, "c3", north_m=400)]
    )
    assert (b.incident_id, c.incident_id) == ("in_0001", "in_0003")
    # The window slides with the latest alert: 250 s, then 500 s after the first.
    (d,) = index.assign([alert(4, "c1", north_m=10, dt=250)])
    (e,) = index.assign([alert(5, "c4", north_m=10, dt=500)])
    assert d.incident_id == e.incident_id == "in_0001"
    assert e.camera_ids == ["c1", "c2", "c4"]


def test_replay_gets_the_same_incident_and_opens_no_other(r: redis.Redis, redis_url: str) -> None:
    def ids(alerts: list[Alert]) -> list[tuple[str | None, list[str]]]:
        return [(a.incident_id, a.camera_ids) for a in alerts]

    cfg = IncidentsConfig()
    first = IncidentIndex(r, cfg).assign([alert(1, "c1"), alert(2, "c2", north_m=50)])
    assert ids(first) == [("in_0001", ["c1"]), ("in_0001", ["c1", "c2"])]
    # A restarted consumer (new client, new script object) replays both, then a third joins.
    again = IncidentIndex(redis.Redis.from_url(redis_url), cfg)
    assert ids(again.assign([alert(2, "c2", north_m=50), alert(1, "c1")])[::-1]) == ids(first)
    (third,) = again.assign([alert(3, "c3", north_m=80)])
    assert third.camera_ids == ["c1", "c2", "c3"]
    # Replaying the second alert now still answers what it got the first time.
    assert again.assign([alert(2, "c2", north_m=50)])[0].camera_ids == ["c1", "c2"]
    assert open_incidents(r) == 1
    # An alert that already carries its incident (a retried write) is left as it is.
    assert again.assign(first) == first


def test_concurrent_assignments_open_exactly_one_incident(r: redis.Redis, redis_url: str) -> None:
    n = 8
    barrier = threading.Barrier(n)
    got: dict[int, Alert] = {}

    def work(i: int) -> None:
        ix = IncidentIndex(redis.Redis.from_url(redis_url), IncidentsConfig())
        barrier.wait()
        (got[i],) = ix.assign([alert(i, f"c{i}", north_m=10 * i, dt=i)])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    assert len(got) == n
    assert len({a.incident_id for a in got.values()}) == 1
    assert open_incidents(r) == 1
    assert max(len(a.camera_ids) for a in got.values()) == n  # the last one saw every camera


def test_stale_incidents_and_their_memos_are_pruned(r: redis.Redis, index: IncidentIndex) -> None:
    index.assign([alert(1, "c1"), alert(2, "c2", north_m=50)])
    (later,) = index.assign([alert(3, "c9", north_m=5000, dt=4 * 300 + 1)])
    assert later.incident_id == "in_0003"
    _, last, state, memo = keys.incident_index_keys("fire")
    assert r.hkeys(state) == [b"in_0003"] and r.zrange(last, 0, -1) == [b"in_0003"]
    assert r.hkeys(memo) == [b"al_0003"]
    assert 0 < r.ttl(state) <= 4 * 300 + 3600


def test_a_batch_costs_only_its_evalsha_calls_and_survives_a_script_flush(
    r: redis.Redis, index: IncidentIndex
) -> None:
    def calls() -> dict[str, int]:
        stats = r.info("commandstats")
        return {k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}

    index.assign([alert(1, "c1")])
    r.config_resetstat()
    index.assign([alert(2, "c2"), alert(3, "c3", kind="smoke"), alert(4, "c4", north_m=30)])
    seen = calls()  # (commands run inside the script are counted too)
    assert seen["evalsha"] == 3 and not {k for k in seen if k.startswith("script|")}
    r.script_flush()  # e.g. Redis restarted without the script
    (a,) = index.assign([alert(5, "c5", north_m=60)])
    assert a.incident_id == "in_0001" and a.camera_ids == ["c1", "c2", "c4", "c5"]


def test_hot_reloaded_radius(index: IncidentIndex) -> None:
    index.cfg = IncidentsConfig(radius_m=1000, window_s=300)
    a, b = index.assign([alert(1, "c1"), alert(2, "c2", north_m=900)])
    assert a.incident_id == b.incident_id


# -- through the real consumers ----------------------------------------------------------

CFG = CitysightConfig.model_validate({
    "cameras": [
        {"id": "c1", "url": "rtsp://h/1", "latitude": LAT, "longitude": LON},
        {"id": "c2", "url": "rtsp://h/2", "latitude": LAT + 0.0005, "longitude": LON},  # 56 m
        {"id": "c3", "url": "rtsp://h/3", "latitude": LAT + 0.05, "longitude": LON},  # 5.6 km
    ],
    "departments": [{"id": "fire"}],
    "routing": [{"kind": "*", "department": "fire"}],
})  # fmt: skip


def fire(cam: str, n: int, t0: float) -> FrameResult:
    return FrameResult(
        camera_id=cam, frame_time=t0 + n * 0.2, frame_no=n, width=100, height=100,
        boxes=np.array([[10, 10, 50, 50]], np.float32), scores=np.array([0.9], np.float32),
        class_ids=np.array([int(ObjectClass.FIRE)], np.int32), published_at=time.time(),
    )  # fmt: skip


def publish(r: redis.Redis, shard: int, cam: str, t0: float) -> None:
    for n in range(5):  # the default fire rule: 3 of 5 frames
        r.xadd(detections_stream(shard), {"d": fire(cam, n, t0).to_msgpack()})


def consumer(url: str, shard: int, assigned: list[Alert] | None = None) -> DetectionsConsumer:
    """A set-up consumer; ``assigned`` collects every alert it sends to the incident index."""
    c = DetectionsConsumer(url, CFG, f"rules-{shard}", [shard], block_ms=5, replay_s=60.0)
    if assigned is not None:
        real = c.incidents.assign

        def spy(alerts: list[Alert], now: float | None = None) -> list[Alert]:
            out = real(alerts, now)
            assigned.extend(out)
            return out

        c.incidents.assign = spy  # type: ignore[method-assign]
    c.setup()
    return c


def drain(*consumers: DetectionsConsumer) -> None:
    for _ in range(10):
        for c in consumers:
            c.step()


def test_consumers_of_different_shards_share_one_incident(r: redis.Redis, redis_url: str) -> None:
    t0 = time.time() - 5
    a, b = consumer(redis_url, 0), consumer(redis_url, 1)
    publish(r, 0, "c1", t0)
    drain(a)
    publish(r, 1, "c2", t0 + 2)
    publish(r, 1, "c3", t0 + 2)
    drain(b)
    store = AlertStore(r, CFG)
    alerts = {x.camera_id: x for x in store.query()}
    assert alerts["c1"].incident_id == alerts["c2"].incident_id
    assert alerts["c2"].camera_ids == ["c1", "c2"]
    assert alerts["c3"].incident_id not in (None, alerts["c1"].incident_id)
    inc = store.incident(alerts["c1"].incident_id or "")
    assert inc is not None and inc["camera_ids"] == ["c1", "c2"]
    assert len(inc["alert_ids"]) == 2

    # A consumer that died after saving its alerts but before persisting its cooldowns
    # restarts and replays its recent stream: its alerts come again, with the same ids and
    # incidents; nothing new is stored and no incident is opened.
    r.delete(keys.RULES_COOLDOWN)
    replayed: list[Alert] = []
    b2 = consumer(redis_url, 1, replayed)
    assert b2.stats["replayed"] == 10
    assert sorted((a.id, a.incident_id, tuple(a.camera_ids)) for a in replayed) == sorted(
        (a.id, a.incident_id, tuple(a.camera_ids)) for a in (alerts["c2"], alerts["c3"])
    )
    drain(b2)
    assert len(store.query()) == 3 and open_incidents(r) == 2
    assert store.incident(alerts["c1"].incident_id or "") == inc


def test_a_failed_write_keeps_the_alert_until_redis_takes_it(
    r: redis.Redis, redis_url: str
) -> None:
    """Redis refusing writes after evaluation must not lose the alert (state moved on)."""
    c = consumer(redis_url, 0)
    publish(r, 0, "c1", time.time() - 5)
    reply = r.xreadgroup(GROUP, c.name, {detections_stream(0): ">"}, count=100)
    entries = [(detections_stream(0), i.decode(), f) for _, rows in reply for i, f in rows]
    r.config_set("maxmemory", 1)  # every write is refused (noeviction): out of memory
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            c.process(entries, redelivered=False)
    finally:
        r.config_set("maxmemory", 0)
    assert AlertStore(r, CFG).query() == []
    assert r.xpending(detections_stream(0), GROUP)["pending"] == 5
    drain(c)  # reads its pending entries again: the engine re-raises nothing, the backlog does
    (saved,) = AlertStore(r, CFG).query()
    assert saved.camera_id == "c1" and saved.incident_id == "in_" + saved.id.removeprefix("al_")
    assert r.xpending(detections_stream(0), GROUP)["pending"] == 0
