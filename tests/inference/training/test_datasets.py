"""Dataset readers (YOLO and labels.json), merging and the labels.json → YOLO converter."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from inference.training.convert import convert
from inference.training.convert import main as convert_main
from inference.training.datasets import group_of, load, read_dataset, read_labels_json, read_yolo

sys.path.insert(0, str(Path(__file__).parent))
from fire_smoke_tiny_sets import make_sets, write_image


def test_group_of() -> None:
    assert group_of("x/fire__furg_house6__images__house6_f0092.jpg").endswith("house6")
    assert group_of("a__train_smoke2_mp4-14.jpg") == group_of("a__valid_smoke2_mp4-4.jpg")
    assert group_of("a__train_smoke2_mp4-14.jpg") != group_of("a__valid_smoke1_mp4-4.jpg")
    assert group_of("ccpd_np4.jpg") == "ccpd_np"
    assert group_of("clip_0003.rf.0123456789abcdef.jpg") == "clip"


def test_read_labels_json(tmp_path: Path) -> None:
    fire, _ = make_sets(tmp_path)
    samples = read_labels_json(fire)
    assert [s.has("fire") for s in samples] == [True, True, False]
    assert all(s.known == {"fire"} for s in samples)
    assert samples[0].boxes == [("fire", (10.0, 5.0, 30.0, 15.0))]
    assert samples[1].boxes == [("fire", None)]
    assert samples[0].group == samples[1].group == "cama"
    assert samples[0].targets() == ([1.0, 0.0], [1.0, 0.0])


def test_merge_shares_negatives(tmp_path: Path) -> None:
    samples = {s.path.name: s for s in load(list(make_sets(tmp_path)))}
    assert len(samples) == 4
    assert samples["neg_street_01.jpg"].known == {"fire", "smoke"}
    assert samples["fog_clip-3.jpg"].targets() == ([0.0, 1.0], [0.0, 1.0])


def test_convert_round_trip(tmp_path: Path) -> None:
    fire, smoke = make_sets(tmp_path)
    out = tmp_path / "yolo"
    data_yaml = convert([fire, smoke], out)
    meta = yaml.safe_load(data_yaml.read_text())
    assert meta["names"] == ["fire", "smoke"]
    assert meta["image_level"] == ["camA_f0002.jpg"]
    line = (out / "labels" / "camA_f0001.txt").read_text().split()
    assert line[0] == "0"
    np.testing.assert_allclose([float(v) for v in line[1:]], [0.5, 0.5, 0.5, 0.5])
    assert (out / "labels" / "camA_f0002.txt").read_text().split() == [
        "0",
        "0.500000",
        "0.500000",
        "1.000000",
        "1.000000",
    ]
    assert (out / "labels" / "neg_street_01.txt").read_text() == ""
    assert (out / "labels" / "fog_clip-3.txt").read_text().startswith("1 ")
    samples = {s.path.name: s for s in read_yolo(out)}
    assert len(samples) == 4
    assert samples["camA_f0001.jpg"].has("fire") and not samples["camA_f0001.jpg"].has("smoke")
    assert samples["fog_clip-3.jpg"].has("smoke")
    assert samples["neg_street_01.jpg"].boxes == []
    assert samples["camA_f0001.jpg"].known == {"fire", "smoke"}
    assert read_dataset(out)[0].normalised


def test_convert_cli_links(tmp_path: Path) -> None:
    fire, _ = make_sets(tmp_path)
    assert convert_main(["--src", str(fire), "--out", str(tmp_path / "y"), "--link"]) == 0
    assert (tmp_path / "y" / "images" / "camA_f0001.jpg").is_symlink()


def test_read_yolo_names_mapping_and_other_classes(tmp_path: Path) -> None:
    write_image(tmp_path / "images" / "train" / "a_1.jpg", (0, 0, 255))
    write_image(tmp_path / "images" / "train" / "b_1.jpg", (0, 0, 255))
    (tmp_path / "labels" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train" / "a_1.txt").write_text("2 0.5 0.5 0.2 0.2\n0 0.1 0.1 0.1 0.1\n")
    (tmp_path / "data.yaml").write_text("names: {0: Fire-Flame, 1: default, 2: Smoke}\n")
    samples = read_yolo(tmp_path)
    assert sorted(c for c, _ in samples[0].boxes) == ["fire", "smoke"]
    assert samples[1].boxes == []  # no label file: a negative


def test_read_dataset_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_dataset(tmp_path)
    (tmp_path / "labels.json").write_text(json.dumps({"task": "faces", "images": []}))
    with pytest.raises(ValueError, match="faces"):
        read_dataset(tmp_path)
