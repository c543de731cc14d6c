"""``citysight eval`` on a directory in the shared format (not only the shared one)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks.eval.cli import main


@pytest.fixture
def tiny_eval(data_dir: Path, tmp_path: Path) -> Path:
    """A two-task eval dir built from a few shared images."""
    src = data_dir / "eval"
    for task, n in (("faces", 3), ("plate_text", 3), ("fire", 200)):
        labels = json.loads((src / task / "labels.json").read_text())
        images = labels["images"][:n]
        for im in images:
            dst = tmp_path / task / im["file"]
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src / task / im["file"], dst)
        if task == "faces":
            images[0]["objects"][0]["difficult"] = True
        (tmp_path / task / "labels.json").write_text(
            json.dumps({"task": task, "images": images}, ensure_ascii=False)
        )
    return tmp_path


def test_eval_json_on_any_dir(tiny_eval: Path, models_dir: Path, capsys) -> None:
    rc = main(
        [
            "--data",
            str(tiny_eval),
            "--models",
            str(models_dir),
            "--json",
            "--tier",
            "face=haar",
            "--tasks",
            "faces,plate_text",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"faces", "plate_text"}
    assert out["faces"]["tier"] == "haar"
    assert out["faces"]["images"] == 3
    assert out["plate_text"]["text_exact"] == 1.0
    for task in out.values():
        assert {"precision", "recall", "f1", "tier"} <= set(task)


@pytest.mark.parametrize(
    "argv",
    [
        ["--tier", "face"],
        ["--tier", "face=nope"],
        ["--tasks", "weather"],
        ["--data", "/nonexistent"],
    ],
)
def test_bad_arguments(argv: list[str], tiny_eval: Path) -> None:
    data = [] if "--data" in argv else ["--data", str(tiny_eval)]
    assert main(data + argv) == 2


def _with_exif_rotation(src: Path, dst: Path) -> None:
    """Write ``src``'s pixels unchanged to ``dst`` with EXIF orientation 6 (rotate 90° CW)."""
    from PIL import Image

    with Image.open(src) as im:
        exif = im.getexif()
        exif[0x0112] = 6
        im.convert("RGB").save(dst, "JPEG", quality=95, exif=exif.tobytes())


def test_boxes_are_scored_in_stored_pixels(data_dir: Path, models_dir: Path, tmp_path, capsys):
    """A JPEG carrying an EXIF orientation is scored as stored, as the format defines.

    OpenCV rotates such images by default, which would move every face away from its
    labelled box.
    """
    src = data_dir / "eval" / "faces"
    labels = json.loads((src / "labels.json").read_text())
    images = [im for im in labels["images"] if len(im["objects"]) == 1][:2]
    assert images, "the shared faces set has single-face images"
    for im in images:
        dst = tmp_path / "faces" / im["file"]
        dst.parent.mkdir(parents=True, exist_ok=True)
        _with_exif_rotation(src / im["file"], dst.with_suffix(".jpg"))
        im["file"] = str(Path(im["file"]).with_suffix(".jpg"))
    (tmp_path / "faces" / "labels.json").write_text(json.dumps({"task": "faces", "images": images}))
    rc = main(["--data", str(tmp_path), "--models", str(models_dir), "--json", "--tasks", "faces"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)["faces"]
    assert out["recall"] == 1.0, out


def test_unreadable_images_are_named_not_fatal(
    tiny_eval: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing or corrupt image is left out and named; the rest of the task is scored."""
    labels_path = tiny_eval / "fire" / "labels.json"
    labels = json.loads(labels_path.read_text())
    n = len(labels["images"])
    (tiny_eval / "fire" / "images" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    labels["images"] += [
        {"file": "images/gone.jpg", "objects": []},
        {"file": "images/corrupt.jpg", "objects": [{"box": None}]},
    ]
    labels_path.write_text(json.dumps(labels))
    argv = ["--data", str(tiny_eval), "--models", str(models_dir), "--tasks", "fire"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)["fire"]
    assert out["images"] == n
    assert out["skipped_images"] == ["images/gone.jpg", "images/corrupt.jpg"]
    assert out["f1"] > 0
    assert main(argv) == 0
    assert "2 unreadable images left out" in capsys.readouterr().out
