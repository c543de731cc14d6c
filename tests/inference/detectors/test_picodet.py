"""PicoDet-S: GFL/DFL decoding, real-frame detections, the vending tier and its fallbacks."""

from __future__ import annotations

import logging
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt
import pytest
from testkit import need_shared

from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorLoadError, load_detector
from inference.detectors.common import box_iou
from inference.detectors.picodet import (
    STRIDES,
    PicoDetModel,
    anchor_points,
    decode,
    dfl_distances,
)
from inference.detectors.vending import (
    EVERY_ENV,
    MAX_BOX_FRAC,
    PICODET_EVERY,
    PicodetVending,
    every_from_env,
)

PICODET = "picodet_s_416_coco.onnx"
BINS = 8  # reg_max 7, as in the shipped export


def _one_hot(bins: list[int]) -> npt.NDArray[np.float32]:
    """Distribution logits whose softmax puts (almost) all mass on ``bins`` (l, t, r, b)."""
    d = np.full((4, BINS), -30.0, np.float32)
    for side, b in enumerate(bins):
        d[side, b] = 30.0
    return d.reshape(-1)


def _empty_levels(size: int = 416, classes: int = 80) -> tuple[list, list]:
    pts = anchor_points(size)
    scores = [np.zeros((len(p), classes), np.float32) for p in pts]
    dists = [np.zeros((len(p), 4 * BINS), np.float32) for p in pts]
    return scores, dists


def test_anchor_points_cover_each_level_at_cell_centres() -> None:
    pts = anchor_points(416)
    assert [len(p) for p in pts] == [52 * 52, 26 * 26, 13 * 13, 7 * 7]
    np.testing.assert_array_equal(pts[0][0], [4, 4])
    np.testing.assert_array_equal(pts[0][1], [12, 4])  # row-major: x first
    np.testing.assert_array_equal(pts[0][52], [4, 12])
    np.testing.assert_array_equal(pts[3][-1], [416, 416])  # ceil(416 / 64) = 7 cells


def test_dfl_expected_distance() -> None:
    np.testing.assert_allclose(dfl_distances(_one_hot([2, 1, 3, 7])[None]), [[2, 1, 3, 7]])
    uniform = np.zeros((1, 4 * BINS), np.float32)
    np.testing.assert_allclose(dfl_distances(uniform), [[3.5] * 4])  # mean of bins 0..7
    with pytest.raises(ValueError, match="distributions"):
        dfl_distances(np.zeros((2, 30), np.float32))


def test_decode_known_anchor_gives_known_box() -> None:
    scores, dists = _empty_levels()
    # stride 16, row 3, col 5 -> centre (88, 56); sides 2, 1, 3, 4 bins of 16 px
    i = 3 * 26 + 5
    scores[1][i, 0] = 0.9
    dists[1][i] = _one_hot([2, 1, 3, 4])
    boxes, s, cls = decode(scores, dists, 416, conf=0.3)
    np.testing.assert_allclose(boxes, [[56, 40, 136, 120]], atol=1e-3)
    np.testing.assert_allclose(s, [0.9])
    assert cls.tolist() == [0]


def test_decode_thresholds_multilabel_and_classwise_nms() -> None:
    scores, dists = _empty_levels()
    a, b = 10 * 52 + 10, 10 * 52 + 11  # neighbouring stride-8 anchors, overlapping boxes
    for i in (a, b):
        dists[0][i] = _one_hot([3, 3, 3, 3])
    scores[0][a, 0], scores[0][b, 0] = 0.8, 0.7  # same class: NMS keeps the stronger
    scores[0][b, 25] = 0.6  # another class on the same anchor: kept (class-wise NMS)
    scores[0][a, 56] = 0.2  # below the threshold
    boxes, s, cls = decode(scores, dists, 416, conf=0.3)
    got = sorted((int(c), round(float(v), 2)) for c, v in zip(cls, s, strict=True))
    assert got == [(0, 0.8), (25, 0.6)]
    cx = (10 + 0.5) * 8
    np.testing.assert_allclose(boxes[cls == 0][0], [cx - 24, cx - 24, cx + 24, cx + 24])


def test_decode_rejects_outputs_that_do_not_match_the_grid() -> None:
    scores, dists = _empty_levels()
    with pytest.raises(ValueError, match="grid"):
        decode(scores, [dists[0][:-1], *dists[1:]], 416, conf=0.3)
    with pytest.raises(ValueError, match="levels"):
        decode(scores[:3], dists[:3], 416, conf=0.3, strides=STRIDES)


def test_every_from_env() -> None:
    assert every_from_env(5, {}) == 5
    assert every_from_env(5, {EVERY_ENV: "1"}) == 1
    for bad in ("0", "-2", "x", "1.5"):
        with pytest.raises(ValueError, match=EVERY_ENV):
            every_from_env(5, {EVERY_ENV: bad})


def test_missing_model_falls_back_to_hog(tmp_path: Path) -> None:
    det = load_detector("vending", tmp_path)
    assert det.tier == "hog"


def test_garbage_model_file_is_a_clear_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    bad = tmp_path / PICODET
    bad.write_bytes(b"\x08\x01not an onnx model")
    with pytest.raises(DetectorLoadError, match=PICODET):
        PicodetVending(bad)
    with caplog.at_level(logging.WARNING):
        det = load_detector("vending", tmp_path)
    assert det.tier == "hog"
    assert "tier picodet unavailable" in caplog.text and PICODET in caplog.text


# -- with the real model file (../shared/models) -------------------------------------------


@pytest.fixture(scope="module")
def picodet_file() -> Path:
    return need_shared(f"models/{PICODET}")


@pytest.fixture(scope="module")
def model(picodet_file: Path) -> PicoDetModel:
    return PicoDetModel(picodet_file)


def _frame(name: str, index: int) -> npt.NDArray[np.uint8]:
    path = need_shared(f"data/videos/{name}")
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return np.asarray(f.to_ndarray(format="bgr24"), np.uint8)
    raise AssertionError(f"{name} has no frame {index}")


def test_other_onnx_model_is_rejected_with_its_name(tmp_path: Path) -> None:
    yolox = need_shared("models/yolox_nano.onnx")
    fake = tmp_path / PICODET
    fake.write_bytes(yolox.read_bytes())
    with pytest.raises(DetectorLoadError, match="not a PicoDet head export"):
        PicoDetModel(fake)


def test_shipped_export_layout(model: PicoDetModel) -> None:
    assert model.size == 416 and model.reg_max == 7
    assert model.net.batchable


# (clip, frame index, COCO class, expected box in frame pixels): boxes checked by eye on
# the frames and within a few pixels of YOLOX-nano's boxes on the same frames.
REAL = [
    ("street_intel_one-by-one-person-detection.mp4", 100, 0, [382, 12, 519, 392]),
    ("street_intel_person-bicycle-car-detection.gif", 20, 2, [93, 60, 166, 167]),
]


@pytest.mark.parametrize(("clip", "index", "coco", "want"), REAL)
def test_real_frame_detections(
    model: PicoDetModel, clip: str, index: int, coco: int, want: list[int]
) -> None:
    frame = _frame(clip, index)
    boxes, scores, cls = model(frame)
    hits = boxes[cls == coco]
    assert len(hits), f"no class {coco} on {clip}#{index}: {cls.tolist()}"
    iou = box_iou(np.asarray([want], np.float32), hits)[0]
    assert iou.max() >= 0.85, f"best IoU {iou.max():.2f}; boxes {hits.round().tolist()}"
    assert scores[cls == coco][iou.argmax()] >= 0.5


def test_batched_run_equals_single_runs(model: PicoDetModel) -> None:
    a = _frame(REAL[0][0], REAL[0][1])
    b = np.ascontiguousarray(a[:, ::-1])
    both = model.detect([a, b])
    for frame, got in zip((a, b), both, strict=True):
        want = model(frame)
        np.testing.assert_allclose(got[0], want[0], atol=1e-3)
        np.testing.assert_array_equal(got[2], want[2])


def test_picodet_is_the_strongest_vending_tier(models_dir: Path) -> None:
    det = load_detector("vending", models_dir)
    assert det.tier == "picodet"
    frame = _frame(REAL[0][0], REAL[0][1])
    out = det.detect([frame], ["cam"])[0]
    assert (out.class_ids == ObjectClass.PERSON).any()


def test_missing_picodet_falls_back_to_yolox(tmp_path: Path) -> None:
    (tmp_path / "yolox_nano.onnx").symlink_to(need_shared("models/yolox_nano.onnx"))
    assert load_detector("vending", tmp_path).tier == "yolox"


def test_network_runs_every_nth_frame_per_camera(picodet_file: Path) -> None:
    det = PicodetVending(picodet_file, every=3)
    runs: list[int] = []
    real = det._run

    def counting(frames: list[npt.NDArray[np.uint8]]) -> list:
        runs.append(len(frames))
        return real(frames)

    det._run = counting  # type: ignore[method-assign]
    frame = _frame(REAL[0][0], REAL[0][1])
    first = det.detect([frame, frame], ["a", "b"])  # both cameras' first frames run
    assert runs == [2]
    held = [det.detect([frame], ["a"])[0] for _ in range(2)]
    assert runs == [2]  # frames 2 and 3 of camera a reuse its last result
    for h in held:
        person = h.class_ids == ObjectClass.PERSON
        np.testing.assert_array_equal(
            h.boxes[person], first[0].boxes[first[0].class_ids == ObjectClass.PERSON]
        )
    det.detect([frame], ["a"])
    assert runs == [2, 1]  # the 4th frame runs again
    det.detect([np.ascontiguousarray(frame[:200])], ["b"])
    assert runs == [2, 1, 1]  # a new frame size cannot reuse boxes of the old one
    assert PicodetVending(picodet_file).every == PICODET_EVERY


def test_whole_frame_scene_boxes_are_dropped(model: PicoDetModel, picodet_file: Path) -> None:
    # Empty tarmac seen from above: the network reports the whole view as an object.
    frame = _frame("street-720p.mp4", 60)
    boxes, _, _ = model(frame)
    area = (
        (boxes[:, 2] - boxes[:, 0])
        * (boxes[:, 3] - boxes[:, 1])
        / (frame.shape[0] * frame.shape[1])
    )
    assert (area > MAX_BOX_FRAC).any(), "the frame no longer shows the whole-frame boxes"
    out = PicodetVending(picodet_file, every=1).detect([frame], ["cam"])[0]
    net = out.class_ids != ObjectClass.STALL
    b = out.boxes[net]
    frac = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) / (frame.shape[0] * frame.shape[1])
    assert (frac <= MAX_BOX_FRAC).all()
