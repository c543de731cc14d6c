"""Temporal confirmation of the trained fire/smoke tier (``det``): real network, real frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from citysight.contracts import ObjectClass
from inference.detectors.base import load_detector
from inference.detectors.fire_smoke_net import BUNDLED_MODEL, NetFireSmoke
from inference.detectors.fire_smoke_temporal import TemporalConfig, TemporalFireSmoke

FIRE = int(ObjectClass.FIRE)


@pytest.fixture(scope="module")
def net() -> NetFireSmoke:
    return NetFireSmoke(BUNDLED_MODEL)


def _fire_frames(n: int, start: int = 40) -> list[np.ndarray]:
    from streams.synthetic.scenes import SCENES

    scene = SCENES["fire"]((640, 360), 5, 20.0)
    return [np.ascontiguousarray(scene.draw(start + i)[:, :, ::-1]) for i in range(n)]


def _fires(outs: list) -> list[int]:
    return [int((o.class_ids == FIRE).sum()) for o in outs]


def test_default_tier_is_the_temporal_one(tmp_path: Path) -> None:
    det = load_detector("fire_smoke", tmp_path)
    assert isinstance(det, TemporalFireSmoke) and det.tier == "det"


def test_still_images_get_the_per_frame_answer(net: NetFireSmoke) -> None:
    """A camera's first frame (each eval image is a fresh camera) is not filtered."""
    t = TemporalFireSmoke(net)
    frames = _fire_frames(3)
    got = t.detect(frames, ["a", "b", "c"])
    want = net.detect(frames, ["a", "b", "c"])
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.boxes, w.boxes)
        assert g.class_ids.tolist() == w.class_ids.tolist()
    assert all(n > 0 for n in _fires(got))


def test_a_flickering_fire_stays_and_a_frozen_one_goes(net: NetFireSmoke) -> None:
    """The procedural flame moves from frame to frame and is kept on every frame; the same
    flame frozen (one frame repeated: a static look-alike) is dropped after the first."""
    t = TemporalFireSmoke(net)
    moving = t.detect(_fire_frames(10), ["live"] * 10)
    assert all(n > 0 for n in _fires(moving)), _fires(moving)
    frozen = _fire_frames(1)[0]
    outs = [t.detect([frozen.copy()], ["frozen"])[0] for _ in range(10)]
    assert _fires(outs)[0] > 0 and _fires(outs)[1:] == [0] * 9


def test_persistence_needs_earlier_boxes(net: NetFireSmoke) -> None:
    """A fire box after frames without one is held back until it persisted."""
    t = TemporalFireSmoke(net, TemporalConfig(window=6, persist=3, fire_flicker=-255.0))
    empty = np.zeros((360, 640, 3), np.uint8)
    for _ in range(6):
        t.detect([empty], ["c"])
    fires = _fires([t.detect([f], ["c"])[0] for f in _fire_frames(4)])
    assert fires[:2] == [0, 0] and all(n > 0 for n in fires[2:]), fires


def test_a_new_frame_size_or_reset_starts_the_camera_afresh(net: NetFireSmoke) -> None:
    t = TemporalFireSmoke(net)
    frozen = _fire_frames(1)[0]
    t.detect([frozen], ["c"])
    assert _fires(t.detect([frozen], ["c"])) == [0]
    big = np.ascontiguousarray(np.repeat(np.repeat(frozen, 2, 0), 2, 1))
    assert _fires(t.detect([big], ["c"]))[0] > 0  # new size: a first frame again
    t.reset("c")
    assert _fires(t.detect([big], ["c"]))[0] > 0
    t.reset()
    assert _fires(t.detect([big], ["c"]))[0] > 0


def test_cameras_are_bounded(net: NetFireSmoke) -> None:
    t = TemporalFireSmoke(net, TemporalConfig(max_cameras=3))
    f = np.zeros((64, 64, 3), np.uint8)
    for i in range(10):
        t.detect([f], [f"cam{i}"])
    assert list(t._cams) == ["cam7", "cam8", "cam9"]
    assert t._haze is not None and sorted(t._haze._state) == ["cam7", "cam8", "cam9"]


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"persist": 0}, "persist"),
        ({"persist": 9, "window": 8}, "persist"),
        ({"thumb_long_side": 8}, "thumb"),
    ],
)
def test_bad_config(kwargs: dict, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        TemporalConfig(**kwargs)


def test_bad_frames_are_refused(net: NetFireSmoke) -> None:
    t = TemporalFireSmoke(net)
    with pytest.raises(ValueError, match="BGR"):
        t.detect([np.zeros((8, 8), np.uint8)], ["a"])
    with pytest.raises(ValueError, match="camera ids"):
        t.detect([np.zeros((8, 8, 3), np.uint8)], [])


def test_faint_smoke_on_video_comes_from_the_classical_cue(net: NetFireSmoke) -> None:
    """The demo's thin grey plume is below the network's smoke threshold; on video the
    classical drift cue adds it (never on a camera's first frame), and without the cue the
    tier reports no smoke there."""
    from streams.synthetic.scenes import SCENES

    scene = SCENES["smoke"]((640, 360), 5, 40.0)
    frames = [np.ascontiguousarray(scene.draw(i)[:, :, ::-1]) for i in range(0, 200, 2)]
    smoke = int(ObjectClass.SMOKE)
    with_cue = TemporalFireSmoke(net)
    got = [int((with_cue.detect([f], ["s"])[0].class_ids == smoke).sum()) for f in frames]
    assert got[0] == 0 and sum(1 for n in got if n) >= 10, got
    without = TemporalFireSmoke(net, TemporalConfig(video_smoke_cue=False))
    assert all(not (without.detect([f], ["s"])[0].class_ids == smoke).any() for f in frames)
