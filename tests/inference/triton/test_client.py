"""TritonClient: identical detections to in-process ONNX Runtime, drops and recovery."""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
from testkit import need_shared

from citysight.config import InferenceService
from citysight.contracts import ContractError, FrameBatch, FrameResult, ObjectClass
from inference.backends.onnxruntime import OrtClient
from inference.triton.client import TritonClient
from inference.triton.server import LocalTriton

ALL = frozenset({"face", "plate", "fire_smoke", "vending"})


def _batch(frames: list[np.ndarray], cam: str, dets: frozenset[str] = ALL) -> FrameBatch:
    n = len(frames)
    return FrameBatch(
        frames=frames,
        camera_ids=[f"{cam}{i % 2}" for i in range(n)],
        frame_nos=list(range(n)),
        frame_times=[1000.0 + i for i in range(n)],
        detectors=[dets] * n,
    )


@pytest.fixture(scope="module")
def ort(models_dir: Path) -> Iterator[OrtClient]:
    client = OrtClient(None, models_dir)
    yield client
    client.close()


@pytest.fixture(params=[True, False], ids=["shm", "plain"])
def client(request: pytest.FixtureRequest, triton: LocalTriton) -> Iterator[TritonClient]:
    c = TritonClient(
        InferenceService(type="triton", timeout_ms=60000),
        server=triton,
        url=triton.grpc_url,
        use_shm=request.param,
    )
    yield c
    c.close()


def _assert_same(a: list[FrameResult], b: list[FrameResult]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert (x.camera_id, x.frame_no, x.width, x.height) == (
            y.camera_id,
            y.frame_no,
            y.width,
            y.height,
        )
        np.testing.assert_array_equal(x.class_ids, y.class_ids)
        np.testing.assert_allclose(x.boxes, y.boxes, atol=1e-3)
        np.testing.assert_allclose(x.scores, y.scores, atol=1e-5)
        np.testing.assert_array_equal(x.track_ids, y.track_ids)
        assert x.extra.keys() == y.extra.keys()
        for k in x.extra:
            assert [str(v) for v in x.extra[k]] == [str(v) for v in y.extra[k]], k


def test_identical_detections_to_onnxruntime(
    client: TritonClient, ort: OrtClient, eval_images: Callable[..., Any]
) -> None:
    imgs = [im for task in ("faces", "plates", "fire") for im, _ in eval_images(task, 2)]
    cam = f"same-{client.use_shm}-"
    batch = _batch(imgs, cam)
    via_triton, in_process = client.infer(batch), ort.infer(batch)
    assert len(via_triton) == len(imgs), client.health()
    _assert_same(via_triton, in_process)
    assert sum(len(r) for r in via_triton) > 0
    h = client.health()
    assert h["frames_ok"] == len(imgs) and h["frames_dropped"] == 0
    assert set(h["detectors"]) == set(ALL)


def test_per_model_inference_on_real_images(
    client: TritonClient, eval_images: Callable[..., Any]
) -> None:
    faces = eval_images("faces", 3)
    res = client.infer(_batch([im for im, _ in faces], "faces", frozenset({"face"})))
    assert all((r.class_ids == ObjectClass.FACE).sum() >= 1 for r in res)
    plates = eval_images("plates", 3)
    res = client.infer(_batch([im for im, _ in plates], "plates", frozenset({"plate"})))
    read = [t for r in res for t in r.extra.get("plate_text", [])]
    wanted = [o["text"] for _, objs in plates for o in objs]
    assert len(set(read) & set(wanted)) >= 2, (read, wanted)


@pytest.mark.parametrize(
    ("make", "error"),
    [
        (lambda: FrameBatch([], [], [], [], []), "empty"),
        (lambda: _batch([np.zeros((8, 8, 3), np.uint8)], "x", frozenset({"nope"})), "unknown"),
        ("not a batch", "expected a FrameBatch"),
    ],
)
def test_bad_batches_raise_contract_errors(client: TritonClient, make: object, error: str) -> None:
    with pytest.raises(ContractError, match=error):
        client.infer(make() if callable(make) else make)  # type: ignore[arg-type]


def test_wrong_shaped_frame_is_rejected_before_sending() -> None:
    with pytest.raises(ContractError, match="uint8"):
        _batch([np.zeros((8, 8), np.uint8)], "x")


def test_slow_triton_drops_and_counts_instead_of_blocking(
    triton: LocalTriton, eval_images: Callable[..., Any]
) -> None:
    imgs = [im for im, _ in eval_images("plates", 4)] * 2
    client = TritonClient(
        InferenceService(type="triton", timeout_ms=10),
        server=triton,
        url=triton.grpc_url,
        retry_interval_s=0.1,
    )
    try:
        t0 = time.monotonic()
        assert client.infer(_batch(imgs, "slow", frozenset({"plate"}))) == []
        assert time.monotonic() - t0 < 2.0
        h = client.health()
        assert h["frames_dropped"] == len(imgs)
        assert "Deadline" in h["last_error"] or "deadline" in h["last_error"].lower()
        client.timeout_s = 20.0  # the server is merely slow: with patience it answers again
        tiny = _batch([np.zeros((32, 32, 3), np.uint8)], "slow", frozenset({"fire_smoke"}))
        deadline = time.monotonic() + 10
        while not client.infer(tiny) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.health()["state"] == "running"
    finally:
        client.close()


def test_health_reports_tiers_before_any_frame(triton: LocalTriton) -> None:
    client = TritonClient(InferenceService(type="triton"), server=triton, url=triton.grpc_url)
    try:
        tiers = {k: v["tier"] for k, v in client.health()["detectors"].items()}
    finally:
        client.close()
    assert tiers == {
        "face": "yunet",
        "plate": "y5fu",
        "fire_smoke": "det",
        "vending": "picodet",
    }


@pytest.mark.slow
def test_embedded_server_through_the_registry(models_dir: Path) -> None:
    from inference.client import create_client

    client = create_client(InferenceService(type="triton"), models_dir)
    try:
        frame = np.zeros((64, 64, 3), np.uint8)
        assert len(client.infer(_batch([frame], "emb"))) == 1
        assert client.health()["ready"]
    finally:
        client.close()


def test_killed_triton_drops_counts_and_recovers(models_dir: Path, tmp_path: Path) -> None:
    server = LocalTriton(models_dir=models_dir, models=["face"], workdir=tmp_path)
    server.start()
    client = TritonClient(
        InferenceService(type="triton", timeout_ms=3000, max_inflight=2),
        server=server,
        url=server.grpc_url,
        retry_interval_s=0.2,
    )
    frame = np.full((120, 160, 3), 90, np.uint8)
    batch = _batch([frame, frame], "chaos", frozenset({"face"}))
    try:
        assert len(client.infer(batch)) == 2
        stubs = psutil.Process(server.proc.pid).children(recursive=True)
        server.kill()
        assert not [p for p in stubs if p.is_running() and p.status() != "zombie"]
        t0 = time.monotonic()
        for _ in range(5):
            assert client.infer(batch) == []
        assert time.monotonic() - t0 < 5, "a dead Triton must not block the caller"
        h = client.health()
        assert h["state"] == "down" and not h["ready"]
        assert h["frames_dropped"] == 10 and h["last_error"]
        server.start(keep_ports=True)
        deadline = time.monotonic() + 30
        while not client.infer(batch) and time.monotonic() < deadline:
            time.sleep(0.2)
        h = client.health()
        assert h["state"] == "running" and h["recoveries"] >= 1
        assert len(client.infer(batch)) == 2
    finally:
        client.close()
        pid = server.proc.pid if server.proc else None
        server.close()
    if pid is not None:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_supervised_local_triton_is_restarted(models_dir: Path, tmp_path: Path) -> None:
    server = LocalTriton(models_dir=models_dir, models=["face"], workdir=tmp_path)
    server.start()
    client = TritonClient(
        InferenceService(type="triton", timeout_ms=3000, max_inflight=2),
        server=server,
        url=server.grpc_url,
        retry_interval_s=0.2,
        supervise=True,
    )
    batch = _batch([np.zeros((64, 64, 3), np.uint8)], "sup", frozenset({"face"}))
    try:
        assert len(client.infer(batch)) == 1
        server.kill()
        deadline = time.monotonic() + 40
        while not client.infer(batch) and time.monotonic() < deadline:
            time.sleep(0.2)
        h = client.health()
        assert h["server_restarts"] == 1 and h["recoveries"] == 1, h
        assert h["frames_dropped"] >= 1
    finally:
        client.close()
        server.close()


# -- CUDA shared memory ---------------------------------------------------------------------


def test_shared_memory_modes_resolve() -> None:
    from inference.triton.client import resolve_shared_memory

    assert resolve_shared_memory("auto", "127.0.0.1") == ("system", "")
    assert resolve_shared_memory("auto", "triton.citysight.svc") == ("off", "")
    assert resolve_shared_memory("system", "triton.citysight.svc") == ("system", "")
    assert resolve_shared_memory("off", "127.0.0.1") == ("off", "")


@pytest.mark.skipif(
    importlib.util.find_spec("cuda") is not None, reason="cuda-python is installed here"
)
def test_cuda_shared_memory_without_cuda_python_falls_back(
    triton: LocalTriton, ort: OrtClient, eval_images: Callable[..., Any]
) -> None:
    c = TritonClient(
        InferenceService(type="triton", timeout_ms=60000, shared_memory="cuda"),
        server=triton,
        url=triton.grpc_url,
    )
    try:
        h = c.health()
        assert h["shared_memory_kind"] == "system" and h["shared_memory"] is True
        assert "cuda-python" in h["shared_memory_note"]
        batch = _batch([im for im, _ in eval_images("faces", 2)], "cudafb-", frozenset({"face"}))
        _assert_same(c.infer(batch), ort.infer(batch))
    finally:
        c.close()


class FakeCudaShm:
    """A fake of tritonclient's CUDA shared-memory module on a host whose GPU cannot be used
    (named as a fake: CUDA IPC needs hardware this machine does not have)."""

    def create_shared_memory_region(self, name: str, size: int, device: int) -> Any:
        raise RuntimeError(f"cudaErrorNoDevice creating {name} on GPU {device}")

    def destroy_shared_memory_region(self, handle: Any) -> None:
        raise AssertionError("nothing was created")


def test_refused_cuda_regions_move_every_slot_to_system_shm(
    triton: LocalTriton,
    ort: OrtClient,
    eval_images: Callable[..., Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from inference.triton import client as client_mod

    real_module = client_mod._Slot._module
    monkeypatch.setattr(
        client_mod._Slot,
        "_module",
        lambda self: FakeCudaShm() if self.kind == "cuda" else real_module(self),
    )
    c = TritonClient(
        InferenceService(type="triton", timeout_ms=60000), server=triton, url=triton.grpc_url
    )
    try:
        c.shm_kind = "cuda"  # as if cuda-python had imported
        for slot in c._all_slots:
            slot.kind = "cuda"
        frames = [im for im, _ in eval_images("faces", 2)]
        batch = _batch(frames, "cudaref-", frozenset({"face"}))
        _assert_same(c.infer(batch), ort.infer(batch))  # no frame lost to the fallback
        h = c.health()
        assert h["shared_memory_kind"] == "system" and h["frames_dropped"] == 0
        assert "cudaErrorNoDevice" in h["shared_memory_note"]
        assert h["ready"]
    finally:
        c.close()


def test_server_for_config_carries_tiers_and_ort_options(tmp_path: Path) -> None:
    from inference.detectors.common import MAX_BATCH_ENV, PROVIDER_ENV
    from inference.triton.pymodel import TIERS_ENV

    inf = InferenceService(
        type="triton",
        models_dir=str(tmp_path),
        tiers={"face": ["haar"], "fire_smoke": ["cnn", "classical"]},
        execution_provider="cuda",
        ort_max_batch=16,
    )
    env = LocalTriton.for_config(inf, workdir=tmp_path / "w").environment()
    assert env[TIERS_ENV] == "face=haar,fire_smoke=cnn+classical"
    assert env[PROVIDER_ENV] == "cuda" and env[MAX_BATCH_ENV] == "16"


def test_embedded_server_honours_the_configured_tiers(models_dir: Path) -> None:
    c = TritonClient(
        InferenceService(type="triton", timeout_ms=60000, tiers={"face": ["haar"]}),
        models_dir,
    )
    try:
        assert c.health()["detectors"]["face"]["tier"] == "haar"
    finally:
        c.close()


# -- recovery: a living server keeps our regions, a restarted one lost them -----------------


def _regions(url: str, prefix: str) -> dict[str, dict[str, Any]]:
    """System shared-memory regions the server holds whose name starts with ``prefix``."""
    import tritonclient.grpc as grpcclient

    c = grpcclient.InferenceServerClient(url)
    try:
        regions = c.get_system_shared_memory_status(as_json=True).get("regions", {})
    finally:
        c.close()
    return {k: v for k, v in regions.items() if k.startswith(prefix)}


def _two_groups(cam: str) -> FrameBatch:
    """Two detectors: two concurrent requests, so both slots of max_inflight=2 are used."""
    frame = np.full((120, 160, 3), 90, np.uint8)
    return _batch([frame, frame], cam, frozenset({"face", "fire_smoke"}))


def _until_flowing(client: TritonClient, batch: FrameBatch, timeout_s: float) -> int:
    """Infer until a whole batch comes back; the number of calls that took."""
    deadline = time.monotonic() + timeout_s
    calls = 0
    while time.monotonic() < deadline:
        calls += 1
        if len(client.infer(batch)) == len(batch):
            return calls
        time.sleep(0.1)
    pytest.fail(f"frames did not flow again within {timeout_s} s: {client.health()}")


def test_transient_failure_keeps_the_living_servers_regions(triton: LocalTriton) -> None:
    """A deadline that expires trips the breaker while Triton stays up; frames flow again.

    The old client assumed a restart, re-registered regions the server still held and got
    ALREADY_EXISTS, counted as a transport failure: down again, forever.
    """
    client = TritonClient(
        InferenceService(type="triton", timeout_ms=60000, max_inflight=2),
        server=triton,
        url=triton.grpc_url,
        use_shm=True,
        retry_interval_s=0.1,
    )
    batch = _two_groups("transient")
    prefix = client._all_slots[0].name.rsplit("_", 1)[0] + "_"
    try:
        assert len(client.infer(batch)) == 2
        assert len(_regions(triton.grpc_url, prefix)) == 2  # both slots are registered
        client.timeout_s = 0.0005  # a real gRPC deadline, far below any inference time
        assert client.infer(batch) == []
        h = client.health()
        assert h["state"] == "down" and "deadline" in h["last_error"].lower(), h
        assert len(_regions(triton.grpc_url, prefix)) == 2  # the server is alive and kept them
        client.timeout_s = 60.0
        _until_flowing(client, batch, 15)
        for _ in range(5):  # and it stays up: every slot is used again
            assert len(client.infer(batch)) == 2, client.health()
        h = client.health()
        assert h["state"] == "running" and h["recoveries"] == 1, h
        assert h["regions_kept"] == 2 and h["server_resets"] == 0, h
        assert "ALREADY_EXISTS" not in h["last_error"]
        assert len(_regions(triton.grpc_url, prefix)) == 2
    finally:
        client.close()
    assert _regions(triton.grpc_url, prefix) == {}  # close() unregisters what it registered


def test_region_unregistered_behind_the_clients_back_loses_no_frame(triton: LocalTriton) -> None:
    """Someone else unregisters our regions: the next batch re-registers and is not lost."""
    import tritonclient.grpc as grpcclient

    client = TritonClient(
        InferenceService(type="triton", timeout_ms=60000, max_inflight=2),
        server=triton,
        url=triton.grpc_url,
        use_shm=True,
    )
    batch = _two_groups("behind")
    prefix = client._all_slots[0].name.rsplit("_", 1)[0] + "_"
    other = grpcclient.InferenceServerClient(triton.grpc_url)
    try:
        assert len(client.infer(batch)) == 2
        for name in _regions(triton.grpc_url, prefix):
            deadline = time.monotonic() + 10
            while True:  # the server releases a region shortly after the response
                try:
                    other.unregister_system_shared_memory(name)
                    break
                except Exception as exc:
                    if "in use" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
        assert _regions(triton.grpc_url, prefix) == {}
        assert len(client.infer(batch)) == 2, client.health()
        h = client.health()
        assert h["state"] == "running" and h["frames_dropped"] == 0, h
        assert h["reregistrations"] == 2 and h["recoveries"] == 0, h
        assert len(_regions(triton.grpc_url, prefix)) == 2
    finally:
        other.close()
        client.close()


def test_restarted_triton_is_told_from_a_transient_failure(
    models_dir: Path, tmp_path: Path
) -> None:
    """A real restart (SIGKILL of tritonserver, started again): the client sees the server
    lost its regions, registers them again, and counts a reset, not a kept region."""
    server = LocalTriton(models_dir=models_dir, models=["face", "fire_smoke"], workdir=tmp_path)
    server.start()
    client = TritonClient(
        InferenceService(type="triton", timeout_ms=20000, max_inflight=2),
        server=server,
        url=server.grpc_url,
        use_shm=True,
        retry_interval_s=0.2,
    )
    batch = _two_groups("restart")
    try:
        assert len(client.infer(batch)) == 2
        assert server.proc is not None
        os.kill(server.proc.pid, signal.SIGKILL)  # as the OOM killer would
        server.proc.wait(10)
        assert client.infer(batch) == [] and client.health()["state"] == "down"
        server.start(keep_ports=True)  # an operator (or a watchdog) starts it again
        _until_flowing(client, batch, 30)
        h = client.health()
        assert h["state"] == "running" and h["recoveries"] == 1, h
        assert h["server_resets"] == 1 and h["regions_kept"] == 0, h
        assert len(client.infer(batch)) == 2
    finally:
        client.close()
        server.close()


def test_already_registered_region_is_kept_or_replaced(triton: LocalTriton) -> None:
    """ALREADY_EXISTS: our region as the server holds it counts as registered; a stale
    registration under our name (another size) is replaced, never an error."""
    import tritonclient.grpc as grpcclient

    from inference.triton.client import _Slot

    c = grpcclient.InferenceServerClient(triton.grpc_url)
    slot = _Slot(0, f"csalready{os.getpid()}")
    try:
        slot.ensure(1 << 20, c)
        slot.registered = False  # forgotten, as after a recovery that could not ask the server
        slot.ensure(1 << 20, c)  # ALREADY_EXISTS, same key and size: kept
        assert _regions(triton.grpc_url, slot.name)[slot.name]["byte_size"] == str(1 << 20)
        c.unregister_system_shared_memory(slot.name)
        c.register_system_shared_memory(slot.name, slot.key, 4096)  # a stale, smaller one
        slot.registered = False
        slot.ensure(1 << 20, c)  # ALREADY_EXISTS, another size: replaced
        assert _regions(triton.grpc_url, slot.name)[slot.name]["byte_size"] == str(1 << 20)
        assert slot.registered
    finally:
        slot.drop(c)
        c.close()
    assert _regions(triton.grpc_url, slot.name) == {}


def test_trained_fire_smoke_tier_through_triton(
    client: TritonClient, eval_images: Callable[..., Any]
) -> None:
    """The default fire_smoke tier (the trained ``det`` network, bundled, with its per-camera
    temporal state) gives through the Triton python model exactly what it gives in process,
    and finds the fire."""
    from inference.detectors.fire_smoke_net import BUNDLED_MODEL, NetFireSmoke
    from inference.detectors.fire_smoke_temporal import TemporalFireSmoke

    assert client.health()["detectors"]["fire_smoke"]["tier"] == "det"
    imgs = [im for im, _ in eval_images("fire", 4)]
    batch = _batch(imgs, f"det-{client.use_shm}-", frozenset({"fire_smoke"}))
    res = client.infer(batch)
    direct = TemporalFireSmoke(NetFireSmoke(BUNDLED_MODEL)).detect(imgs, batch.camera_ids)
    assert sum(int((r.class_ids == ObjectClass.FIRE).sum()) for r in res) >= 2
    for r, d in zip(res, direct, strict=True):
        np.testing.assert_array_equal(r.class_ids, d.class_ids)
        np.testing.assert_allclose(r.boxes, d.boxes, atol=1e-3)
        np.testing.assert_allclose(r.scores, d.scores, atol=1e-5)


def test_picodet_vending_tier_through_triton(client: TritonClient, models_dir: Path) -> None:
    """The default vending tier (PicoDet-S, network on every 5th frame of a camera, held
    result and stationary cue in between) gives through the Triton python model exactly
    what it gives in process, and finds the person."""
    import av

    from inference.detectors.vending import PicodetVending

    assert client.health()["detectors"]["vending"]["tier"] == "picodet"
    clip = need_shared("data/videos/street_intel_one-by-one-person-detection.mp4")
    with av.open(str(clip)) as c:
        imgs = [f.to_ndarray(format="bgr24") for f in itertools.islice(c.decode(video=0), 100, 107)]
    batch = _batch(imgs, f"pico-{client.use_shm}-", frozenset({"vending"}))
    res = client.infer(batch)
    direct = PicodetVending(models_dir / "picodet_s_416_coco.onnx").detect(imgs, batch.camera_ids)
    assert any((r.class_ids == ObjectClass.PERSON).any() for r in res)
    for r, d in zip(res, direct, strict=True):
        np.testing.assert_array_equal(r.class_ids, d.class_ids)
        np.testing.assert_allclose(r.boxes, d.boxes, atol=1e-3)
        np.testing.assert_allclose(r.scores, d.scores, atol=1e-5)
