"""Every config.pbtxt of model_repo/ (production variants included) is a valid ModelConfig."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "model_repo"
CONFIGS = sorted(REPO.rglob("config.pbtxt"))
DETECTORS = ("face", "plate", "fire_smoke", "vending")


def parse(text: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_repository_has_every_model() -> None:
    names = {p.parent.name for p in REPO.glob("*/config.pbtxt")}
    assert names == {*DETECTORS, "canary"}
    assert len(CONFIGS) > len(names), "production variants are missing"


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(REPO)))
def test_config_parses_and_names_its_folder(path: Path) -> None:
    cfg = parse(path.read_text())
    assert cfg.name == path.parent.name
    assert cfg.backend or cfg.platform
    assert cfg.input and cfg.output


@pytest.mark.parametrize("name", DETECTORS)
def test_python_detector_configs(name: str) -> None:
    cfg = parse((REPO / name / "config.pbtxt").read_text())
    assert cfg.backend == "python"
    # The detectors run a whole dynamic batch as one ONNX Runtime batch: let Triton form
    # large ones (a GPU's sweet spot), within what the streams may send per request.
    assert cfg.max_batch_size == 64
    assert (REPO / name / "1" / "model.py").is_file()
    db = cfg.dynamic_batching
    assert list(db.preferred_batch_size) and db.max_queue_delay_microseconds > 0
    assert max(db.preferred_batch_size) <= cfg.max_batch_size
    assert db.priority_levels == 2
    assert [g.kind for g in cfg.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]
    assert cfg.instance_group[0].count == 1
    assert [r.name for r in cfg.instance_group[0].rate_limiter.resources] == ["cpu"]
    inputs = {i.name: i for i in cfg.input}
    assert inputs["FRAMES"].data_type == model_config_pb2.TYPE_UINT8
    assert list(inputs["FRAMES"].dims) == [-1, -1, 3]
    assert inputs["CAMERA_IDS"].data_type == model_config_pb2.TYPE_STRING
    outputs = {o.name for o in cfg.output}
    assert {"COUNT", "BOXES", "SCORES", "CLASS_IDS", "EXTRA", "TIER"} <= outputs
    assert ("TEXT" in outputs) == (name == "plate")


def test_fire_smoke_has_the_highest_priority() -> None:
    cfgs = {n: parse((REPO / n / "config.pbtxt").read_text()) for n in DETECTORS}
    fire = cfgs.pop("fire_smoke")
    assert fire.dynamic_batching.default_priority_level == 1
    for other in cfgs.values():
        assert other.dynamic_batching.default_priority_level > 1
        assert (
            other.dynamic_batching.max_queue_delay_microseconds
            > fire.dynamic_batching.max_queue_delay_microseconds
        )
        assert (
            other.instance_group[0].rate_limiter.priority
            > fire.instance_group[0].rate_limiter.priority
        )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        (
            'name: "x" backend: "python" max_batch_size: 1 dynamic_batching { no_such: 1 }',
            "no_such",
        ),
        ('name: "x" backend: "python" max_batchsize: 4', "max_batchsize"),
        ('name: "x" input [ { name: "A" data_type: TYPE_UINT9 dims: [ 1 ] } ]', "TYPE_UINT9"),
        ('name: "x" max_batch_size: "eight"', "max_batch_size"),
    ],
)
def test_unknown_fields_and_bad_values_are_rejected(text: str, error: str) -> None:
    with pytest.raises(text_format.ParseError, match=error):
        parse(text)


def test_production_variants_use_native_backends() -> None:
    prod = sorted((REPO / "production").rglob("config.pbtxt"))
    backends = {parse(p.read_text()).backend or parse(p.read_text()).platform for p in prod}
    assert {"onnxruntime", "tensorrt"} <= backends or {"onnxruntime", "tensorrt_plan"} <= backends


# production net -> (shipped file, input name)
BATCHED_NETS = {
    "face_yunet": ("yunet_s_640_640.onnx", "input"),
    "plate_y5fu": ("y5fu_320x_sim.onnx", "input"),
    "vending_yolox": ("yolox_nano.onnx", "images"),
}


@pytest.mark.parametrize("backend", ["onnxruntime", "tensorrt_plan"])
@pytest.mark.parametrize("net", sorted(BATCHED_NETS))
def test_production_nets_batch_like_the_batchable_files(
    models_dir: Path, tmp_path: Path, backend: str, net: str
) -> None:
    """Config dims (without the batch axis) match the file the comment says how to write."""
    import onnx

    from inference.detectors.batching import main as write_batchable

    path = REPO / "production" / backend / net / "config.pbtxt"
    text = path.read_text()
    cfg = parse(text)
    src, input_name = BATCHED_NETS[net]
    assert cfg.max_batch_size == 64 and list(cfg.dynamic_batching.preferred_batch_size)
    assert "python -m inference.detectors.batching" in text and src in text
    dest = tmp_path / "model.onnx"
    assert write_batchable([str(models_dir / src), str(dest)]) == 0
    graph = onnx.load(str(dest)).graph

    def dims(v: object) -> list[int | str]:
        return [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim]  # type: ignore[attr-defined]

    (inp,) = [i for i in graph.input if i.name == input_name]
    assert dims(inp)[0] == "batch" and [cfg.input[0].name] == [input_name]
    assert list(cfg.input[0].dims) == dims(inp)[1:]
    outputs = {o.name: dims(o) for o in graph.output}
    assert {o.name: list(o.dims) for o in cfg.output} == {k: v[1:] for k, v in outputs.items()}
    if backend == "tensorrt_plan":
        assert f"--maxShapes={input_name}:64x" in text


def test_manifest_lists_files_with_facts_and_tiers() -> None:
    data = yaml.safe_load((REPO / "manifest.yaml").read_text())
    files = {f["file"]: f for f in data["files"]}
    for entry in files.values():
        assert entry["detector"] in DETECTORS
        assert entry["licence"] and entry["source"] and entry["fallback"]
        if entry["sha256"] is not None:
            assert len(entry["sha256"]) == 64 and entry["bytes"] > 0
    for name in ("yunet_s_640_640.onnx", "y5fu_320x_sim.onnx", "yolox_nano.onnx"):
        assert files[name]["required"] is True


def test_model_files_are_never_committed() -> None:
    ignore = (REPO / "files" / ".gitignore").read_text().split()
    assert ignore == ["*", "!.gitignore"]
