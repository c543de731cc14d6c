"""False vending alerts per camera-hour: Poisson bounds, clip selection, the real pipeline."""

from __future__ import annotations

import itertools
from pathlib import Path

import av
import numpy as np
import pytest
from testkit import need_shared

from benchmarks.eval.cli import evaluate
from benchmarks.eval.vending_false_alarms import (
    ClipError,
    clip_alerts,
    no_vending_clips,
    poisson_upper,
    poisson_upper95,
    rule_sets,
    sampled_frames,
    vending_false_alarms,
)
from citysight.config import RuleConfig
from inference.detectors.base import load_detector

PICODET = "picodet_s_416_coco.onnx"


@pytest.mark.parametrize(
    ("events", "upper"), [(0, 3.0), (1, 4.744), (2, 6.296), (3, 7.754), (10, 16.962)]
)
def test_poisson_upper_bound(events: int, upper: float) -> None:
    assert poisson_upper(events) == pytest.approx(upper, abs=0.01)


def test_rate_bound_per_hour() -> None:
    assert poisson_upper95(0, 0.5) == pytest.approx(6.0, abs=0.01)
    assert poisson_upper95(0, 0.0) is None


def test_fire_and_smoke_clips_are_left_out(tmp_path: Path) -> None:
    for name in ("fire_furg_house6.mp4", "pyronear_test_bg.mp4", "street-720p.mp4", "a.gif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "notes.json").write_text("{}")
    assert [p.name for p in no_vending_clips(tmp_path)] == ["a.gif", "street-720p.mp4"]


def test_undecodable_clip_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ClipError, match=r"broken\.mp4"):
        list(sampled_frames(bad, 5.0, (96, 54)))


def test_reference_rule_timings() -> None:
    rules = rule_sets()
    assert rules["demo"].dwell_s == 8.0 and rules["default"].dwell_s == 300.0
    assert (rules["dwell_30"].dwell_s, rules["dwell_60"].dwell_s) == (30.0, 60.0)
    # a person alone is not vending in the reference rule; the comparison variant counts one
    assert all("person" not in r.classes for n, r in rules.items() if n != "person_counted")
    assert "person" in rules["person_counted"].classes
    assert set(rules["person_counted"].classes) - {"person"} == set(rules["demo"].classes)


def _cut(out: Path, start: int, stop: int) -> Path:
    """Frames ``start..stop`` of a real clip in which people stand in view (10 fps)."""
    src = need_shared("data/videos/street_intel_one-by-one-person-detection.mp4")
    with av.open(str(src)) as c, av.open(str(out), "w") as w:
        stream = w.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 768, 432, "yuv420p"
        for f in itertools.islice(c.decode(video=0), start, stop):
            img = f.to_ndarray(format="bgr24")
            for pkt in stream.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                w.mux(pkt)
        for pkt in stream.encode():
            w.mux(pkt)
    return out


@pytest.fixture(scope="module")
def lingering_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 s in which one person stands in view."""
    return _cut(tmp_path_factory.mktemp("vending") / "lingering.mp4", 100, 140)


def test_a_person_who_stays_is_not_vending(lingering_clip: Path) -> None:
    """A person lingering in a no-vending zone raises no vending alert under the reference
    rule, and does under the same rule counting people: the counts are of real alerts from
    the real detector, tracker and rules engine (the test fails if either side breaks)."""
    det = load_detector("vending", need_shared("models"), ["picodet"])
    rules = rule_sets()

    def short(name: str) -> RuleConfig:
        return RuleConfig.model_validate({**rules[name].model_dump(), "dwell_s": 2.0})

    res = clip_alerts(
        det,
        lingering_clip,
        {"short": short("demo"), "short_person": short("person_counted"), "demo": rules["demo"]},
    )
    assert res["analysed_frames"] == pytest.approx(20, abs=2)
    assert res["seconds"] == pytest.approx(4.0, abs=0.3)
    assert res["alerts"]["short_person"] >= 1  # the person stays > 2 s
    assert "person" in {a["class"] for a in res["alert_times"]["short_person"]}
    assert "person" not in {a["class"] for a in res["alert_times"]["short"]}
    assert res["alerts"]["demo"] == 0  # the clip is shorter than the 8 s dwell


def test_rates_are_bounded_on_the_hours_past_the_dwell(tmp_path: Path) -> None:
    """A clip shorter than a rule's dwell gives that rule no eligible hours (no bound)."""
    clip = _cut(tmp_path / "street_x.mp4", 0, 40)  # 4 s
    det = load_detector("vending", need_shared("models"), ["picodet"])
    res = vending_false_alarms({"picodet": det}, [clip])["tiers"]["picodet"]
    assert res["camera_hours"] == pytest.approx(4.0 / 3600, rel=0.1)
    assert res["default"]["eligible_camera_hours"] == 0.0
    assert res["default"]["upper95_per_eligible_camera_hour"] is None
    assert res["demo"]["eligible_camera_hours"] == 0.0  # 4 s < 8 s


def test_eval_all_tiers_reports_the_vending_section(tmp_path: Path) -> None:
    """``citysight eval --all-tiers`` adds ``vending_false_alarms``; a tier whose file is
    missing is an error entry, not a crash."""
    models = tmp_path / "models"
    models.mkdir()
    (models / PICODET).symlink_to(need_shared(f"models/{PICODET}"))
    (tmp_path / "eval").mkdir()
    (tmp_path / "videos").mkdir()
    clip = _cut(tmp_path / "videos" / "street_x.mp4", 0, 10)
    (tmp_path / "videos" / "fire_y.mp4").symlink_to(clip)  # left out
    res = evaluate(tmp_path / "eval", models, [], {}, all_tiers=True)["vending_false_alarms"]
    pico = res["tiers"]["picodet"]
    assert [v["video"] for v in pico["videos"]] == ["street_x.mp4"]
    assert pico["camera_hours"] == pytest.approx(1.0 / 3600, rel=0.1)
    assert pico["demo"]["alerts"] == 0
    assert pico["demo"]["upper95_per_camera_hour"] == pytest.approx(
        3.0 / pico["camera_hours"], rel=0.1
    )
    assert "yolox_nano.onnx" in res["tiers"]["yolox"]["error"]
    assert np.isfinite(pico["default"]["upper95_per_camera_hour"])
