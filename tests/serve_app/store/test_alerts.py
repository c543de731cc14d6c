"""AlertStore against a real Redis: idempotent save, lifecycle table, SLA escalation, queries."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime

import pytest
import redis

from citysight.config import CitysightConfig
from citysight.contracts import (
    ALERT_SCHEMA_VERSION,
    Alert,
    AlertKind,
    AlertState,
    Location,
    Severity,
)
from serve_app.store import AlertNotFound, AlertStore, InvalidTransition, read_feed
from serve_app.store.lifecycle import ALLOWED

S = AlertState

CFG = CitysightConfig.model_validate(
    {
        "departments": [
            {"id": "fire", "supervisor": "duty", "ack_sla_s": 60},
            {"id": "duty"},
            {"id": "police", "ack_sla_s": 60},
        ],
        "routing": [{"kind": "fire", "department": "fire"}],
    }
)


def make_alert(i: int = 0, dept: str = "fire", t: float = 1_700_000_000.0, **kw) -> Alert:
    base = dict(
        id=f"al_{i:04d}", kind=AlertKind.FIRE, severity=Severity.HIGH, camera_id=f"cam{i % 3}",
        location=Location(lat=1.0, lon=2.0), department=dept, rule_id="fire",
        started_at=datetime.fromtimestamp(t + i, UTC),
    )  # fmt: skip
    base.update(kw)
    return Alert(**base)


@pytest.fixture
def store(redis_url: str) -> AlertStore:
    return AlertStore(redis.Redis.from_url(redis_url), CFG)


def test_save_new_is_idempotent(store: AlertStore) -> None:
    a = make_alert(1)
    assert [x.id for x in store.save_new([a, a])] == [a.id]
    assert store.save_new([a]) == []
    assert len(store.events(a.id)) == 1
    ev = store.events(a.id)[0]
    assert (ev.from_state, ev.to_state, ev.actor, ev.seq) == (None, S.RAISED, "rules", 0)
    feed = read_feed(store.r, "0", 100)
    assert [f["type"] for _, f in feed] == ["alert"]
    assert feed[0][1]["d"]["id"] == a.id and feed[0][1]["department"] == "fire"
    ttl = store.r.ttl(f"citysight:alert:{a.id}")
    assert 0 < ttl <= CFG.retention.alert_ttl_s
    assert store.r.ttl(f"citysight:alert:{a.id}:events") > 0


def _path_to(target: AlertState) -> list[tuple[AlertState, dict]]:
    paths = {
        S.RAISED: [],
        S.ASSIGNED: [(S.ASSIGNED, {"unit": "E1"})],
        S.ACKNOWLEDGED: [(S.ACKNOWLEDGED, {})],
        S.RESOLVED: [(S.ACKNOWLEDGED, {}), (S.RESOLVED, {"outcome": "extinguished"})],
        S.FEEDBACK: [(S.ACKNOWLEDGED, {}), (S.RESOLVED, {"outcome": "ok"}), (S.FEEDBACK, {})],
        S.FALSE_ALARM: [(S.FALSE_ALARM, {})],
        S.CLOSED: [(S.FALSE_ALARM, {}), (S.CLOSED, {})],
    }
    return paths[target]


ARGS = {S.ASSIGNED: {"unit": "U7"}, S.RESOLVED: {"outcome": "handled"}}
TABLE = [(a, b, b in ALLOWED[a]) for a, b in itertools.product(list(AlertState), list(AlertState))]


@pytest.mark.parametrize(
    ("from_state", "to_state", "allowed"), TABLE, ids=[f"{a.value}->{b.value}" for a, b, _ in TABLE]
)
def test_lifecycle_table(store: AlertStore, from_state, to_state, allowed) -> None:
    a = make_alert(2)
    store.save_new([a])
    for st, kw in _path_to(from_state):
        store.transition(a.id, st, actor="setup", **kw)
    assert store.get(a.id).state is from_state
    n = len(store.events(a.id))
    if allowed:
        new = store.transition(a.id, to_state, actor="officer", note="n", **ARGS.get(to_state, {}))
        assert new.state is to_state
        evs = store.events(a.id)
        assert len(evs) == n + 1
        assert (evs[-1].from_state, evs[-1].to_state, evs[-1].seq) == (from_state, to_state, n)
    else:
        with pytest.raises(InvalidTransition, match="cannot go from"):
            store.transition(a.id, to_state, actor="officer", **ARGS.get(to_state, {}))
        assert len(store.events(a.id)) == n and store.get(a.id).state is from_state


@pytest.mark.parametrize(("to_state", "kw", "match"), [
    (S.ASSIGNED, {}, "needs a unit"),
    (S.ACKNOWLEDGED, {}, None),
])  # fmt: skip
def test_assign_needs_unit_and_resolve_needs_outcome(store, to_state, kw, match) -> None:
    a = make_alert(3)
    store.save_new([a])
    if match:
        with pytest.raises(InvalidTransition, match=match):
            store.transition(a.id, to_state, actor="x", **kw)
    else:
        store.transition(a.id, to_state, actor="x")
        with pytest.raises(InvalidTransition, match="needs an outcome"):
            store.transition(a.id, S.RESOLVED, actor="x")


def test_missing_alert(store: AlertStore) -> None:
    with pytest.raises(AlertNotFound):
        store.transition("al_nope", S.ACKNOWLEDGED, actor="x")
    assert store.get("al_nope") is None


def test_concurrent_transitions_lose_no_events(store: AlertStore) -> None:
    a = make_alert(4)
    store.save_new([a])
    errors: list[Exception] = []
    ok: list[AlertState] = []

    def worker(st: AlertState) -> None:
        s2 = AlertStore(redis.Redis(connection_pool=store.r.connection_pool), CFG)
        try:
            ok.append(s2.transition(a.id, st, actor="t", unit="U").state)
        except InvalidTransition as e:
            errors.append(e)

    threads = [
        threading.Thread(target=worker, args=(st,))
        for st in [S.ASSIGNED, S.ACKNOWLEDGED, S.FALSE_ALARM] * 4
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    evs = store.events(a.id)
    assert len(evs) == 1 + len(ok)
    assert [e.seq for e in evs] == list(range(len(evs)))
    for prev, cur in itertools.pairwise(evs):
        assert cur.from_state == prev.to_state  # a consistent chain, nothing lost
    assert store.get(a.id).state == evs[-1].to_state


def test_sla_escalation_adds_the_supervisor_and_keeps_the_owner(store: AlertStore) -> None:
    """Escalation adds ``duty``; ``fire`` keeps the alert (index, scope, feed)."""
    t0 = 1_700_000_000.0
    late = make_alert(5, t=t0, raised_at=t0)
    acked = make_alert(6, t=t0, raised_at=t0)
    fresh = make_alert(7, t=t0 + 100, raised_at=t0 + 100)
    nosup = make_alert(8, dept="police", t=t0, raised_at=t0)
    store.save_new([late, acked, fresh, nosup])
    store.transition(acked.id, S.ACKNOWLEDGED, actor="x")
    out = store.escalate_overdue(now=t0 + 5 + 61)
    assert [a.id for a in out] == [late.id]
    got = store.get(late.id)
    assert got.escalated and got.state is S.RAISED
    assert got.department == "fire" and got.escalated_to == ["duty"]
    assert got.departments() == ["fire", "duty"] and got.schema_version == ALERT_SCHEMA_VERSION
    assert "escalated to duty" in store.events(late.id)[-1].note
    assert store.escalate_overdue(now=t0 + 66) == []  # once
    again = store.escalate_overdue(now=t0 + 1000)
    assert [a.id for a in again] == [fresh.id]
    # Both departments list it; the owner's index still holds it.
    assert late.id in [a.id for a in store.query(departments={"duty"})]
    assert late.id in [a.id for a in store.query(departments={"fire"})]
    assert nosup.id not in [a.id for a in store.query(departments={"duty"})]
    both = [a.id for a in store.query(departments={"fire", "duty"}, limit=100)]
    assert len(both) == len(set(both))  # in two indexes, listed once
    feed = read_feed(store.r, "0", 100)
    esc = [f for _, f in feed if f["type"] == "alert_event" and f["d"]["alert"]["id"] == late.id]
    assert len(esc) == 1
    assert esc[0]["department"] == "fire" and esc[0]["departments"] == "fire,duty"
    # The owner acts on it afterwards: the event reaches both departments too.
    store.transition(late.id, S.ACKNOWLEDGED, actor="fire-user")
    feed = read_feed(store.r, "0", 1000)
    ack = [f for _, f in feed if f["type"] == "alert_event" and f["d"]["alert"]["id"] == late.id]
    assert ack[-1]["d"]["event"]["to_state"] == "acknowledged"
    assert ack[-1]["departments"] == "fire,duty"
    assert store.get(late.id).escalated_to == ["duty"]


def test_v1_alert_records_still_read(store: AlertStore) -> None:
    """Records written before escalated_to existed (schema 1) read with no escalation."""
    a = make_alert(9)
    raw = a.model_dump(mode="json")
    raw.pop("escalated_to")
    raw["schema_version"] = 1
    old = Alert.model_validate(raw)
    assert old.escalated_to == [] and old.departments() == ["fire"]


def test_query_filters_and_cursor(store: AlertStore) -> None:
    alerts = [make_alert(i, dept="fire" if i % 2 else "police") for i in range(30)]
    store.save_new(alerts)
    all_ids = [a.id for a in store.query(limit=100)]
    assert all_ids == [a.id for a in reversed(alerts)]
    page1 = store.query(limit=7)
    page2 = store.query(limit=7, before=page1[-1].id)
    assert [a.id for a in page1 + page2] == all_ids[:14]
    fire = store.query(departments={"fire"}, limit=100)
    assert {a.department for a in fire} == {"fire"} and len(fire) == 15
    both = store.query(departments={"fire", "police"}, limit=100)
    assert [a.id for a in both] == all_ids
    assert {a.camera_id for a in store.query(camera_ids={"cam1"}, limit=100)} == {"cam1"}
    t0 = 1_700_000_000.0
    assert len(store.query(since=t0 + 10, until=t0 + 19, limit=100)) == 10
    store.transition(alerts[3].id, S.ACKNOWLEDGED, actor="x")
    assert [a.id for a in store.query(states={"acknowledged"})] == [alerts[3].id]


def test_precision(store: AlertStore) -> None:
    a, b, c = make_alert(1), make_alert(2), make_alert(3)
    store.save_new([a, b, c])
    store.transition(a.id, S.ACKNOWLEDGED, actor="x")
    store.transition(a.id, S.RESOLVED, actor="x", outcome="extinguished")
    store.transition(b.id, S.FALSE_ALARM, actor="x")
    store.transition(b.id, S.CLOSED, actor="x")
    p = store.precision()
    assert p["by_rule"]["fire"] == {
        "confirmed": 1,
        "false_alarm": 1,
        "pending": 1,
        "precision": 0.5,
    }
    assert p["by_camera"]["cam0"]["precision"] is None


def test_prune_indexes_drops_expired_entries(store: AlertStore) -> None:
    old = make_alert(1, t=1_000.0)
    new = make_alert(2, t=2_000_000_000.0)
    store.save_new([old, new])
    assert store.prune_indexes(now=2_000_000_000.0) == 2  # all + fire index
    assert [a.id for a in store.query(limit=10)] == [new.id]


def test_save_new_is_one_round_trip_of_evalsha_and_survives_a_script_flush(
    store: AlertStore,
) -> None:
    r = store.r
    store.save_new([make_alert(0)])
    r.config_resetstat()
    saved = store.save_new([make_alert(1), make_alert(2), make_alert(0)])
    stats = {k.removeprefix("cmdstat_"): v["calls"] for k, v in r.info("commandstats").items()}
    assert stats["evalsha"] == 3 and not [k for k in stats if k.startswith("script|")]
    assert [a.id for a in saved] == [make_alert(1).id, make_alert(2).id]
    r.script_flush()  # e.g. Redis restarted without the script
    assert [a.id for a in store.save_new([make_alert(3), make_alert(1)])] == [make_alert(3).id]


def test_save_new_raises_when_redis_refuses_the_write(store: AlertStore) -> None:
    """The consumer keeps a batch whose write failed; nothing may pass for saved."""
    r = store.r
    r.config_set("maxmemory", "1")
    try:
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            store.save_new([make_alert(7)])
    finally:
        r.config_set("maxmemory", "0")
    assert [a.id for a in store.save_new([make_alert(7)])] == [make_alert(7).id]


def test_a_save_that_redis_refuses_leaves_nothing_half_saved(store: AlertStore) -> None:
    """A wrong-typed index key fails the save before any write: the retry saves it whole."""
    r = store.r
    a = make_alert(11)
    r.set("citysight:alerts:dept:fire", "corrupted")
    with pytest.raises(redis.exceptions.ResponseError, match="WRONGTYPE"):
        store.save_new([a])
    assert store.get(a.id) is None and store.events(a.id) == []
    assert read_feed(r, "0", 10) == []
    r.delete("citysight:alerts:dept:fire")
    assert [x.id for x in store.save_new([a])] == [a.id]
    assert len(store.events(a.id)) == 1 and [x.id for x in store.query()] == [a.id]
