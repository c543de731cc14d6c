"""Round-trip and schema-evolution tests of the message contracts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import msgpack
import numpy as np
import pytest

from citysight.contracts import (
    Alert,
    AlertEvent,
    AlertKind,
    AlertState,
    CameraState,
    CameraStatus,
    ContractError,
    FrameBatch,
    FrameResult,
    Location,
    ObjectClass,
    Severity,
    make_alert_id,
    shard_of,
)
from citysight.keys import detections_stream


def _fr(n: int = 2) -> FrameResult:
    return FrameResult(
        camera_id="cam-1",
        frame_time=1700000000.25,
        frame_no=42,
        width=960,
        height=540,
        boxes=np.arange(4 * n, dtype=np.float32).reshape(n, 4),
        scores=np.linspace(0.5, 0.9, n),
        class_ids=[ObjectClass.PLATE] * n,
        track_ids=list(range(n)),
        extra={"plate_text": ["琼A12345", "琼B6789D"][:n], "plate_score": [0.9, 0.8][:n]},
        snapshot_key="citysight:snap:cam-1:42",
    )


def test_frame_result_msgpack_round_trip() -> None:
    fr = _fr()
    back = FrameResult.from_msgpack(fr.to_msgpack())
    assert back.camera_id == fr.camera_id and back.frame_no == 42
    np.testing.assert_array_equal(back.boxes, fr.boxes)
    np.testing.assert_allclose(back.scores, fr.scores)
    np.testing.assert_array_equal(back.class_ids, fr.class_ids)
    np.testing.assert_array_equal(back.track_ids, fr.track_ids)
    assert back.extra == fr.extra
    assert back.snapshot_key == fr.snapshot_key
    json.dumps(back.to_dict())  # JSON-safe


def test_empty_frame_result_round_trip() -> None:
    fr = FrameResult(camera_id="c", frame_time=1.0, frame_no=0)
    back = FrameResult.from_msgpack(fr.to_msgpack())
    assert len(back) == 0 and back.boxes.shape == (0, 4) and back.track_ids.shape == (0,)


def test_untracked_detections_get_minus_one() -> None:
    fr = FrameResult(
        camera_id="c", frame_time=1.0, frame_no=0, boxes=[[0, 0, 1, 1]], scores=[0.5], class_ids=[0]
    )
    assert fr.track_ids.tolist() == [-1]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"boxes": [[0, 0, 1, 1]], "scores": [0.5, 0.6], "class_ids": [0, 0]}, ContractError),
        ({"boxes": [[0, 0, 1, 1]], "scores": [0.5], "class_ids": [0, 1]}, ContractError),
        (
            {
                "boxes": [[0, 0, 1, 1]],
                "scores": [0.5],
                "class_ids": [0],
                "extra": {"plate_text": []},
            },
            ContractError,
        ),
        ({"camera_id": ""}, ContractError),
    ],
)
def test_frame_result_rejects_inconsistent_arrays(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    base: dict[str, object] = {"camera_id": "c", "frame_time": 1.0, "frame_no": 0}
    base.update(kwargs)
    with pytest.raises(error):
        FrameResult(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        msgpack.packb([1, 2]),
        msgpack.packb({"v": 1, "cam": "c"}),
        msgpack.packb({"v": -3, "cam": "c"}),
    ],
)
def test_frame_result_rejects_garbage(data: bytes) -> None:
    with pytest.raises(ContractError):
        FrameResult.from_msgpack(data)


def test_frame_result_reader_ignores_unknown_fields_from_newer_writers() -> None:
    d = msgpack.unpackb(_fr().to_msgpack(), raw=False)
    d["v"] = 2
    d["future_field"] = {"anything": 1}
    back = FrameResult.from_msgpack(msgpack.packb(d, use_bin_type=True))
    assert back.schema_version == 2 and len(back) == 2


def test_frame_result_reader_accepts_v1_without_optional_fields() -> None:
    d = msgpack.unpackb(_fr().to_msgpack(), raw=False)
    for k in ("trk", "extra", "pub", "snap", "w", "h"):
        d.pop(k)
    back = FrameResult.from_msgpack(msgpack.packb(d, use_bin_type=True))
    assert back.track_ids.tolist() == [-1, -1] and back.extra == {}


def test_select_and_concat() -> None:
    fr = _fr()
    one = fr.select(np.array([False, True]))
    assert one.extra["plate_text"] == ["琼B6789D"]
    empty_face = FrameResult(
        camera_id="cam-1",
        frame_time=fr.frame_time,
        frame_no=42,
        boxes=[[1, 1, 2, 2]],
        scores=[0.7],
        class_ids=[0],
    )
    both = FrameResult.concat([fr, empty_face])
    assert len(both) == 3 and both.extra["plate_text"][-1] is None


def _alert(**kw: object) -> Alert:
    base: dict[str, object] = dict(
        id=make_alert_id("cam-1", "fire", "zone-a", 1700000000.7),
        kind=AlertKind.FIRE,
        severity=Severity.CRITICAL,
        camera_id="cam-1",
        location=Location(lat=20.03, lon=110.32),
        department="fire",
        started_at=datetime(2026, 11, 23, 10, 0, tzinfo=UTC),
    )
    base.update(kw)
    return Alert(**base)  # type: ignore[arg-type]


def test_alert_id_is_deterministic() -> None:
    a = make_alert_id("cam-1", "fire", "zone-a", 1700000000.2)
    assert a == make_alert_id("cam-1", "fire", "zone-a", 1700000000.9)
    assert a != make_alert_id("cam-2", "fire", "zone-a", 1700000000.2)
    assert a != make_alert_id("cam-1", "fire", "zone-a", 1700000001.0)


def test_alert_round_trips_and_api_shape() -> None:
    a = _alert()
    assert Alert.from_msgpack(a.to_msgpack()) == a
    api = a.to_api()
    for key in (
        "id",
        "kind",
        "severity",
        "camera_id",
        "department",
        "state",
        "started_at",
        "location",
    ):
        assert key in api
    assert api["location"] == {"lat": 20.03, "lon": 110.32}
    assert api["started_at"].startswith("2026-11-23T10:00:00")
    assert Alert.model_validate_json(json.dumps(api)) == a


def test_alert_schema_evolution() -> None:
    d = _alert().to_api()
    d["schema_version"] = 7
    d["new_field_from_the_future"] = [1, 2]
    old = {k: v for k, v in d.items() if k not in {"evidence", "escalated", "summary"}}
    assert Alert.model_validate(d).id == Alert.model_validate(old).id


@pytest.mark.parametrize(
    ("change", "ok"),
    [
        ({"severity": "apocalyptic"}, False),
        ({"location": {"lat": 91, "lon": 0}}, False),
        ({"kind": "vending"}, True),
        ({"state": "closed"}, True),
    ],
)
def test_alert_validation(change: dict[str, object], ok: bool) -> None:
    d = _alert().to_api()
    d.update(change)
    if ok:
        Alert.model_validate(d)
    else:
        with pytest.raises(ContractError):
            Alert.from_msgpack(msgpack.packb(d))


def test_alert_event_and_camera_status_round_trip() -> None:
    ev = AlertEvent(
        alert_id="al_x",
        seq=1,
        from_state=AlertState.RAISED,
        to_state=AlertState.ASSIGNED,
        actor="police",
        unit="P-12",
        note="on it",
    )
    assert AlertEvent.from_msgpack(ev.to_msgpack()) == ev
    st = CameraStatus(
        camera_id="cam-1",
        state=CameraState.OFFLINE,
        reason="no frame for 10 s",
        metrics={"frames_in": 10.0},
    )
    assert CameraStatus.from_msgpack(st.to_msgpack()) == st


def test_sharding_is_stable() -> None:
    assert shard_of("cam-1", 8) == shard_of("cam-1", 8)
    counts = np.bincount([shard_of(f"cam-{i}", 8) for i in range(8000)], minlength=8)
    assert counts.min() > 800
    assert detections_stream(3) == "citysight:detections:3"


def test_frame_batch_checks_shapes() -> None:
    f = np.zeros((4, 4, 3), np.uint8)
    FrameBatch([f], ["c"], [0], [0.0], [frozenset({"face"})])
    with pytest.raises(ContractError):
        FrameBatch([f], ["c", "d"], [0], [0.0], [frozenset()])
    with pytest.raises(ContractError):
        FrameBatch([np.zeros((4, 4), np.uint8)], ["c"], [0], [0.0], [frozenset()])


def test_alert_v2_records_read_as_camera_alerts_with_one_snapshot() -> None:
    """Version 3 added source/reporter and evidence item ids: a v2 record still reads."""
    v2 = {
        "schema_version": 2, "id": "al_old", "kind": "smoke", "severity": "high",
        "camera_id": "c1", "location": {"lat": 20.0, "lon": 110.0}, "department": "fire",
        "started_at": "2026-01-01T00:00:00Z",
        "evidence": [{"key": "citysight:evidence:al_old", "boxes": [[1, 2, 3, 4]]}],
    }  # fmt: skip
    a = Alert.model_validate(v2)
    assert a.source == "camera" and a.reporter is None
    assert [(e.id, e.source) for e in a.evidence] == [("", "snapshot")]
    ev = AlertEvent.model_validate(
        {"alert_id": "al_old", "seq": 0, "from_state": None, "to_state": "raised", "actor": "rules"}
    )
    assert ev.action == "" and ev.evidence == []
    assert AlertKind("road_damage") is AlertKind.ROAD_DAMAGE
