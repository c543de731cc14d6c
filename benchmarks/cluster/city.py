"""The simulated city on the namespace cluster (run by ``citysight bench cluster``).

Two processes, each started inside a cluster host by :mod:`benchmarks.cluster.bench`:

``python -m benchmarks.cluster.city driver SPEC_JSON`` (in the head namespace, a Ray
driver): deploys the project's Serve application (:func:`serve_app.app.build_app`: the
FastAPI ingress with the WebSocket feed, and one ``RulesConsumer`` deployment per shard
group) with ``serve.run``, every replica constrained to ``serve_node`` hosts and a Serve
proxy on each of them (``0.0.0.0:8000`` in the host's namespace); the real
:class:`streams.supervisor.StreamSupervisor` assigns the cameras by consistent hashing to
camera-worker actors placed on ``stream_node`` hosts (SPREAD), and moves the cameras of a
dead worker to the living ones. Every client reaches Redis through Sentinel, alerts are
acknowledged once a replica holds them (``services.redis.alert_replicas``). It prints
``ready`` once the ingress answers, starts the cameras on ``go`` (stdin), prints a status
line (JSON) each second, and on ``stop`` a final line holding every acknowledged alert.

``python -m benchmarks.cluster.city subscribe WS_URLS TOKEN_FILE OUT`` (in the ``client``
namespace, outside Ray): a WebSocket subscriber of ``/ws`` on the first ingress address
(bearer token), moving to the next one when its connection drops and resuming with
``last_id``; alerts deduplicated by id; on SIGTERM writes what it received to ``OUT``.

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
import urllib.request
from typing import Any

import ray
import redis
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from benchmarks.city.producer import CameraSim, ProducerSpec
from benchmarks.city.scenario import Mix, city_config_dict
from citysight import keys, redisconn
from citysight.app.serve_config import INGRESS_SHARE, RULES_SHARE
from citysight.config import CameraConfig, CitysightConfig

logger = logging.getLogger(__name__)

LASTPUB = "bench:cluster:lastpub"
"""Hash camera id -> wall time of its last published frame (written by the camera workers)."""
STREAM_NODE = "stream_node"
SERVE_NODE = "serve_node"
HTTP_PORT = 8000
"""The Serve proxy's port on every serve host (each namespace has its own port space)."""
CLAIM_MIN_IDLE_MS = 8000
"""Idle time before a living consumer claims an entry: above a consumer's longest retry
cycle (5 s backoff, a 1 s ``WAIT``, a step), so a living consumer's entries are never taken."""
LEDGER = "bench-ledger"
RAY_NAMESPACE = "citysight-cluster-city"


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
    doc["services"]["rules"] = {"consumers": int(spec.get("consumers", 1))}
    doc["services"]["http"]["ingress_replicas"] = int(spec.get("ingress_replicas", 1))
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


class LedgerHook:
    """``on_batch`` of the Serve rules replicas: acknowledged alerts go to the :class:`Ledger`.

    Pickled into the replicas' init arguments; finds the named ledger actor when first
    called (a restarted replica finds it again).
    """

    def __init__(self) -> None:
        self._ledger: Any = None

    def __call__(self, frames: list[Any], alerts: list[Any], now: float) -> None:
        if not alerts:  # called after the acknowledgement (and the WAIT before it)
            return
        if self._ledger is None:
            self._ledger = ray.get_actor(LEDGER, namespace=RAY_NAMESPACE)
        self._ledger.add.remote([[a.id, a.camera_id, a.rule_id, a.subject] for a in alerts])

    def __getstate__(self) -> dict[str, Any]:
        return {}  # never pickle a handle: each replica looks the actor up itself

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._ledger = None


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


def rules_names(consumers: int) -> list[str]:
    """Serve deployment names of the rules consumers."""
    from serve_app.app import rules_deployment_name

    return [rules_deployment_name(i, consumers) for i in range(consumers)]


def _deploy_serve(spec: dict[str, Any], cfg: CitysightConfig, url: str) -> None:
    """The project's Serve app (ingress + rules consumers) on the ``serve_node`` hosts."""
    from ray import serve

    from serve_app.app import build_app

    serve.start(
        # a proxy on every node with a replica, listening on the node's own address
        http_options={"host": "0.0.0.0", "port": HTTP_PORT, "location": "EveryNode"},
        logging_config={"log_level": "WARNING"},
    )
    app = build_app(
        {
            "config": cfg.model_dump(mode="json"),
            "redis_url": url,
            "ingress_actor_options": {"resources": {SERVE_NODE: INGRESS_SHARE}},
            # more than half a host's serve_node: one rules consumer per serve host, so one
            # host's death takes one consumer and a living one of another group claims
            "rules_actor_options": {"num_cpus": 0, "resources": {SERVE_NODE: RULES_SHARE}},
            "consumer_options": {
                "claim_min_idle_ms": int(spec.get("claim_min_idle_ms", CLAIM_MIN_IDLE_MS)),
                "claim_interval_s": 1.0,
                # a blocking read longer than the cameras' publish period: a consumer is
                # nearly always inside one, so a host dying leaves what Redis delivered to it
                # pending (the case the claim path exists for)
                "block_ms": 1000,
                "on_batch": LedgerHook(),
            },
        }
    )
    serve.run(app, name="citysight", route_prefix="/", blocking=False)


def _healthy(ip: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"http://{ip}:{HTTP_PORT}/health", timeout=timeout_s) as resp:
            return int(resp.status) == 200
    except OSError:
        return False


def _rules_info(names: list[str]) -> dict[str, Any]:
    from ray import serve

    out: dict[str, Any] = {}
    for name in names:
        try:
            h = serve.get_deployment_handle(name, app_name="citysight")
            st = h.stats.remote().result(timeout_s=1.0)
            out[name] = {
                k: st.get(k)
                for k in ("node_ip", "consumer", "state", "started", "processed", "alerts",
                          "claimed", "claimed_peer", "not_replicated")
            }  # fmt: skip
        except Exception as exc:  # a dead replica: the handle times out
            out[name] = {"error": type(exc).__name__}
    return out


def _driver(spec: dict[str, Any]) -> int:
    from streams.supervisor import StreamSupervisor

    ray.init(
        address=os.environ["RAY_ADDRESS"],
        _node_ip_address=os.environ["CITYSIGHT_NODE_IP"],
        log_to_driver=False,
        configure_logging=False,
        namespace=RAY_NAMESPACE,
    )
    cfg = bench_config(spec)
    url = cfg.services.redis.connection_url()
    assert url is not None
    r = redisconn.connect(url, socket_timeout=3)
    pipe = r.pipeline()
    pipe.delete(keys.CAMERAS, LASTPUB)
    for cam in cfg.cameras:
        pipe.hset(keys.CAMERAS, cam.id, cam.model_dump_json())
    pipe.hset(keys.PRINCIPALS, mapping=dict(spec["principals"]))
    for shard in range(cfg.services.streams.shards):
        try:  # at 0 before any frame, so no consumer's first read can skip one
            r.xgroup_create(keys.detections_stream(shard), keys.RULES_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
    pipe.execute()
    index = {cam.id: i for i, cam in enumerate(cfg.cameras)}
    nodes = {n["NodeManagerAddress"]: n["NodeID"] for n in _alive_nodes()}
    head = NodeAffinitySchedulingStrategy(nodes[os.environ["CITYSIGHT_NODE_IP"]], soft=False)
    ledger = Ledger.options(  # type: ignore[attr-defined]
        name=LEDGER, scheduling_strategy=head
    ).remote()
    ray.get(ledger.summary.remote(), timeout=60)
    names = rules_names(cfg.services.rules.consumers)
    t0 = time.time()
    _deploy_serve(spec, cfg, url)
    t_end = time.monotonic() + 240
    # Serve runs a proxy on the head and on every node holding a replica
    while True:
        info = _rules_info(names)
        ips = [i.get("node_ip") for i in info.values()]
        ingress = sorted({os.environ["CITYSIGHT_NODE_IP"], *(ip for ip in ips if ip)})
        if all(ips) and all(_healthy(ip) for ip in ingress):
            break
        if time.monotonic() > t_end:
            raise TimeoutError(f"the Serve app did not come up: {info}, ingress {ingress}")
        time.sleep(0.5)
    deployed_s = time.time() - t0

    class Supervisor(StreamSupervisor):
        # the product's placement (services.streams.node_resource), simulated workers
        def _spawn(self) -> Any:
            return CameraWorker.options(  # type: ignore[attr-defined]
                **self._actor_options()
            ).remote(url, index, spec)

    stop = threading.Event()
    go = threading.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            if line.strip() == "go":
                go.set()
            if line.strip() == "stop":
                break
        go.set()
        stop.set()

    threading.Thread(target=read_stdin, daemon=True).start()
    print(
        json.dumps(
            {"ready": True, "t": time.time(), "serve_deployed_s": round(deployed_s, 1),
             "rules": info, "ingress_ips": ingress}
        ),
        flush=True,
    )  # fmt: skip
    go.wait()  # cameras start once the subscriber is connected
    sup = Supervisor(
        cfg.services.streams, url, infer_factory=_no_inference, ping_timeout_s=2.0,
        max_respawns=10,
    )  # fmt: skip
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
        status["rules"] = _rules_info(names)
        status["t_rules"] = time.time()  # pings and handle calls can take seconds each
        status["ledger"] = ray.get(ledger.summary.remote(), timeout=5.0)
        status["alive_nodes"] = sorted(n["NodeManagerAddress"] for n in _alive_nodes())
        status["t_nodes"] = time.time()
        print(json.dumps(status), flush=True)
    sup.stop()
    # the consumers acknowledge what is still pending before the ledger is read
    time.sleep(float(spec.get("drain_s", 3.0)))
    final = {
        "final": True,
        "acked": ray.get(ledger.all.remote(), timeout=30),
        "rules": _rules_info(names),
    }
    print(json.dumps(final), flush=True)
    from ray import serve

    serve.shutdown()  # type: ignore[no-untyped-call]  # unannotated in ray
    ray.shutdown()
    return 0


class _Feed:
    """What the WebSocket subscriber received (alerts deduplicated by id)."""

    def __init__(self) -> None:
        self.seen: dict[str, int] = {}
        self.latency_ms: list[list[float]] = []  # see take()
        self.last_id: str | None = None
        self.connects: list[dict[str, Any]] = []
        self.drops: list[dict[str, Any]] = []
        self.drops_total = 0

    def take(self, raw: str | bytes, now: float) -> None:
        msg = json.loads(raw)
        if msg.get("id"):
            self.last_id = str(msg["id"])  # the feed id to resume after
        if msg.get("type") != "alert":
            return
        a = msg["alert"]
        self.seen[a["id"]] = self.seen.get(a["id"], 0) + 1
        det = float(a.get("detected_at") or 0.0)
        raised = float(a.get("raised_at") or 0.0)
        if det > 0 and self.seen[a["id"]] == 1:
            # [receipt, detection → receipt, of it detection → written by the rules consumer]
            written = (raised - det) * 1000 if raised else -1.0
            self.latency_ms.append([now, (now - det) * 1000, written])


async def _ws_loop(urls: list[str], token: str, feed: _Feed, stop: Any) -> None:
    import asyncio

    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    i = 0
    while not stop.is_set():
        url = urls[i % len(urls)]
        query = f"?last_id={feed.last_id}" if feed.last_id else ""
        try:
            async with connect(
                url + query,
                additional_headers={"Authorization": f"Bearer {token}"},
                open_timeout=3,
                ping_interval=1.0,  # a hung ingress host is noticed within ~3 s
                ping_timeout=2.0,
                compression=None,
            ) as ws:
                feed.connects.append({"t": time.time(), "url": url, "last_id": feed.last_id})
                print(json.dumps({"connected": url, "t": time.time()}), flush=True)
                while not stop.is_set():
                    try:
                        raw = await asyncio.wait_for(ws.recv(), 0.5)
                    except TimeoutError:
                        continue
                    feed.take(raw, time.time())
        except (OSError, TimeoutError, WebSocketException) as exc:
            feed.drops_total += 1
            if len(feed.drops) < 20:  # at the end Serve stops first: refusals until SIGTERM
                feed.drops.append({"t": time.time(), "url": url, "error": type(exc).__name__})
            i += 1  # the next ingress address
            await asyncio.sleep(0.2)


def _subscribe(urls: str, token_file: str, out: str) -> int:
    """WebSocket subscriber on the ingress addresses (comma list) until SIGTERM."""
    import asyncio

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with open(token_file) as f:
        token = f.read().strip()
    feed = _Feed()
    asyncio.run(_ws_loop(urls.split(","), token, feed, stop))
    doc = {
        "alerts": len(feed.seen),
        "ids": sorted(feed.seen),
        "seen_twice": sum(1 for n in feed.seen.values() if n > 1),
        "latency_ms": feed.latency_ms,
        "connects": feed.connects,
        "drops": feed.drops,
        "drops_total": feed.drops_total,
    }
    with open(out, "w") as f:
        json.dump(doc, f)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``driver SPEC_JSON`` or ``subscribe WS_URLS TOKEN_FILE OUT``."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING)
    if args[:1] == ["driver"] and len(args) == 2:
        return _driver(json.loads(args[1]))
    if args[:1] == ["subscribe"] and len(args) == 4:
        return _subscribe(args[1], args[2], args[3])
    print(
        "usage: python -m benchmarks.cluster.city driver SPEC_JSON | "
        "subscribe WS_URLS TOKEN_FILE OUT"
    )
    return 2


if __name__ == "__main__":
    sys.exit(main())
