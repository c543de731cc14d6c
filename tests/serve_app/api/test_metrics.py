"""``GET /metrics`` on real state, and the shipped dashboard and alert rules checked against it.

The state is made by the real producers on a real Redis: a stream worker (real H.264 file,
the real ``make_infer`` with in-process ONNX Runtime detectors), a rules consumer (alerts, a
dead-lettered entry, an unconsumed backlog) and two ingress apps (a WebSocket subscriber on
one, the scrape on the other: any replica serves the city-wide view).
"""

from __future__ import annotations

import functools
import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from testkit import ROOT, Series, dashboard_queries, exposition_series, query_problems

from benchmarks.fanout.world import make_alert, seed_principals, token_of
from citysight import keys
from citysight.app.runtime import inference_component, make_infer, write_component
from citysight.config import CitysightConfig, InferenceService
from citysight.contracts import CameraStatus, shard_of
from citysight.keys import detections_stream, metrics_key
from citysight.metrics import metered_inference
from serve_app.consumer import DetectionsConsumer
from serve_app.http import create_api
from serve_app.metrics.fleet import read_fleet
from serve_app.store.alerts import AlertStore
from streams.testing.h264 import write_clip
from streams.worker import StreamWorker

DASHBOARD = ROOT / "infra" / "monitoring" / "grafana-dashboard.json"
ALERT_RULES = ROOT / "infra" / "monitoring" / "citysight-alerts.yml"
PROMETHEUS = ROOT / "infra" / "monitoring" / "prometheus.yml"
SHARDS = 2


def _wait(cond: Callable[[], bool], timeout_s: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.1)
    return cond()


def _config(clip: Path, missing: Path) -> CitysightConfig:
    return CitysightConfig.model_validate(
        {
            "cameras": [
                {
                    "id": "cam-run",
                    "url": str(clip),
                    "latitude": 20.0,
                    "longitude": 110.0,
                    "detectors": ["fire_smoke"],
                    "profile": {
                        "loop": True,
                        "analytics_fps": 5,
                        "input_width": 160,
                        "input_height": 120,
                    },
                },
                {"id": "cam-gone", "url": str(missing), "latitude": 20.1, "longitude": 110.1},
            ],
            "departments": [{"id": "fire"}, {"id": "police"}, {"id": "enforcement"}],
            "routing": [{"kind": "*", "department": "fire"}],
            "services": {"streams": {"shards": SHARDS, "max_batch": 4, "push_timeout_ms": 20}},
        }
    )


@dataclass
class World:
    """What the module built: the config, a Redis client, the scraped text and series."""

    cfg: CitysightConfig
    r: redis.Redis
    url: str
    text: str
    series: Series


def _value(series: Series, text: str, name: str, **labels: str) -> float:
    """The value of the one sample of ``name`` with ``labels`` (read from the text)."""
    from prometheus_client.parser import text_string_to_metric_families

    hits = [
        s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(hits) == 1, (name, labels, hits, series.get(name))
    return float(hits[0])


@pytest.fixture(scope="module")
def world(redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("metrics")
    url = redis_server.url
    r = redis.Redis.from_url(url)
    r.flushall()
    seed_principals(r)
    cfg = _config(write_clip(tmp / "cam.mp4", seconds=2.0), tmp / "missing.mp4")
    # Two ingress replicas of one app: subscriber on B, scrapes on A.
    app_a = create_api(cfg, url, metrics_publish_s=0.2)
    app_b = create_api(cfg, url, metrics_publish_s=0.2)
    models = tmp / "no-models"  # detectors run on their fallback tiers
    # What Runtime._start_streams gives the stream workers.
    infer_factory = functools.partial(
        metered_inference,
        functools.partial(
            make_infer, InferenceService(models_dir=str(models)).model_dump_json(), str(models)
        ),
        url,
    )
    worker = StreamWorker(cfg.cameras, cfg.services.streams, url, infer_factory)
    consumer = DetectionsConsumer(url, cfg, "rules-0", range(SHARDS), block_ms=5, max_deliveries=1)
    try:
        with TestClient(app_a) as a, TestClient(app_b) as b:
            consumer.setup()
            # The inference snapshot is refreshed every 5 s: wait for one with batches.
            assert _wait(lambda: _inference_batches(r) > 0), "no inference snapshot"
            assert _wait(lambda: _camera_state(r, "cam-gone") == "failed")
            assert _camera_state(r, "cam-run") == "running"
            # The runtime writes the inference component from every worker's stats.
            state, detail = inference_component({"w0": worker.stats()}, {}, None)
            write_component(r, "inference", state, detail)
            # A poison entry (max_deliveries=1: dead-lettered at once) among real detections.
            r.xadd(detections_stream(0), {"d": b"\x93not a frame"})
            for _ in range(20):
                consumer.step()
            assert r.xlen(keys.DEAD_LETTER_STREAM) >= 1
            # An alert through the real store (the synthetic clip shows no fire): both
            # replicas read it from the feed.
            AlertStore(r, cfg).save_new([make_alert(1, "fire")])
            for app in (app_a, app_b):
                m = app.state.ctx.metrics
                assert _wait(lambda m=m: m.alerts_total["fire"] >= 1, 10), dict(m.alerts_total)
            # A backlog the consumer has not read yet: entries on the worker's shard after the
            # consumer's last step.
            frozen = shard_of("cam-run", SHARDS)
            r.xadd(detections_stream(frozen), {"d": b"later"})
            r.xadd(detections_stream(frozen), {"d": b"later"})
            with b.websocket_connect(
                "/ws", headers={"Authorization": f"Bearer {token_of('admin')}"}
            ):
                assert _wait(lambda: _replica_clients(r) == 1, 10), "replica B did not publish"
                res = a.get("/metrics")
            assert res.status_code == 200
            assert res.headers["content-type"].startswith("text/plain; version=0.0.4")
            yield World(cfg, r, url, res.text, exposition_series(res.text))
    finally:
        worker.stop()
        consumer.r.close()
        r.close()


def _inference_batches(r: redis.Redis) -> int:
    snaps = r.hgetall(metrics_key("inference"))
    return max((json.loads(v)["batches"] for v in snaps.values()), default=0)


def _camera_state(r: redis.Redis, cid: str) -> str | None:
    raw = r.hget(keys.CAMERA_HEALTH, cid)
    return CameraStatus.model_validate_json(raw).state.value if raw else None


def _replica_clients(r: redis.Redis) -> int:
    snaps = r.hgetall(metrics_key("ingress"))
    return sum(json.loads(v)["ws_clients"] for v in snaps.values())


# --------------------------------------------------------------------------- the exposition


def test_city_wide_families_from_real_state(world: World) -> None:
    """Cameras, detectors, rules, streams and both replicas, scraped from replica A."""
    v = functools.partial(_value, world.series, world.text)
    assert v("citysight_redis_up") == 1
    # Camera states: one 1 per camera, across every state.
    assert v("citysight_camera_state", camera="cam-gone", state="failed") == 1
    assert v("citysight_camera_state", camera="cam-gone", state="running") == 0
    states = {s["state"] for s in world.series["citysight_camera_state"]}
    assert {"starting", "running", "stalled", "offline", "failed", "stopped"} <= states
    assert v("citysight_cameras", state="failed") == 1
    assert v("citysight_camera_frames_in_total", camera="cam-run") > 0
    assert v("citysight_camera_frames_out_total", camera="cam-run") > 0
    assert "cam-run" in {s["camera"] for s in world.series["citysight_camera_decode_ms"]}
    # Detectors: the worker's snapshot.
    (inst,) = {s["instance"] for s in world.series["citysight_inference_up"]}
    assert v("citysight_inference_up", instance=inst, backend="onnxruntime") == 1
    assert v("citysight_inference_batches_total", instance=inst) > 0
    assert v("citysight_inference_frames_analysed_total", instance=inst) > 0
    assert v("citysight_inference_batch_ms_count", instance=inst) == v(
        "citysight_inference_batches_total", instance=inst
    )
    assert v("citysight_inference_batch_ms_bucket", instance=inst, le="+Inf") > 0
    # Rules: processed, dead letters, the unconsumed backlog and its age.
    assert v("citysight_rules_processed_total", consumer="rules-0") > 0
    assert v("citysight_rules_dead_lettered_total", consumer="rules-0") >= 1
    assert v("citysight_dead_letter_entries") >= 1
    frozen = str(shard_of("cam-run", SHARDS))
    assert v("citysight_rules_backlog_entries", shard=frozen) >= 2
    assert v("citysight_rules_backlog_age_seconds", shard=frozen) > 0
    # Components (what /health reads).
    assert v("citysight_component_state", component="rules", state="running") == 1
    assert v("citysight_component_state", component="inference", state="running") == 1
    # Ingress: replica B's subscriber is visible in A's scrape.
    assert sum(v("citysight_ws_clients", replica=s["replica"])
               for s in world.series["citysight_ws_clients"]) == 1  # fmt: skip
    assert len(world.series["citysight_ws_clients"]) == 2
    kinds = {s["kind"] for s in world.series["citysight_alerts_total"]}
    assert {"fire", "smoke", "face", "plate", "vending", "camera_offline"} <= kinds
    fire = [v("citysight_alerts_total", replica=s["replica"], kind="fire")
            for s in world.series["citysight_ws_clients"]]  # fmt: skip
    assert fire[0] == fire[1] >= 1  # every replica reads the whole feed


def test_prometheus_naming(world: World) -> None:
    """Counters end in _total, no family is written twice, units are in the names."""
    types: dict[str, str] = {}
    for line in world.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            assert name not in types, f"{name} written twice"
            types[name] = kind
    assert all(n.startswith("citysight_") for n in types)
    for name, kind in types.items():
        assert (kind == "counter") == name.endswith("_total"), name
    timed = [n for n in types if re.search(r"_(latency|duration|age|lag)(_|$)", n)]
    assert all(n.endswith(("_ms", "_seconds")) for n in timed), timed


# --------------------------------------------------------------------------- the dashboard


def test_dashboard_queries_only_what_metrics_exports(world: World) -> None:
    """Every query of the shipped dashboard names exported citysight_* series and labels."""
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    assert len(queries) >= 20
    problems = [
        f"{title!r}: {expr}: {p}"
        for title, expr in queries
        for p in query_problems(expr, world.series, prefixes=("citysight_",))
    ]
    assert problems == []
    used = {n for _, e in queries for n in world.series if n in e}
    for family in (
        "citysight_camera_state",
        "citysight_camera_frames_in_total",
        "citysight_camera_frames_dropped_total",
        "citysight_camera_decode_ms",
        "citysight_inference_up",
        "citysight_inference_batch_ms_bucket",
        "citysight_rules_backlog_age_seconds",
        "citysight_rules_processed_total",
        "citysight_dead_letter_entries",
        "citysight_alerts_total",
        "citysight_ws_clients",
    ):
        assert family in used, f"no panel shows {family}"


def test_alert_rules_query_only_what_metrics_exports(world: World) -> None:
    """The shipped Prometheus alert rules are valid and name only exported series."""
    prom = yaml.safe_load(PROMETHEUS.read_text())
    assert ALERT_RULES.name in prom["rule_files"]
    doc = yaml.safe_load(ALERT_RULES.read_text())
    rules = [rule for group in doc["groups"] for rule in group["rules"]]
    assert len(rules) >= 5
    for rule in rules:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert rule["annotations"]["summary"]
        assert query_problems(rule["expr"], world.series, ("citysight_",)) == [], rule["alert"]


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        # What the dashboard queried before this exporter existed.
        ("sum by (component) (rate(citysight_frames_total[1m]))", "not exported"),
        ("sum by (reason) (rate(citysight_frames_dropped_total[1m]))", "not exported"),
        ("max(citysight_rules_lag_ms{shard='0'})", "no label 'shard'"),
        ('citysight_camera_state{state="ofline"}', "matches no exported sample"),
        ("sum by (model) (citysight_inference_up)", "grouping by 'model'"),
        ("sum(rate(citysight_camera_frames_in_total[1m])", "does not parse"),
    ],
)
def test_query_check_catches_bad_queries(world: World, expr: str, problem: str) -> None:
    assert any(problem in p for p in query_problems(expr, world.series, ("citysight_",)))


# --------------------------------------------------------------------------- cost and failure


class _CountingConnection(redis.Connection):
    round_trips = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        type(self).round_trips += 1
        super().send_packed_command(command, check_health)


def test_scrape_cost_does_not_grow_with_cameras(world: World) -> None:
    """Round trips and commands per scrape are the same for 2 and 502 cameras."""
    pool = redis.ConnectionPool.from_url(world.url, connection_class=_CountingConnection)
    r = redis.Redis(connection_pool=pool)
    try:
        r.ping()

        def cost() -> tuple[int, int]:
            before = _CountingConnection.round_trips
            st = read_fleet(r, SHARDS)
            return _CountingConnection.round_trips - before, st.commands

        small = cost()
        extra = {
            f"sim-{i}": CameraStatus(camera_id=f"sim-{i}", state="running") for i in range(500)
        }
        world.r.hset(keys.CAMERA_HEALTH, mapping={k: s.model_dump_json() for k, s in extra.items()})
        try:
            assert len(read_fleet(r, SHARDS).cameras) == 502
            assert cost() == small
            assert small[0] <= 2
        finally:
            world.r.hdel(keys.CAMERA_HEALTH, *extra)
    finally:
        r.close()


def test_metrics_without_redis_still_answers(world: World) -> None:
    """Redis unreachable: 200 with citysight_redis_up 0 and the replica's own families."""
    from citysight.app.services.redis_server import free_port

    app = create_api(world.cfg, f"redis://127.0.0.1:{free_port()}/0")
    with TestClient(app) as c:
        res = c.get("/metrics")
    assert res.status_code == 200
    series = exposition_series(res.text)
    assert _value(series, res.text, "citysight_redis_up") == 0
    assert "citysight_ws_clients" in series and "citysight_ws_delivery_ms_count" in series
