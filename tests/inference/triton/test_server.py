"""A real tritonserver from the nvidia-pytriton wheel: health, canary, failures, bad input."""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from testkit import dashboard_queries, exposition_series, query_problems
from tritonclient.utils import InferenceServerException

from inference.triton.pymodel import canary_frame, find_canary_boxes
from inference.triton.server import LocalTriton, TritonStartError, prepare_server_tree, server_env

REPO = Path(__file__).resolve().parents[3] / "model_repo"
MODELS = ["canary", "face", "fire_smoke", "plate", "vending"]
DASHBOARD = REPO.parent / "infra" / "monitoring" / "grafana-dashboard.json"


def test_ready_and_canary(triton: LocalTriton) -> None:
    assert triton.live() and triton.ready()
    assert triton.canary()
    states = {s["name"]: s.get("state") for s in triton.model_states()}
    assert all(states[m] == "READY" for m in MODELS), states
    assert triton.failed_models() == {}
    body = urllib.request.urlopen(triton.metrics_url, timeout=5).read().decode()
    assert "nv_inference_request_success" in body
    cmd = " ".join(triton.command(Path("/x/bin/tritonserver")))
    assert "--rate-limit=execution_count" in cmd and "--http-address=127.0.0.1" in cmd


def test_dashboard_triton_queries_match_the_real_server(triton: LocalTriton) -> None:
    """Every nv_* series the shipped Grafana dashboard queries exists on a real Triton."""
    body = urllib.request.urlopen(triton.metrics_url, timeout=5).read().decode()
    series = exposition_series(body)
    queries = dashboard_queries(json.loads(DASHBOARD.read_text()))
    triton_queries = [(t, e) for t, e in queries if "nv_" in e]
    assert triton_queries
    problems = [
        f"{title!r}: {p}"
        for title, expr in triton_queries
        for p in query_problems(expr, series, prefixes=("nv_",))
    ]
    assert problems == []
    assert query_problems("sum(rate(nv_inference_request_sucess[1m]))", series, ("nv_",))


def test_canary_helpers_agree() -> None:
    frame, boxes = canary_frame()
    np.testing.assert_array_equal(find_canary_boxes(frame), boxes)
    assert len(find_canary_boxes(np.zeros((50, 50, 3), np.uint8))) == 0


def test_environment_fixes_the_libpython_trap(tmp_path: Path) -> None:
    import sysconfig

    env = server_env(tmp_path, base={"LD_LIBRARY_PATH": "/somewhere"})
    first = env["LD_LIBRARY_PATH"].split(":")[0]
    assert first == sysconfig.get_config_var("LIBDIR")
    assert env["LD_LIBRARY_PATH"].endswith("/somewhere")
    assert env["CITYSIGHT_MODELS_DIR"] == str(tmp_path.resolve())
    binary = prepare_server_tree(tmp_path / "tree")
    assert binary.is_file()
    assert (tmp_path / "tree/backends/python/triton_python_backend_stub").is_file()


def test_ort_options_reach_the_python_models_environment(tmp_path: Path) -> None:
    from inference.detectors.common import MAX_BATCH_ENV, PROVIDER_ENV, OrtOptions

    server = LocalTriton(models_dir=tmp_path, workdir=tmp_path, ort=OrtOptions("cuda", 8))
    env = server.environment()
    assert (env[PROVIDER_ENV], env[MAX_BATCH_ENV]) == ("cuda", "8")
    assert OrtOptions.from_env(env) == OrtOptions("cuda", 8)


def _request(frames: np.ndarray, cams: np.ndarray, url: str, model: str = "face") -> None:
    client = grpcclient.InferenceServerClient(url)
    a = grpcclient.InferInput("FRAMES", list(frames.shape), "UINT8")
    a.set_data_from_numpy(frames)
    b = grpcclient.InferInput("CAMERA_IDS", list(cams.shape), "BYTES")
    b.set_data_from_numpy(cams)
    try:
        client.infer(model, [a, b], client_timeout=20)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("frames", "cams", "error"),
    [
        (np.zeros((1, 32, 32, 4), np.uint8), [[b"c"]], "FRAMES"),  # 4 channels
        (np.zeros((0, 32, 32, 3), np.uint8), np.zeros((0, 1), object), "empty|0"),
        (np.zeros((2, 32, 32, 3), np.uint8), [[b"c"]], "CAMERA_IDS|shape|batch"),
        (np.zeros((1, 32, 3), np.uint8), [[b"c"]], "FRAMES|shape|dims"),
    ],
    ids=["four-channels", "empty-batch", "ids-mismatch", "missing-dim"],
)
def test_bad_tensors_get_clear_errors(
    triton: LocalTriton, frames: np.ndarray, cams: list, error: str
) -> None:
    with pytest.raises(InferenceServerException, match=error):
        _request(frames, np.asarray(cams, dtype=object), triton.grpc_url)
    assert triton.canary(), "a bad request must not hurt the server"


def test_broken_model_is_unavailable_and_corrupt_file_falls_back(
    models_dir: Path, tmp_path: Path
) -> None:
    repo, files = tmp_path / "repo", tmp_path / "files"
    shutil.copytree(REPO / "face", repo / "face")
    shutil.copytree(REPO / "face", repo / "broken")
    cfg = (repo / "broken" / "config.pbtxt").read_text()
    cfg = cfg.replace('name: "face"', 'name: "broken"')
    cfg = cfg.replace('string_value: "face"', 'string_value: "no_such_detector"')
    (repo / "broken" / "config.pbtxt").write_text(cfg)
    files.mkdir()
    (files / "yunet_s_640_640.onnx").write_bytes(b"not an onnx model")  # corrupt
    server = LocalTriton(
        repo, files, models=["face", "broken"], workdir=tmp_path / "w", startup_timeout_s=60
    )
    try:
        with pytest.raises(TritonStartError, match=r"UNAVAILABLE.*broken.*no_such_detector"):
            server.start()
        states = {s["name"]: s for s in server.model_states()}
        assert states["broken"]["state"] == "UNAVAILABLE"
        assert "no_such_detector" in states["broken"]["reason"]
        # The corrupt YuNet file did not take the face model down: it runs a fallback tier.
        for _ in range(200):
            if server.model_ready("face"):
                break
            __import__("time").sleep(0.1)
        assert server.model_ready("face")
        client = grpcclient.InferenceServerClient(server.grpc_url)
        a = grpcclient.InferInput("FRAMES", [1, 64, 64, 3], "UINT8")
        a.set_data_from_numpy(np.zeros((1, 64, 64, 3), np.uint8))
        b = grpcclient.InferInput("CAMERA_IDS", [1, 1], "BYTES")
        b.set_data_from_numpy(np.asarray([[b"c"]], dtype=object))
        tier = client.infer("face", [a, b]).as_numpy("TIER")[0, 0].decode()
        client.close()
        assert tier == "haar"
    finally:
        server.close()
    assert server.proc is None


def test_relative_workdir_starts_from_any_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative work dir (the demo's default ``.citysight``) must not reach Popen as is.

    Popen resolves a relative executable against ``cwd=``, which is the work dir itself, so
    the old code died with ``FileNotFoundError: '.citysight/triton/tritonserver/bin/...'``.
    """
    monkeypatch.chdir(tmp_path)
    server = LocalTriton(models=["canary"], models_dir=tmp_path, workdir=Path("rel/triton"))
    assert server.workdir == tmp_path / "rel" / "triton"
    try:
        server.start()
        assert server.ready() and server.canary()
    finally:
        server.close()
    assert (tmp_path / "rel/triton/tritonserver/bin/tritonserver").is_file()
