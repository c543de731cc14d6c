"""Audit log, plate reads, evidence redaction and the camera registry on a real Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
import numpy as np
import pytest
import redis

from citysight.config import CameraConfig, CitysightConfig
from citysight.contracts import Alert, AlertKind, EvidenceRef, Location, ObjectClass, Severity
from serve_app.store import AuditLog, CameraRegistry, EvidenceStore, PlateReads

CFG = CitysightConfig()


@pytest.fixture
def r(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def test_audit_chain(r: redis.Redis) -> None:
    log = AuditLog(r, CFG)
    for i in range(5):
        log.append(actor="alice", action="evidence:unredacted", target=f"al_{i}", reason="case")
    assert log.verify()
    recs = log.list(10)
    assert [x["target"] for x in recs] == [f"al_{i}" for i in reversed(range(5))]
    assert recs[0]["prev"] == recs[1]["hash"]
    # records cannot be edited in place; removing one breaks the chain
    r.xdel("citysight:audit", recs[2]["id"])
    assert not log.verify()


def test_plate_reads(r: redis.Redis) -> None:
    pr = PlateReads(r, CFG)
    # Read times within the retention (reads older than it are trimmed on write).
    pr.add_many(
        [
            ("ab-123", "c1", 100.0, 0.9),
            ("AB123", "c2", 200.0, 0.8),
            ("AB123", "c2", 200.0, 0.8),
            ("XY9", "c1", 150.0, 0.7),
        ],
        now=300.0,
    )
    reads = pr.query("AB 123", None, None, now=300.0)
    assert [(x["camera_id"], x["t"]) for x in reads] == [("c1", 100.0), ("c2", 200.0)]
    assert [x["camera_id"] for x in pr.query("AB123", 150, None, now=300.0)] == ["c2"]
    assert 0 < r.ttl("citysight:plates:AB123") <= CFG.retention.plate_read_ttl_s


def _alert(boxes, cls) -> Alert:
    return Alert(
        id="al_ev",
        kind=AlertKind.FACE,
        severity=Severity.LOW,
        camera_id="c",
        location=Location(lat=0, lon=0),
        department="d",
        started_at=datetime.now(UTC),
        evidence=[EvidenceRef(key="citysight:evidence:al_ev", boxes=boxes, class_ids=cls)],
    )


def test_evidence_blurs_faces_unless_unredacted(r: redis.Redis) -> None:
    yy, xx = np.mgrid[0:120, 0:160]
    checker = (((yy // 3) + (xx // 3)) % 2 * 255).astype(np.uint8)  # fine detail everywhere
    img = np.dstack([checker] * 3)
    jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    r.set("citysight:snap:c:1", jpeg)
    ev = EvidenceStore(r, CFG)
    assert ev.copy_snapshots({"al_ev": "citysight:snap:c:1", "al_gone": "citysight:snap:x"}) == 1
    alert = _alert(
        [[40, 30, 80, 90], [100, 10, 150, 60]], [int(ObjectClass.FACE), int(ObjectClass.FIRE)]
    )
    assert ev.get(alert, unredacted=True) == jpeg
    red = cv2.imdecode(np.frombuffer(ev.get(alert, unredacted=False), np.uint8), 1)
    face = (slice(35, 85), slice(45, 75))
    fire = (slice(15, 55), slice(105, 145))
    assert red[face].std() < 30  # detail destroyed
    assert red[fire].std() > 90  # detail kept (boxes of other classes are not blurred)
    assert 0 < r.ttl("citysight:evidence:al_ev") <= CFG.retention.evidence_ttl_s


def test_evidence_undecodable_is_withheld(r: redis.Redis) -> None:
    ev = EvidenceStore(r, CFG)
    ev.put("al_ev", b"not a jpeg")
    alert = _alert([], [])
    assert ev.get(alert, unredacted=False) is None
    assert ev.get(alert, unredacted=True) == b"not a jpeg"


def test_camera_registry(r: redis.Redis) -> None:
    reg = CameraRegistry(r)
    ps = r.pubsub()
    ps.subscribe("citysight:cameras:changed")
    ps.get_message(timeout=1)
    cam = CameraConfig(id="c1", url="rtsp://h/x", latitude=1, longitude=2)
    reg.put(cam)
    assert reg.get("c1") == cam and [c.id for c in reg.list()] == ["c1"]
    assert reg.delete("c1") and not reg.delete("c1") and reg.get("c1") is None
    msg = ps.get_message(timeout=1)
    assert msg and msg["data"] == b"c1"
    r.hset("citysight:camera-health", "c1", '{"state": "running"}')
    assert reg.health() == {"c1": {"state": "running"}}
