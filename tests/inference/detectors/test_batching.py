"""Batched ONNX Runtime runs give exactly the detections of one-frame runs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from inference.detectors.base import DetectorOutput, load_detector
from inference.detectors.batching import BatchedModel, batch_symbolic
from inference.detectors.common import (
    MAX_BATCH_ENV,
    PROVIDER_ENV,
    OrtOptions,
    read_image,
    resolve_providers,
)
from inference.detectors.face import YuNetFace

# model file, input scale, spatial (YuNet runs at the frame's own size)
SHIPPED = [
    ("y5fu_320x_sim.onnx", 1.0, False),
    ("y5fu_640x_sim.onnx", 1.0, False),
    ("yolox_nano.onnx", 255.0, False),
    ("yunet_s_640_640.onnx", 255.0, True),
    ("yunet_n_640_640.onnx", 255.0, True),
]


def _frames(data_dir: Path, n: int) -> list[np.ndarray]:
    """Real eval images of several sizes (faces and plates), plus a resized copy."""
    out = []
    for task in ("faces", "plates"):
        d = data_dir / "eval" / task
        labels = json.loads((d / "labels.json").read_text())["images"]
        out += [read_image(d / im["file"]) for im in labels[:: max(1, len(labels) // n)][:n]]
    out.append(cv2.resize(out[0], (333, 250)))
    return out


def _assert_same(a: list[DetectorOutput], b: list[DetectorOutput]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert len(x) == len(y)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-4)
        np.testing.assert_array_equal(x.class_ids, y.class_ids)
        assert set(x.extra) == set(y.extra)
        for key in ("plate_text", "plate_score"):
            assert x.extra.get(key) == y.extra.get(key)
        if "landmarks" in x.extra:
            np.testing.assert_allclose(x.extra["landmarks"], y.extra["landmarks"], atol=0.11)


@pytest.mark.parametrize(("file", "scale", "spatial"), SHIPPED)
def test_shipped_models_are_batchable_and_rows_equal_single_runs(
    models_dir: Path, file: str, scale: float, spatial: bool
) -> None:
    net = BatchedModel(models_dir / file, spatial=spatial, check_scale=scale)
    assert net.batchable, net.reason
    assert net.provider == "CPUExecutionProvider"
    # The untouched file, one frame per run, is the reference.
    original = ort.InferenceSession(str(models_dir / file), providers=["CPUExecutionProvider"])
    shape = [d for d in original.get_inputs()[0].shape[1:]]
    x = (np.random.default_rng(1).random((5, *shape), dtype=np.float32) * scale).astype(np.float32)
    net.max_batch = 2  # chunks of 2, 2, 1
    got = net.run(x)
    for i in range(len(x)):
        want = original.run(None, {net.input_name: x[i : i + 1]})
        for k, w in enumerate(want):
            np.testing.assert_allclose(got[k][i], w[0], rtol=0, atol=1e-4)


def test_rapidocr_recogniser_is_already_batch_dynamic() -> None:
    from inference.detectors.ocr import REC_MODEL, rapidocr_model

    shape = onnx.load(str(rapidocr_model(REC_MODEL))).graph.input[0].type.tensor_type.shape
    assert shape.dim[0].dim_param and not shape.dim[0].HasField("dim_value")


@pytest.mark.parametrize(
    ("detector", "tier"),
    [("face", "yunet"), ("face", "yunet_n"), ("plate", "y5fu"), ("vending", "yolox")],
)
def test_batched_detect_equals_one_frame_calls(
    models_dir: Path, data_dir: Path, detector: str, tier: str
) -> None:
    frames = _frames(data_dir, 3)
    cams = [f"cam{i}" for i in range(len(frames))]
    # max_batch 3: several chunks, and frames of different sizes in one call.
    batched = load_detector(detector, models_dir, [tier], ort=OrtOptions(max_batch=3))
    single = load_detector(detector, models_dir, [tier], ort=OrtOptions(max_batch=1))
    assert getattr(batched, "batchable", False)
    got = batched.detect(frames, cams)
    want = [single.detect([f], [c])[0] for f, c in zip(frames, cams, strict=True)]
    _assert_same(got, want)
    assert sum(len(o) for o in got) > 0


@pytest.mark.parametrize("model", ["yunet_s_640_640.onnx", "yunet_n_640_640.onnx"])
def test_yunet_through_onnxruntime_matches_opencv(
    models_dir: Path, data_dir: Path, model: str
) -> None:
    frames = _frames(data_dir, 8)
    ours = YuNetFace(models_dir / model)
    ref = YuNetFace(models_dir / model, runtime="opencv")
    assert (ours.runtime, ref.runtime) == ("onnxruntime", "opencv")
    cams = ["c"] * len(frames)
    got = ours.detect(frames, cams)
    _assert_same(got, ref.detect(frames, cams))
    assert sum(len(o) for o in got) >= 8


# -- graphs that cannot run batched fall back to one frame per call ---------------------


def _tiny(nodes: list[Any], inits: list[Any], out_shape: list[int], path: Path) -> Path:
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _reshape_initializer(path: Path) -> Path:
    # Reshape's target [1, 2, 2] is an initializer: rewritten to [0, 2, 2], batchable.
    shape = helper.make_tensor("s", TensorProto.INT64, [3], [1, 2, 2])
    return _tiny([helper.make_node("Reshape", ["x", "s"], ["y"])], [shape], [1, 2, 2], path)


def _reshape_constant_node(path: Path) -> Path:
    # The target comes from a Constant node: left alone, so batch 2 cannot run.
    const = helper.make_node(
        "Constant",
        [],
        ["s"],
        value=helper.make_tensor("v", TensorProto.INT64, [2], [1, 4]),
    )
    return _tiny([const, helper.make_node("Reshape", ["x", "s"], ["y"])], [], [1, 4], path)


def _mixes_the_batch(path: Path) -> Path:
    # Runs at any batch but sums over it: batch 2 gives other rows than two single runs.
    axes = helper.make_tensor("a", TensorProto.INT64, [1], [0])
    node = helper.make_node("ReduceSum", ["x", "a"], ["r"], keepdims=1)
    add = helper.make_node("Add", ["x", "r"], ["y"])
    return _tiny([node, add], [axes], [1, 4], path)


@pytest.mark.parametrize(
    ("build", "batchable"),
    [(_reshape_initializer, True), (_reshape_constant_node, False), (_mixes_the_batch, False)],
)
def test_batching_never_changes_results(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    build: Callable[[Path], Path],
    batchable: bool,
) -> None:
    path = build(tmp_path / "tiny.onnx")
    with caplog.at_level(logging.WARNING):
        net = BatchedModel(path)
    assert net.batchable is batchable
    assert ("one frame per ONNX Runtime call" in caplog.text) is not batchable
    original = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    (got,) = net.run(x)
    want = np.concatenate([original.run(None, {"x": x[i : i + 1]})[0] for i in range(3)])
    np.testing.assert_array_equal(got, want)


def test_batch_symbolic_leaves_the_file_alone(models_dir: Path) -> None:
    path = models_dir / "y5fu_320x_sim.onnx"
    before = path.read_bytes()
    model = onnx.load_from_string(batch_symbolic(path))
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert path.read_bytes() == before


# -- execution providers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("choice", "available", "expected", "warns"),
    [
        ("cpu", ["CPUExecutionProvider"], ["CPUExecutionProvider"], False),
        ("cuda", ["CPUExecutionProvider"], ["CPUExecutionProvider"], True),
        (
            "cuda",
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            False,
        ),
        (
            "tensorrt",
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
            ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
            False,
        ),
        (
            "tensorrt",
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            ["CUDAExecutionProvider", "CPUExecutionProvider"],
            True,
        ),
    ],
)
def test_provider_choice_and_fallback(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    choice: str,
    available: list[str],
    expected: list[str],
    warns: bool,
) -> None:
    monkeypatch.setattr("inference.detectors.common._WARNED", set())
    with caplog.at_level(logging.WARNING):
        assert resolve_providers(choice, available) == expected
    assert ("requested but this onnxruntime has only" in caplog.text) is warns


def test_unavailable_provider_runs_on_cpu_and_says_so(
    models_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    monkeypatch.setattr("inference.detectors.common._WARNED", set())
    with caplog.at_level(logging.WARNING):
        det = load_detector("plate", models_dir, ["y5fu"], ort=OrtOptions(provider="cuda"))
    assert getattr(det, "provider", None) == "CPUExecutionProvider"
    assert "CUDAExecutionProvider requested" in caplog.text


@pytest.mark.parametrize(
    ("env", "expected", "error"),
    [
        ({}, OrtOptions(), None),
        ({PROVIDER_ENV: "CUDA", MAX_BATCH_ENV: "8"}, OrtOptions("cuda", 8), None),
        ({PROVIDER_ENV: "cuda", MAX_BATCH_ENV: ""}, OrtOptions("cuda"), None),
        ({PROVIDER_ENV: "tensorrt"}, OrtOptions("tensorrt"), None),
        ({PROVIDER_ENV: "rocm"}, None, "rocm"),
        ({MAX_BATCH_ENV: "0"}, None, "at least 1"),
        ({MAX_BATCH_ENV: "many"}, None, "many"),
    ],
)
def test_options_from_environment(
    env: dict[str, str], expected: OrtOptions | None, error: str | None
) -> None:
    if error:
        with pytest.raises(ValueError, match=error):
            OrtOptions.from_env(env)
    else:
        opts = OrtOptions.from_env(env)
        assert opts == expected
        assert OrtOptions.from_env(opts.env()) == opts


def test_load_detector_hands_options_to_the_tier(models_dir: Path) -> None:
    det = load_detector("vending", models_dir, ["yolox"], ort=OrtOptions(max_batch=5))
    assert det._model.net.max_batch == 5  # type: ignore[attr-defined]
    default = load_detector("vending", models_dir, ["yolox"])
    assert default._model.net.max_batch == 8  # type: ignore[attr-defined]  # the CPU default


@pytest.mark.parametrize(
    ("opts", "frames"),
    [
        (OrtOptions(), 8),
        (OrtOptions("cuda"), 64),
        (OrtOptions("tensorrt"), 64),
        (OrtOptions("cuda", 16), 16),
        (OrtOptions("cpu", 1), 1),
    ],
)
def test_frames_per_run_defaults_by_provider(opts: OrtOptions, frames: int) -> None:
    assert opts.frames_per_run == frames
