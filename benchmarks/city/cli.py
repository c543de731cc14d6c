"""``citysight bench city``: a simulated city driving the real alert path end to end.

Embedded Redis + a private local Ray + the citysight Serve app (real ``RulesConsumer``,
real ``/ws`` fan-out through the Serve proxy). Producer processes simulate N cameras
writing ``FrameResult``\\s at F fps; subscriber processes hold M WebSockets across
departments. For each camera count (a *level*) it reports the offered and processed
frame-result rates, detection-to-subscriber latency, alerts/s, CPU and memory per
component and lost/duplicated alert deliveries; ``--step-up`` walks a ladder of camera
counts and reports the largest one sustained with p99 below the target.

Examples::

    citysight bench city --cameras 500 --duration 30
    citysight bench city --cameras 500,1000,2500,7500 --duration 45
    citysight bench city --step-up
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import platform
import queue
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import redis

from benchmarks.city.producer import ProducerSpec, start_producers
from benchmarks.city.scenario import (
    Mix,
    city_config_dict,
    make_tokens,
    principals,
    subscriber_departments,
)
from benchmarks.city.subscriber import run_subscribers
from benchmarks.city.system import CitySystem
from benchmarks.common.plot import plot_panels
from benchmarks.common.procmon import ProcessSampler
from benchmarks.common.stats import latency_summary
from citysight import keys
from citysight.app.services.redis_server import free_port

logger = logging.getLogger(__name__)

RESULTS = Path(__file__).resolve().parents[1] / "results"
STEP_LADDER = (100, 250, 500, 1000, 2500, 5000, 7500)
# XRANGE/XREVRANGE replies of the bytes (``decode_responses=False``) client.
_RangeRows = list[tuple[bytes, dict[bytes, bytes]]]


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="citysight bench city", description=__doc__.split("\n")[0])
    p.add_argument(
        "--cameras",
        default="7500",
        help="camera count, or a comma-separated list of counts run one after another",
    )
    p.add_argument("--step-up", action="store_true", help=f"run the ladder {STEP_LADDER}")
    p.add_argument("--fps", type=float, default=5.0, help="frame results per camera per second")
    p.add_argument("--duration", type=float, default=30.0, help="seconds per level")
    p.add_argument("--subscribers", type=int, default=40, help="WebSocket subscribers")
    p.add_argument("--producers", type=int, default=2, help="producer processes")
    p.add_argument("--shards", type=int, default=4, help="detections streams")
    p.add_argument("--p99-target-ms", type=float, default=500.0)
    p.add_argument("--drain-timeout", type=float, default=30.0, help="max wait for backlog")
    p.add_argument("--rate-scale", type=float, default=1.0, help="multiply every episode rate")
    p.add_argument("--out", type=Path, default=RESULTS / "city.json", help="JSON result")
    p.add_argument("--plot", type=Path, default=None, help="PNG (default: next to --out)")
    p.add_argument("--no-plot", action="store_true")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--seed", type=int, default=1)
    return p


def _mix(scale: float) -> Mix:
    m = Mix()
    return Mix(
        fire_per_cam_h=m.fire_per_cam_h * scale,
        smoke_per_cam_h=m.smoke_per_cam_h * scale,
        face_per_cam_h=m.face_per_cam_h * scale,
        hotlist_per_cam_h=m.hotlist_per_cam_h * scale,
        vending_per_cam_h=m.vending_per_cam_h * scale,
    )


def _drain(q: Any) -> list[Any]:
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def _feed_alerts(r: redis.Redis, after_id: str) -> list[tuple[str, str, str]]:
    """(alert id, department, feed id) of every ``alert`` feed entry after ``after_id``."""
    out: list[tuple[str, str, str]] = []
    cursor = after_id
    while True:
        page = cast(_RangeRows, r.xrange(keys.FEED_STREAM, min=f"({cursor}", max="+", count=5000))
        if not page:
            return out
        for fid, f in page:
            cursor = fid.decode()
            if f.get(b"type") == b"alert":
                d = json.loads(f[b"d"])
                out.append((d["id"], f[b"department"].decode(), cursor))


def discard_backlog(system: CitySystem, r: redis.Redis) -> int:
    """Skip the rules group past entries never delivered (``XGROUP SETID $``).

    A level that did not drain would otherwise hand its backlog to the next level and
    distort it; the number of skipped entries is reported with the level.
    """
    from citysight.keys import detections_stream

    skipped = system.group_stats(r)["lag"]
    for shard in range(system.shards):
        key = detections_stream(shard)
        added = int(r.xinfo_stream(key)["entries-added"])
        # ENTRIESREAD keeps the group's lag known (0) after the jump.
        r.xgroup_setid(key, keys.RULES_GROUP, id="$", entries_read=added)
    logger.warning("discarded a backlog of %d undelivered frame results", skipped)
    return int(skipped)


def _last_feed_id(r: redis.Redis) -> str:
    last = cast(_RangeRows, r.xrevrange(keys.FEED_STREAM, count=1))
    return last[0][0].decode() if last else "0-0"


def delivery_check(
    raised: list[tuple[str, str, str]], subs: list[dict[str, Any]]
) -> dict[str, Any]:
    """Compare raised alerts with what each subscriber received.

    Every alert must reach every subscriber of its department (and every ``duty``
    subscriber, whose scope is all departments) exactly once, and nothing else.

    Args:
        raised: ``(alert id, department, feed id)`` of the alerts written to the feed.
        subs: Subscriber records (``department``, ``alerts`` as ``(id, feed id, ...)``).

    Returns:
        ``lost``, ``duplicated``, ``foreign`` (outside the subscriber's scope or never
        raised) and ``expected`` delivery counts, plus per-subscriber errors.
    """
    by_dept: dict[str, set[str]] = {}
    for aid, dept, _ in raised:
        by_dept.setdefault(dept, set()).add(aid)
    every = {aid for aid, _, _ in raised}
    lost = dup = foreign = expected = 0
    errors = []
    for s in subs:
        want = every if s["department"] == "duty" else by_dept.get(s["department"], set())
        got = [a[0] for a in s.get("alerts", [])]
        got_set = set(got)
        expected += len(want)
        lost += len(want - got_set)
        dup += len(got) - len(got_set)
        foreign += len(got_set - want)
        if s.get("error") or s.get("close"):
            errors.append({"sub": s.get("sub"), "error": s.get("error"), "close": s.get("close")})
    return {
        "expected_deliveries": expected,
        "lost": lost,
        "duplicated": dup,
        "foreign": foreign,
        "subscriber_errors": errors,
    }


def run_level(
    system: CitySystem,
    args: argparse.Namespace,
    cameras: int,
    tokens: dict[str, str],
    timeline: list[dict[str, Any]],
    t_origin: float,
) -> dict[str, Any]:
    """Run one camera count: subscribers up, produce for ``duration``, drain, account."""
    ctx = mp.get_context("spawn")
    r = redis.Redis.from_url(system.redis_url)
    url = f"ws://127.0.0.1:{system.port}/ws"
    depts = subscriber_departments(args.subscribers)
    assignments = [(i, d, tokens[d]) for i, d in enumerate(depts)]
    n_sub_procs = max(1, min(4, (args.subscribers + 49) // 50))
    connected = ctx.Value("i", 0)
    sub_stop = ctx.Event()
    live = ctx.Queue()
    sub_results = ctx.Queue()
    sub_procs = [
        ctx.Process(
            target=run_subscribers,
            args=(url, assignments[k::n_sub_procs], connected, sub_stop, live, sub_results),
            name=f"city-subscribers-{k}",
        )
        for k in range(n_sub_procs)
    ]
    for p in sub_procs:
        p.start()
    deadline = time.monotonic() + 60
    while connected.value < args.subscribers and time.monotonic() < deadline:
        if not any(p.is_alive() for p in sub_procs):
            break
        time.sleep(0.2)
    n_connected = connected.value
    load_start = os.getloadavg()[0]
    start_feed = _last_feed_id(r)
    base = system.group_stats(r)

    specs = [
        ProducerSpec(
            redis_url=system.redis_url,
            cameras=cameras,
            start=k,
            step=args.producers,
            fps=args.fps,
            shards=args.shards,
            duration_s=args.duration,
            mix=_mix(args.rate_scale),
            seed=args.seed * 1000 + k + cameras,
        )
        for k in range(args.producers)
    ]
    producers, sent, prod_stop_ev, prod_results = start_producers(ctx, specs)
    sampler = ProcessSampler(
        {
            **system.components(),
            "producers": lambda: [p.pid for p in producers if p.pid and p.is_alive()],
            "subscribers": lambda: [p.pid for p in sub_procs if p.pid and p.is_alive()],
        },
        interval_s=1.0,
    ).start()
    lat_samples: list[tuple[float, float]] = []
    t_start = time.time()
    prev_sent, prev_proc, prev_t = 0, 0, time.monotonic()
    prev_feed_len = r.xlen(keys.FEED_STREAM)
    phase = "produce"
    drain_deadline = None
    last_trim = time.monotonic()
    hard_deadline = time.monotonic() + args.duration + args.drain_timeout + 60
    t_prod_end = time.time()
    sent_total = 0
    while True:
        time.sleep(1.0)
        now_m = time.monotonic()
        for b in _drain(live):
            lat_samples.extend(b)
        g = system.group_stats(r)
        processed = (g["read"] - g["pending"]) - (base["read"] - base["pending"])
        backlog = g["lag"] + g["pending"]
        s = sent.value
        dt = now_m - prev_t
        feed_len = r.xlen(keys.FEED_STREAM)
        window = [lat for t, lat in lat_samples if t >= time.time() - 1.0]
        ws = latency_summary(window)
        point = {
            "t": round(time.time() - t_origin, 2),
            "cameras": cameras,
            "phase": phase,
            "offered_fps": round((s - prev_sent) / dt, 1),
            "processed_fps": round((processed - prev_proc) / dt, 1),
            "backlog": backlog,
            "alerts_per_s": round((feed_len - prev_feed_len) / dt, 2),
            "lat_p50_ms": ws["p50"],
            "lat_p99_ms": ws["p99"],
        }
        timeline.append(point)
        prev_sent, prev_proc, prev_t, prev_feed_len = s, processed, now_m, feed_len
        if not args.quiet:
            print(
                f"\r[{cameras} cams {phase:7}] t={time.time() - t_start:5.1f}s "
                f"offered {point['offered_fps']:8,.0f}/s "
                f"processed {point['processed_fps']:8,.0f}/s "
                f"backlog {backlog:8,d} alerts {len(lat_samples):6,d} "
                f"p99(1s) {ws['p99'] if ws['p99'] is not None else '-':>8} ms   ",
                end="",
                file=sys.stderr,
                flush=True,
            )
        if now_m - last_trim > 5:
            system.trim(r)
            last_trim = now_m
        if now_m > hard_deadline:
            logger.warning("level %d: hard deadline reached, stopping", cameras)
            prod_stop_ev.set()
            break
        if phase == "produce" and not any(p.is_alive() for p in producers):
            bad = [p.exitcode for p in producers if p.exitcode]
            if bad:
                sub_stop.set()
                raise RuntimeError(f"producer process failed (exit codes {bad})")
            phase = "drain"
            t_prod_end = time.time()
            sent_total = s
            drain_deadline = now_m + args.drain_timeout
        if phase == "drain":
            assert drain_deadline is not None
            if backlog == 0 or now_m > drain_deadline:
                break
    if phase == "produce":  # stopped by the hard deadline
        t_prod_end = time.time()
        sent_total = sent.value
    # Alerts on the feed up to now must have reached their subscribers 2 s later; alerts
    # raised after this cut-off (a level that did not drain) are not counted either way.
    time.sleep(2.0)
    end_feed = _last_feed_id(r)
    time.sleep(2.0)
    t_end = time.time()
    load_end = os.getloadavg()[0]
    sampler.stop()
    sub_stop.set()
    subs = []
    for _ in range(args.subscribers):
        try:
            subs.append(sub_results.get(timeout=30))
        except queue.Empty:
            logger.error("a subscriber process returned no record")
            break
    for proc in [*sub_procs, *producers]:
        proc.join(timeout=10)
    for b in _drain(live):
        lat_samples.extend(b)
    if not args.quiet:
        print(file=sys.stderr)
    prod = []
    for _ in producers:
        try:
            prod.append(prod_results.get(timeout=10))
        except queue.Empty:
            logger.error("a producer process returned no summary")
            break
    g = system.group_stats(r)
    processed_total = (g["read"] - g["pending"]) - (base["read"] - base["pending"])
    raised = [
        a for a in _feed_alerts(r, start_feed) if keys.stream_id(a[2]) <= keys.stream_id(end_feed)
    ]
    for sub in subs:
        sub["alerts"] = [
            a for a in sub.get("alerts", []) if keys.stream_id(a[1]) <= keys.stream_id(end_feed)
        ]
    discarded = discard_backlog(system, r) if g["lag"] else 0
    r.close()

    prod_s = t_prod_end - t_start
    all_lat = [lat for a in (s.get("alerts", []) for s in subs) for (_, _, rt, det, _) in a
               if det for lat in [(rt - det) * 1000.0]]  # fmt: skip
    lat = latency_summary(all_lat)
    raised_lat = latency_summary(
        [
            (ra - det) * 1000.0
            for s in subs
            for (_, _, _, det, ra) in s.get("alerts", [])
            if det and ra
        ]
    )
    delivery = delivery_check(raised, subs)
    target = cameras * args.fps
    # Offered rate as the producers measured it (excludes process start-up).
    prod_elapsed = max((pr["elapsed_s"] for pr in prod), default=0.0)
    offered = sum(pr["frames"] for pr in prod) / prod_elapsed if prod_elapsed else 0.0
    backlog_end = g["lag"] + g["pending"]
    episodes: dict[str, int] = {}
    for pr in prod:
        for k, v in pr["episodes"].items():
            episodes[k] = episodes.get(k, 0) + v
    kinds: dict[str, int] = {}
    for _aid, dept, _ in raised:
        kinds[dept] = kinds.get(dept, 0) + 1
    producer_bound = offered < 0.95 * target
    keeps_up = processed_total >= 0.99 * sent_total and backlog_end == 0
    # Processing rate over the production window only (excludes the drain).
    proc_during = [p["processed_fps"] for p in timeline
                   if p["cameras"] == cameras and p["phase"] == "produce"]  # fmt: skip
    result = {
        "cameras": cameras,
        "fps": args.fps,
        "target_fps": target,
        "offered_fps": round(offered, 1),
        "processed_fps_during_produce": round(sum(proc_during) / len(proc_during), 1)
        if proc_during
        else None,
        "frames_sent": sent_total,
        "frames_processed": processed_total,
        "backlog_at_end": backlog_end,
        "produce_s": round(prod_s, 2),
        "drain_s": round(t_end - t_prod_end - 4.0, 2),
        "backlog_discarded_after_level": discarded,
        "load_avg_1m": {"start": round(load_start, 2), "end": round(load_end, 2)},
        "late_ticks": sum(pr["late_ticks"] for pr in prod),
        "subscribers": args.subscribers,
        "subscribers_connected": n_connected,
        "alerts_raised": len(raised),
        "alerts_per_s": round(len(raised) / (t_end - t_start), 3),
        "alerts_by_department": kinds,
        "episodes_started": episodes,
        "latency_ms": lat,
        "detect_to_raise_ms": raised_lat,
        "delivery": delivery,
        "components": sampler.summary(since_s=2.0),
        "producer_bound": producer_bound,
        "rules_keep_up": keeps_up,
    }
    p99 = lat["p99"]
    result["sustained"] = bool(
        not producer_bound
        and keeps_up
        and p99 is not None
        and p99 < args.p99_target_ms
        and delivery["lost"] == 0
        and delivery["duplicated"] == 0
        and n_connected == args.subscribers
    )
    return result


def _plot(path: Path, timeline: list[dict[str, Any]], levels: list[dict[str, Any]]) -> None:
    xs = [p["t"] for p in timeline]
    plot_panels(
        path,
        "citysight city simulation: " + ", ".join(f"{lv['cameras']} cams" for lv in levels),
        [
            (
                "frame results/s",
                [
                    ("offered", xs, [p["offered_fps"] for p in timeline]),
                    ("processed", xs, [p["processed_fps"] for p in timeline]),
                ],
            ),
            ("backlog (entries)", [("lag + pending", xs, [p["backlog"] for p in timeline])]),
            (
                "alert latency (ms)",
                [
                    ("p50 (1 s window)", xs, [p["lat_p50_ms"] for p in timeline]),
                    ("p99 (1 s window)", xs, [p["lat_p99_ms"] for p in timeline]),
                ],
            ),
            ("alerts/s", [("raised", xs, [p["alerts_per_s"] for p in timeline])]),
            ("cameras", [("level", xs, [p["cameras"] for p in timeline])]),
        ],
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``citysight bench city``."""
    args = build_parser().parse_args(argv)
    levels_cams = (
        list(STEP_LADDER)
        if args.step_up
        else [int(x) for x in str(args.cameras).split(",") if x.strip()]
    )
    if not levels_cams or min(levels_cams) < 1 or max(levels_cams) > 100_000:
        print("citysight bench city: --cameras must be 1..100000", file=sys.stderr)
        return 2
    if args.duration <= 0 or args.duration > 900 or args.subscribers > 2000:
        print("citysight bench city: --duration 0..900 s, --subscribers <= 2000", file=sys.stderr)
        return 2
    port = free_port()
    cfg = city_config_dict(
        max(levels_cams),
        http_port=port,
        shards=args.shards,
        max_connections=max(100, args.subscribers * 2 + 50),
    )
    tokens = make_tokens()
    workdir = Path(tempfile.mkdtemp(prefix="csbench-city-"))
    system = CitySystem(cfg, principals(tokens), workdir)
    print(
        f"city bench: starting embedded Redis + private Ray + Serve app on 127.0.0.1:{port} "
        f"(ingress: Ray Serve proxy, rules: RulesConsumer deployment)",
        file=sys.stderr,
    )
    t_boot = time.monotonic()
    system.start()
    boot_s = time.monotonic() - t_boot
    timeline: list[dict[str, Any]] = []
    levels: list[dict[str, Any]] = []
    t_origin = time.time()
    try:
        for cams in levels_cams:
            res = run_level(system, args, cams, tokens, timeline, t_origin)
            levels.append(res)
            print(_level_line(res), file=sys.stderr)
            if args.step_up and not res["sustained"]:
                break
    finally:
        system.stop()
    sustained = [lv["cameras"] for lv in levels if lv["sustained"]]
    doc = {
        "benchmark": "city",
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "ingress": "ray-serve",
        "rules": "serve_app.deployments.rules.RulesConsumer",
        "boot_s": round(boot_s, 1),
        "params": {
            "fps": args.fps,
            "duration_s": args.duration,
            "subscribers": args.subscribers,
            "producers": args.producers,
            "shards": args.shards,
            "p99_target_ms": args.p99_target_ms,
            "mix": _mix(args.rate_scale).to_dict(),
        },
        "levels": levels,
        "max_sustained_cameras": max(sustained) if sustained else 0,
        "timeline": timeline,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1, ensure_ascii=False))
    print(f"city bench: JSON written to {args.out}", file=sys.stderr)
    if not args.no_plot:
        png = args.plot or args.out.with_suffix(".png")
        _plot(png, timeline, levels)
        print(f"city bench: plot written to {png}", file=sys.stderr)
    print(
        f"city bench: largest camera count sustained at {args.fps:g} fps with p99 < "
        f"{args.p99_target_ms:g} ms: {doc['max_sustained_cameras']}"
    )
    return 0


def _level_line(res: dict[str, Any]) -> str:
    lat = res["latency_ms"]
    d = res["delivery"]
    return (
        f"{res['cameras']:>6} cams: offered {res['offered_fps']:,.0f}/s of "
        f"{res['target_fps']:,.0f}/s, processed {res['frames_processed']:,} of "
        f"{res['frames_sent']:,} (backlog {res['backlog_at_end']:,}), alerts "
        f"{res['alerts_raised']} ({res['alerts_per_s']}/s), latency p50 {lat['p50']} p99 "
        f"{lat['p99']} max {lat['max']} ms, lost {d['lost']} dup {d['duplicated']} "
        f"foreign {d['foreign']} -> {'SUSTAINED' if res['sustained'] else 'not sustained'}"
    )


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    raise SystemExit(main())
