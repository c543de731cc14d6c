"""The per-event fire/smoke benchmark: the reader's sampler, the composite, the real engine."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.fire_det.events import _camera, composite, run_clip, sampled
from inference.detectors.fire_smoke_net import BUNDLED_MODEL, NetFireSmoke
from inference.detectors.fire_smoke_temporal import TemporalFireSmoke


@pytest.mark.parametrize(("fps", "n", "want"), [(29.0, 290, 50), (10.0, 100, 50), (5.0, 20, 20)])
def test_sampler_keeps_the_analytics_rate(fps: float, n: int, want: int) -> None:
    got = sampled(n, fps, _camera("c", "normal"))
    assert abs(len(got) - want) <= 1 and got[0] == 0


def test_composite_blends_the_plume_as_grey_and_leaves_the_rest() -> None:
    bg = np.zeros((90, 160, 3), np.uint8)
    plume = np.zeros((72, 128, 3), np.uint8)
    plume[:, :] = 255  # fully opaque smoke
    out = composite(bg, plume)
    assert out.shape == bg.shape and out.dtype == np.uint8
    assert out.max() == 215 and out[0, 0].tolist() == [0, 0, 0]  # outside the plume: as is
    assert composite(bg, np.zeros_like(plume)).max() == 0  # black plume frame: no smoke


def test_a_fire_scene_raises_one_fire_alert_through_the_rules_engine() -> None:
    """The demo's procedural flame, read like a camera, gives the engine a fire alert (once:
    the cooldown), under both rule sets; an empty scene gives none."""
    from streams.synthetic.scenes import SCENES

    scene = SCENES["fire"]((640, 360), 10, 20.0)
    frames = [np.ascontiguousarray(scene.draw(i)[:, :, ::-1]) for i in range(40, 100)]
    det = TemporalFireSmoke(NetFireSmoke(BUNDLED_MODEL))
    res = run_clip(det, frames, 10.0, _camera("fire-cam", "normal"))
    for rules in ("default", "demo"):
        kinds = [a["kind"] for a in res["alerts"][rules]]
        assert kinds.count("fire") == 1, (rules, kinds)
    empty = [np.zeros((360, 640, 3), np.uint8)] * 30
    res = run_clip(det, empty, 10.0, _camera("empty-cam", "high"))
    assert res["alerts"] == {"default": [], "demo": []}
