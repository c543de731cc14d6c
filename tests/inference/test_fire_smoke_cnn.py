"""The ``cnn`` fire/smoke tier: ONNX Runtime only (the fixture model is committed), tiles,
persistence, and fallback when the model file is missing or corrupt."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from citysight.contracts import ObjectClass
from inference.detectors.base import available_tiers, load_detector
from inference.detectors.fire_smoke import CnnFireSmoke

FIXTURE = Path(__file__).parent / "training" / "data" / "tiny_fire_smoke_cls.onnx"
SIZE = 16


def build_fixture(path: Path | str) -> None:
    """Export the fixture: mean colour → fire = sigmoid(20·(R−B)−4), smoke = sigmoid(20·(G−R)−4).

    Needs torch and onnx; the committed file was made with this function.
    """
    import torch

    class Tiny(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(3, 2)
            with torch.no_grad():
                self.fc.weight.copy_(torch.tensor([[20.0, 0.0, -20.0], [-20.0, 20.0, 0.0]]))
                self.fc.bias.copy_(torch.tensor([-4.0, -4.0]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.fc(x.mean(dim=(2, 3))))

    torch.onnx.export(
        Tiny(),
        (torch.zeros(1, 3, SIZE, SIZE),),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["images"],
        output_names=["scores"],
        dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}},
    )
    Path(path).with_suffix(".json").write_text(
        json.dumps(
            {
                "classes": ["fire", "smoke"],
                "size": SIZE,
                "threshold": 0.5,
                "trained_on": "nothing: hand-set weights, a test fixture",
            }
        )
        + "\n"
    )


def _frame(bgr: tuple[int, int, int], h: int = 64, w: int = 96) -> np.ndarray:
    return np.full((h, w, 3), bgr, np.uint8)


RED = (0, 0, 230)  # BGR
GREEN = (0, 230, 0)
GREY = (128, 128, 128)


@pytest.fixture
def models(tmp_path: Path) -> Path:
    shutil.copy(FIXTURE, tmp_path / "fire_smoke_cls.onnx")
    shutil.copy(FIXTURE.with_suffix(".json"), tmp_path / "fire_smoke_cls.json")
    return tmp_path


def test_cnn_registered_before_classical() -> None:
    tiers = available_tiers("fire_smoke")
    assert tiers.index("cnn") < tiers.index("classical")


def test_cnn_classifies_whole_frame(models: Path) -> None:
    det = load_detector("fire_smoke", models, ["cnn", "classical"])
    assert det.tier == "cnn"
    fire, smoke, none = det.detect([_frame(RED), _frame(GREEN), _frame(GREY)], ["a", "b", "c"])
    assert list(fire.class_ids) == [int(ObjectClass.FIRE)]
    assert list(smoke.class_ids) == [int(ObjectClass.SMOKE)]
    assert len(none) == 0
    # No tile stands out in a uniform frame... all do: the box is their union, the frame.
    np.testing.assert_allclose(fire.boxes[0], [0, 0, 96, 64])
    assert fire.scores[0] > 0.9


def test_cnn_tile_localises(models: Path) -> None:
    det = CnnFireSmoke(models / "fire_smoke_cls.onnx")
    frame = _frame((100, 100, 120))  # not red enough on its own
    frame[:32, 48:] = (0, 0, 255)  # a red top-right quarter lifts the whole frame over 0.5
    out = det.detect([frame], ["cam"])[0]
    assert list(out.class_ids) == [int(ObjectClass.FIRE)]
    np.testing.assert_allclose(out.boxes[0], [48, 0, 96, 32])


def test_cnn_persistence_per_camera(models: Path) -> None:
    det = CnnFireSmoke(models / "fire_smoke_cls.onnx", persist=2, window=3)
    seq = [GREY, RED, RED, GREY, RED]
    hits = [len(det.detect([_frame(c)], ["cam1"])[0]) > 0 for c in seq]
    # frame 2: 1 of 2 so far is not enough; frame 3: 2 of 3; frame 5: red now and at frame 3.
    assert hits == [False, False, True, False, True]
    # Another camera keeps its own history: its first red frame reports at once.
    assert len(det.detect([_frame(RED)], ["cam2"])[0]) == 1
    det.reset()
    assert len(det.detect([_frame(RED)], ["cam1"])[0]) == 1


def test_cnn_missing_or_corrupt_falls_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    det = load_detector("fire_smoke", tmp_path, ["cnn", "classical"])
    assert det.tier == "classical"
    assert "tier cnn unavailable" in caplog.text
    (tmp_path / "fire_smoke_cls.onnx").write_bytes(b"not an onnx file")
    assert load_detector("fire_smoke", tmp_path, ["cnn", "classical"]).tier == "classical"


def test_fixture_matches_builder(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    build_fixture(tmp_path / "fire_smoke_cls.onnx")
    a = CnnFireSmoke(tmp_path / "fire_smoke_cls.onnx")
    b = CnnFireSmoke(FIXTURE)
    frame = np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)
    np.testing.assert_allclose(a.scores(frame)[0], b.scores(frame)[0], atol=1e-6)
