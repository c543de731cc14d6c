"""The simulated city on the namespace cluster (run by ``citysight bench cluster``).

Two processes, each started inside a cluster host by :mod:`benchmarks.cluster.bench`:

``python -m benchmarks.cluster.city driver SPEC_JSON`` (in the head namespace, a Ray
driver): the real :class:`streams.supervisor.StreamSupervisor` assigns the cameras by
consistent hashing to camera-worker actors placed on ``stream_node`` hosts (SPREAD), and
moves the cameras of a dead worker to the living ones; the real
:class:`serve_app.consumer.DetectionsConsumer` runs in an actor on a ``serve_node`` host
(restarted by Ray elsewhere when its node dies) with ``services.redis.alert_replicas``;
every client reaches Redis through Sentinel. Each second it prints a status line (JSON);
``stop`` on stdin ends it with a final line holding every acknowledged alert.

``python -m benchmarks.cluster.city subscribe URL OUT`` (in the ``client`` namespace,
outside Ray): reads the alert feed through Sentinel as the WebSocket hub does, and on
SIGTERM writes each alert's receipt latency to ``OUT``.

The camera workers simulate what a stream worker publishes (``FrameResult`` messages of
:class:`benchmarks.city.producer.CameraSim`, the city simulation's detection mix) without
decoding video: 2 shared cores cannot decode dozens of streams and run a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
import time
from typing import Any, cast

import ray
import redis
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from benchmarks.city.producer import CameraSim, ProducerSpec
from benchmarks.city.scenario import Mix, city_config_dict
from citysight import keys, redisconn
from citysight.config import CameraConfig, CitysightConfig
from citysight.keys import FEED_STREAM

logger = logging.getLogger(__name__)

LASTPUB = "bench:cluster:lastpub"
"""Hash camera id -> wall time of its last published frame (written by the camera workers)."""
STREAM_NODE = "stream_node"
SERVE_NODE = "serve_node"


def _node_ip() -> str:
    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]


def _alive_nodes() -> list[dict[str, Any]]:
    return [n for n in ray.nodes() if n["Alive"]]  # type: ignore[no-untyped-call]


def city_mix(rate_per_cam_h: float) -> Mix:
    """The city's mix with every alerting episode at ``rate_per_cam_h`` (a short run alerts)."""
    return Mix(
        fire_per_cam_h=rate_per_cam_h,
        smoke_per_cam_h=rate_per_cam_h,
        face_per_cam_h=rate_per_cam_h,
        hotlist_per_cam_h=rate_per_cam_h,
        vending_per_cam_h=0.0,
        episode_s=2.0,
    )


def bench_config(spec: dict[str, Any]) -> CitysightConfig:
    """The city's configuration on the cluster (Sentinel, replicated alerts)."""
    doc = city_config_dict(int(spec["cameras"]), http_port=8000, shards=int(spec["shards"]))
    doc["services"]["redis"] = {
        "sentinels": list(spec["sentinels"]),
        "master_name": spec["master"],
        "alert_replicas": int(spec["alert_replicas"]),
        "alert_wait_ms": int(spec["alert_wait_ms"]),
    }
    doc["services"]["streams"]["workers"] = int(spec["workers"])
    doc["services"]["streams"]["node_resource"] = STREAM_NODE
    return CitysightConfig.model_validate(doc)


@ray.remote(num_cpus=0)
class Ledger:
    """Alerts the rules consumer acknowledged (id -> camera, rule, subject); lives on the head."""

    def __init__(self) -> None:
        self.acked: dict[str, list[str]] = {}
        self.last_at = 0.0

    def add(self, items: list[list[str]]) -> None:
        """Record acknowledged alerts."""
        for item in items:
            self.acked[item[0]] = item[1:]
        self.last_at = time.time()

    def summary(self) -> dict[str, Any]:
        """Count and time of the last acknowledgement."""
        return {"acked": len(self.acked), "last_at": self.last_at}

    def all(self) -> dict[str, list[str]]:
        """Every acknowledged alert."""
        return dict(self.acked)


@ray.remote(num_cpus=0, max_restarts=-1, max_task_retries=-1)
class RulesHost:
    """The real rules consumer in an actor on a serve node."""

    def __init__(self, cfg_json: dict[str, Any], url: str, ledger: Any) -> None:
        from serve_app.consumer import DetectionsConsumer

        cfg = CitysightConfig.model_validate(cfg_json)
        (shards,) = cfg.services.rules_shard_groups()
        self.ledger = ledger
        self.started = time.time()
        # the same consumer name after a restart: it reads its own pending entries at once
        self.c = DetectionsConsumer(
            url,
            cfg,
            "rules-" + "-".join(str(s) for s in shards),
            shards,
            claim_min_idle_ms=5000,
            claim_interval_s=1.0,
            on_batch=self._on_batch,
        )
        self.c.start()

    def _on_batch(self, frames: list[Any], alerts: list[Any], now: float) -> None:
        if alerts:  # called after the acknowledgement (and the WAIT before it)
            self.ledger.add.remote([[a.id, a.camera_id, a.rule_id, a.subject] for a in alerts])

    def info(self) -> dict[str, Any]:
        """Where it runs and how it is doing."""
        return {
            "ip": _node_ip(),
            "started": self.started,
            "state": self.c.state,
            "error": self.c.error,
            "processed": self.c.stats["processed"],
            "alerts": self.c.stats["alerts"],
            "wait_ms": self.c.stats.get("wait_ms"),
            "not_replicated": self.c.stats.get("not_replicated", 0),
        }


@ray.remote(num_cpus=0, max_restarts=0)
class CameraWorker:
    """Publishes simulated frame results of its cameras (a stream worker's output)."""

    def __init__(self, url: str, index: dict[str, int], spec: dict[str, Any]) -> None:
        self.url = url
        self.index = index
        self.spec = spec
        self.mix = city_mix(float(spec["episodes_per_cam_h"]))
        self.r = redisconn.connect(url, socket_timeout=2, socket_connect_timeout=1)
        self.sims: dict[str, CameraSim] = {}
        self.lock = threading.Lock()
        self.errors = 0
        self.published = 0
        self._stop = threading.Event()
        threading.Thread(target=self._loop, daemon=True).start()

    def ping(self) -> str:
        """This worker's node address."""
        return _node_ip()

    def add_camera(self, cam: CameraConfig) -> None:
        """Start publishing ``cam``."""
        i = self.index[cam.id]
        n = int(self.spec["cameras"])
        sim = CameraSim(
            ProducerSpec(
                redis_url=self.url, cameras=n, start=i, step=n, fps=float(self.spec["fps"]),
                shards=int(self.spec["shards"]), duration_s=0.0, mix=self.mix, seed=i,
            )
        )  # fmt: skip
        with self.lock:
            self.sims[cam.id] = sim

    def remove_camera(self, camera_id: str) -> None:
        """Stop publishing a camera."""
        with self.lock:
            self.sims.pop(camera_id, None)

    def stats(self) -> dict[str, Any]:
        """Cameras, frames published, failed rounds."""
        return {"cameras": len(self.sims), "published": self.published, "errors": self.errors}

    def stop(self) -> None:
        """Stop publishing."""
        self._stop.set()

    def _loop(self) -> None:
        period = 1.0 / float(self.spec["fps"])
        nxt = time.monotonic()
        while not self._stop.is_set():
            nxt += period
            with self.lock:
                sims = list(self.sims.items())
            if sims:
                t = time.time()
                pipe = self.r.pipeline(transaction=False)
                for _, sim in sims:
                    pipe.xadd(sim.streams[0], {"d": sim.frame(0, t)})
                pipe.hset(LASTPUB, mapping=dict.fromkeys((c for c, _ in sims), t))
                try:
                    pipe.execute()
                    self.published += len(sims)
                except redis.RedisError:
                    self.errors += 1  # a failover: these frames are lost, as from a camera
            delay = nxt - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                nxt = time.monotonic()


def _no_inference() -> Any:
    raise RuntimeError("camera workers of the bench publish simulated results: no inference")


def _driver(spec: dict[str, Any]) -> int:
    from streams.supervisor import StreamSupervisor

    ray.init(
        address=os.environ["RAY_ADDRESS"],
        _node_ip_address=os.environ["CITYSIGHT_NODE_IP"],
        log_to_driver=False,
        configure_logging=False,
        namespace="citysight-cluster-city",
    )
    cfg = bench_config(spec)
    url = cfg.services.redis.connection_url()
    assert url is not None
    r = redisconn.connect(url, socket_timeout=3)
    pipe = r.pipeline()
    pipe.delete(keys.CAMERAS, LASTPUB)
    for cam in cfg.cameras:
        pipe.hset(keys.CAMERAS, cam.id, cam.model_dump_json())
    pipe.execute()
    index = {cam.id: i for i, cam in enumerate(cfg.cameras)}
    nodes = {n["NodeManagerAddress"]: n["NodeID"] for n in _alive_nodes()}
    head = NodeAffinitySchedulingStrategy(nodes[os.environ["CITYSIGHT_NODE_IP"]], soft=False)
    ledger = Ledger.options(scheduling_strategy=head).remote()  # type: ignore[attr-defined]
    rules_opts: dict[str, Any] = {"resources": {SERVE_NODE: 0.01}}
    if spec.get("rules_ip") in nodes:  # soft: restarted on another serve node when it dies
        rules_opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            nodes[spec["rules_ip"]], soft=True
        )
    rules = RulesHost.options(**rules_opts).remote(  # type: ignore[attr-defined]
        cfg.model_dump(mode="json"), url, ledger
    )
    ray.get(rules.info.remote(), timeout=120)

    class Supervisor(StreamSupervisor):
        # the product's placement (services.streams.node_resource), simulated workers
        def _spawn(self) -> Any:
            return CameraWorker.options(  # type: ignore[attr-defined]
                **self._actor_options()
            ).remote(url, index, spec)

    sup = Supervisor(
        cfg.services.streams, url, infer_factory=_no_inference, ping_timeout_s=2.0,
        max_respawns=10,
    )  # fmt: skip
    stop = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "stop":
                break
        stop.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    print(json.dumps({"ready": True, "t": time.time()}), flush=True)
    while not stop.wait(1.0):
        status: dict[str, Any] = {"t": time.time(), "moves": sup.moves, "respawns": sup.respawns}
        with sup._lock:
            workers = dict(sup.workers)
        where: dict[str, str | None] = {}
        for name, w in workers.items():
            try:
                where[name] = ray.get(w.ping.remote(), timeout=1.0)
            except Exception:
                where[name] = None
        status["workers"] = where
        status["assignments"] = {k: len(v) for k, v in sup.assignments().items()}
        try:
            status["rules"] = ray.get(rules.info.remote(), timeout=1.0)
        except Exception as exc:
            status["rules"] = {"error": type(exc).__name__}
        status["ledger"] = ray.get(ledger.summary.remote(), timeout=5.0)
        status["alive_nodes"] = sorted(n["NodeManagerAddress"] for n in _alive_nodes())
        print(json.dumps(status), flush=True)
    sup.stop()
    # the consumer acknowledges what is still pending before the ledger is read
    time.sleep(float(spec.get("drain_s", 3.0)))
    final = {"final": True, "acked": ray.get(ledger.all.remote(), timeout=30)}
    try:
        final["rules"] = ray.get(rules.info.remote(), timeout=5.0)
    except Exception as exc:
        final["rules"] = {"error": type(exc).__name__}
    ray.kill(rules)
    print(json.dumps(final), flush=True)
    ray.shutdown()
    return 0


def _subscribe(url: str, out: str) -> int:
    """Read the alert feed through Sentinel until SIGTERM; write receipts to ``out``."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    r = redisconn.connect(url, socket_timeout=3, socket_connect_timeout=1)
    last = "$"
    seen: dict[str, int] = {}
    latency_ms: list[list[float]] = []  # [receipt time, latency ms]
    errors = 0
    while not stop.is_set():
        try:
            reply = cast(
                "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                r.xread({FEED_STREAM: last}, count=500, block=500),
            )
        except redis.RedisError:
            errors += 1  # a failover: read again from the last id seen
            stop.wait(0.1)
            continue
        now = time.time()
        for _, entries in reply or []:
            for eid, fields in entries:
                last = eid.decode() if isinstance(eid, bytes) else str(eid)
                if fields.get(b"type") != b"alert":
                    continue
                d = json.loads(fields[b"d"])
                seen[d["id"]] = seen.get(d["id"], 0) + 1
                det = float(d.get("detected_at") or 0.0)
                if det > 0 and seen[d["id"]] == 1:
                    latency_ms.append([now, (now - det) * 1000])
    doc = {
        "alerts": len(seen),
        "seen_twice": sum(1 for n in seen.values() if n > 1),
        "latency_ms": latency_ms,
        "read_errors": errors,
    }
    with open(out, "w") as f:
        json.dump(doc, f)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``driver SPEC_JSON`` or ``subscribe URL OUT``."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING)
    if args[:1] == ["driver"] and len(args) == 2:
        return _driver(json.loads(args[1]))
    if args[:1] == ["subscribe"] and len(args) == 3:
        return _subscribe(args[1], args[2])
    print("usage: python -m benchmarks.cluster.city driver SPEC_JSON | subscribe URL OUT")
    return 2


if __name__ == "__main__":
    sys.exit(main())
