"""The trained fire/smoke detector (``fire_smoke_net``): ONNX Runtime and numpy only.

Runs on the committed model file, so it needs neither torch nor ../shared; the checks on real
images (a held-out fire frame found, no-fire street frames left alone) use ../shared when
present.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from testkit import ROOT, need_shared

from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorLoadError, DetectorOutput, load_detector
from inference.detectors.common import read_image
from inference.detectors.fire_smoke_net import (
    BUNDLED_MODEL,
    MODEL_FILE,
    NetFireSmoke,
    NetMeta,
    cell_centres,
    decode,
    input_shape,
    preprocess,
)

MODEL = BUNDLED_MODEL


@pytest.fixture(scope="module")
def det() -> NetFireSmoke:
    return NetFireSmoke(MODEL)


def _demo_frame(scene: str, index: int = 60) -> np.ndarray:
    from streams.synthetic.scenes import SCENES

    return np.ascontiguousarray(SCENES[scene]((960, 540), 10, 20.0).draw(index)[:, :, ::-1])


@pytest.mark.parametrize(
    ("hw", "want"),
    [
        ((720, 1280), (192, 320)),
        ((1080, 1920), (192, 320)),
        ((416, 416), (320, 320)),
        ((240, 426), (192, 320)),
        ((1280, 720), (320, 192)),
        ((10, 10), (320, 320)),
    ],
)
def test_input_shape(hw: tuple[int, int], want: tuple[int, int]) -> None:
    assert input_shape(*hw, 320)[:2] == want
    x, scale = preprocess(np.zeros((*hw, 3), np.uint8), 320)
    assert x.shape == (3, *want) and x.dtype == np.float32
    assert scale == pytest.approx(320 / max(hw))


def test_decode_boxes_threshold_and_nms() -> None:
    centres = cell_centres(64, 64)
    assert len(centres) == 64 + 16 + 4
    scores = np.zeros((len(centres), 2), np.float32)
    ltrb = np.full((len(centres), 4), 4.0, np.float32)
    scores[9, 0] = 0.9  # cell (1, 1) of stride 8: centre (12, 12)
    scores[10, 0] = 0.8  # its neighbour (centre (20, 12)) reaching over it → suppressed
    ltrb[10] = [12, 4, 2, 4]  # box [8, 8, 22, 16]: IoU 0.57 with the first
    scores[64, 1] = 0.7  # first stride-16 cell, class smoke, kept beside the fire box
    scores[65, 1] = 0.2  # under the smoke threshold
    boxes, conf, cls = decode(scores, ltrb, (64, 64), (0.5, 0.5))
    assert cls.tolist() == [0, 1]
    np.testing.assert_allclose(boxes[0], [8, 8, 16, 16])
    np.testing.assert_allclose(boxes[1], [4, 4, 12, 12])
    np.testing.assert_allclose(conf, [0.9, 0.7])
    with pytest.raises(ValueError, match="cells"):
        decode(scores[:-1], ltrb[:-1], (64, 64), (0.5, 0.5))
    with pytest.raises(ValueError, match="thresholds"):
        decode(scores, ltrb, (64, 64), (0.5,))


@pytest.mark.parametrize(
    ("props", "error"),
    [
        ({"thresholds": "[0.4, 0.6]"}, None),
        ({"thresholds": "[0.4]"}, "thresholds for"),
        ({"thresholds": "not json"}, "metadata"),
        ({"input_long_side": "300"}, "multiple"),
    ],
)
def test_meta_parsing(props: dict[str, str], error: str | None) -> None:
    if error is None:
        assert NetMeta.from_props(props).thresholds == (0.4, 0.6)
    else:
        with pytest.raises(ValueError, match=error):
            NetMeta.from_props(props)


def test_committed_model_metadata(det: NetFireSmoke) -> None:
    assert MODEL == ROOT / "inference" / "models" / MODEL_FILE
    assert MODEL.stat().st_size < 6_000_000
    assert (MODEL.parent / "MODEL_CARD.md").is_file()
    assert det.meta.classes == ("fire", "smoke")
    assert all(0 < t < 1 for t in det.thresholds)
    assert "eval" in det.meta.extra["thresholds_chosen_on"]  # says it was NOT tuned on eval
    assert json.loads(det.meta.extra["trained_on"]) == ["fire_cctv", "fire_smoke_cctv"]


def test_shapes_and_batch_parity(det: NetFireSmoke) -> None:
    rng = np.random.default_rng(0)
    frames = [
        _demo_frame("fire"),
        (rng.random((360, 640, 3)) * 255).astype(np.uint8),
        _demo_frame("plate"),
        (rng.random((300, 200, 3)) * 255).astype(np.uint8),  # another input shape in the batch
    ]
    together = det.detect(frames, [f"c{i}" for i in range(len(frames))])
    alone = [det.detect([f], ["x"])[0] for f in frames]
    assert len(together) == len(frames)
    for f, a, b in zip(frames, together, alone, strict=True):
        assert isinstance(a, DetectorOutput)
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, atol=1e-5)
        assert a.class_ids.tolist() == b.class_ids.tolist()
        h, w = f.shape[:2]
        assert (a.boxes[:, [0, 2]] <= w).all() and (a.boxes[:, [1, 3]] <= h).all()
        assert set(a.class_ids.tolist()) <= {int(ObjectClass.FIRE), int(ObjectClass.SMOKE)}
    assert det.detect([], []) == []


def test_demo_fire_scene_found_and_plate_scene_not(det: NetFireSmoke) -> None:
    """The procedural demo flame (never trained on) is found; the demo street of red cars
    with tail lights (a background the training saw as a negative) raises nothing."""
    fire = det.detect([_demo_frame("fire", i) for i in (20, 90, 150)], ["a", "a", "a"])
    assert all((o.class_ids == int(ObjectClass.FIRE)).any() for o in fire)
    plate = det.detect([_demo_frame("plate", i) for i in (20, 90, 150)], ["b", "b", "b"])
    assert all(len(o) == 0 for o in plate)


def test_real_fire_found_and_street_negatives_clean(det: NetFireSmoke) -> None:
    """A frame of a clip held out of training holds fire; frames of the no-fire car-park clip
    whose other frames were training negatives hold nothing (../shared). The unseen no-fire
    clips are measured by ``benchmarks/fire_det``, not asserted here: this model flags some
    of their frames (docs/detectors.md)."""
    train = need_shared("data/train/fire_cctv/valid/images")
    fire = sorted(train.glob("image405_jpg*"))  # clip image#8: held out by the seed-0 split
    assert fire
    out = det.detect([read_image(fire[0])], ["f"])[0]
    assert (out.class_ids == int(ObjectClass.FIRE)).any()
    from inference.training.fire_det.synth import video_frames

    clip = need_shared("data/videos/street-720p.mp4")
    frames = video_frames(clip, 6, long_side=None)
    assert all(len(o) == 0 for o in det.detect(frames, ["s"] * len(frames)))


@pytest.mark.parametrize(
    ("frame", "cams", "error"),
    [
        (np.zeros((10, 10), np.uint8), ["a"], "BGR"),
        (np.zeros((10, 10, 3), np.float32), ["a"], "BGR"),
        (np.zeros((0, 10, 3), np.uint8), ["a"], "BGR"),
        (np.zeros((10, 10, 3), np.uint8), [], "camera ids"),
    ],
)
def test_bad_frames(det: NetFireSmoke, frame: np.ndarray, cams: list[str], error: str) -> None:
    with pytest.raises(ValueError, match=error):
        det.detect([frame], cams)


def test_missing_corrupt_or_foreign_model(tmp_path: Path) -> None:
    with pytest.raises(DetectorLoadError, match="missing"):
        NetFireSmoke(tmp_path / MODEL_FILE)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not an onnx file")
    with pytest.raises(DetectorLoadError):
        NetFireSmoke(bad)
    other = tmp_path / "other.onnx"
    shutil.copy(
        ROOT / "tests" / "inference" / "training" / "data" / "tiny_fire_smoke_cls.onnx", other
    )
    with pytest.raises(DetectorLoadError, match="outputs"):
        NetFireSmoke(other)
    with pytest.raises(DetectorLoadError, match="multiple"):
        NetFireSmoke(MODEL, input_long_side=300)


def test_det_is_the_default_tier_and_an_operator_file_replaces_the_bundled_one(
    tmp_path: Path,
) -> None:
    """Without any model files (a fresh clone) fire_smoke runs the trained tier from the
    bundled file; a ``fire_smoke_det.onnx`` in the models dir is used instead, and a broken
    one there is a load error that falls back to the next tier, never silently the bundled
    file."""
    d = load_detector("fire_smoke", tmp_path)
    assert d.tier == "det" and d.model_file == str(BUNDLED_MODEL)
    own = tmp_path / "own"
    own.mkdir()
    shutil.copy(MODEL, own / MODEL_FILE)
    assert load_detector("fire_smoke", own).model_file == str(own / MODEL_FILE)
    (own / MODEL_FILE).write_bytes(b"broken")
    assert load_detector("fire_smoke", own, ["det", "classical"]).tier == "classical"
