"""The soak harness: its accounting and CLI (default tier), and the 5-minute soak (``-m soak``).

The 5-minute soak runs the README's demo with load and every fault, so it takes about ten
minutes with start-up and shutdown: it is in the ``soak`` tier, not the default CI run. The
30-minute run is ``citysight bench soak --duration-s 1800 --json`` (results in
``benchmarks/results/soak.json``).
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.soak import accounting as acct
from benchmarks.soak.faults import FAULTS, looped_clip
from benchmarks.soak.quickstart import QuickStartError, quick_start_commands, user_env
from benchmarks.soak.run import SoakOptions, demo_facts, parse_options

ROOT = Path(__file__).resolve().parents[3]


# -- detection gaps ------------------------------------------------------------------------


def _ticks(start: float, end: float, step: float = 0.5) -> list[float]:
    out, t = [], start
    while t < end:
        out.append(round(t, 3))
        t += step
    return out


@pytest.mark.parametrize(
    ("times", "fault_at", "until", "interrupted", "resumed"),
    [
        # Steady flow through the fault: not interrupted.
        (_ticks(0, 60), 30.0, 60.0, False, None),
        # Stops at the fault, resumes at 45.
        (_ticks(0, 30) + _ticks(45, 60), 30.0, 60.0, True, 45.0),
        # Stops at the fault and never resumes (open gap at the end).
        (_ticks(0, 30), 30.0, 60.0, True, None),
        # A gap before the fault is history, not this fault's interruption.
        (_ticks(0, 10) + _ticks(20, 60), 30.0, 60.0, False, None),
        # Nothing at all since before the fault.
        ([], 30.0, 60.0, True, None),
        # Stops a little after the fault (in-flight frames were published first).
        (_ticks(0, 32) + _ticks(40, 60), 30.0, 60.0, True, 40.0),
        # Too early to tell: the silence is shorter than the gap.
        (_ticks(0, 30), 30.0, 31.0, False, None),
        # A result in flight at the fault does not end the outage that follows.
        ([*_ticks(0, 27), 30.3, *_ticks(40, 60)], 30.0, 60.0, True, 40.0),
    ],
)
def test_interruption_and_recovery(
    times: list[float], fault_at: float, until: float, interrupted: bool, resumed: float | None
) -> None:
    gap = acct.interruption("c", times, fault_at, until, gap_s=3.0)
    assert (gap.interrupted, gap.resumed_at) == (interrupted, resumed)
    expected = None if interrupted and resumed is None else (resumed or fault_at) - fault_at
    assert acct.recovery_s([gap], fault_at) == expected


@pytest.mark.parametrize(
    ("times", "expected"),
    [
        (_ticks(0, 100, 0.5), 3.0),  # regular 2 fps: the floor
        (_ticks(0, 100, 4.0), 8.0),  # a loaded host analyses every 4 s: twice that
        (_ticks(0, 100, 30.0), 12.0),  # capped
        ([], 3.0),
        # One long pause among regular 2.5 s intervals does not set the threshold.
        ([*_ticks(40, 60, 2.5), 70.0, *_ticks(72.5, 100, 2.5)], 5.0),
        # Results of one batch share a millisecond: those zero steps are not intervals.
        (sorted(_ticks(40, 100, 3.0) * 4), 6.0),
    ],
)
def test_gap_threshold_follows_the_cameras_own_rate(times: list[float], expected: float) -> None:
    assert acct.gap_threshold(times, 100.0, floor_s=3.0, cap_s=12.0) == expected


def test_recovery_is_the_slowest_camera() -> None:
    gaps = [
        acct.Interruption("a", True, 29.5, 40.0),
        acct.Interruption("b", True, 29.0, 52.5),
        acct.Interruption("c", False, None, None),
    ]
    assert acct.recovery_s(gaps, 30.0) == 22.5
    assert acct.recovery_s([*gaps, acct.Interruption("d", True, 29.0, None)], 30.0) is None


# -- health ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample", "components", "not_ok"),
    [
        ({"code": 200, "status": "ok", "states": {"inference": "running"}}, ("inference",), False),
        ({"code": 200, "status": "degraded", "states": {}}, (), True),
        ({"code": 503, "status": "down", "states": {}}, (), True),
        ({"code": 0, "status": "unreachable"}, (), True),
        ({"code": 200, "status": "ok", "states": {"inference": "down"}}, ("inference",), True),
        ({"code": 200, "status": "ok", "states": {"rules": "stale"}}, ("inference",), False),
    ],
)
def test_health_not_ok(sample: dict, components: tuple[str, ...], not_ok: bool) -> None:
    assert acct.health_not_ok(sample, components) is not_ok


def test_first_after() -> None:
    samples = [{"t": float(t), "code": 200, "status": "ok" if t < 5 else "down"} for t in range(9)]
    assert acct.first_after(samples, 2.0, acct.health_not_ok) == 5.0
    assert acct.first_after(samples, 9.0, acct.health_not_ok) is None


# -- alerts lost ----------------------------------------------------------------------------

OWNER = {"fire": "fire", "plate": "police"}.get


def _sub(name: str, dept: str, received: dict[str, float]) -> acct.Subscription:
    return acct.Subscription(name, dept, 0.0, received)


@pytest.mark.parametrize(
    ("stored", "subs", "stored_lost", "undelivered", "misses"),
    [
        # Everything stored and delivered to everyone entitled.
        (
            {"a1": ("fire", 10), "a2": ("plate", 20)},
            [_sub("adm", "*", {"a1": 11, "a2": 21}), _sub("fire", "fire", {"a1": 11})],
            0, 0, 0,
        ),
        # The fire subscriber missed its alert; police alerts are not its business.
        (
            {"a1": ("fire", 10), "a2": ("plate", 20)},
            [_sub("adm", "*", {"a1": 11, "a2": 21}), _sub("fire", "fire", {})],
            0, 1, 1,
        ),
        # Delivered, then gone from the store (a Redis restart without AOF would do this).
        (
            {"a2": ("plate", 20)},
            [_sub("adm", "*", {"a1": 11, "a2": 21})],
            1, 0, 0,
        ),
        # Outside the window: not counted.
        (
            {"a1": ("fire", 500)},
            [_sub("adm", "*", {})],
            0, 0, 0,
        ),
    ],
)  # fmt: skip
def test_alert_losses(
    stored: dict, subs: list, stored_lost: int, undelivered: int, misses: int
) -> None:
    st = {k: {"kind": kind, "started_s": t} for k, (kind, t) in stored.items()}
    out = acct.alert_losses(st, subs, (0.0, 100.0), OWNER)
    assert (out["stored_lost"], out["undelivered"], out["missed_receipts"]) == (
        stored_lost,
        undelivered,
        misses,
    )


def test_an_alert_raised_for_several_departments_is_each_ones_business() -> None:
    """analytics_down is raised once per department a camera feeds: the police copy is
    police business though the kind routes to duty (the 30-minute soak counted 340 such
    deliveries as out of scope), and a police subscriber that missed it is a loss."""
    st = {
        "ad-p": {"kind": "analytics_down", "started_s": 10, "departments": ["police"]},
        "ad-d": {"kind": "analytics_down", "started_s": 10, "departments": ["duty"]},
        "esc": {"kind": "fire", "started_s": 20, "departments": ["fire", "police"]},
    }
    police = _sub("police", "police", {"ad-p": 11})
    out = acct.alert_losses(st, [police], (0.0, 100.0), OWNER)
    assert (out["undelivered"], out["ids"]["undelivered"]) == (1, ["esc"])
    assert acct.alert_departments({"department": "fire", "escalated_to": ["duty"]}) == {
        "fire",
        "duty",
    }


def test_kind_gaps_are_cooldown_aware() -> None:
    cd = {"plate": 120.0, "fire": 120.0, "vending": 300.0}
    arrivals = {"plate": [100.0, 230.0, 300.0], "fire": [50.0]}
    g = acct.kind_gaps(arrivals, 350.0, cd, 60.0, since=0.0)
    assert g["plate"]["recurring"] and not g["plate"]["late"]
    # A fire that keeps burning raises once: not late, however long ago.
    assert not g["fire"]["recurring"] and not g["fire"]["late"]
    # Two close vending alerts (a stall re-tracked after an outage) do not make a stall that
    # stays a recurring condition.
    g2 = acct.kind_gaps({"vending": [10.0, 70.0]}, 2000.0, cd, 60.0, since=0.0)
    assert not g2["vending"]["recurring"] and not g2["vending"]["late"]
    assert not g["vending"]["never"]  # 350 s is within its 300 s cooldown + 60 s grace
    g = acct.kind_gaps(arrivals, 600.0, cd, 60.0, since=0.0)
    assert g["plate"]["late"] and g["plate"]["last_age_s"] == 300.0
    assert not g["fire"]["late"] and g["vending"]["never"]


# -- the harness's pieces -------------------------------------------------------------------


def test_quick_start_parsing(tmp_path: Path) -> None:
    assert quick_start_commands()[0].startswith("bash infra/local/setup.sh")
    bad = tmp_path / "README.md"
    bad.write_text("# x\n\n## Quick start\n\nno block here\n\n## Next\n```sh\nnot this\n```\n")
    with pytest.raises(QuickStartError, match="no fenced block"):
        quick_start_commands(bad)
    bad.write_text("# x\n")
    with pytest.raises(QuickStartError, match="no '## Quick start'"):
        quick_start_commands(bad)


def test_user_env_drops_the_test_tiers_variables() -> None:
    base = {
        "PATH": f"{sys.prefix}/bin:/usr/bin",
        "HOME": "/root",
        "ORT_DISABLE_TELEMETRY": "1",
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTEST_CURRENT_TEST": "x",
        "CITYSIGHT_HOME": "/tmp/x",
        "VIRTUAL_ENV": sys.prefix,
    }
    assert user_env(base) == {"PATH": "/usr/bin", "HOME": "/root"}


def test_demo_facts_match_the_demo() -> None:
    f = demo_facts()
    assert len(f.cameras) == 5 and f.shards >= 1
    assert set(f.cooldown_s) >= {"fire", "smoke", "vending", "plate", "face"}
    assert f.owner_of("vending") == "enforcement" and f.departments["admin"] == "*"


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--faults", "triton_kill,meteor"], "unknown fault"),
        (["--check-every-s", "0"], "must be positive"),
        (["--subscribers", "-1"], "must be >= 0"),
        (["--duration-s", "abc"], "invalid float"),
    ],
)
def test_cli_rejects_bad_flags(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_options(argv)
    assert error in capsys.readouterr().err


def test_cli_options_and_time_bound() -> None:
    opts, as_json = parse_options(["--duration-s", "300", "--faults", "none", "--json"])
    assert opts.faults == () and as_json and opts.bound_s() == 300 + opts.check_every_s
    opts, _ = parse_options([])
    assert opts.faults == FAULTS
    # Faults never make the soak unbounded: each has a timeout and a settle time.
    assert (
        opts.bound_s()
        <= opts.warmup_s
        + len(FAULTS) * (opts.fault_timeout_s + opts.rtsp_stop_s + opts.settle_s)
        + opts.duration_s
        + opts.check_every_s
    )


def test_bench_soak_is_wired_into_the_cli() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "citysight", "bench", "soak", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "--duration-s" in res.stdout and "--faults" in res.stdout


def test_looped_clip_lasts_long_enough(tmp_path: Path) -> None:
    import av

    from streams.testing.h264 import write_clip

    src = write_clip(tmp_path / "c.mp4", seconds=2.0, fps=10, gop=10)
    out = looped_clip(src, tmp_path / "loop.mp4", 7.0)
    with av.open(str(out)) as c:
        s = c.streams.video[0]
        n = sum(1 for _ in c.decode(s))
        dts = [p.dts for p in av.open(str(out)).demux(video=0) if p.dts is not None]
    assert n == 80  # 4 loops of 20 frames cover 7 s
    assert all(b > a for a, b in itertools.pairwise(dts)), "timestamps must increase"


# -- the soak itself ------------------------------------------------------------------------


@pytest.mark.soak
@pytest.mark.timeout(2700)
def test_five_minute_soak_of_the_default_path(tmp_path: Path) -> None:
    """The README's demo, 20 subscribers, a REST poller and Chromium; every fault once."""
    from benchmarks.soak.run import Soak

    if shutil.which("chromium") is None and not os.path.exists("/usr/bin/chromium"):
        pytest.fail("chromium missing: bash infra/local/setup.sh --test installs it")
    opts = SoakOptions(
        duration_s=300.0,
        warmup_s=60.0,
        fault_timeout_s=120.0,
        settle_s=30.0,
        out=tmp_path / "soak.json",
    )
    res = Soak(opts).run()
    written = json.loads(opts.out.read_text())
    assert written["complete"] and written["passed"] == res["passed"]
    faults = [{k: v for k, v in f.items() if k != "timeline"} for f in res["faults"]]
    assert res["passed"], json.dumps(
        {"problems": res.get("problems"), "faults": faults, "shutdown": res.get("shutdown")},
        indent=1,
        default=str,
    )[:8000]
    assert [f["fault"] for f in res["faults"]] == list(FAULTS)
