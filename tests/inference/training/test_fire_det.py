"""fire_det with torch: backbone layout, output shapes, ONNX parity, a tiny resumable run."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from testkit import need_shared  # noqa: E402

from inference.detectors.fire_smoke_net import NetFireSmoke, cell_centres  # noqa: E402
from inference.training.fire_det.__main__ import main  # noqa: E402
from inference.training.fire_det.export import export_onnx, parity  # noqa: E402
from inference.training.fire_det.model import FireSmokeDet  # noqa: E402


def test_pretrained_backbone_loads_strict() -> None:
    path = need_shared("models/shufflenetv2_x1_imagenet.pth")
    m = FireSmokeDet()
    m.load_backbone(path)  # strict=True inside: every name and shape must match
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    assert torch.equal(
        m.backbone.stage3[0].branch_main[0].weight, state["stage3.0.branch_main.0.weight"]
    )


@pytest.mark.parametrize("hw", [(320, 320), (192, 320), (96, 160), (100, 130)])
def test_output_shapes_match_numpy_cells(hw: tuple[int, int]) -> None:
    m = FireSmokeDet().eval()
    with torch.no_grad():
        scores, ltrb = m(torch.rand(2, 3, *hw) * 255)
    a = len(cell_centres(*hw))
    assert scores.shape == (2, a, 2) and ltrb.shape == (2, a, 4)
    assert float(scores.min()) >= 0 and float(scores.max()) <= 1 and float(ltrb.min()) > 0


def test_onnx_matches_torch_and_batches(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = FireSmokeDet().eval()
    # Non-trivial weights: random BatchNorm statistics, so parity is not checked on zeros.
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
    path = export_onnx(
        m, tmp_path / "det.onnx", {"classes": ["fire", "smoke"], "thresholds": [0.3, 0.3]}
    )
    rng = np.random.default_rng(1)
    x = (rng.random((3, 3, 192, 320)) * 255).astype(np.float32)
    res = parity(m, path, [x, x[:1], (rng.random((1, 3, 320, 256)) * 255).astype(np.float32)])
    assert res["max_rel_diff"] <= res["tolerance"]
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    batch = sess.run(None, {"images": x})
    for i in range(3):
        single = sess.run(None, {"images": x[i : i + 1]})
        for b, s in zip(batch, single, strict=True):
            np.testing.assert_allclose(b[i], s[0], rtol=1e-4, atol=1e-4)
    det = NetFireSmoke(path)
    assert det.thresholds == (0.3, 0.3)


def _tiny_set(root: Path) -> Path:
    """A YOLO set of 12 frames from 4 clips: orange blobs (fire), grey haze (smoke), nothing."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "data.yaml").write_text("names: [fire, negative_scene, smoke]\nnc: 3\n")
    rng = np.random.default_rng(0)
    for c, kind in enumerate(("fire", "smoke", "none", "fire")):
        for f in range(3):
            img = (rng.random((96, 128, 3)) * 60).astype(np.uint8)
            line = ""
            if kind == "fire":
                cv2.circle(img, (40 + 10 * f, 50), 15, (0, 140, 255), -1)
                line = f"0 {(40 + 10 * f) / 128:.4f} {50 / 96:.4f} {30 / 128:.4f} {30 / 96:.4f}"
            elif kind == "smoke":
                img[20:80, 30:100] = 200
                line = f"2 {65 / 128:.4f} {50 / 96:.4f} {70 / 128:.4f} {60 / 96:.4f}"
            else:
                line = "1 0.5 0.5 1 1"
            stem = f"clip{c}_mp4__clip{c}_mp4-{f}_jpg"
            cv2.imwrite(str(root / "images" / f"{stem}.jpg"), img)
            (root / "labels" / f"{stem}.txt").write_text(line + "\n")
    return root


def test_tiny_run_exports_and_resume_equals_uninterrupted(tmp_path: Path) -> None:
    # The demo scenes fill the background bank, as `citysight models train fire_smoke` does.
    from streams.synthetic.scenes import SCENES

    data = _tiny_set(tmp_path / "set")
    common = [
        "--data",
        str(data),
        "--no-videos",
        "--backbone",
        "",
        "--size",
        "64",
        "--batch",
        "4",
        "--workers",
        "0",
        "--threads",
        "1",
        "--held-out",
        "0.3",
        "--seed",
        "3",
        "--limit",
        "12",
    ]
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--out", str(straight), "--epochs", "2", *common], scenes=SCENES) == 0
    assert main(["train", "--out", str(resumed), "--epochs", "1", *common], scenes=SCENES) == 0
    assert (
        main(["train", "--out", str(resumed), "--epochs", "2", "--resume", *common], scenes=SCENES)
        == 0
    )
    a = torch.load(straight / "last.pt", weights_only=False)
    b = torch.load(resumed / "last.pt", weights_only=False)
    assert a["epoch"] == b["epoch"] == 2 and a["step"] == b["step"]
    for k, v in a["ema"].items():
        assert torch.allclose(v.float(), b["ema"][k].float(), atol=1e-6), k
    report = json.loads((straight / "report.json").read_text())
    split = json.loads((straight / "split.json").read_text())
    assert set(split["train_clips"]).isdisjoint(split["held_out_clips"])
    assert report["parity"]["max_rel_diff"] <= report["parity"]["tolerance"]
    det = NetFireSmoke(straight / "fire_smoke_det.onnx")
    assert det.meta.extra["seed"] == "3"
    assert "--seed 3" in det.meta.extra["training_command"]
    assert len(det.detect([np.zeros((96, 128, 3), np.uint8)], ["c"])) == 1


def test_train_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(SystemExit):
        main(["train", "--out", str(tmp_path), "--data", str(tmp_path / "nothing"), "--no-videos"])
    data = _tiny_set(tmp_path / "set")
    with pytest.raises(SystemExit):
        main(
            [
                "train",
                "--out",
                str(tmp_path / "o"),
                "--data",
                str(data),
                "--size",
                "100",
                "--no-videos",
            ]
        )
    with pytest.raises(SystemExit):
        main(
            [
                "train",
                "--out",
                str(tmp_path / "o"),
                "--data",
                str(data),
                "--videos",
                str(tmp_path / "nope"),
            ]
        )
