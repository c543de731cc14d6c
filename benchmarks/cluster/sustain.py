"""Cameras sustained: the largest camera count the running cluster keeps up with.

``citysight bench cluster --sustain`` runs this on the cluster after bring-up and before
the city and its faults. One *step* offers ``C`` cameras at the bench's frame rate for a
fixed short window and judges it (:func:`judge`): the cluster kept up when

* the stream nodes published what was offered (``published >= min_ratio x offered``),
* the rules consumer on the serve node consumed it at that rate
  (``consumed >= min_ratio x offered``),
* the consumer's lag stayed bounded (age of the oldest frame result not yet acknowledged
  ``<= max_lag_s`` at the end of the window), and
* detection-to-subscriber latency of the window's alerts, as the subscriber in the
  ``client`` namespace received them, had p99 ``<= max_p99_ms``.

The search (:func:`search`) doubles ``C`` from ``start`` until a step fails or
``max_cameras`` is reached, then bisects between the last good and the first bad count
down to ``resolution``; a hard cap on steps and on total time ends it early (the result
says why it stopped). Between steps the cameras stop and the consumer drains its backlog
(bounded; what is left is skipped with ``XGROUP SETID``), so a failed step does not
burden the next one.

Processes: ``python -m benchmarks.cluster.sustain driver SPEC_JSON`` runs in the head
namespace as a Ray driver: camera-worker actors (:class:`benchmarks.cluster.city.
CameraWorker`, the city's frame-result mix) on the ``stream_node`` hosts and the real
:class:`serve_app.consumer.DetectionsConsumer` in an actor on a ``serve_node`` host; it
reads ``step C`` / ``stop`` on stdin and answers one JSON line each.
``python -m benchmarks.cluster.sustain subscribe URL`` runs in the ``client`` namespace
and prints one JSON line per alert received from the feed (receipt time, latency).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

logger = logging.getLogger(__name__)

SERVE_NODE = "serve_node"
STREAM_NODE = "stream_node"


# --------------------------------------------------------------------------- judging


@dataclass(frozen=True)
class Criteria:
    """What "kept up" means for one step (the stated bounds).

    Attributes:
        min_ratio: Published and consumed frame results, each at least this share of the
            offered rate.
        max_lag_s: Age of the oldest frame result not yet acknowledged, at the window's end.
        max_p99_ms: Detection-to-subscriber p99 of the window's alerts.
        min_alerts: Fewer alerts in a window than this and latency is not judged (a p99 of
            two samples says nothing): the step does not count as kept up.
    """

    min_ratio: float = 0.95
    max_lag_s: float = 2.0
    max_p99_ms: float = 1000.0
    min_alerts: int = 5


@dataclass
class Step:
    """One measured step.

    Attributes:
        cameras: Cameras offered.
        offered_per_s: Frame results per second offered (cameras x fps).
        published_per_s: Frame results per second the stream nodes published.
        consumed_per_s: Frame results per second the rules consumer acknowledged.
        lag_s: Age of the oldest unacknowledged frame result at the window's end.
        backlog: Entries not yet delivered to the consumer at the window's end.
        p99_ms: Detection-to-subscriber p99 of the window's alerts (``None``: none).
        alerts: Alerts the subscriber received in the window.
        window_s: Length of the measured window.
        kept_up: The verdict of :func:`judge`.
        why: Bounds the step broke (empty when it kept up), or notes.
    """

    cameras: int
    offered_per_s: float = 0.0
    published_per_s: float = 0.0
    consumed_per_s: float = 0.0
    lag_s: float = 0.0
    backlog: int = 0
    p99_ms: float | None = None
    alerts: int = 0
    window_s: float = 0.0
    kept_up: bool = False
    why: list[str] = field(default_factory=list)


def judge(step: Step, crit: Criteria) -> Step:
    """Set ``step.kept_up`` and ``step.why`` from its measurements and ``crit``.

    A step with fewer than ``crit.min_alerts`` alerts did not show its latency, and a
    bound not shown to hold does not hold: it did not keep up.
    """
    why: list[str] = []
    need = crit.min_ratio * step.offered_per_s
    if step.published_per_s < need:
        why.append(f"published {step.published_per_s:.0f}/s < {need:.0f}/s")
    if step.consumed_per_s < need:
        why.append(f"consumed {step.consumed_per_s:.0f}/s < {need:.0f}/s")
    if step.lag_s > crit.max_lag_s:
        why.append(f"lag {step.lag_s:.1f} s > {crit.max_lag_s:g} s")
    if step.alerts < crit.min_alerts or step.p99_ms is None:
        why.append(f"latency not judged: {step.alerts} alerts < {crit.min_alerts}")
    elif step.p99_ms > crit.max_p99_ms:
        why.append(f"p99 {step.p99_ms:.0f} ms > {crit.max_p99_ms:g} ms")
    step.kept_up = not why
    step.why = why
    return step


def p99(values: list[float]) -> float | None:
    """Nearest-rank 99th percentile (``None`` for no values)."""
    if not values:
        return None
    v = sorted(values)
    return v[max(0, math.ceil(0.99 * len(v)) - 1)]


# --------------------------------------------------------------------------- the search


@dataclass(frozen=True)
class Limits:
    """Bounds of the search.

    Attributes:
        start: First camera count tried.
        max_cameras: Never offer more (a result equal to it is a lower bound).
        resolution: Bisection stops when the good and bad counts are this close, or
            closer than 10 % of the good count.
        max_steps: Hard cap on steps.
        budget_s: Hard cap on total time; a step is not started when the last one's
            duration would overrun it.
    """

    start: int = 32
    max_cameras: int = 4096
    resolution: int = 4
    max_steps: int = 12
    budget_s: float = 420.0

    def __post_init__(self) -> None:
        if self.start < 1 or self.max_cameras < self.start:
            raise ValueError("need 1 <= start <= max_cameras")
        if self.resolution < 1 or self.max_steps < 1 or self.budget_s <= 0:
            raise ValueError("resolution and max_steps must be >= 1, budget_s > 0")


@dataclass
class SearchResult:
    """Outcome of :func:`search`.

    Attributes:
        cameras_sustained: Largest count a step kept up with (0: not even ``start``...
            after bisecting down to 1).
        first_failed: Smallest count a step failed at (``None``: none failed).
        stopped: ``resolved``, ``max_cameras`` (kept up at the cap: a lower bound),
            ``max_steps`` or ``budget``.
        steps: Every step, in order.
        elapsed_s: Time the search took.
    """

    cameras_sustained: int
    first_failed: int | None
    stopped: str
    steps: list[Step]
    elapsed_s: float

    def to_json(self) -> dict[str, Any]:
        """Plain JSON."""
        return asdict(self)


def search(
    measure: Callable[[int], Step],
    limits: Limits,
    clock: Callable[[], float] = time.monotonic,
) -> SearchResult:
    """Find the largest camera count ``measure`` reports as kept up.

    Args:
        measure: Runs one step at a camera count and returns it judged.
        limits: Start, cap, resolution, step and time bounds.
        clock: Seconds (monotonic); injectable for tests.

    Capacity is assumed monotone (more cameras never keep up better); a noisy step can
    break that, and the search then reports what it measured, never more than a step
    that kept up.
    """
    t0 = clock()
    steps: list[Step] = []
    good, bad = 0, None
    last_step_s = 0.0

    def room() -> str | None:
        if len(steps) >= limits.max_steps:
            return "max_steps"
        if clock() - t0 + last_step_s > limits.budget_s:
            return "budget"
        return None

    def run(c: int) -> bool:
        nonlocal last_step_s, good, bad
        t = clock()
        s = measure(c)
        last_step_s = clock() - t
        steps.append(s)
        if s.kept_up:
            good = max(good, c)
        else:
            bad = c if bad is None else min(bad, c)
        logger.warning(
            "sustain: %d cameras %s (%s)", c, "kept up" if s.kept_up else "fell behind", s.why
        )
        return s.kept_up

    stopped = ""
    c = limits.start
    # doubling: until a step fails or the cap kept up
    while True:
        why = room()
        if why:
            stopped = why
            break
        if not run(c):
            break
        if c >= limits.max_cameras:
            stopped = "max_cameras"
            break
        c = min(2 * c, limits.max_cameras)
    # bisection between the last good and the first bad count
    while not stopped and bad is not None:
        gap = bad - good
        if gap <= max(limits.resolution, int(0.1 * good), 1):
            stopped = "resolved"
            break
        why = room()
        if why:
            stopped = why
            break
        run(good + gap // 2)
    return SearchResult(good, bad, stopped or "resolved", steps, round(clock() - t0, 1))


# --------------------------------------------------------------------------- on the cluster


class _Lines:
    """Collects JSON lines of a child process's stdout in the background."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.items: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                with self.cond:
                    self.items.append(json.loads(line))
                    self.cond.notify_all()
        with self.cond:
            self.cond.notify_all()

    def next_after(self, n: int, timeout_s: float, what: str) -> dict[str, Any]:
        """The line after the first ``n``."""
        t_end = time.monotonic() + timeout_s
        with self.cond:
            while len(self.items) <= n:
                left = t_end - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and len(self.items) <= n):
                    raise TimeoutError(f"sustain driver: no {what} within {timeout_s:.0f} s")
                self.cond.wait(min(left, 1.0))
            return self.items[n]


def run_on_cluster(
    cluster: Any,
    city: dict[str, Any],
    limits: Limits,
    crit: Criteria,
    *,
    warmup_s: float = 3.0,
    window_s: float = 8.0,
) -> dict[str, Any]:
    """Run the search on a running :class:`~benchmarks.cluster.harness.Cluster`.

    Args:
        cluster: The cluster (up).
        city: The city's spec (``bench.run``'s ``city`` dict: fps, shards, sentinels...).
        limits: Search bounds.
        crit: What kept up means.
        warmup_s: Seconds at a new count before its window opens.
        window_s: Length of each measured window.

    Returns:
        ``cameras_sustained``, the search's ``steps`` and bounds, ``criteria``. Redis is
        flushed afterwards, so the city that follows starts from nothing.
    """
    spec = dict(city, cameras=limits.max_cameras, warmup_s=warmup_s, window_s=window_s)
    url = f"redis+sentinel://{','.join(city['sentinels'])}/{city['master']}/0"
    sub = cluster.popen(
        "client", [sys.executable, "-m", "benchmarks.cluster.sustain", "subscribe", url],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    drv = cluster.popen(
        "head", [sys.executable, "-m", "benchmarks.cluster.sustain", "driver", json.dumps(spec)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    alerts = _Lines(sub)
    answers = _Lines(drv)
    try:
        answers.next_after(0, 180, "ready line")

        def measure(c: int) -> Step:
            n = len(answers.items)
            assert drv.stdin is not None
            drv.stdin.write(f"step {c}\n")
            drv.stdin.flush()
            a = answers.next_after(n, warmup_s + window_s + 90, f"step {c}")
            with alerts.cond:
                ms = [x["ms"] for x in alerts.items if a["t0"] <= x["at"] <= a["t1"]]
            window = a["t1"] - a["t0"]
            s = Step(
                cameras=c,
                offered_per_s=round(c * float(city["fps"]), 1),
                published_per_s=round(a["published"] / window, 1),
                consumed_per_s=round(a["consumed"] / window, 1),
                lag_s=round(a["lag_ms"] / 1000, 2),
                backlog=int(a["backlog"]),
                p99_ms=None if not ms else round(cast(float, p99(ms)), 1),
                alerts=len(ms),
                window_s=round(window, 1),
            )
            return judge(s, crit)

        res = search(measure, limits)
    finally:
        if drv.poll() is None and drv.stdin is not None:
            try:
                drv.stdin.write("stop\n")
                drv.stdin.flush()
                drv.wait(60)
            except (OSError, subprocess.TimeoutExpired):
                drv.kill()
                drv.wait(10)
        if sub.poll() is None:
            sub.send_signal(signal.SIGTERM)
            try:
                sub.wait(10)
            except subprocess.TimeoutExpired:
                sub.kill()
                sub.wait(10)
    _flush(cluster)
    out = res.to_json()
    out.update(
        {
            "limits": asdict(limits),
            "criteria": asdict(crit),
            "fps": float(city["fps"]),
            "warmup_s": warmup_s,
            "window_s": window_s,
            "stream_nodes": sum(1 for h in cluster.spec.hosts if STREAM_NODE in h.resources),
            "workers": int(city["workers"]),
            "rules_consumers": 1,
            "rule_cooldown_s": COOLDOWN_S,
        }
    )
    return out


def _flush(cluster: Any) -> None:
    """Empty Redis (the search's streams, alerts and cooldowns) before the city runs."""
    from benchmarks.cluster import redis_ha
    from benchmarks.cluster.spec import MASTER_NAME

    s = redis_ha.sentinel_client(cluster.spec)
    r = s.master_for(MASTER_NAME, socket_timeout=5, socket_connect_timeout=1)  # type: ignore[no-untyped-call]
    r.flushdb()
    r.wait(1, 5000)


# --------------------------------------------------------------------------- planner


def planner_prediction(fps: float, consumers: int, redis_shards: int = 1) -> dict[str, Any]:
    """Largest camera count ``citysight plan`` sizes within this layout's rules cores and
    Redis shards, at ``fps`` frame results per camera (the same measurements it would load).
    """
    from benchmarks.planner.cli import DEFAULT_RESULTS_DIR, load_measurements
    from benchmarks.planner.model import PlanInput, plan

    meas = load_measurements(DEFAULT_RESULTS_DIR)

    def _inp(c: int) -> PlanInput:
        # the planner's defaults otherwise (camera at 25 fps, 1080p H.264, every model)
        return PlanInput.model_validate({"cameras": c, "analytics_fps": fps})

    def fits(c: int) -> bool:
        p = plan(_inp(c), meas)
        return p.rules_cpu_cores.value <= consumers and p.redis_shards.value <= redis_shards

    lo, hi = 1, 1_000_000
    if not fits(lo):
        return {"cameras": 0}
    while hi - lo > 1:  # plan() is monotone in cameras
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    p = plan(_inp(lo), meas)
    over = plan(_inp(lo + 1), meas)
    return {
        "cameras": lo,
        "limited_by": "rules_cpu_cores"
        if over.rules_cpu_cores.value > consumers
        else "redis_shards",
        "rules_cpu_cores": {"value": p.rules_cpu_cores.value, "basis": p.rules_cpu_cores.basis,
                            "source": str(p.rules_cpu_cores.source)},
        "redis_shards": {"value": p.redis_shards.value, "basis": p.redis_shards.basis,
                         "source": str(p.redis_shards.source)},
    }  # fmt: skip


def vs_planner(measured: int, stopped: str, predicted: dict[str, Any]) -> dict[str, Any]:
    """The planner's camera count for the layout next to the measured one, and a verdict."""
    pred = int(predicted.get("cameras", 0))
    out: dict[str, Any] = {"measured": measured, "planned": pred, "planner": predicted}
    if stopped == "max_cameras":
        out["verdict"] = (
            f"measured at least {measured} (the search's cap); "
            + ("consistent with" if pred >= measured else "already above")
            + f" the planner's {pred}"
        )
    elif measured and pred:
        ratio = pred / measured
        out["ratio_planned_to_measured"] = round(ratio, 2)
        out["verdict"] = (
            "the planner was right within 25 %"
            if 0.8 <= ratio <= 1.25
            else f"the planner was wrong: it sizes {ratio:.1f}x what the cluster sustained"
        )
    else:
        out["verdict"] = "no comparison (nothing sustained or nothing planned)"
    return out


# --------------------------------------------------------------------------- bench hooks

RESULTS = Path(__file__).resolve().parents[1] / "results" / "cluster-sustain.json"


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """``citysight bench cluster`` options of the search."""
    g = ap.add_argument_group("cameras sustained (--sustain, on by default)")
    g.add_argument("--sustain", action=argparse.BooleanOptionalAction, default=True,
                   help="search the largest camera count the cluster keeps up with, "
                        "before the city and its faults (--no-sustain: skip it)")  # fmt: skip
    g.add_argument("--sustain-start", type=int, default=Limits.start)
    g.add_argument("--max-cameras", type=int, default=Limits.max_cameras,
                   help="the search never offers more")  # fmt: skip
    g.add_argument("--sustain-steps", type=int, default=Limits.max_steps, help="step cap")
    g.add_argument("--sustain-budget", type=float, default=Limits.budget_s,
                   help="seconds the whole search may take")  # fmt: skip
    g.add_argument("--sustain-window", type=float, default=8.0, help="seconds measured a step")
    g.add_argument("--max-p99-ms", type=float, default=Criteria.max_p99_ms,
                   help="detection-to-subscriber p99 bound of a step")  # fmt: skip
    g.add_argument("--max-lag-s", type=float, default=Criteria.max_lag_s,
                   help="consumer lag bound at a step's end")  # fmt: skip
    g.add_argument("--sustain-out", default=str(RESULTS), help="results JSON ('' to skip)")


def from_args(cluster: Any, city: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Run the search as ``args`` say; ``cameras_sustained`` and the ``sustain`` section."""
    limits = Limits(
        start=args.sustain_start, max_cameras=args.max_cameras, max_steps=args.sustain_steps,
        budget_s=args.sustain_budget,
    )  # fmt: skip
    crit = Criteria(max_p99_ms=args.max_p99_ms, max_lag_s=args.max_lag_s)
    load0 = os.getloadavg()
    res = run_on_cluster(cluster, city, limits, crit, window_s=args.sustain_window)
    res["load_avg"] = {"start": [round(x, 2) for x in load0],
                       "end": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    pred = planner_prediction(float(city["fps"]), consumers=1, redis_shards=1)
    res["vs_planner"] = vs_planner(res["cameras_sustained"], res["stopped"], pred)
    return {"cameras_sustained": res["cameras_sustained"], "sustain": res}


def write_results(res: dict[str, Any], args: argparse.Namespace) -> None:
    """Write the search's part of a bench run to ``--sustain-out`` (when it ran)."""
    if not getattr(args, "sustain", False) or not args.sustain_out or "sustain" not in res:
        return
    keep = ("nodes", "stream_nodes", "serve_nodes", "cpus", "started", "bring_up_s",
            "cameras_sustained", "sustain")  # fmt: skip
    doc = {k: res[k] for k in keep if k in res}
    Path(args.sustain_out).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


# --------------------------------------------------------------------------- processes

COOLDOWN_S = 5.0
"""Rule cooldown during the search. The city's (120-300 s) would silence every camera that
alerted in an earlier step (each step replays the same simulated cameras), leaving later
steps without alerts to time; 5 s lets each episode alert once, as in the city."""


def sustain_config(spec: dict[str, Any]) -> Any:
    """The city's configuration on the cluster, with :data:`COOLDOWN_S` on every rule."""
    from benchmarks.cluster.city import bench_config
    from citysight.config import CitysightConfig

    doc = bench_config(spec).model_dump(mode="json")
    for rule in doc["rules"]:
        rule["cooldown_s"] = min(float(rule["cooldown_s"]), COOLDOWN_S)
    return CitysightConfig.model_validate(doc)


def _driver(spec: dict[str, Any]) -> int:  # pragma: no cover - runs inside the cluster
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    from benchmarks.cluster.city import CameraWorker
    from citysight import keys, redisconn

    ray.init(
        address=os.environ["RAY_ADDRESS"],
        _node_ip_address=os.environ["CITYSIGHT_NODE_IP"],
        log_to_driver=False,
        configure_logging=False,
        namespace="citysight-cluster-sustain",
    )
    cfg = sustain_config(spec)
    url = cfg.services.redis.connection_url()
    assert url is not None
    r = redisconn.connect(url, socket_timeout=3)
    pipe = r.pipeline()
    pipe.delete(keys.CAMERAS)
    for cam in cfg.cameras:
        pipe.hset(keys.CAMERAS, cam.id, cam.model_dump_json())
    pipe.execute()
    index = {cam.id: i for i, cam in enumerate(cfg.cameras)}
    nodes = {n["NodeManagerAddress"]: n["NodeID"] for n in ray.nodes() if n["Alive"]}  # type: ignore[no-untyped-call]
    opts: dict[str, Any] = {"resources": {SERVE_NODE: 0.01}}
    if spec.get("rules_ip") in nodes:
        opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(
            nodes[spec["rules_ip"]], soft=True
        )
    rules = _make_rules_actor().options(**opts).remote(cfg.model_dump(mode="json"), url)
    ray.get(rules.info.remote(), timeout=120)
    workers = [
        CameraWorker.options(  # type: ignore[attr-defined]
            resources={STREAM_NODE: 0.01}, scheduling_strategy="SPREAD"
        ).remote(url, index, spec)
        for _ in range(int(spec["workers"]))
    ]
    ray.get([w.ping.remote() for w in workers], timeout=120)
    on: dict[str, int] = {}  # camera id -> worker index
    print(json.dumps({"ready": True}), flush=True)
    streams = [keys.detections_stream(s) for s in range(int(spec["shards"]))]

    def published() -> int:
        return sum(int(s["published"]) for s in ray.get([w.stats.remote() for w in workers]))

    def drain() -> None:
        # a failed step leaves a backlog: give the consumer 10 s, then skip what is left
        t_end = time.monotonic() + 10.0
        while time.monotonic() < t_end:
            b = ray.get(rules.backlog.remote(), timeout=10)
            if b["pending"] == 0 and b["backlog"] == 0:
                return
            time.sleep(0.5)
        for s in streams:
            try:
                r.xgroup_setid(s, keys.RULES_GROUP, "$")
            except Exception as exc:
                logger.warning("skip backlog of %s: %s", s, exc)

    for line in sys.stdin:
        cmd = line.split()
        if cmd[:1] != ["step"]:
            break
        c = int(cmd[1])
        ids = [cam.id for cam in cfg.cameras[:c]]
        calls = [
            workers[on.pop(cid)].remove_camera.remote(cid) for cid in list(on) if cid not in ids
        ]
        for k, cid in enumerate(ids):
            if cid not in on:
                on[cid] = k % len(workers)
                calls.append(workers[on[cid]].add_camera.remote(cfg.cameras[index[cid]]))
        ray.get(calls, timeout=60)
        time.sleep(float(spec["warmup_s"]))
        p0, c0, t0 = published(), ray.get(rules.info.remote())["processed"], time.time()
        time.sleep(float(spec["window_s"]))
        p1, c1, t1 = published(), ray.get(rules.info.remote())["processed"], time.time()
        b = ray.get(rules.backlog.remote(), timeout=30)
        print(
            json.dumps({"cameras": c, "t0": t0, "t1": t1, "published": p1 - p0,
                        "consumed": c1 - c0, "lag_ms": b["lag_ms"], "backlog": b["backlog"],
                        "pending": b["pending"]}),
            flush=True,
        )  # fmt: skip
        ray.get([workers[on.pop(cid)].remove_camera.remote(cid) for cid in list(on)], timeout=60)
        drain()
    for w in workers:
        ray.kill(w)
    ray.kill(rules)
    ray.shutdown()
    return 0


def _subscribe(url: str) -> int:  # pragma: no cover - runs inside the cluster
    from citysight import redisconn
    from citysight.keys import FEED_STREAM

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    r = redisconn.connect(url, socket_timeout=3, socket_connect_timeout=1)
    last = "$"
    seen: set[str] = set()
    while not stop.is_set():
        try:
            reply = cast(
                "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]]",
                r.xread({FEED_STREAM: last}, count=500, block=500),
            )
        except Exception:
            stop.wait(0.1)
            continue
        now = time.time()
        for _, entries in reply or []:
            for eid, fields in entries:
                last = eid.decode() if isinstance(eid, bytes) else str(eid)
                if fields.get(b"type") != b"alert":
                    continue
                d = json.loads(fields[b"d"])
                det = float(d.get("detected_at") or 0.0)
                if det > 0 and d["id"] not in seen:
                    seen.add(d["id"])
                    print(json.dumps({"at": now, "ms": round((now - det) * 1000, 2)}), flush=True)
    return 0


def _make_rules_actor() -> Any:  # pragma: no cover - needs Ray
    import ray

    @ray.remote(num_cpus=0)
    class _SustainRules:
        """The real rules consumer on a serve node, with its stats and backlog visible."""

        def __init__(self, cfg_json: dict[str, Any], url: str) -> None:
            from citysight.config import CitysightConfig
            from serve_app.consumer import DetectionsConsumer

            cfg = CitysightConfig.model_validate(cfg_json)
            (shards,) = cfg.services.rules_shard_groups()
            self.c = DetectionsConsumer(url, cfg, "sustain-rules", shards)
            self.c.start()

        def info(self) -> dict[str, Any]:
            return {"state": self.c.state, "processed": int(self.c.stats["processed"])}

        def backlog(self) -> dict[str, Any]:
            return self.c.backlog()

    return _SustainRules


def main(argv: list[str] | None = None) -> int:
    """``driver SPEC_JSON`` or ``subscribe URL``."""
    args = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING)
    if args[:1] == ["driver"] and len(args) == 2:
        return _driver(json.loads(args[1]))
    if args[:1] == ["subscribe"] and len(args) == 2:
        return _subscribe(args[1])
    print("usage: python -m benchmarks.cluster.sustain driver SPEC_JSON | subscribe URL")
    return 2


if __name__ == "__main__":
    sys.exit(main())
