"""``citysight bench cluster``: the simulated city on a namespace cluster, one fault at a time.

As root. Brings up a cluster (:mod:`benchmarks.cluster.harness`), runs the city on it
(:mod:`benchmarks.cluster.city`: camera workers on stream nodes, the real stream supervisor
and rules consumer, a feed subscriber in the ``client`` namespace, every client through
Sentinel, alerts acknowledged only once a replica holds them), then injects, one after the
other with a settle in between:

* ``stream_node``: SIGKILL a stream node. ``detected_s``: the supervisor moved its cameras
  (its workers are gone from the assignment); ``recovery_s``: every camera published again.
* ``serve_node``: the serve host (not the head) running one of the two rules-consumer
  replicas (Ray Serve, ``serve_node`` hosts) and the ingress the WebSocket subscriber is
  connected to hangs for ``--freeze`` seconds (SIGSTOP: its consumer holds the entries
  Redis delivered to its blocked read, as a host dying mid-batch does), then dies
  (SIGKILL). ``detected_s``: Ray reports the node dead; ``claimed_s``: the dead consumer's
  pending count reached 0 (``claimed_by_other``: entries the living replica of the other
  shard group took over with ``XAUTOCLAIM``); ``restarted_s``: Serve's replacement replica
  (same consumer name) processing again, on a spare serve host or, with none, on the
  restored one; ``recovery_s``: the later of the two; ``subscriber_reconnect_s``: the
  subscriber receiving again through another ingress, resumed with ``last_id``.
* ``redis_primary``: SIGKILL the Redis primary. ``detected_s``: Sentinel's
  ``+switch-master``; ``recovery_s``: every camera published again (writes resumed);
  ``alerts_recovery_s``: an alert acknowledged again (needs a replica: the old primary is
  restored as one, as an operator or a StatefulSet would).

Every fault reports ``lost`` (acknowledged alerts missing from Redis at the end) and
``duplicates`` (alerts stored twice for one camera, rule and subject); both must be 0.
"""

from __future__ import annotations

import argparse
import ipaddress
import itertools
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import redis

from benchmarks.city.scenario import principals
from benchmarks.cluster import netns, redis_ha, sustain
from benchmarks.cluster.city import HTTP_PORT, LASTPUB, bench_config
from benchmarks.cluster.harness import Cluster, ClusterError
from benchmarks.cluster.spec import ALERT_REPLICAS, ALERT_WAIT_MS, MASTER_NAME, ClusterSpec
from benchmarks.common.stats import latency_summary
from citysight import keys

logger = logging.getLogger(__name__)

FAULTS = ("stream_node", "serve_node", "redis_primary")
RESULTS = Path(__file__).resolve().parents[1] / "results" / "cluster.json"


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    ap = argparse.ArgumentParser(prog="citysight bench cluster", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument(
        "--nodes", type=int, default=4,
        help="Ray nodes: the head, the serve nodes, the rest stream nodes",
    )  # fmt: skip
    ap.add_argument(
        "--serve-nodes",
        type=int,
        default=-1,
        help="serve nodes besides the head (default: 1 from --nodes 4 on, else 0)",
    )
    ap.add_argument(
        "--freeze",
        type=float,
        default=1.0,
        help="seconds the serve_node fault's host hangs before it dies",
    )
    ap.add_argument("--cameras", type=int, default=24)
    ap.add_argument("--fps", type=float, default=2.0, help="frame results per camera per second")
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--workers", type=int, default=0, help="camera workers (0: 2 per stream node)")
    ap.add_argument("--episodes", type=float, default=120.0,
                    help="alerting episodes per camera per hour, each kind")  # fmt: skip
    ap.add_argument("--alert-replicas", type=int, default=ALERT_REPLICAS)
    ap.add_argument("--warmup", type=float, default=15.0, help="seconds before the first fault")
    ap.add_argument("--settle", type=float, default=15.0, help="seconds between faults")
    ap.add_argument("--faults", default=",".join(FAULTS), help=f"comma list of {FAULTS}")
    ap.add_argument("--timeout", type=float, default=60.0, help="per-fault recovery limit")
    ap.add_argument("--prefix", default="cscb")
    ap.add_argument("--subnet", default="10.213.60.0/24")
    ap.add_argument("--out", default=str(RESULTS), help="results JSON ('' to skip)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    sustain.add_arguments(ap)
    return ap


class Watch:
    """Reads the city driver's status lines in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []
        self.ready_doc: dict[str, Any] = {}
        self.final: dict[str, Any] | None = None
        self.ready = threading.Event()
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if not line.startswith("{"):
                continue
            doc = json.loads(line)
            with self.cond:
                if doc.get("ready"):
                    self.ready_doc = doc
                    self.ready.set()
                elif doc.get("final"):
                    self.final = doc
                else:
                    self.lines.append(doc)
                self.cond.notify_all()

    def latest(self) -> dict[str, Any]:
        """The last status line (``{}`` before the first)."""
        with self.cond:
            return self.lines[-1] if self.lines else {}

    def wait_for(
        self, pred: Any, timeout_s: float, what: str, since: float | None = None
    ) -> dict[str, Any]:
        """First status line after now (or stamped at ``since`` or later) where ``pred`` holds."""
        t_end = time.monotonic() + timeout_s
        with self.cond:
            start = len(self.lines)
            if since is not None:
                start = next((i for i, d in enumerate(self.lines) if d["t"] >= since), start)
            while True:
                for doc in self.lines[start:]:
                    if pred(doc):
                        return doc
                start = len(self.lines)
                left = t_end - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise TimeoutError(f"{what} not seen within {timeout_s:.0f} s")
                self.cond.wait(min(left, 1.0))


def _master(spec: ClusterSpec) -> redis.Redis:
    s = redis_ha.sentinel_client(spec)
    return s.master_for(  # type: ignore[no-any-return, no-untyped-call]
        MASTER_NAME, socket_timeout=1, socket_connect_timeout=0.5
    )


def _all_published_after(spec: ClusterSpec, t: float, cameras: int) -> bool:
    try:
        pub = _master(spec).hgetall(LASTPUB)
    except redis.RedisError:
        return False
    return len(pub) >= cameras and all(float(v) > t for v in pub.values())


def _wait(pred: Any, timeout_s: float, what: str, interval_s: float = 0.1) -> float:
    t_end = time.monotonic() + timeout_s
    while not pred():
        if time.monotonic() > t_end:
            raise TimeoutError(f"{what} not within {timeout_s:.0f} s")
        time.sleep(interval_s)
    return time.time()


def _host_of(spec: ClusterSpec, ip: str | None) -> str | None:
    return next((h.name for h in spec.hosts if h.ip == ip), None)


def _restore(c: Cluster, name: str) -> bool | str:
    """Restart a killed host for the next fault; the measurement stands either way."""
    try:
        c.restore_node(name)
        return True
    except (ClusterError, subprocess.TimeoutExpired) as exc:
        logger.warning("restoring %s failed: %s", name, str(exc)[-300:])
        return str(exc).strip().splitlines()[-1][:200]


def _fault_stream_node(c: Cluster, w: Watch, args: argparse.Namespace) -> dict[str, Any]:
    st = w.latest()
    stream_ips = {h.ip: h.name for h in c.spec.hosts if "stream_node" in h.resources}
    per_ip: dict[str, int] = {}
    for name, ip in st["workers"].items():
        if ip in stream_ips:
            per_ip[ip] = per_ip.get(ip, 0) + st["assignments"].get(name, 0)
    victim_ip = max(per_ip, key=lambda ip: per_ip[ip])
    victim = stream_ips[victim_ip]
    moves = st["moves"]
    t_kill = c.kill_node(victim)
    # the supervisor found the node's workers dead and moved their cameras to survivors
    seen = w.wait_for(
        lambda d: d["moves"] > moves, args.timeout, "the supervisor moving the cameras"
    )
    t_ok = _wait(
        lambda: _all_published_after(c.spec, t_kill, args.cameras),
        args.timeout,
        "every camera publishing again",
    )
    restored = _restore(c, victim)
    return {
        "fault": "stream_node",
        "killed_at": t_kill,
        "restored": restored,
        "host": victim,
        "cameras_moved": per_ip[victim_ip],
        "detected_s": round(seen["t"] - t_kill, 2),
        "recovery_s": round(t_ok - t_kill, 2),
    }


def consumer_pending(spec: ClusterSpec, shards: int) -> dict[str, int]:
    """Pending (delivered, unacknowledged) detections per rules consumer, every shard."""
    r = _master(spec)
    out: dict[str, int] = {}
    for s in range(shards):
        info = r.xpending(keys.detections_stream(s), keys.RULES_GROUP)
        for c in info.get("consumers") or []:
            name = keys.text(c["name"]) or ""
            out[name] = out.get(name, 0) + int(c["pending"])
    return out


def _fault_serve_node(c: Cluster, w: Watch, args: argparse.Namespace) -> dict[str, Any]:
    st = w.latest()
    serve_ips = {h.ip: h.name for h in c.spec.hosts if "serve_node" in h.resources}
    rules = {d: i for d, i in st["rules"].items() if "error" not in i}
    head_ip = c.spec.host("head").ip
    on_serve = [
        d for d, i in rules.items() if i["node_ip"] in serve_ips and i["node_ip"] != head_ip
    ]
    if not on_serve or len(rules) < 2:
        raise ClusterError(f"need two rules replicas, one on a serve node (not the head): {rules}")
    # the lowest address: the host the subscriber connected to first (see run())
    dep = min(on_serve, key=lambda d: ipaddress.ip_address(rules[d]["node_ip"]))
    victim_ip = rules[dep]["node_ip"]
    victim = serve_ips[victim_ip]
    dead_name = rules[dep]["consumer"]
    others = {d: i for d, i in rules.items() if d != dep}
    claimed_before = sum(int(i.get("claimed_peer") or 0) for i in others.values())
    spare = len(serve_ips) > len(rules)
    acked_before = st["ledger"]["acked"]
    # a host that hangs mid-batch, then dies: its blocked read keeps what Redis delivered
    netns.kill_pids(netns.ns_pids(c.spec.ns(victim)), signal.SIGSTOP)
    time.sleep(args.freeze)
    pending_at_kill = consumer_pending(c.spec, args.shards).get(dead_name, 0)
    t_kill = c.kill_node(victim)
    t_claimed = _wait(
        lambda: consumer_pending(c.spec, args.shards).get(dead_name, 0) == 0,
        args.timeout,
        f"consumer {dead_name}'s pending entries claimed",
        interval_s=0.1,
    )
    # status lines stamped from the kill on (the claim wait above took seconds)
    dead = w.wait_for(
        lambda d: victim_ip not in d["alive_nodes"], args.timeout, "node dead", since=t_kill
    )
    after = w.wait_for(lambda d: d["t"] > t_claimed, 10, "a status line after the claim")
    claimed_peer = (
        sum(int(after["rules"].get(d, {}).get("claimed_peer") or 0) for d in others)
        - claimed_before
    )

    def restarted(d: dict[str, Any]) -> bool:  # a new replica, set up and reading its shards
        i = d["rules"].get(dep, {})
        return bool(i.get("started") and i["started"] > t_kill and i.get("state") == "running")

    restored: bool | str = False
    if not spare:  # no other serve host has room: the replica waits for its host's return
        restored = _restore(c, victim)
    back = w.wait_for(restarted, args.timeout + 120, f"Serve restarting {dep}", since=t_kill)
    if spare:
        restored = _restore(c, victim)
    t_back = float(back.get("t_rules", back["t"]))
    return {
        "fault": "serve_node",
        "restored": restored,
        "host": victim,
        "consumer": dead_name,
        "freeze_s": args.freeze,
        "pending_at_kill": pending_at_kill,
        "claimed_by_other": claimed_peer,
        "rescheduled_to": back["rules"][dep]["node_ip"],
        "spare_serve_host": spare,
        "acked_before": acked_before,
        "killed_at": t_kill,
        "detected_s": round(dead.get("t_nodes", dead["t"]) - t_kill, 2),
        "claimed_s": round(t_claimed - t_kill, 2),
        "restarted_s": round(t_back - t_kill, 2),
        "recovery_s": round(max(t_claimed, t_back) - t_kill, 2),
    }


def _fault_redis_primary(c: Cluster, w: Watch, args: argparse.Namespace) -> dict[str, Any]:
    with redis_ha.SentinelEvents(c.spec) as events:
        old, t_kill = c.kill_redis_primary()
        t_pub = _wait(
            lambda: _all_published_after(c.spec, t_kill, args.cameras),
            args.timeout,
            "every camera publishing after the failover",
        )
        t_wait = time.monotonic() + 5.0
        while "+switch-master" not in events.seen and time.monotonic() < t_wait:
            time.sleep(0.02)
    switched = events.seen.get("+switch-master")
    # WAIT needs a replica: the old primary comes back as one
    c.restore_node(old.name)
    t_restored = time.time()
    acked = w.latest()["ledger"]["acked"]
    back = w.wait_for(
        lambda d: d["ledger"]["last_at"] > t_kill and d["ledger"]["acked"] > acked,
        args.timeout,
        "an alert acknowledged after the failover",
    )
    return {
        "fault": "redis_primary",
        "killed_at": t_kill,
        "host": old.name,
        "promoted": c.redis_primary().name,
        "detected_s": round(switched - t_kill, 2) if switched else None,
        "recovery_s": round(t_pub - t_kill, 2),
        "replica_restored_s": round(t_restored - t_kill, 2),
        "alerts_recovery_s": round(back["ledger"]["last_at"] - t_kill, 2),
    }


FAULT_FUNCS = {
    "stream_node": _fault_stream_node,
    "serve_node": _fault_serve_node,
    "redis_primary": _fault_redis_primary,
}


def _audit(
    spec: ClusterSpec, acked: dict[str, list[str]], cooldown_s: dict[str, float]
) -> dict[str, Any]:
    """Acknowledged alerts missing from Redis, and duplicates.

    A duplicate is a second alert for one camera, rule and subject triggered within the
    rule's cooldown of the first (what the engine never raises; a redelivery or a lost
    cooldown could). Alerts are stored by a deterministic id, so a redelivered detection
    cannot store one twice under the same id.
    """
    r = _master(spec)
    ids = [keys.text(x) or "" for x in cast("list[bytes]", r.zrange(keys.ALERTS_ALL, 0, -1))]
    bodies = r.mget([keys.alert_key(i) for i in ids]) if ids else []
    stored: dict[str, dict[str, Any]] = {}
    for i, body in zip(ids, bodies, strict=True):
        if body is not None:
            stored[i] = json.loads(body)
    lost = sorted(set(acked) - set(stored))
    by: dict[tuple[str, str, str], list[float]] = {}
    for d in stored.values():
        # the cooldown counts from the triggering frame (detected_at), not the window start:
        # two episodes' windows can start less than a cooldown apart when their triggers don't
        t = float(d.get("detected_at") or 0) or datetime.fromisoformat(d["started_at"]).timestamp()
        by.setdefault((d["camera_id"], d.get("rule_id", ""), d.get("subject", "")), []).append(t)
    gaps: list[float] = []
    for (_, rule, _), times in by.items():
        times.sort()
        gaps += [
            round(b - a, 3) for a, b in itertools.pairwise(times) if b - a < cooldown_s.get(rule, 0)
        ]
    return {
        "stored": len(stored),
        "stored_ids": sorted(stored),
        "acked": len(acked),
        "lost": lost,
        "duplicates": len(gaps),
        "duplicate_gaps_s": gaps,
    }


def wait_cost(spec: ClusterSpec, n: int = 200) -> dict[str, Any]:
    """Milliseconds of an alert-sized write alone and followed by ``WAIT 1`` (the guarantee's
    price), measured across the bridge on the primary."""
    r = _master(spec)
    body = "x" * 1500  # about one alert's JSON
    out: dict[str, Any] = {}
    for name, wait in (("write_ms", False), ("write_wait1_ms", True)):
        ms: list[float] = []
        for i in range(n):
            t0 = time.perf_counter()
            r.set(f"bench:cluster:wait:{i}", body)
            if wait:
                r.wait(1, 1000)
            ms.append((time.perf_counter() - t0) * 1000)
        out[name] = latency_summary(ms)
    r.delete(*[f"bench:cluster:wait:{i}" for i in range(n)])
    return out


def planner_view(args: argparse.Namespace, measured: dict[str, Any]) -> dict[str, Any]:
    """What ``citysight plan`` predicts for this layout, next to what was measured.

    The planner sizes capacity (Redis shards, rules CPU, GPU nodes); it has no model of
    failover, so recovery times have nothing to compare with (said so in the output).
    """
    res = subprocess.run(
        [sys.executable, "-m", "citysight", "plan", "--cameras", str(args.cameras),
         "--analytics-fps", str(args.fps), "--gpu", "L4", "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if res.returncode != 0:
        return {"error": res.stderr.strip()[-300:]}
    plan = json.loads(res.stdout)
    rules = measured.get("rules_at_end") or {}
    states = [i.get("state") for i in rules.values()]
    rate = args.cameras * args.fps
    return {
        "results_per_s": rate,
        "redis_shards": {"planned": plan["redis_shards"]["value"], "ran_with": 1,
                         "basis": plan["redis_shards"]["basis"]},
        "rules_cpu_cores": {"planned": plan["rules_cpu_cores"]["value"],
                            "ran_with": f"{len(rules)} Serve rules replica(s), one per serve host"},
        "rules_kept_up": bool(states) and all(x == "running" for x in states),
        "recovery": "the planner has no failover model: it predicts no detection or recovery "
                    "times, and no cost of WAIT",
    }  # fmt: skip


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Bring the cluster up, run the city with the faults, tear it down; the results."""
    faults = [f for f in args.faults.split(",") if f]
    for f in faults:
        if f not in FAULT_FUNCS:
            raise ValueError(f"unknown fault {f!r}: choose from {', '.join(FAULTS)}")
    serve_nodes = args.serve_nodes if args.serve_nodes >= 0 else (1 if args.nodes >= 4 else 0)
    stream_nodes = args.nodes - 1 - serve_nodes
    if stream_nodes < 1 or ("stream_node" in faults and stream_nodes < 2):
        raise ValueError(
            f"--nodes {args.nodes} with {serve_nodes} serve node(s) leaves {stream_nodes} "
            "stream node(s): at least 1, and 2 for the stream_node fault"
        )
    if "serve_node" in faults and not serve_nodes:
        raise ValueError("the serve_node fault needs a serve node (--serve-nodes 1 or more)")
    # one rules consumer per serve host (serve_config.RULES_SHARE), two when there are two hosts
    consumers = min(2, 1 + serve_nodes)
    spec = ClusterSpec(
        prefix=args.prefix, subnet=args.subnet, stream_nodes=stream_nodes,
        serve_nodes=serve_nodes,
    )  # fmt: skip
    workers = args.workers or 2 * stream_nodes
    city = {
        "cameras": args.cameras, "fps": args.fps, "shards": args.shards, "workers": workers,
        "episodes_per_cam_h": args.episodes, "alert_replicas": args.alert_replicas,
        "alert_wait_ms": ALERT_WAIT_MS, "master": MASTER_NAME,
        "sentinels": [f"{ip}:{port}" for ip, port in spec.sentinel_addresses],
        "consumers": consumers, "ingress_replicas": consumers,
    }  # fmt: skip
    out: dict[str, Any] = {
        "nodes": args.nodes, "stream_nodes": stream_nodes, "serve_nodes": serve_nodes + 1,
        "rules_consumers": consumers,
        "cameras": args.cameras, "fps": args.fps, "workers": workers,
        "alert_replicas": args.alert_replicas, "cpus": os.cpu_count(),
        "load_avg_start": os.getloadavg()[0], "started": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                                          time.gmtime()),
    }  # fmt: skip
    c = Cluster(spec)
    driver: subprocess.Popen[str] | None = None
    sub: subprocess.Popen[str] | None = None
    sub_out = spec.root / "subscriber.json"
    token = secrets.token_urlsafe(24)
    city["principals"] = principals({"duty": token})
    try:
        out["bring_up_s"] = round(c.up()["total_s"], 1)
        if args.sustain:  # on the running cluster, before the city and its faults
            # the search runs one plain consumer of every shard (sustain.py), not the city's
            # Serve replicas
            rules_ip = next((h.ip for h in spec.hosts if h.name == "serve1"), None)
            out.update(sustain.from_args(c, dict(city, consumers=1, rules_ip=rules_ip), args))
        token_file = spec.root / "client" / "token"
        token_file.touch(mode=0o600)
        token_file.write_text(token)
        driver = c.popen(
            "head", [sys.executable, "-m", "benchmarks.cluster.city", "driver", json.dumps(city)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        w = Watch(driver)
        if not w.ready.wait(420):
            raise ClusterError("the city driver did not start (see /tmp/<prefix>/head)")
        ready = w.ready_doc
        out["serve_deployed_s"] = ready.get("serve_deployed_s")
        out["placement"] = {
            d: {"node_ip": i.get("node_ip"), "host": _host_of(spec, i.get("node_ip")),
                "consumer": i.get("consumer")}
            for d, i in ready["rules"].items()
        }  # fmt: skip
        head_ip = spec.host("head").ip
        # the subscriber's first ingress: a serve host (not the head) holding a rules
        # replica, the one the serve_node fault kills
        victims = {i.get("node_ip") for i in ready["rules"].values()} - {head_ip}
        ingress = sorted(
            ready["ingress_ips"], key=lambda ip: (ip not in victims, ipaddress.ip_address(ip))
        )
        out["ingress"] = [_host_of(spec, ip) for ip in ingress]
        urls = ",".join(f"ws://{ip}:{HTTP_PORT}/ws" for ip in ingress)
        sub = c.popen("client", [sys.executable, "-m", "benchmarks.cluster.city", "subscribe",
                                 urls, str(token_file), str(sub_out)],
                      stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert sub.stdout is not None
        line = sub.stdout.readline()  # {"connected": url} once the WebSocket is open
        if not line.startswith('{"connected"'):
            raise ClusterError(f"the subscriber did not connect: {line.strip()[:200]}")
        threading.Thread(target=sub.stdout.read, daemon=True).start()
        assert driver.stdin is not None
        driver.stdin.write("go\n")
        driver.stdin.flush()
        t_ready = time.time()
        t_all = _wait(
            lambda: _all_published_after(spec, t_ready, args.cameras),
            120,
            "every camera publishing",
        )
        out["cameras_publishing_s"] = round(t_all - t_ready, 1)
        time.sleep(args.warmup)
        t_faults = time.time()
        out["faults"] = []
        for f in faults:
            logger.warning("fault %s", f)
            try:
                res = FAULT_FUNCS[f](c, w, args)
            except (TimeoutError, ClusterError) as exc:
                res = {"fault": f, "error": str(exc), "last_status": w.latest()}
            out["faults"].append(res)
            logger.warning("%s", res)
            time.sleep(args.settle)
        t_end = time.time()
        st = w.latest()
        out["rules_at_end"] = st.get("rules")
        assert driver.stdin is not None
        driver.stdin.write("stop\n")
        driver.stdin.flush()
        driver.wait(120)
        if w.final is None:
            raise ClusterError("the city driver ended without its final report")
        cooldowns = {r.id: r.cooldown_s for r in bench_config(city).rules}
        audit = _audit(spec, w.final["acked"], cooldowns)
        out["rules_at_end"] = w.final.get("rules")
        out["alerts"] = {
            k: (len(v) if k == "lost" else v) for k, v in audit.items() if k != "stored_ids"
        }
        for res in out["faults"]:
            # one audit for the whole run: an alert lost to any fault counts against each
            res["lost"] = len(audit["lost"])
            res["duplicates"] = audit["duplicates"]
        sub.send_signal(signal.SIGTERM)
        sub.wait(30)
        s = json.loads(sub_out.read_text())
        first_fault = t_faults
        received = set(s.pop("ids"))
        s["missing"] = len(set(audit["stored_ids"]) - received)
        for res in out["faults"]:
            t_kill = res.get("killed_at")
            if t_kill is None or res["fault"] != "serve_node":
                continue
            # receiving again through another ingress after the kill (resumed by last_id)
            back = [x for x in s["connects"] if x["t"] > t_kill]
            if back:
                res["subscriber_reconnect_s"] = round(back[0]["t"] - t_kill, 2)
                res["subscriber_resumed_via"] = _host_of(spec, back[0]["url"].split("/")[2]
                                                         .split(":")[0])  # fmt: skip
        lat = s["latency_ms"]
        out["latency_ms"] = latency_summary(x[1] for x in lat)
        # before the first fault: the steady state (during a fault alerts wait for recovery)
        out["latency_ms_steady"] = latency_summary(x[1] for x in lat if x[0] < first_fault)
        # of it: detection → alert written by the rules consumer (the rest is the feed, the
        # ingress replica, the Serve proxy and the WebSocket)
        out["latency_ms_steady_to_written"] = latency_summary(
            x[2] for x in lat if x[0] < first_fault and len(x) > 2 and x[2] >= 0
        )
        # from each fault's kill to the next one's (or the end)
        cuts = [(f["fault"], f["killed_at"]) for f in out["faults"] if f.get("killed_at")]
        phases = [("before_faults", 0.0), *cuts, ("end", float("inf"))]
        out["latency_ms_by_phase"] = {
            name: latency_summary(x[1] for x in lat if t0 <= x[0] < t1)
            for (name, t0), (_, t1) in itertools.pairwise(phases)
        }
        out["subscriber"] = {k: v for k, v in s.items() if k != "latency_ms"}
        out["duration_s"] = round(t_end - t_ready, 1)
        out["load_avg_end"] = os.getloadavg()[0]
        out["wait_cost"] = wait_cost(spec)
        out["vs_planner"] = planner_view(args, out)
    finally:
        for p in (driver, sub):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(10)
        out["teardown"] = c.down(force=True)
    return out


def plot(res: dict[str, Any], path: Path) -> bool:
    """Bar chart of detection and recovery per fault (``False``: no matplotlib installed)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    faults = [f for f in res["faults"] if "error" not in f]
    names = [f["fault"] for f in faults]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    x = range(len(names))
    ax.bar([i - 0.2 for i in x], [f["detected_s"] or 0 for f in faults], 0.4, label="detected")
    ax.bar([i + 0.2 for i in x], [f["recovery_s"] for f in faults], 0.4, label="recovered")
    ax.set_xticks(list(x), names)
    ax.set_ylabel("seconds after the kill")
    ax.set_title(
        f"{res['nodes']} Ray nodes, {res['cameras']} cameras: lost {res['alerts']['lost']}, "
        f"duplicates {res['alerts']['duplicates']} of {res['alerts']['acked']} acked alerts"
    )
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (1 when a fault lost or duplicated an alert)."""
    args = build_parser().parse_args(list(argv) if argv is not None else None)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    reason = netns.unavailable_reason()
    if reason:
        print(f"citysight bench cluster: {reason}", file=sys.stderr)
        return 2
    try:
        res = run(args)
    except (ClusterError, ValueError, TimeoutError) as exc:
        print(f"citysight bench cluster: {exc}", file=sys.stderr)
        return 2
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
        plot(res, Path(args.out).with_suffix(".png"))
    sustain.write_results(res, args)
    if args.json:
        print(json.dumps(res, indent=1, sort_keys=True))
    else:
        for f in res["faults"]:
            print(json.dumps(f, sort_keys=True))
    bad = [f for f in res["faults"] if f.get("error") or f.get("lost") or f.get("duplicates")]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
