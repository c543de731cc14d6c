"""The in-process client: contract, determinism, health, bad input."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from citysight.config import InferenceService
from citysight.contracts import ContractError, FrameBatch, ObjectClass
from inference.client import InferenceClient, create_client

ASTRONAUT = "eval/faces/images/faces__skimage__astronaut.png"


def _batch(frames: list[np.ndarray], detectors: set[str]) -> FrameBatch:
    n = len(frames)
    return FrameBatch(
        frames=frames,
        camera_ids=[f"cam{i}" for i in range(n)],
        frame_nos=list(range(n)),
        frame_times=[1.0] * n,
        detectors=[frozenset(detectors)] * n,
    )


@pytest.fixture(scope="module")
def client(models_dir: Path) -> InferenceClient:
    c = create_client(InferenceService(), models_dir)
    yield c
    c.close()


def test_results_per_frame_with_tracks_and_health(client: InferenceClient, data_dir: Path) -> None:
    img = cv2.imread(str(data_dir / ASTRONAUT))
    small = cv2.resize(img, (256, 256))
    batch = _batch([img, small], {"face", "vending", "plate", "fire_smoke"})
    first = client.infer(batch)
    second = client.infer(batch)
    assert [(r.width, r.height) for r in first] == [(512, 512), (256, 256)]
    for a, b in zip(first, second, strict=True):
        faces = a.class_ids == ObjectClass.FACE
        assert faces.sum() == 1 and (a.track_ids[faces] >= 1).all()
        # stateless detectors give identical boxes; tracks keep their ids
        fb = b.class_ids == ObjectClass.FACE
        np.testing.assert_array_equal(a.boxes[faces], b.boxes[fb])
        np.testing.assert_array_equal(a.track_ids[faces], b.track_ids[fb])
    np.testing.assert_allclose(
        first[1].boxes[first[1].class_ids == ObjectClass.FACE] * 2,
        first[0].boxes[first[0].class_ids == ObjectClass.FACE],
        atol=12,
    )
    health = client.health()["detectors"]
    assert health["face"] == {
        "loaded": True,
        "tier": "yunet",
        "errors": 0,
        "model_file": str(Path(health["face"]["model_file"])),
        "provider": "CPUExecutionProvider",
        "batchable": True,
    }
    # The trained fire/smoke tier ships with the project: it runs without any installed file.
    assert health["fire_smoke"]["provider"] == "CPUExecutionProvider"
    assert {d: health[d]["tier"] for d in health} == {
        "face": "yunet",
        "plate": "y5fu",
        "fire_smoke": "det",
        "vending": "picodet",
    }


def test_only_requested_detectors_run(client: InferenceClient, data_dir: Path) -> None:
    img = cv2.imread(str(data_dir / ASTRONAUT))
    (res,) = client.infer(_batch([img], {"face"}))
    assert set(res.class_ids.tolist()) == {int(ObjectClass.FACE)}


def test_two_clients_agree(models_dir: Path, data_dir: Path, client: InferenceClient) -> None:
    img = cv2.imread(str(data_dir / ASTRONAUT))
    other = create_client(InferenceService(), models_dir)
    batch = _batch([img], {"face", "vending"})
    batch.camera_ids = ["fresh"]
    a, b = client.infer(batch)[0], other.infer(batch)[0]
    np.testing.assert_array_equal(a.boxes, b.boxes)
    np.testing.assert_array_equal(a.class_ids, b.class_ids)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: FrameBatch([], [], [], [], []), ContractError),
        (lambda: "not a batch", ContractError),
        (lambda: _batch([np.zeros((8, 8, 3), np.uint8)], {"teleport"}), ContractError),
    ],
)
def test_bad_batches_give_clear_errors(client: InferenceClient, make, error) -> None:
    with pytest.raises(error):
        client.infer(make())


def test_mutated_batch_is_rechecked(client: InferenceClient) -> None:
    batch = _batch([np.zeros((8, 8, 3), np.uint8)], {"face"})
    batch.frames[0] = np.zeros((8, 8), np.uint8)
    with pytest.raises(ContractError):
        client.infer(batch)


def test_unknown_backend_type() -> None:
    cfg = InferenceService.model_construct(type="tpu")
    with pytest.raises(ValueError, match="unknown inference backend"):
        create_client(cfg, Path("."))


class _Broken:
    name = "face"
    tier = "broken"
    model_file = ""

    def detect(self, frames, camera_ids):
        raise RuntimeError("session died")


def test_failing_detector_is_counted_not_fatal(models_dir: Path, data_dir: Path) -> None:
    from inference.backends.onnxruntime import OrtClient

    client = OrtClient(None, models_dir, detectors=["face", "fire_smoke"])
    client._detectors["face"] = _Broken()
    img = cv2.imread(str(data_dir / ASTRONAUT))
    (res,) = client.infer(_batch([img], {"face", "fire_smoke"}))
    assert not (res.class_ids == ObjectClass.FACE).any()
    assert client.health()["detectors"]["face"]["errors"] == 1


def test_corrupt_model_files_fall_back_and_show_in_health(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from inference.backends.onnxruntime import OrtClient

    names = (
        "yunet_s_640_640.onnx",
        "y5fu_320x_sim.onnx",
        "picodet_s_416_coco.onnx",
        "yolox_nano.onnx",
        "fire_smoke_det.onnx",
    )
    for name in names:
        (tmp_path / name).write_bytes(b"\x08\x01garbage")
    with caplog.at_level("WARNING"):
        client = OrtClient(None, tmp_path)
    tiers = {d: h["tier"] for d, h in client.health()["detectors"].items()}
    assert tiers == {
        "face": "haar",
        "plate": "ocr_det",
        "fire_smoke": "classical",
        "vending": "hog",
    }
    assert "yolox_nano.onnx" in caplog.text and "picodet_s_416_coco.onnx" in caplog.text
    (res,) = client.infer(_batch([np.zeros((120, 160, 3), np.uint8)], {"face", "vending"}))
    assert res.width == 160 and res.height == 120
