"""Per-instance metric snapshots (citysight.metrics) on a real Redis."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import redis

from citysight.keys import metrics_key
from citysight.metrics import Histogram, InferenceMeter, MeteredInference, publish_snapshot


class _Detectors:
    """Stand-in for a backend: drops every third frame, fails on an empty batch."""

    def __init__(self) -> None:
        self.ready = True

    def __call__(self, batch: list[int]) -> list[int]:
        if not batch:
            raise RuntimeError("empty batch")
        return [f for i, f in enumerate(batch) if i % 3 != 2]

        self.closed = False

    def health(self) -> dict[str, Any]:
        state = "running" if self.ready else "down"
        return {"backend": "triton", "ready": self.ready, "state": state, "recoveries": 2}

    def close(self) -> None:
        self.closed = True


def _snapshot(r: redis.Redis, instance: str) -> dict[str, Any]:
    raw = r.hget(metrics_key("inference"), instance)
    assert raw is not None
    return json.loads(raw)


def test_metered_inference_counts_publishes_and_forwards(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    inner = _Detectors()
    m = MeteredInference(inner, redis_url, period_s=0.1)
    try:
        assert m([1, 2, 3, 4, 5, 6]) == [1, 2, 4, 5]
        with pytest.raises(RuntimeError):
            m([])
        assert m.health()["recoveries"] == 2  # attributes are the inner callable's
        time.sleep(0.35)
        snap = _snapshot(r, m.instance)
        assert snap["batches"] == 2 and snap["errors"] == 1
        assert (snap["frames_in"], snap["frames_ok"], snap["frames_dropped"]) == (6, 4, 2)
        assert snap["batch_ms"]["count"] == 2 and sum(snap["batch_ms"]["counts"]) == 2
        assert snap["up"] is True and snap["backend"] == "triton" and snap["recoveries"] == 2
        # No batches at all: the state is still published (detectors down).
        inner.ready = False
        time.sleep(0.35)
        assert _snapshot(r, m.instance)["up"] is False
        assert time.time() - _snapshot(r, m.instance)["updated_at"] < 1
    finally:
        m.close()
    assert r.hget(metrics_key("inference"), m.instance) is None
    assert inner.closed  # the worker's close reaches the client (its shared memory)
    r.close()


def test_snapshot_keys_and_histogram() -> None:
    with pytest.raises(ValueError, match="unknown metrics role"):
        metrics_key("gpu")
    h = Histogram((1, 10))
    for v in (0.5, 1, 5, 50):
        h.observe(v)
    assert h.to_dict() == {"buckets": [1, 10], "counts": [2, 1, 1], "sum": 56.5, "count": 4}
    meter = InferenceMeter()
    meter.record(4, 9, 3.0)  # a backend can never answer more frames than it was given
    assert meter.snapshot()["frames_ok"] == 4 and meter.snapshot()["up"] is False


def test_publish_snapshot_through_a_pipeline(redis_url: str) -> None:
    r = redis.Redis.from_url(redis_url)
    pipe = r.pipeline(transaction=False)
    publish_snapshot(pipe, "rules", "rules-0", {"processed": 3})
    pipe.execute()
    doc = json.loads(r.hget(metrics_key("rules"), "rules-0"))
    assert doc["processed"] == 3 and doc["updated_at"] > 0
    r.close()
