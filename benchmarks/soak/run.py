"""Soak of the default path: the README's demo under load, then faults one at a time.

``citysight bench soak --duration-s 1800 --json`` runs the README's first command verbatim in
a clean clone (:mod:`benchmarks.soak.quickstart`), adds one RTSP camera (Debian's GStreamer
RTSP server replaying the demo's plate clip) through the API, and puts the load on it: a
headless Chromium signed in on the map, 20 WebSocket subscribers (admin and the three
department roles, resuming with ``last_id``) and a REST poller. Every ``--check-every-s``
(30 s) it checks that frames are analysed on every camera (entries on the detections streams,
and ``/health`` ``components.inference.detail.frames_ok``), that alerts keep arriving (cooldown
aware, see :func:`benchmarks.soak.accounting.kind_gaps`) and that ``/health`` matches what it
measured. After ``--warmup-s`` it injects, one at a time: a Triton crash, a stream-worker actor
crash, a Redis restart (AOF), a 30 s RTSP camera outage and a poison entry on a detections
stream, and records for each how long ``/health`` took to show it, how long until detections
flowed again and how many alerts were lost (definitions in :mod:`benchmarks.soak.accounting`).

Bounded in time (every wait has a limit; the whole run ends by ``duration + faults × (fault
timeout + settle)`` after the banner), results are rewritten after every check and fault
(``benchmarks/results/soak.json``; ``"complete": false`` until the end), and everything it
started is stopped in ``finally``: the load, the RTSP server, a Redis it restarted, and the demo
(Ctrl-C, then SIGKILL of whatever is left), even when a check fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from benchmarks.soak import accounting as acct
from benchmarks.soak import faults as flt
from benchmarks.soak.load import MapBrowser, RestPoller, Subscribers, started_s
from benchmarks.soak.observe import Observer
from benchmarks.soak.quickstart import (
    ROOT,
    QuickStartRun,
    clean_clone,
    default_ports_lock,
    listening,
    prepare_clone_venv,
    quick_start_commands,
    require_free_ports,
    wait_health,
)
from citysight import keys

logger = logging.getLogger(__name__)

BASE = "http://127.0.0.1:8000"
WS = "ws://127.0.0.1:8000/ws"
REDIS_PORT = 6390
REDIS_URL = f"redis://127.0.0.1:{REDIS_PORT}/0"
RTSP_CAMERA = "cam-rtsp-01"
ALERT_KINDS = ("fire", "smoke", "vending", "plate", "face")
# Components whose state should change when each fault hits.
FAULT_COMPONENTS = {
    "triton_kill": ("inference",),
    "stream_worker_kill": ("streams", "inference"),
    "redis_restart": ("redis",),
    "rtsp_camera_stop": ("streams",),
    "poison_entry": ("rules",),
}


@dataclass
class SoakOptions:
    """Knobs of one soak (the CLI's flags)."""

    duration_s: float = 1800.0
    warmup_s: float = 120.0
    check_every_s: float = 30.0
    faults: tuple[str, ...] = flt.FAULTS
    fault_timeout_s: float = 180.0
    settle_s: float = 60.0
    rtsp_stop_s: float = 30.0
    redis_down_s: float = 5.0
    subscribers: int = 20
    browser: bool = True
    grace_s: float = 90.0
    gap_s: float = 3.0
    out: Path = ROOT / "benchmarks" / "results" / "soak.json"
    workdir: Path | None = None
    keep: bool = False
    lock_timeout_s: float = 600.0
    startup_timeout_s: float = 900.0
    command: str | None = None  # None: the README's first command, verbatim

    def bound_s(self) -> float:
        """Longest the soak runs after the banner (every phase has a limit)."""
        return (
            max(
                self.duration_s,
                self.warmup_s
                + len(self.faults) * (self.fault_timeout_s + self.rtsp_stop_s + self.settle_s),
            )
            + self.check_every_s
        )


@dataclass
class _DemoFacts:
    """What the soak knows about the demo's configuration (read from citysight.app.demo)."""

    cameras: list[str]
    cooldown_s: dict[str, float]
    owner: dict[str, str]
    departments: dict[str, str]
    shards: int

    def owner_of(self, kind: str) -> str:
        return self.owner.get(kind, "")


def demo_facts() -> _DemoFacts:
    """Cameras, cooldowns per kind, routing and role departments of ``citysight demo``."""
    from citysight.app.demo import DEMO_ROUTING, demo_config_dict

    doc = demo_config_dict(Path("/nonexistent-demo-clips"))
    cooldown: dict[str, float] = {}
    for rule in doc["rules"]:
        cooldown[rule["kind"]] = min(cooldown.get(rule["kind"], 1e9), float(rule["cooldown_s"]))
    return _DemoFacts(
        cameras=[c["id"] for c in doc["cameras"]],
        cooldown_s=cooldown,
        owner={r["kind"]: r["department"] for r in DEMO_ROUTING},
        departments={t["role"]: t["department"] for t in doc["tokens"]},
        shards=int(doc["services"]["streams"]["shards"]),
    )


@dataclass
class _State:
    phase: str = "starting"
    excluded: set[str] = field(default_factory=set)  # cameras not expected to flow now


class Soak:
    """One soak run; :meth:`run` returns the results document (also written to ``out``)."""

    def __init__(self, opts: SoakOptions) -> None:
        self.opts = opts
        self.facts = demo_facts()
        self.results: dict[str, Any] = {
            "benchmark": "soak",
            "complete": False,
            "started_at": time.time(),
            "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(opts).items()},
            "host": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_avg_start": _loadavg(),
            },
            "source": _source_state(),
            "checks": [],
            "faults": [],
        }
        self.state = _State()
        self.run_: QuickStartRun | None = None
        self.observer: Observer | None = None
        self.subs: Subscribers | None = None
        self.poller: RestPoller | None = None
        self.browser: MapBrowser | None = None
        self.rtsp: Any = None
        self.redis_restarted: Any = None
        self.clone: Path | None = None
        self.banner_at = 0.0
        self._workdir: Path | None = None
        # The checker thread and the fault schedule both record: one lock for the document.
        self._write_lock = threading.RLock()
        self._halt = threading.Event()
        self._checker: threading.Thread | None = None

    # -- results ------------------------------------------------------------------------

    def write(self) -> None:
        """Rewrite the results file (atomically: a reader never sees half a document)."""
        with self._write_lock:
            out = self.opts.out
            out.parent.mkdir(parents=True, exist_ok=True)
            tmp = out.with_suffix(out.suffix + ".tmp")
            tmp.write_text(json.dumps(self.results, indent=2, default=str) + "\n")
            tmp.replace(out)

    def _record(self, section: str, rec: dict[str, Any]) -> None:
        with self._write_lock:
            self.results[section].append(rec)
            self.write()

    # -- the run ------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        """Run the soak; always cleans up and writes the results."""
        self.write()
        try:
            with default_ports_lock(self.opts.lock_timeout_s):
                require_free_ports()
                try:
                    self._start_demo()
                    self._add_rtsp_camera()
                    self._start_load()
                    self._checker = threading.Thread(
                        target=self._check_loop, name="soak-checks", daemon=True
                    )
                    self._checker.start()
                    self._steady(self.banner_at + self.opts.warmup_s)
                    for name in self.opts.faults:
                        self._fault(name)
                    self._steady(self.banner_at + self.opts.duration_s)
                    self.check()
                except Exception as exc:
                    logger.exception("soak aborted")
                    self.results["error"] = f"{type(exc).__name__}: {exc}"[:4000]
                finally:
                    self._teardown()
        except Exception as exc:  # the lock or the ports
            self.results["error"] = f"{type(exc).__name__}: {exc}"[:4000]
        self._verdict()
        self.results["complete"] = True
        self.results["finished_at"] = time.time()
        self.write()
        return self.results

    def _start_demo(self) -> None:
        self.state.phase = "startup"
        base = self.opts.workdir or Path(tempfile.mkdtemp(prefix="citysight-soak-"))
        base.mkdir(parents=True, exist_ok=True)
        self._workdir = base
        line = self.opts.command or quick_start_commands()[0]
        self.clone = clean_clone(base / "citysight")
        prepared = prepare_clone_venv(self.clone)
        self.results["demo"] = {
            "command": line,
            "readme_verbatim": self.opts.command is None,
            "clone": str(self.clone),
            "venv_prepared_from_tier": prepared,
            "log": str(base / "demo.log"),
        }
        self.run_ = QuickStartRun(line, self.clone, base / "demo.log").start()
        t0 = time.monotonic()
        banner_mono = self.run_.wait_banner(
            self.opts.startup_timeout_s, roles=("admin", "police", "enforcement", "fire")
        )
        self.banner_at = time.time() - (time.monotonic() - banner_mono)
        self.results["demo"]["banner_after_s"] = round(banner_mono - t0, 1)
        wait_health(BASE, self.run_, 180)
        self.observer = Observer(BASE, REDIS_URL, self.facts.shards).start()
        self.state.phase = "steady"
        self.write()

    def _add_rtsp_camera(self) -> None:
        from streams.testing.rtsp_server import RtspTestServer, gst_rtsp_available

        assert self.clone is not None and self.run_ is not None and self._workdir is not None
        if not gst_rtsp_available():
            raise RuntimeError(
                "GStreamer RTSP server not available (bash infra/local/setup.sh --test installs "
                "python3-gi and gir1.2-gst-rtsp-server-1.0)"
            )
        clip = self.clone / ".citysight" / "demo-clips" / "plate.mp4"
        looped = flt.looped_clip(clip, self._workdir / "rtsp-plate.mp4", self.opts.bound_s() + 300)
        self.rtsp = RtspTestServer({"plate": looped}).start()
        cam = {
            "id": RTSP_CAMERA,
            "name": "Harbour gate (RTSP, soak)",
            "url": self.rtsp.url("plate"),
            "latitude": 20.0350,
            "longitude": 110.3150,
            "jurisdiction": "longhua",
            "detectors": ["plate"],
            "profile": {"analytics_fps": 2.0, "no_frame_timeout_s": 10.0},
        }
        resp = httpx.post(f"{BASE}/api/cameras", json=cam, headers=self._auth(), timeout=20)
        if resp.status_code != 201:
            raise RuntimeError(f"POST /api/cameras answered {resp.status_code}: {resp.text[:300]}")
        self.facts.cameras.append(RTSP_CAMERA)
        self.results["rtsp_camera"] = {"id": RTSP_CAMERA, "added_at": time.time()}

    def _start_load(self) -> None:
        assert self.run_ is not None
        tokens = dict(self.run_.tokens)
        self.subs = Subscribers(
            WS, tokens, self.facts.departments, self.facts.owner_of, self.opts.subscribers
        ).start()
        self.poller = RestPoller(BASE, tokens["admin"]).start()
        if self.opts.browser:
            self.browser = MapBrowser(BASE, tokens["admin"]).start()
            self.browser.ready.wait(120)

    def _auth(self) -> dict[str, str]:
        assert self.run_ is not None
        return {"Authorization": f"Bearer {self.run_.tokens['admin']}"}

    def _steady(self, until: float) -> None:
        self.state.phase = "steady"
        self.state.excluded = set()
        while time.time() < until and not self._halt.is_set():
            if self.run_ is not None and not self.run_.alive():
                raise RuntimeError(f"the demo exited:\n{self.run_.output(30)}")
            time.sleep(1.0)

    # -- checks -------------------------------------------------------------------------

    def _check_loop(self) -> None:
        while not self._halt.wait(self.opts.check_every_s):
            try:
                self.check()
            except Exception:  # a failing check is recorded, never kills the soak
                logger.exception("check failed")

    def check(self) -> dict[str, Any]:
        """One periodic check over the last ``check_every_s`` seconds; appended to results."""
        assert self.observer is not None and self.subs is not None
        now = time.time()
        lo = now - self.opts.check_every_s
        phase, excluded = self.state.phase, set(self.state.excluded)
        frames = {c: self.observer.count_between(c, lo, now) for c in self.facts.cameras}
        stalled = sorted(c for c, n in frames.items() if n == 0 and c not in excluded)
        samples = self.observer.health_since(lo)
        oks = [s["frames_ok"] for s in samples if "frames_ok" in s]
        # None: /health does not report frames_ok at all (a monitor cannot read it).
        frames_ok_grew = (oks[-1] > oks[0]) if len(oks) >= 2 else None
        arrivals: dict[str, list[float]] = {}
        for t, kind, _aid, _cam in self.subs.admin_arrivals():
            arrivals.setdefault(kind, []).append(t)
        gaps = acct.kind_gaps(
            {k: arrivals.get(k, []) for k in ALERT_KINDS},
            now,
            {k: self.facts.cooldown_s[k] for k in ALERT_KINDS},
            self.opts.grace_s,
            self.banner_at,
        )
        any_alert = max((ts[-1] for ts in arrivals.values() if ts), default=self.banner_at)
        quiet_limit = min(self.facts.cooldown_s[k] for k in ALERT_KINDS) + self.opts.grace_s
        alerts_stopped = now - any_alert > quiet_limit
        groups = self.observer.groups_since(lo)
        rules_ok = _rules_progress(groups)
        health = samples[-1] if samples else {}
        health_ok = bool(health) and not acct.health_not_ok(health)
        # Ground truth only: entries on the detections streams and the rules group's progress.
        reality_ok = not stalled and rules_ok
        frames_flowed = any(n > 0 for n in frames.values())
        late = sorted(k for k, v in gaps.items() if v["late"])
        rec = {
            "t": round(now, 1),
            "since_banner_s": round(now - self.banner_at, 1),
            "phase": phase,
            "frames": frames,
            "stalled_cameras": stalled,
            "frames_ok": oks[-1] if oks else None,
            "frames_ok_grew": frames_ok_grew,
            "rules_progress": rules_ok,
            "alerts_by_kind": {k: v["count"] for k, v in gaps.items()},
            "late_kinds": late,
            "alerts_stopped": alerts_stopped,
            "health": {
                "status": health.get("status"),
                "code": health.get("code"),
                "states": health.get("states"),
            },
            "health_ok": health_ok,
            "reality_ok": reality_ok,
            "health_lies": health_ok and not reality_ok,
            "health_false_alarm": (not health_ok) and reality_ok,
            "load_avg": _loadavg(),
        }
        violations: list[str] = (
            [f"no frames analysed on {c}" for c in stalled]
            + (["/health has no inference frames_ok"] if frames_ok_grew is None else [])
            + (
                ["/health frames_ok did not grow while frames were analysed"]
                if frames_ok_grew is False and frames_flowed
                else []
            )
            + [f"{k} alerts stopped (cooldown-aware)" for k in late]
            + (["no alert of any kind"] if alerts_stopped else [])
            + (["rules made no progress"] if not rules_ok else [])
            + (
                ["/health says ok while analytics is broken"]
                if health_ok and not reality_ok
                else []
            )
        )
        rec["violations"] = violations
        rec["counted"] = phase == "steady"
        logger.info(
            "check at %.0f s (%s): frames %s, frames_ok %s, health %s, violations: %s",
            rec["since_banner_s"], phase, sum(frames.values()), rec["frames_ok"],
            health.get("status"), "; ".join(violations) or "none",
        )  # fmt: skip
        self._record("checks", rec)
        return rec

    # -- faults -------------------------------------------------------------------------

    def _fault(self, name: str) -> None:
        assert self.run_ is not None and self.observer is not None and self.proc_pid
        opts = self.opts
        rec: dict[str, Any] = {"fault": name, "components": list(FAULT_COMPONENTS[name])}
        self.state.phase = f"fault:{name}"
        logger.info("injecting fault %s", name)
        affected = list(self.facts.cameras)
        t_ref = fault_at = time.time()
        rec["at"] = fault_at
        rec["since_banner_s"] = round(fault_at - self.banner_at, 1)
        poison_id: str | None = None
        dead_before = _dead_count(self.observer)
        gap = {
            c: acct.gap_threshold(self.observer.entry_times(c), fault_at, opts.gap_s)
            for c in self.facts.cameras
        }
        rec["gap_s"] = gap
        try:
            if name == "triton_kill":
                rec["detail"] = flt.kill_triton(self.proc_pid)
            elif name == "stream_worker_kill":
                rec["detail"] = flt.kill_stream_worker(self.proc_pid)
            elif name == "redis_restart":
                assert self.clone is not None
                srv = flt.restart_redis(
                    self.proc_pid,
                    REDIS_PORT,
                    self.clone / ".citysight" / "redis",
                    opts.redis_down_s,
                )
                self.redis_restarted = srv
                rec["detail"] = {"down_s": opts.redis_down_s, "back_at": time.time()}
            elif name == "rtsp_camera_stop":
                affected = [RTSP_CAMERA]
                self.state.excluded = {RTSP_CAMERA}
                self.rtsp.stop()
                rec["detail"] = self._watch_camera(RTSP_CAMERA, fault_at, opts.rtsp_stop_s)
                self.rtsp.start()
                t_ref = time.time()
                rec["detail"]["restored_at"] = t_ref
            elif name == "poison_entry":
                affected = []
                poison_id = flt.poison_entry(REDIS_URL, self.facts.cameras[2], self.facts.shards)
                rec["detail"] = {"entry_id": poison_id, "camera": self.facts.cameras[2]}
            else:
                raise ValueError(f"unknown fault {name!r}")
        except flt.FaultError as exc:
            rec["error"] = str(exc)
        # Wait (bounded) for the system to recover.
        deadline = t_ref + opts.fault_timeout_s
        recovered_at: float | None = None
        while time.time() < deadline and "error" not in rec:
            time.sleep(1.0)
            now = time.time()
            if now - t_ref < max(gap.values(), default=opts.gap_s) + 5:
                continue
            if poison_id is not None:
                passed = _past_poison(self.observer, poison_id, self.facts.shards)
                if passed:
                    recovered_at = now
                    break
                continue
            flowing = all(self.observer.count_between(c, now - gap[c], now) > 0 for c in affected)
            gaps = [
                acct.interruption(c, self.observer.entry_times(c), t_ref, now, gap[c])
                for c in affected
            ]
            if flowing and acct.recovery_s(gaps, t_ref) is not None:
                recovered_at = now
                break
        end = time.time()
        self.state.excluded = set()  # the RTSP camera is expected to flow again from here
        health = self.observer.health_since(fault_at - 1)
        comps = FAULT_COMPONENTS[name]
        shown = acct.first_after(health, fault_at, lambda s: acct.health_not_ok(s, comps))
        rec["health_shows_s"] = round(shown - fault_at, 1) if shown is not None else None
        if shown is not None:
            what = next(h for h in health if h["t"] == shown)
            rec["health_showed"] = {
                "status": what.get("status"),
                "code": what.get("code"),
                "not_running": {k: v for k, v in (what.get("states") or {}).items()
                                if v != "running"},
            }  # fmt: skip
        if affected:
            gaps = [
                acct.interruption(c, self.observer.entry_times(c), t_ref, end, gap[c])
                for c in affected
            ]
            rec["interrupted_cameras"] = [g.camera_id for g in gaps if g.interrupted]
            # Entry times around the fault (s from the fault), the evidence behind the numbers.
            rec["timeline"] = {
                c: [
                    round(t - fault_at, 2)
                    for t in self.observer.entry_times(c)
                    if fault_at - 20 <= t <= end
                ][:400]
                for c in affected
            }
            rec_s = acct.recovery_s(gaps, t_ref)
            rec["detections_again_s"] = rec_s if recovered_at is not None else None
            if name == "rtsp_camera_stop":
                rec["detections_again_after_restore_s"] = rec["detections_again_s"]
                rec["detections_again_s"] = (
                    round(rec_s + (t_ref - fault_at), 1)
                    if rec_s is not None and recovered_at
                    else None
                )
        else:
            rec["detections_again_s"] = 0.0  # detections never stopped; rules are measured
            rec["rules_past_poison_s"] = (
                round(recovered_at - fault_at, 1) if recovered_at is not None else None
            )
            rec["dead_lettered"] = _dead_count(self.observer) - dead_before
        rec["recovered"] = recovered_at is not None
        self.state.phase = f"settle:{name}"
        settle_until = time.time() + opts.settle_s
        while time.time() < settle_until and self.run_.alive():
            time.sleep(1.0)
        if shown is not None:
            # When /health said ok again after showing the fault (None: not by the settle end).
            ok_again = acct.first_after(
                self.observer.health_since(shown), shown, lambda s: not acct.health_not_ok(s)
            )
            rec["health_ok_again_s"] = (
                round(ok_again - fault_at, 1) if ok_again is not None else None
            )
        rec["window"] = [fault_at - 5, time.time()]
        logger.info(
            "fault %s: health shows it after %s s, detections again after %s s, recovered %s",
            name, rec.get("health_shows_s"), rec.get("detections_again_s"), rec["recovered"],
        )  # fmt: skip
        self._record("faults", rec)
        if not self.run_.alive():
            raise RuntimeError(f"the demo exited during {name}:\n{self.run_.output(30)}")

    @property
    def proc_pid(self) -> int:
        """Pid of the demo command (``bash -c``), root of its process tree."""
        return self.run_.proc.pid if self.run_ and self.run_.proc else 0

    def _watch_camera(self, cam: str, since: float, seconds: float) -> dict[str, Any]:
        """During an outage: when the camera's state left ``running`` and an offline alert came."""
        out: dict[str, Any] = {"stopped_for_s": seconds}
        end = since + seconds
        while time.time() < end:
            try:
                st = httpx.get(f"{BASE}/api/cameras/{cam}", headers=self._auth(), timeout=5)
                state = st.json().get("health", {}).get("state") if st.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                state = None
            if state not in (None, "running") and "camera_state_s" not in out:
                out["camera_state_s"] = round(time.time() - since, 1)
                out["camera_state"] = state
            time.sleep(1.0)
        assert self.subs is not None
        for t, kind, _aid, camera in self.subs.admin_arrivals():
            if kind == "camera_offline" and t >= since and camera == cam:
                out["offline_alert_s"] = round(t - since, 1)
                break
        return out

    # -- teardown and verdict -----------------------------------------------------------

    def _teardown(self) -> None:
        self._halt.set()
        if self._checker is not None:
            self._checker.join(60)
        for name, part in (
            ("browser", self.browser),
            ("rest", self.poller),
            ("websocket", self.subs),
        ):
            if part is not None:
                with contextlib.suppress(Exception):
                    part.stop()
                with contextlib.suppress(Exception):
                    self.results.setdefault("load", {})[name] = part.summary()
        stored: dict[str, dict[str, Any]] = {}
        if self.run_ is not None and self.run_.alive():
            try:
                stored = self._all_alerts()
            except Exception as exc:
                self.results["store_error"] = f"{type(exc).__name__}: {exc}"
        rc: int | None = None
        stop_error = None
        if self.run_ is not None:
            try:
                rc = self.run_.interrupt(180)
            except Exception as exc:
                stop_error = str(exc)[:2000]
            finally:
                self.run_.kill()
        if self.rtsp is not None:
            with contextlib.suppress(Exception):
                self.rtsp.stop()
        if self.redis_restarted is not None:
            with contextlib.suppress(Exception):
                self.redis_restarted.stop()
        if self.observer is not None:
            self.observer.stop()
        time.sleep(1.0)
        left = (
            self.run_.leftovers(extra_markers=tuple(self.run_.ray_sessions()))
            if (self.run_)
            else []
        )
        self.results["shutdown"] = {
            "exit_code": rc,
            "error": stop_error,
            "leftovers": left,
            # With the owner: another run that ignores the ports lock shows up here too.
            "ports_listening": [
                f"{p} ({_listener(p)})" for p in (8000, REDIS_PORT) if listening(p)
            ],
        }
        self._account(stored)
        if self._workdir is not None and not self.opts.keep and self.opts.workdir is None:
            shutil.rmtree(self._workdir, ignore_errors=True)

    def _all_alerts(self) -> dict[str, dict[str, Any]]:
        """Every alert in the store (admin listing, paged with ``before``)."""
        out: dict[str, dict[str, Any]] = {}
        before: str | None = None
        with httpx.Client(base_url=BASE, headers=self._auth(), timeout=30) as client:
            for _ in range(200):
                params: dict[str, Any] = {"limit": 500}
                if before:
                    params["before"] = before
                resp = client.get("/api/alerts", params=params)
                resp.raise_for_status()
                body = resp.json()
                items = body["items"] if isinstance(body, dict) else body
                for a in items:
                    out[a["id"]] = {
                        "kind": a["kind"],
                        "started_s": started_s(a),
                        "camera_id": a.get("camera_id"),
                        "departments": sorted(acct.alert_departments(a)),
                    }
                if len(items) < 500:
                    break
                before = items[-1]["id"]
        return out

    def _account(self, stored: dict[str, dict[str, Any]]) -> None:
        if self.subs is None:
            return
        subs = self.subs.subscriptions()
        owner = self.facts.owner_of
        if not stored:
            self.results["alerts"] = {"error": "no store listing (the demo was not running)"}
            return
        fault_recs: list[dict[str, Any]] = self.results["faults"]
        for rec in fault_recs:
            lo, hi = rec["window"]
            rec["alerts_lost"] = acct.alert_losses(stored, subs, (lo, hi), owner)
        whole = (self.banner_at, time.time())
        by_kind: dict[str, int] = {}
        for a in stored.values():
            by_kind[a["kind"]] = by_kind.get(a["kind"], 0) + 1
        self.results["alerts"] = {
            "stored": len(stored),
            "by_kind": by_kind,
            "whole_run": acct.alert_losses(stored, subs, whole, owner),
            "foreign_deliveries": sum(s.foreign for s in subs),
        }
        if self.observer is not None:
            rate = {}
            for c in self.facts.cameras:
                ts = self.observer.entry_times(c)
                span = (ts[-1] - ts[0]) if len(ts) > 1 else 0.0
                rate[c] = {
                    "frames": len(ts),
                    "per_min": round(60 * len(ts) / span, 1) if span else 0.0,
                }
            self.results["frames_analysed"] = rate
            last = self.observer.latest_health()
            self.results["frames_ok_last"] = last.get("frames_ok")

    def _verdict(self) -> None:
        problems: list[str] = []
        if self.results.get("error"):
            problems.append(f"aborted: {self.results['error'][:300]}")
        for rec in self.results.get("faults", []):
            if not rec.get("recovered"):
                problems.append(f"{rec['fault']}: not recovered within the limit")
            if rec["fault"] == "rtsp_camera_stop":
                # A camera outage is the camera's health (GET /api/cameras) and an offline
                # alert, not necessarily the deployment's /health.
                detail = rec.get("detail") or {}
                if detail.get("camera_state_s") is None:
                    problems.append("rtsp_camera_stop: the camera never left 'running'")
                if detail.get("offline_alert_s") is None:
                    problems.append("rtsp_camera_stop: no camera_offline alert")
            elif rec.get("health_shows_s") is None and rec["fault"] != "poison_entry":
                problems.append(f"{rec['fault']}: /health never showed it")
            lost = rec.get("alerts_lost") or {}
            if lost.get("stored_lost") or lost.get("undelivered"):
                problems.append(f"{rec['fault']}: alerts lost {lost}")
        counted = [c for c in self.results.get("checks", []) if c.get("counted")]
        bad = [c for c in counted if c.get("violations")]
        if bad:
            problems.append(f"{len(bad)} of {len(counted)} steady checks had violations")
        alerts = self.results.get("alerts", {})
        if alerts.get("foreign_deliveries"):
            problems.append(f"{alerts['foreign_deliveries']} alerts delivered outside scope")
        sd = self.results.get("shutdown", {})
        if sd.get("exit_code") != 0 or sd.get("leftovers") or sd.get("ports_listening"):
            problems.append(f"unclean shutdown: {sd}")
        br = self.results.get("load", {}).get("browser")
        if br and br.get("error"):
            problems.append(f"map browser failed: {br['error']}")
        self.results["problems"] = problems
        self.results["passed"] = not problems
        self.results["host"]["load_avg_end"] = _loadavg()


def _rules_progress(groups: list[dict[str, Any]]) -> bool:
    """Whether the rules group kept up in these samples (lag small or delivered id moved)."""
    if len(groups) < 2:
        return False
    first, last = groups[0], groups[-1]
    for key, g in last.items():
        if not isinstance(g, dict):
            continue
        lag = g.get("lag")
        moved = first.get(key, {}).get("last_delivered") != g.get("last_delivered")
        if not moved and (lag is None or lag > 0):
            return False
    return True


def _dead_count(obs: Observer) -> int:
    g = obs.groups_since(time.time() - 5)
    return int(g[-1].get("dead", 0)) if g else 0


def _past_poison(obs: Observer, poison_id: str, shards: int) -> bool:
    """Whether the rules group delivered past the poison entry and no longer holds it."""
    import redis

    r = redis.Redis.from_url(REDIS_URL, socket_timeout=3)
    try:
        for s in range(shards):
            key = keys.detections_stream(s)
            if not r.xrange(key, min=poison_id, max=poison_id):
                continue  # not this shard
            pend = r.xpending_range(key, "rules", min=poison_id, max=poison_id, count=1)
            info = [g for g in r.xinfo_groups(key) if g["name"] in (b"rules", "rules")]
            delivered = info[0]["last-delivered-id"] if info else b"0-0"
            delivered = delivered.decode() if isinstance(delivered, bytes) else str(delivered)
            return not pend and _id_gt(delivered, poison_id)
        # The entry is gone from the stream (trimmed after being acked or dead-lettered).
        return True
    except redis.RedisError:
        return False
    finally:
        r.close()


def _id_gt(a: str, b: str) -> bool:
    return keys.stream_id(a) > keys.stream_id(b)


def _listener(port: int) -> str:
    import psutil

    with contextlib.suppress(psutil.Error):
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return " ".join(psutil.Process(c.pid).cmdline())[:160]
    return "owner unknown"


def _loadavg() -> list[float]:
    with contextlib.suppress(OSError):
        return [round(x, 2) for x in os.getloadavg()]
    return []


def _source_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        res = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return res.stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "branch": git("rev-parse", "--abbrev-ref", "HEAD"),
        "uncommitted_changes_not_in_clone": bool(git("status", "--porcelain")),
    }


def build_parser() -> argparse.ArgumentParser:
    """The ``citysight bench soak`` flags."""
    d = SoakOptions()
    p = argparse.ArgumentParser(prog="citysight bench soak", description=__doc__.splitlines()[0])
    p.add_argument(
        "--duration-s",
        type=float,
        default=d.duration_s,
        help="soak length after the banner (faults run inside it; it grows when they need more)",
    )
    p.add_argument("--warmup-s", type=float, default=d.warmup_s, help="steady time before faults")
    p.add_argument("--check-every-s", type=float, default=d.check_every_s)
    p.add_argument(
        "--faults",
        default=",".join(d.faults),
        help=f"comma list of {', '.join(flt.FAULTS)}, or none",
    )
    p.add_argument(
        "--fault-timeout-s",
        type=float,
        default=d.fault_timeout_s,
        help="longest wait for recovery after each fault",
    )
    p.add_argument(
        "--settle-s", type=float, default=d.settle_s, help="steady time after each recovery"
    )
    p.add_argument("--rtsp-stop-s", type=float, default=d.rtsp_stop_s)
    p.add_argument("--redis-down-s", type=float, default=d.redis_down_s)
    p.add_argument("--subscribers", type=int, default=d.subscribers)
    p.add_argument("--no-browser", action="store_true", help="no Chromium on the map")
    p.add_argument(
        "--grace-s",
        type=float,
        default=d.grace_s,
        help="slack over a rule's cooldown before a recurring kind counts as late",
    )
    p.add_argument("--out", type=Path, default=d.out)
    p.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the clean clone goes (default: a temp dir, removed after)",
    )
    p.add_argument("--keep", action="store_true", help="keep the clone and its logs")
    p.add_argument(
        "--command",
        default=None,
        help="diagnostics only: run this instead of the README's first command (e.g. "
        "'.venv/bin/citysight demo --inference onnxruntime'); the results say so",
    )
    p.add_argument("--json", action="store_true", help="print the results JSON")
    return p


def parse_options(argv: list[str] | None) -> tuple[SoakOptions, bool]:
    """Options from the command line, and whether to print JSON.

    Raises:
        SystemExit: bad flags (argparse's message), or an unknown fault name.
    """
    ns = build_parser().parse_args(argv)
    faults = tuple(f for f in ns.faults.split(",") if f and f != "none")
    unknown = [f for f in faults if f not in flt.FAULTS]
    if unknown:
        build_parser().error(f"unknown fault(s) {unknown}; known: {', '.join(flt.FAULTS)}")
    for name in ("duration_s", "warmup_s", "check_every_s", "fault_timeout_s", "settle_s"):
        if getattr(ns, name) < 0 or (name == "check_every_s" and ns.check_every_s < 1):
            build_parser().error(f"--{name.replace('_', '-')} must be positive")
    if ns.subscribers < 0:
        build_parser().error("--subscribers must be >= 0")
    opts = SoakOptions(
        duration_s=ns.duration_s,
        warmup_s=ns.warmup_s,
        check_every_s=ns.check_every_s,
        faults=faults,
        fault_timeout_s=ns.fault_timeout_s,
        settle_s=ns.settle_s,
        rtsp_stop_s=ns.rtsp_stop_s,
        redis_down_s=ns.redis_down_s,
        subscribers=ns.subscribers,
        browser=not ns.no_browser,
        grace_s=ns.grace_s,
        out=ns.out,
        workdir=ns.workdir,
        keep=ns.keep,
        command=ns.command,
    )
    return opts, bool(ns.json)


def main(argv: list[str] | None = None) -> int:
    """``citysight bench soak``: 0 when every check held and every fault recovered."""
    opts, as_json = parse_options(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    res = Soak(opts).run()
    if as_json:
        json.dump(res, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
    else:
        print(f"soak {'passed' if res['passed'] else 'FAILED'}: {opts.out}")
        for p in res["problems"]:
            print(f"  - {p}")
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
