"""Map page responsiveness in headless Chromium: many cameras, many open alerts.

Measures, with the page's API answered by :mod:`benchmarks.map.fake_api`:

* time to first render: navigation start → cameras clustered, alerts listed, feed open;
* time to apply bursts of 100 alert messages (half new alerts, half lifecycle updates of
  listed ones) including style/layout and the next painted frame;
* time to apply 500 camera-health changes;
* long tasks (> 50 ms main-thread blocks) during load and during the bursts.

Usage::

    python -m benchmarks.map.run [--cameras 7500] [--alerts 500] [--out benchmarks/results/map.json]
    python -m benchmarks.map.run --screenshot docs/map.png   # README picture (demo-like data)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.common.chromium import CHROMIUM, CHROMIUM_ARGS
from benchmarks.map.fake_api import FakeApi, make_alert, make_cameras

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
BASE = "http://citysight.test"
LONGTASK_OBSERVER = """
window.__longtasks = [];
new PerformanceObserver((l) => { for (const e of l.getEntries())
  window.__longtasks.push({start: e.startTime, dur: e.duration}); })
  .observe({type: 'longtask', buffered: true});
sessionStorage.setItem('citysight.token', 'bench-token');
"""
APPLY_BURST = """async (msgs) => {
  const cs = window.citysight;
  const t0 = performance.now();
  for (const m of msgs) cs.state.pending.push(m);
  cs.flush();
  document.body.offsetHeight;            // force style + layout of the changes
  await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));  // next frame painted
  return performance.now() - t0;
}"""


def _burst(api: FakeApi, rng: random.Random, n: int, next_id: int) -> list[dict[str, Any]]:
    msgs: list[dict[str, Any]] = []
    for k in range(n):
        if k % 2 == 0:
            a = make_alert(next_id + k, api.cameras, rng)
            a["state"] = "raised"
            api.alerts.append(a)
            msgs.append({"type": "alert", "id": f"{next_id + k}-0", "alert": a})
        else:
            old = dict(rng.choice(api.alerts))
            prev = old["state"]
            old["state"] = {"raised": "assigned", "assigned": "acknowledged"}.get(prev, "resolved")
            old["updated_at"] = datetime.now(UTC).isoformat()
            msgs.append(
                {
                    "type": "alert_event",
                    "id": f"{next_id + k}-0",
                    "alert": old,
                    "event": {
                        "alert_id": old["id"],
                        "seq": 1,
                        "from_state": prev,
                        "to_state": old["state"],
                        "actor": "bench",
                        "at": old["updated_at"],
                    },
                }
            )
    return msgs


class MainThreadCpu:
    """CPU time of the renderer's main thread between :meth:`start` and :meth:`stop`.

    Uses a Chrome trace (``toplevel`` tasks with thread durations ``tdur``).
    """

    def __init__(self, cdp: Any, page: Any) -> None:
        """Trace through ``cdp`` (a CDP session of ``page``)."""
        self.cdp = cdp
        self.page = page
        self.events: list[dict[str, Any]] = []
        self.done = False
        cdp.on("Tracing.dataCollected", lambda e: self.events.extend(e["value"]))
        cdp.on("Tracing.tracingComplete", lambda e: setattr(self, "done", True))

    def start(self) -> None:
        """Begin tracing."""
        self.cdp.send(
            "Tracing.start",
            {
                "categories": "toplevel,devtools.timeline,disabled-by-default-devtools.timeline",
                "transferMode": "ReportEvents",
            },
        )

    def stop(self) -> float:
        """End tracing; main-thread CPU milliseconds of all renderer main threads."""
        self.cdp.send("Tracing.end")
        deadline = time.monotonic() + 30
        while not self.done and time.monotonic() < deadline:
            self.page.wait_for_timeout(50)
        mains = {
            (e["pid"], e["tid"])
            for e in self.events
            if e.get("ph") == "M"
            and e.get("name") == "thread_name"
            and e.get("args", {}).get("name") == "CrRendererMain"
        }
        us = sum(
            e.get("tdur", 0)
            for e in self.events
            if e.get("ph") == "X" and e.get("name") == "RunTask" and (e["pid"], e["tid"]) in mains
        )
        return float(us) / 1000.0


def _longtasks(page: Any, since_ms: float = 0.0) -> dict[str, float]:
    tasks = page.evaluate("window.__longtasks")
    durs = [t["dur"] for t in tasks if t["start"] >= since_ms]
    return {
        "count": len(durs),
        "total_ms": round(sum(durs), 1),
        "max_ms": round(max(durs), 1) if durs else 0.0,
    }


def run(cameras: int, alerts: int, bursts: int, screenshot: Path | None) -> dict[str, Any]:
    """Open the page against the fake API and measure; returns the results object."""
    from playwright.sync_api import sync_playwright

    load_before = round(os.getloadavg()[0], 2)
    rng = random.Random(7)
    cams = make_cameras(cameras)
    api = FakeApi(cameras=cams, alerts=[make_alert(i, cams, rng) for i in range(alerts)])
    if screenshot:
        api.snapshot_jpeg = _demo_jpeg()
    with tempfile.TemporaryDirectory(prefix="csmap-") as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            args=CHROMIUM_ARGS,
            headless=True,
            viewport={"width": 1440, "height": 900},
        )
        api.install(ctx, BASE)
        ctx.add_init_script(LONGTASK_OBSERVER)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # A same-origin first page, so the map page's renderer is traced from its first task.
        page.goto(f"{BASE}/static/vendor/README.txt")
        load_tracer = None if screenshot else MainThreadCpu(ctx.new_cdp_session(page), page)
        if load_tracer:
            load_tracer.start()
        t_wall = time.perf_counter()
        page.goto(f"{BASE}/")
        page.wait_for_selector("body[data-ready=true]", timeout=120_000)
        load_cpu_ms = load_tracer.stop() if load_tracer else 0.0
        page.wait_for_function(
            "document.querySelector('[data-testid=ws-status]').dataset.state === 'live'"
        )
        wall_ms = (time.perf_counter() - t_wall) * 1000
        ready_ms = page.evaluate("performance.getEntriesByName('citysight-ready')[0].startTime")
        load_lt = _longtasks(page)
        listed = page.locator("[data-testid=alert-item]").count()

        if screenshot:
            _screenshot(page, api, screenshot)
            ctx.close()
            return {}

        t_mark = page.evaluate("performance.now()")
        burst_ms = []
        next_id = alerts
        tracer = MainThreadCpu(ctx.new_cdp_session(page), page)
        tracer.start()
        for _ in range(bursts):
            msgs = _burst(api, rng, 100, next_id)
            next_id += 100
            burst_ms.append(page.evaluate(APPLY_BURST, msgs))
        burst_cpu_ms = tracer.stop()
        burst_lt = _longtasks(page, t_mark)

        health = [
            {
                "type": "camera_status",
                "id": f"h{i}",
                "camera_status": {
                    "camera_id": c["id"],
                    "state": rng.choice(["stalled", "offline", "running"]),
                    "at": time.time(),
                },
            }
            for i, c in enumerate(rng.sample(cams, min(500, len(cams))))
        ]
        health_ms = page.evaluate(APPLY_BURST, health)

        # Interaction while loaded: open an alert (detail panel with timeline).
        t0 = time.perf_counter()
        page.locator("[data-testid=alert-item]").first.click()
        page.wait_for_selector("[data-testid=timeline-event]")
        open_ms = (time.perf_counter() - t0) * 1000
        # Zoom in and out over the clustered cameras.
        zoom_tracer = MainThreadCpu(ctx.new_cdp_session(page), page)
        zoom_tracer.start()
        zoom_ms = page.evaluate("""async () => {
          const m = window.citysight.state.map; const t0 = performance.now();
          const zoom = (dz) => new Promise((r) => {
            m.once('zoomend', r); m.setZoom(m.getZoom() + dz, {animate: false}); });
          await zoom(3);
          await zoom(-3);
          await new Promise((r) => requestAnimationFrame(() => setTimeout(r, 0)));
          return performance.now() - t0; }""")
        zoom_cpu_ms = zoom_tracer.stop()
        final_listed = page.locator("[data-testid=alert-item]").count()
        ctx.close()
    return {
        "benchmark": "map page responsiveness (headless Chromium, fake API)",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            # Shared CI-like machine: the load average says how noisy the numbers are.
            "load_avg_1m_before": load_before,
            "load_avg_1m_after": round(os.getloadavg()[0], 2),
        },
        "note": (
            "Wall times (*_ms) include waiting for the CPU: on a shared machine compare them "
            "only at similar load averages; *_main_thread_cpu_ms is the renderer main thread's "
            "own CPU time and is the load-independent figure."
        ),
        "cameras": cameras,
        "open_alerts": alerts,
        "listed_alerts_at_load": listed,
        "time_to_first_render_ms": round(ready_ms, 1),
        "time_to_live_feed_wall_ms": round(wall_ms, 1),
        "time_to_first_render_main_thread_cpu_ms": round(load_cpu_ms, 1),
        "load_long_tasks": load_lt,
        "apply_100_alert_messages_ms": {
            "bursts": len(burst_ms),
            "median": round(statistics.median(burst_ms), 1),
            "max": round(max(burst_ms), 1),
            "all": [round(x, 1) for x in burst_ms],
        },
        # Renderer main-thread CPU time (thread time of its tasks): unlike the wall times
        # above it does not grow when other processes compete for the cores.
        "apply_100_alert_messages_main_thread_cpu_ms": round(burst_cpu_ms / max(1, bursts), 1),
        "burst_long_tasks": burst_lt,
        "apply_500_camera_status_ms": round(health_ms, 1),
        "open_alert_detail_ms": round(open_ms, 1),
        "zoom_in_out_3_levels_ms": round(zoom_ms, 1),
        "zoom_in_out_3_levels_main_thread_cpu_ms": round(zoom_cpu_ms, 1),
        "listed_alerts_at_end": final_listed,
        "page_errors": errors,
    }


def _demo_jpeg() -> bytes:
    """A plain synthetic street-like picture (no real person) for the detail panel."""
    import cv2
    import numpy as np

    img = np.full((360, 640, 3), (90, 95, 100), np.uint8)
    cv2.rectangle(img, (0, 230), (640, 360), (60, 60, 62), -1)
    for x in range(0, 640, 80):
        cv2.rectangle(img, (x + 10, 60), (x + 60, 200), (120, 130, 140), -1)
    flame = np.array([[200, 300], [230, 170], [250, 230], [270, 120], [300, 240], [320, 300]])
    cv2.fillPoly(img, [flame], (20, 110, 240))
    cv2.fillPoly(img, [flame // 1 + [15, 30]], (30, 200, 255))
    ok, buf = cv2.imencode(".jpg", img)
    return bytes(buf) if ok else b""


def _screenshot(page: Any, api: FakeApi, out: Path) -> None:
    page.evaluate("""() => { const m = window.citysight.state.map;
      m.setView([20.02, 110.41], 12, {animate: false}); }""")
    fire = make_alert(len(api.alerts), api.cameras, random.Random(3), kind="fire")
    api.alerts.append(fire)
    fire["severity"] = "critical"
    fire["state"] = "raised"
    fire["evidence"][0]["boxes"] = [[190, 110, 330, 305]]
    api.push([{"type": "alert", "alert": fire}])
    page.wait_for_timeout(400)
    page.locator(f"[data-testid=alert-item][data-alert-id='{fire['id']}']").click()
    page.wait_for_selector("[data-testid=snapshot-img]:not([hidden])")
    page.wait_for_timeout(800)
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out))


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(prog="citysight bench map", description=__doc__.splitlines()[0])
    p.add_argument("--cameras", type=int, default=7500)
    p.add_argument("--alerts", type=int, default=500)
    p.add_argument("--bursts", type=int, default=10, help="bursts of 100 alert messages")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "map.json")
    p.add_argument(
        "--screenshot",
        type=Path,
        default=None,
        help="write a screenshot with demo-like data instead of measuring",
    )
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.screenshot:
        run(min(args.cameras, 2500), min(args.alerts, 40), 0, args.screenshot)
        logger.info("wrote %s", args.screenshot)
        return 0
    res = run(args.cameras, args.alerts, args.bursts, None)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, ensure_ascii=False) + "\n")
    print(json.dumps(res, indent=2, ensure_ascii=False))
    return 1 if res["page_errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
