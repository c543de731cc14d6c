"""DeepStream adapter on CPU: probe against FakePyds, pipeline and configs, CPU stand-in."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from citysight.config import CameraConfig, CameraProfile, StreamsService
from citysight.contracts import ObjectClass
from streams.deepstream.configs import write_configs
from streams.deepstream.pipeline import build_cpu_standin, build_deepstream
from streams.deepstream.probe import UNTRACKED_OBJECT_ID, BatchMetaProbe, batch_meta_to_results

# -- a small fake of the pyds bindings (named as a fake) -----------------------------------


@dataclass
class _GList:
    data: Any
    next: _GList | None = None


def _glist(items: list[Any]) -> _GList | None:
    head: _GList | None = None
    for it in reversed(items):
        head = _GList(it, head)
    return head


@dataclass
class _Rect:
    left: float
    top: float
    width: float
    height: float


@dataclass
class _Obj:
    class_id: int
    confidence: float
    object_id: int
    rect_params: _Rect


@dataclass
class _Frame:
    pad_index: int
    frame_num: int
    ntp_timestamp: int
    source_frame_width: int
    source_frame_height: int
    objs: list[_Obj] = field(default_factory=list)

    @property
    def obj_meta_list(self) -> _GList | None:
        return _glist(self.objs)


@dataclass
class _Batch:
    frames: list[_Frame]

    @property
    def frame_meta_list(self) -> _GList | None:
        return _glist(self.frames)


class FakePyds:
    """Just enough of ``pyds`` for the probe: casts and batch-meta lookup by buffer hash."""

    class NvDsFrameMeta:
        @staticmethod
        def cast(data: Any) -> Any:
            return data

    class NvDsObjectMeta:
        @staticmethod
        def cast(data: Any) -> Any:
            return data

    def __init__(self) -> None:
        self.metas: dict[int, _Batch] = {}

    def gst_buffer_get_nvds_batch_meta(self, buf_hash: int) -> _Batch | None:
        return self.metas.get(buf_hash)


class _Buf:
    pass


class _Info:
    def __init__(self, buf: Any) -> None:
        self.buf = buf

    def get_buffer(self) -> Any:
        return self.buf


def _batch() -> _Batch:
    return _Batch(
        [
            _Frame(
                0,
                7,
                1_700_000_000_500_000_000,
                1920,
                1080,
                [
                    _Obj(0, 0.9, 42, _Rect(10, 20, 30, 40)),
                    _Obj(1, 0.8, UNTRACKED_OBJECT_ID, _Rect(100, 100, 50, 20)),
                    _Obj(9, 0.7, 5, _Rect(0, 0, 1, 1)),
                ],
            ),
            _Frame(1, 3, 0, 1280, 720, []),
            _Frame(5, 1, 0, 640, 480, [_Obj(0, 0.5, 1, _Rect(0, 0, 2, 2))]),  # unknown source
        ]
    )


def test_batch_meta_to_results() -> None:
    pyds = FakePyds()
    res = batch_meta_to_results(
        pyds,
        _batch(),
        {0: "cam-a", 1: "cam-b"},
        class_map={0: int(ObjectClass.FACE), 1: int(ObjectClass.PLATE)},
        now=123.0,
    )
    assert [r.camera_id for r in res] == ["cam-a", "cam-b"]
    a, b = res
    assert a.frame_no == 7 and a.frame_time == pytest.approx(1_700_000_000.5)
    assert (a.width, a.height) == (1920, 1080)
    np.testing.assert_allclose(a.boxes, [[10, 20, 40, 60], [100, 100, 150, 120]])
    assert a.class_ids.tolist() == [ObjectClass.FACE, ObjectClass.PLATE]  # class 9 unmapped
    assert a.track_ids.tolist() == [42, -1]
    assert len(b) == 0 and b.frame_time == 123.0
    # Results survive the buffer being recycled: plain values, not views.
    assert FrameResultRoundTrip(a)


def FrameResultRoundTrip(r: Any) -> bool:
    from citysight.contracts import FrameResult

    back = FrameResult.from_msgpack(r.to_msgpack())
    return back.camera_id == r.camera_id and np.allclose(back.boxes, r.boxes)


@pytest.mark.parametrize(
    ("meta", "sink_raises", "expect_frames", "expect_errors"),
    [
        ("ok", False, 2, 0),
        ("none", False, 0, 0),
        ("broken", False, 0, 1),
        ("ok", True, 2, 1),
    ],
)
def test_probe_never_raises(
    meta: str, sink_raises: bool, expect_frames: int, expect_errors: int
) -> None:
    pyds = FakePyds()
    buf = _Buf()
    if meta == "ok":
        pyds.metas[hash(buf)] = _batch()
    elif meta == "broken":
        pyds.metas[hash(buf)] = _Batch([_Frame(0, 1, 0, 1, 1, [_Obj(0, 0.5, 1, None)])])  # type: ignore[arg-type]
    got: list[Any] = []

    def sink(results: list[Any]) -> None:
        got.extend(results)
        if sink_raises:
            raise RuntimeError("queue closed")

    ok = object()
    probe = BatchMetaProbe(pyds, {0: "cam-a", 1: "cam-b"}, sink, ok)
    assert probe(None, _Info(buf)) is ok
    assert probe.frames == expect_frames and probe.errors == expect_errors


def _cams(tmp: Path, clip: Path) -> list[CameraConfig]:
    return [
        CameraConfig(
            id="a",
            url="rtsp://10.0.0.5/s",
            latitude=0,
            longitude=0,
            profile=CameraProfile(keyframe_only=True),
        ),
        CameraConfig(id="b", url=str(clip), latitude=0, longitude=0),
        CameraConfig(id="off", url=str(clip), latitude=0, longitude=0, enabled=False),
    ]


def test_deepstream_description_and_configs(tmp_path: Path, clips: dict[str, Path]) -> None:
    cfg = StreamsService(max_batch=16, push_timeout_ms=40)
    files = write_configs(tmp_path, cfg, "face", "127.0.0.1:8001")
    text = files["infer"].read_text()
    assert 'model_name: "face"' in text and "enable_cuda_buffer_sharing: true" in text
    assert "max_batch_size: 16" in text
    assert "batch-size=16" in files["mux"].read_text()
    assert files["tracker"].read_text().startswith("%YAML:1.0")
    spec = build_deepstream(
        _cams(tmp_path, clips["short"]),
        cfg,
        infer_config=str(files["infer"]),
        tracker_config=str(files["tracker"]),
    )
    d = spec.description
    assert spec.source_ids == {0: "a", 1: "b"}
    assert "rtsp-reconnect-interval=5" in d  # nvurisrcbin's default 0 never reconnects
    assert 'uri="rtsp://10.0.0.5/s" rtsp-reconnect-interval=5 dec-skip-frames=2' in d
    assert "dec-skip-frames=0" in d
    assert "batch-size=2 batched-push-timeout=40000" in d
    assert "live-source=1" in d and "! mux.sink_1" in d
    assert "nvinferserver" in d and "nvtracker" in d and "fakesink name=probe" in d


@pytest.mark.skipif(shutil.which("gst-launch-1.0") is None, reason="needs Debian GStreamer")
def test_cpu_standin_runs_under_gstreamer(tmp_path: Path, clips: dict[str, Path]) -> None:
    extra = CameraConfig(id="c", url=str(clips["gop10"]), latitude=0, longitude=0)
    cams = [*_cams(tmp_path, clips["gop10"])[1:], extra]
    spec = build_cpu_standin(cams)
    assert spec.source_ids == {0: "b", 1: "c"}
    proc = subprocess.run(
        ["gst-launch-1.0", "-q", *spec.description.split()],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
