"""fire_det data side (no torch): source clips, split by clip, known classes, assignment,
placement and the synthetic material."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.training.fire_det.augment import Canvas, hflip, photometric, place
from inference.training.fire_det.data import Item, clip_of, read_items, split_by_clip
from inference.training.fire_det.synth import (
    TRAIN_NEGATIVE_CLIPS,
    UNSEEN_NEGATIVE_CLIPS,
    VALIDATION_NEGATIVE_CLIPS,
    composite_smoke,
    hard_negative,
)
from inference.training.fire_det.targets import Assigner


@pytest.mark.parametrize(
    ("name", "clip"),
    [
        ("part1_mp4-130_jpg.rf.8c0de4cf399b3e02f2f47e63a3c7a015.jpg", "part1_mp4"),
        ("fireVid_009_mp4-12_jpg.rf.0123456789abcdef.jpg", "firevid_009_mp4"),
        ("smoke2_mp4__smoke2_mp4-14_jpg.rf.e9f1195c5d2642f2330462341e6db133.jpg", "smoke2_mp4"),
        ("img_lo__img_78_jpg.rf.6c4d121019166ecebc501863f1c6ac92.jpg", "img_lo#1"),
        ("image405_jpg.rf.33a264808a5a778423a0cf3f241282a5.jpg", "image#8"),
        ("image449_jpg.rf.33a264808a5a778423a0cf3f241282a5.jpg", "image#8"),
        ("image450_jpg.rf.33a264808a5a778423a0cf3f241282a5.jpg", "image#9"),
        ("img_105_jpg.rf.0e01cceb3110b62c74e0ea47680443d4.jpg", "img#2"),
        ("12-factory_fire_jpg.rf.5994e40f2957a47a0b79522f15c25b07.jpg", "news:factory_fire"),
        ("1-palghar_jpeg_jpg.rf.8c0de4cf399b3e02f2f47e63a3c7a015.jpg", "news:palghar"),
        ("house6_f0092.jpg", "house6_f"),
    ],
)
def test_clip_of(name: str, clip: str) -> None:
    assert clip_of(name) == clip


def _yolo_set(root: Path, names: list[str], files: dict[str, list[str]], split: str | None) -> Path:
    (root / "data.yaml").parent.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(f"names: {names}\nnc: {len(names)}\n")
    base = root / split if split else root
    for stem, lines in files.items():
        (base / "images").mkdir(parents=True, exist_ok=True)
        (base / "labels").mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(base / "images" / f"{stem}.jpg"), np.full((32, 48, 3), 90, np.uint8))
        (base / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    return root


def test_read_items_known_classes_and_negative_scene(tmp_path: Path) -> None:
    fire_only = _yolo_set(
        tmp_path / "fire_only", ["fire"], {"a_mp4-1_jpg": ["0 0.5 0.5 0.2 0.2"]}, "train"
    )
    both = _yolo_set(
        tmp_path / "both",
        ["fire", "negative_scene", "smoke"],
        {
            "c1_mp4__c1_mp4-1_jpg": ["2 0.5 0.5 0.4 0.4"],
            "c2_mp4__c2_mp4-1_jpg": ["1 0.5 0.5 1 1"],
            "c3_mp4__c3_mp4-1_jpg": ["0 0.5 0.5 0.2 0.2", "bad line"],
        },
        None,
    )
    (a,) = read_items(fire_only)
    assert a.known == (True, False)  # data.yaml names fire only: smoke unknown
    assert a.clip == "a_mp4" and a.has(0)
    items = {i.clip: i for i in read_items(both)}
    assert items["c1_mp4"].known == (True, True) and items["c1_mp4"].has(1)
    assert len(items["c2_mp4"].boxes) == 0  # the whole-frame negative_scene box is dropped
    assert len(items["c3_mp4"].boxes) == 1  # the malformed line is skipped, not fatal
    with pytest.raises(FileNotFoundError):
        read_items(tmp_path / "missing")


def test_split_by_clip_keeps_clips_whole() -> None:
    items = []
    for c in range(20):
        cls = 1 if c < 4 else (0 if c < 16 else -1)
        for f in range(5):
            boxes = np.asarray([[0.1, 0.1, 0.5, 0.5, cls]] if cls >= 0 else [], np.float32)
            items.append(Item(Path(f"c{c}_{f}.jpg"), boxes.reshape(-1, 5), (True, True), f"c{c}"))
    train, held = split_by_clip(items, 0.25, seed=0)
    assert {i.clip for i in train}.isdisjoint({i.clip for i in held})
    assert len(train) + len(held) == len(items)
    for stratum in ("smoke", "fire", "none"):
        assert any(i.stratum == stratum for i in held), stratum
        assert any(i.stratum == stratum for i in train), stratum
    assert split_by_clip(items, 0.25, seed=0)[1] == held  # deterministic


def test_negative_clip_roles_do_not_overlap() -> None:
    roles = [set(TRAIN_NEGATIVE_CLIPS), set(VALIDATION_NEGATIVE_CLIPS), set(UNSEEN_NEGATIVE_CLIPS)]
    assert sum(len(r) for r in roles) == len(set().union(*roles))


def test_assigner_levels_fallback_and_unknown() -> None:
    a = Assigner(320, 2)
    boxes = np.asarray(
        [[100, 100, 140, 140, 0], [0, 0, 320, 320, 1], [200, 200, 203, 203, 0]], np.float32
    )
    unknown = np.asarray([[0, 0, 80, 80, 1]], np.float32)
    t = a(boxes, unknown, np.zeros((0, 5), np.float32))
    fire = t.positive & (t.cls[:, 0] > 0)
    smoke = t.positive & (t.cls[:, 1] > 0)
    assert set(a.level[fire & (t.box[:, 0] == 100)]) == {0}  # 40 px box → stride 8
    assert set(a.level[smoke]) == {2}  # whole frame → stride 32
    assert (fire & (t.box[:, 0] == 200)).sum() == 1  # a 3 px box still gets one cell
    inside = (a.centres[:, 0] < 80) & (a.centres[:, 1] < 80)
    assert (t.weight[inside & ~t.positive, 1] == 0).all()  # smoke unknown there
    assert (t.weight[~inside, 0] == 1).all()
    assert ((t.centreness > 0) == t.positive).all()


def test_place_and_flip_keep_boxes_on_the_objects() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 50:90] = 255
    canvas = np.zeros((320, 320, 3), np.uint8)
    rng = np.random.default_rng(1)
    norm = np.asarray([[0.25, 0.4, 0.45, 0.6, 0]], np.float32)
    boxes, unknown, _ = place(canvas, img, norm, (True, False), (0, 0, 320, 320), rng, 1.0)
    x1, y1, x2, y2 = boxes[0, :4].astype(int)
    assert canvas[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].min() == 255
    assert unknown.shape == (1, 5) and unknown[0, 4] == 1
    flipped = hflip(Canvas(canvas, boxes, unknown))
    fx1, _, fx2, _ = flipped.boxes[0, :4].astype(int)
    assert flipped.img[y1 + 1 : y2 - 1, fx1 + 1 : fx2 - 1].min() == 255
    # Pasted mostly outside the canvas: the box is cut below 40 % and becomes "ignore".
    canvas2 = np.zeros((64, 64, 3), np.uint8)
    norm2 = np.asarray([[0.0, 0.0, 1.0, 1.0, 0]], np.float32)
    b2, _, ig = place(canvas2, img, norm2, (True, True), (0, 0, 64, 64), rng, 2.0)
    assert len(b2) == 0 and len(ig) == 1


def test_photometric_and_synthetic_material_shapes() -> None:
    rng = np.random.default_rng(0)
    bg = (rng.random((96, 96, 3)) * 255).astype(np.uint8)
    for _ in range(20):
        out = photometric(bg, rng)
        assert out.shape == bg.shape and out.dtype == np.uint8
        neg, kind = hard_negative(bg, rng)
        assert neg.shape == bg.shape and kind
    alpha = np.zeros((40, 20), np.float32)
    alpha[5:35, 5:15] = 1.0
    img, boxes = composite_smoke(np.zeros((96, 96, 3), np.uint8), [alpha], np.random.default_rng(3))
    assert img.shape == (96, 96, 3)
    for x1, y1, x2, y2 in boxes:
        assert img[int(y1) : int(y2), int(x1) : int(x2)].max() > 20  # the plume is in its box


def _scored(scores: tuple[float, ...], positive: bool, video_negative: bool) -> list:
    from inference.training.fire_det.evaluate import Scored

    box = np.asarray([[10, 10, 50, 50]], np.float32)
    out = []
    for s in scores:
        gt = box if positive else np.zeros((0, 4), np.float32)
        det = (box, np.asarray([s], np.float32))
        empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32))
        out.append(Scored("x", [gt, gt], [det, empty], video_negative=video_negative))
    return out


@pytest.mark.parametrize(
    ("negative_scores", "cap", "want"),
    [
        # no video negatives: the best-F1 threshold (highest that keeps every positive)
        ((), 0.05, 0.6),
        # one of two video frames scores 0.7 (50 % flagged): the cap forces a threshold above
        # it; among equal F1 the higher wins
        ((0.7, 0.1), 0.05, 0.8),
        # the same frames with a lax cap: the F1 choice stands
        ((0.7, 0.1), 0.5, 0.6),
    ],
)
def test_thresholds_capped_by_video_negative_frames(
    negative_scores: tuple[float, ...], cap: float, want: float
) -> None:
    from inference.training.fire_det.evaluate import choose_thresholds

    scored = _scored((0.6, 0.8, 0.9), True, False) + _scored(negative_scores, False, True)
    chosen, at = choose_thresholds(scored, max_negative_rate=cap)
    assert chosen[0] == pytest.approx(want)
    assert at[0]["video_negative_frame_rate"] <= cap


@pytest.mark.parametrize("seed", range(6))
def test_box_matches_agree_with_the_eval_matcher(seed: int) -> None:
    """The training scorer counts box matches exactly as ``citysight eval`` does."""
    from benchmarks.eval.scoring import match_boxes
    from inference.training.metrics import box_matches

    rng = np.random.default_rng(seed)

    def boxes(n: int) -> np.ndarray:
        xy = rng.uniform(0, 80, (n, 2))
        return np.hstack([xy, xy + rng.uniform(5, 40, (n, 2))]).astype(np.float32)

    det, gt = boxes(int(rng.integers(0, 9))), boxes(int(rng.integers(0, 6)))
    scores = rng.random(len(det)).astype(np.float32)
    counts, _ = match_boxes(det, scores, gt.tolist(), [False] * len(gt), 0.3)
    assert box_matches(det, scores, gt, 0.3) == counts.matched


def test_background_bank_needs_videos_or_scenes() -> None:
    """Without the videos folder and without the demo scenes (the bare module) the bank would
    be empty: a clear error, not a crash deep in a data worker."""
    from inference.training.fire_det.synth import Backgrounds
    from streams.synthetic.scenes import SCENES

    with pytest.raises(ValueError, match="citysight models train fire_smoke"):
        Backgrounds.load(None)
    bank = Backgrounds.load(None, demo_per_scene=2, scenes=SCENES)
    assert len(bank.frames) == 6 and {o.split(":")[0] for o in bank.origins} == {"demo"}
