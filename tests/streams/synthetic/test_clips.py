"""Tests for the synthetic demo clips: real rendering at a small size."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import numpy.typing as npt
import pytest

from streams.synthetic.clips import (
    DEMO_PLATES,
    DEMO_SCENES,
    KEYFRAME_INTERVAL_S,
    PLATE_PATTERN,
    VENDING_STALL_REGION,
    format_plate,
    render_demo_clips,
)
from streams.synthetic.plates import plate_image
from streams.synthetic.scenes.face import FaceScene
from streams.synthetic.scenes.plate import PlateScene

SECONDS = 4.0
FPS = 5
SIZE = (320, 180)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("clips")
    return render_demo_clips(out, seconds=SECONDS, fps=FPS, size=SIZE)


def _frames(path: Path) -> Iterator[tuple[av.VideoFrame, npt.NDArray[np.uint8]]]:
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield frame, np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8)


def test_all_scenes_rendered(clips: dict[str, Path]) -> None:
    assert tuple(clips) == DEMO_SCENES == ("plate", "face", "fire", "smoke", "vending")
    for name, path in clips.items():
        assert path.name == f"{name}.mp4" and path.stat().st_size > 0
        assert path.with_suffix(".json").is_file()


@pytest.mark.parametrize("scene", ["plate", "face", "fire", "smoke", "vending"])
def test_clip_format(clips: dict[str, Path], scene: str) -> None:
    with av.open(str(clips[scene])) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == Fraction(FPS)
        assert (stream.codec_context.width, stream.codec_context.height) == SIZE
        assert stream.codec_context.pix_fmt == "yuv420p"
        keys = [i for i, f in enumerate(container.decode(stream)) if f.key_frame]
    n = round(SECONDS * FPS)
    assert keys == list(range(0, n, KEYFRAME_INTERVAL_S * FPS))
    assert len(keys) >= 2


def test_keyframe_only_decode(clips: dict[str, Path]) -> None:
    with av.open(str(clips["plate"])) as container:
        stream = container.streams.video[0]
        stream.codec_context.skip_frame = "NONKEY"
        decoded = list(container.decode(stream))
    assert len(decoded) == round(SECONDS / KEYFRAME_INTERVAL_S)


def test_frame_count(clips: dict[str, Path]) -> None:
    assert sum(1 for _ in _frames(clips["smoke"])) == round(SECONDS * FPS)


def test_idempotent_and_force(clips: dict[str, Path]) -> None:
    out = clips["plate"].parent
    before = {n: p.stat().st_mtime_ns for n, p in clips.items()}
    again = render_demo_clips(out, seconds=SECONDS, fps=FPS, size=SIZE)
    assert again == clips
    assert {n: p.stat().st_mtime_ns for n, p in again.items()} == before
    forced = render_demo_clips(
        out, seconds=SECONDS, fps=FPS, size=SIZE, force=True, scenes=["vending"]
    )
    assert forced["vending"].stat().st_mtime_ns != before["vending"]


def test_changed_parameters_rerender(tmp_path: Path) -> None:
    first = render_demo_clips(tmp_path, seconds=1.0, fps=4, size=(64, 36), scenes=["fire"])
    mtime = first["fire"].stat().st_mtime_ns
    second = render_demo_clips(tmp_path, seconds=2.0, fps=4, size=(64, 36), scenes=["fire"])
    assert second["fire"].stat().st_mtime_ns != mtime
    assert sum(1 for _ in _frames(second["fire"])) == 8


@pytest.mark.parametrize("size", [(63, 36), (64, 35), (0, 36)])
def test_odd_size_rejected(tmp_path: Path, size: tuple[int, int]) -> None:
    with pytest.raises(ValueError, match="even"):
        render_demo_clips(tmp_path, seconds=1.0, fps=2, size=size)


@pytest.mark.parametrize(
    ("text", "valid"),
    [
        (DEMO_PLATES[0], True),
        (DEMO_PLATES[1], True),
        ("京Q8X7Y6", True),
        ("琼I12345", False),  # I is never used
        ("琼A1234", False),
        ("XA12345", False),
        ("琼a12345", False),
    ],
)
def test_plate_grammar(text: str, valid: bool) -> None:
    assert bool(PLATE_PATTERN.match(text)) is valid
    if not valid:
        with pytest.raises(ValueError):
            plate_image(text, 160)


def test_demo_plates() -> None:
    assert DEMO_PLATES == ("琼A12345", "琼B6789D")
    assert format_plate(DEMO_PLATES[0]) == "琼A·12345"
    img = plate_image(DEMO_PLATES[0], 160)
    assert img.shape == (51, 160, 3)
    # Mostly plate blue, with white characters.
    blue = (img[..., 2] > 130) & (img[..., 0] < 40)
    white = img.min(axis=2) > 200
    assert blue.mean() > 0.5 and white.mean() > 0.1


def test_plate_size_at_full_resolution() -> None:
    scene = PlateScene((960, 540), 10, 20.0)
    for index in (0, scene.num_frames - 1):
        img = scene.draw(index)
        blue = ((img[..., 2] > 130) & (img[..., 0] < 40) & (img[..., 1] < 100)).astype(np.uint8)
        n, _, stats, _ = cv2.connectedComponentsWithStats(blue)
        widths = sorted(int(s[cv2.CC_STAT_WIDTH]) for s in stats[1:n] if s[4] > 500)
        assert len(widths) == 2
        # Blue area inside the white border: the plate is ~5 px wider.
        assert all(134 <= w <= 178 for w in widths), widths


def test_face_is_detectable_and_sized() -> None:
    scene = FaceScene((960, 540), 10, 20.0)
    cascade = cv2.CascadeClassifier(
        cv2.data.haarcascades + "haarcascade_frontalface_default.xml"  # type: ignore[attr-defined]
    )
    for index in (0, 50, 100):
        gray = cv2.cvtColor(scene.draw(index), cv2.COLOR_RGB2GRAY)
        faces = cascade.detectMultiScale(gray, 1.1, 5, minSize=(60, 60))
        assert len(faces) == 1
        assert 100 <= faces[0][3] <= 200


def test_fire_is_hot_and_flickers(clips: dict[str, Path]) -> None:
    frames = [rgb.astype(np.int16) for _, rgb in _frames(clips["fire"])]
    hot_masks: list[npt.NDArray[np.bool_]] = []
    for rgb in frames:
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        hot = (r > 180) & (r > g + 40) & (g > b + 20)
        hot_masks.append(hot)
        assert hot.sum() > 0.005 * hot.size
    # The flame changes from frame to frame: hot pixels differ and so do values.
    for m1, m2 in itertools.pairwise(hot_masks):
        assert (m1 ^ m2).sum() > 0.1 * m1.sum()
    for i in range(len(frames) - 1):
        flame = hot_masks[i] | hot_masks[i + 1]
        assert np.abs(frames[i] - frames[i + 1])[flame].mean() > 8


def test_vending_stall_static_after_appearing(clips: dict[str, Path]) -> None:
    frames = [rgb.astype(np.int16) for _, rgb in _frames(clips["vending"])]
    w, h = SIZE
    x1, y1, x2, y2 = VENDING_STALL_REGION
    region = (slice(round(y1 * h), round(y2 * h)), slice(round(x1 * w), round(x2 * w)))
    second_half = frames[len(frames) // 2 :]
    for a, b in itertools.pairwise(second_half):
        assert np.abs(a[region] - b[region]).mean() < 2.0
    # ...and the stall is not there at the start.
    assert np.abs(frames[0][region] - frames[-1][region]).mean() > 20
    # Things keep moving elsewhere in the frame.
    assert np.abs(second_half[0] - second_half[-1]).mean() > 0.5
