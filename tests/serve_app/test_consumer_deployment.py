"""RulesConsumer on real Ray Serve: starts consuming, hot-reloads rules via user_config."""

from __future__ import annotations

import time

import redis

from citysight.config import CitysightConfig
from citysight.contracts import FrameResult, ObjectClass
from citysight.keys import detections_stream

BASE = {
    "cameras": [{"id": "c1", "url": "rtsp://h/1", "latitude": 1, "longitude": 2}],
    "departments": [{"id": "fire"}],
    "routing": [{"kind": "*", "department": "fire"}],
    "rules": [{"id": "smoke_only", "type": "presence", "kind": "smoke", "classes": ["smoke"]}],
    "services": {"streams": {"shards": 1}},
}


def _publish(r: redis.Redis, start: int, n: int) -> None:
    for i in range(start, start + n):
        f = FrameResult(
            camera_id="c1",
            frame_time=time.time(),
            frame_no=i,
            width=10,
            height=10,
            boxes=[[1, 1, 5, 5]],
            scores=[0.9],
            class_ids=[int(ObjectClass.FIRE)],
        )
        r.xadd(detections_stream(0), {"d": f.to_msgpack()})


def _wait(pred, timeout: float = 20.0) -> bool:
    end = time.time() + timeout
    while time.time() < end:
        if pred():
            return True
        time.sleep(0.1)
    return False


def test_deploy_and_hot_reload(redis_url: str, ray_local: None) -> None:
    from ray import serve

    from serve_app.deployments.rules import RulesConsumer

    r = redis.Redis.from_url(redis_url)
    cfg = CitysightConfig.model_validate(BASE).model_dump(mode="json")
    handle = serve.run(
        RulesConsumer.bind(cfg, redis_url, None, None, {"block_ms": 20}),
        name="rules-reload",
        route_prefix=None,
    )
    try:
        _publish(r, 0, 5)
        assert _wait(lambda: handle.stats.remote().result()["processed"] >= 5)
        assert r.zcard("citysight:alerts:all") == 0  # fire is not a rule yet
        fire = {
            **BASE,
            "rules": [
                *BASE["rules"],
                {"id": "fire", "type": "presence", "kind": "fire", "classes": ["fire"]},
            ],
        }
        app = RulesConsumer.options(user_config={"config": fire})
        handle = serve.run(
            app.bind(cfg, redis_url, None, None, {"block_ms": 20}),
            name="rules-reload",
            route_prefix=None,
        )
        _publish(r, 5, 5)
        assert _wait(lambda: r.zcard("citysight:alerts:all") == 1)
        # The replaced replica may write "stopped" on its way out; the live one republishes
        # its state every second.
        assert _wait(lambda: b'"running"' in (r.hget("citysight:components", "rules") or b""))
    finally:
        serve.delete("rules-reload")


def test_check_health_and_reconfigure_without_ray(redis_url: str) -> None:
    import pytest

    from serve_app.deployments.rules import RulesConsumer

    cls = RulesConsumer.func_or_class  # the plain class behind the deployment
    cfg = CitysightConfig.model_validate(BASE).model_dump(mode="json")
    inst = cls(cfg, redis_url, [0], None, {"block_ms": 10})
    try:
        assert inst.consumer.name == "rules-0"
        inst.check_health()
        inst.reconfigure({"config": {**BASE, "rules": []}})  # no rules: the defaults
        assert {r.id for r in inst.consumer.engine.rules} >= {"fire", "smoke"}
        inst.reconfigure({})  # nothing to change
    finally:
        inst.consumer.stop()
    with pytest.raises(RuntimeError, match="not running"):
        inst.check_health()


def test_poison_entries_in_a_serve_replica(redis_url: str, ray_local: None) -> None:
    """Issue 11 in the deployment that runs it: ``n: inf`` and ``extra: [1]`` between good
    entries are dead-lettered, alerting and ``processed`` go on, ``rules`` stays truthful."""
    import json

    import msgpack
    from ray import serve

    from serve_app.deployments.rules import RulesConsumer

    r = redis.Redis.from_url(redis_url)
    fire = {
        **BASE,
        "rules": [{"id": "fire", "type": "presence", "kind": "fire", "classes": ["fire"]}],
    }
    cfg = CitysightConfig.model_validate(fire).model_dump(mode="json")
    opts = {"block_ms": 20, "max_deliveries": 2, "retry_interval_s": 0.1}
    handle = serve.run(
        RulesConsumer.bind(cfg, redis_url, None, None, opts), name="rules-poison", route_prefix=None
    )
    try:
        f = FrameResult(camera_id="c1", frame_time=time.time(), frame_no=0)
        base = msgpack.unpackb(f.to_msgpack(), raw=False)
        poison = [{**base, "n": float("inf")}, {**base, "extra": [1]}]
        _publish(r, 0, 2)
        for p in poison:
            r.xadd(detections_stream(0), {"d": msgpack.packb(p, use_bin_type=True)})
        _publish(r, 2, 3)  # fire in 3 frames after the poison: one alert
        assert _wait(lambda: handle.stats.remote().result()["dead"] == 2)
        assert _wait(lambda: handle.stats.remote().result()["processed"] == 7)
        assert _wait(lambda: r.zcard("citysight:alerts:all") == 1)
        assert r.xlen("citysight:detections:dead") == 2

        def rules() -> dict:
            return json.loads(r.hget("citysight:components", "rules") or b"{}")

        # Published once a second: wait for the status written after the dead-lettering.
        assert _wait(lambda: rules().get("detail", {}).get("dead") == 2), rules()
        assert rules()["state"] == "running" and rules()["detail"]["pending"] == 0
    finally:
        serve.delete("rules-poison")
