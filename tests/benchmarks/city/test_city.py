"""City simulation: the mix, the delivery accounting, and a small real run end to end."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.city.cli import delivery_check, main
from benchmarks.city.producer import HEIGHT, WIDTH, CameraSim, ProducerSpec, empty_frame_msgpack
from benchmarks.city.scenario import Mix, city_config, principals
from citysight.contracts import FrameResult

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(
    ("cam", "t", "n"), [("sim-00000", 1.5, 0), ("cam-ü", 1_800_000_000.123456, 2**40)]
)
def test_empty_frame_fast_path_is_byte_identical(cam: str, t: float, n: int) -> None:
    ref = FrameResult(cam, t, n, WIDTH, HEIGHT, published_at=t).to_msgpack()
    assert empty_frame_msgpack(cam, t, n) == ref


def test_default_mix_is_mostly_empty() -> None:
    sim = CameraSim(ProducerSpec("redis://unused", 500, 0, 1, 5.0, 4, 1.0))
    frames = [FrameResult.from_msgpack(sim.frame(j % 500, 1.0)) for j in range(5000)]
    empty = sum(1 for f in frames if len(f) == 0)
    assert 0.8 < empty / len(frames) < 0.97


def test_episodes_are_persistent_tracks() -> None:
    sim = CameraSim(
        ProducerSpec("redis://unused", 10, 0, 1, 5.0, 4, 1.0, Mix(fire_per_cam_h=3600.0))
    )
    frames = [FrameResult.from_msgpack(sim.frame(0, 1.0)) for _ in range(60)]
    assert sim.episodes_started["fire"] > 0
    fire = [f for f in frames if 2 in f.class_ids.tolist() and f.scores.max() > 0.5]
    # An episode lasts episode_s * fps consecutive frames on one track.
    assert len(fire) >= 25
    assert all(f.published_at == 1.0 for f in fire)
    tracks = {int(t) for f in fire for t, c in zip(f.track_ids, f.class_ids, strict=True) if c == 2}
    assert len(tracks) < len(fire) / 10


def test_city_config_is_valid_and_routes_every_kind() -> None:
    cfg = city_config(25, http_port=8123)
    assert len(cfg.cameras) == 25
    assert {r.kind for r in cfg.routing} >= {r.kind for r in cfg.rules}
    assert sum(1 for c in cfg.cameras if c.zones) >= 10
    tokens = {"duty": "a" * 24, "fire": "b" * 24}
    assert json.loads(next(iter(principals(tokens).values())))["department"] == "*"


def _sub(dept: str, ids: list[str], error: str | None = None) -> dict[str, Any]:
    return {"department": dept, "alerts": [(i, "", 0.0, 0.0, 0.0) for i in ids], "error": error}


RAISED = [("a1", "fire", "1-0"), ("a2", "police", "2-0"), ("a3", "fire", "3-0")]


@pytest.mark.parametrize(
    ("subs", "lost", "dup", "foreign"),
    [
        ([_sub("fire", ["a1", "a3"]), _sub("duty", ["a1", "a2", "a3"])], 0, 0, 0),
        ([_sub("fire", ["a1"])], 1, 0, 0),
        ([_sub("fire", ["a1", "a3", "a3"])], 0, 1, 0),
        ([_sub("police", ["a2", "a1"])], 0, 0, 1),
        ([_sub("enforcement", [])], 0, 0, 0),
        ([_sub("duty", [])], 3, 0, 0),
    ],
)
def test_delivery_check(subs: list[dict[str, Any]], lost: int, dup: int, foreign: int) -> None:
    d = delivery_check(RAISED, subs)
    assert (d["lost"], d["duplicated"], d["foreign"]) == (lost, dup, foreign)


@pytest.mark.parametrize(
    "argv", [["--cameras", "0"], ["--cameras", "10", "--duration", "0"], ["--cameras", "x"]]
)
def test_cli_rejects_bad_bounds(argv: list[str]) -> None:
    with pytest.raises((SystemExit, ValueError)) if "x" in argv else _noraise():
        assert main(argv) == 2


class _noraise:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return False


def test_small_city_end_to_end(tmp_path: Path) -> None:
    """50 cameras for 5 s through real Redis, the real Serve app, rules and /ws."""
    out = tmp_path / "city.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.city.cli",
            "--cameras", "50", "--duration", "5", "--subscribers", "8",
            "--producers", "1", "--rate-scale", "300", "--drain-timeout", "20",
            "--out", str(out), "--quiet",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert out.with_suffix(".png").exists()
    (level,) = doc["levels"]
    for key in ("offered_fps", "frames_processed", "latency_ms", "alerts_per_s", "components"):
        assert key in level
    assert level["subscribers_connected"] == 8
    assert level["frames_sent"] > 0
    assert level["frames_processed"] == level["frames_sent"]
    assert level["alerts_raised"] > 0, "the mix must make some rules fire"
    assert level["delivery"]["lost"] == 0
    assert level["delivery"]["duplicated"] == 0
    assert level["delivery"]["foreign"] == 0
    assert level["latency_ms"]["count"] > 0
    assert level["components"]["redis-server"]["rss_mb_max"] > 0
    assert "max_sustained_cameras" in doc


@pytest.mark.slow
def test_step_up_two_levels(tmp_path: Path) -> None:
    """The full harness at two real camera counts (by hand or ``-m slow``)."""
    out = tmp_path / "city.json"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [
            sys.executable, "-m", "benchmarks.city.cli", "--cameras", "500,1000",
            "--duration", "20", "--subscribers", "20", "--out", str(out), "--quiet",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(out.read_text())
    assert [lv["cameras"] for lv in doc["levels"]] == [500, 1000]
    for lv in doc["levels"]:
        assert lv["delivery"]["lost"] == 0
        assert lv["delivery"]["duplicated"] == 0
        assert lv["delivery"]["foreign"] == 0
    assert doc["max_sustained_cameras"] in (0, 500, 1000)


def test_group_stats_and_backlog_discard(redis_url: str, tmp_path: Path) -> None:
    import redis

    from benchmarks.city.cli import discard_backlog
    from benchmarks.city.scenario import city_config_dict
    from benchmarks.city.system import CitySystem
    from citysight.keys import detections_stream

    system = CitySystem(city_config_dict(1, http_port=1, shards=2), {}, tmp_path)
    r = redis.Redis.from_url(redis_url)
    for shard, n in ((0, 5), (1, 3)):
        key = detections_stream(shard)
        r.xgroup_create(key, "rules", id="0", mkstream=True)
        for _ in range(n):
            r.xadd(key, {"d": b"x"})
    r.xreadgroup("rules", "c", {detections_stream(0): ">"}, count=2)
    r.xack(detections_stream(0), "rules", r.xrange(detections_stream(0), count=1)[0][0])
    assert system.group_stats(r) == {"added": 8, "read": 2, "pending": 1, "lag": 6}
    assert discard_backlog(system, r) == 6
    assert system.group_stats(r)["lag"] == 0
    r.xadd(detections_stream(1), {"d": b"y"})
    assert system.group_stats(r)["lag"] == 1
    r.close()
