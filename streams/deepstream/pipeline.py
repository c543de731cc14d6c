"""GStreamer pipeline descriptions for the DeepStream backend and its CPU stand-in."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from citysight.config import CameraConfig, StreamsService
from citysight.urls import scheme_of

# nvurisrcbin's dec-skip-frames: 0 decode all, 1 non-reference, 2 keyframes only.
DEC_SKIP_KEYFRAMES = 2


@dataclass(frozen=True, slots=True)
class PipelineSpec:
    """A built pipeline: its description and the source index -> camera id map.

    Attributes:
        description: ``gst-launch`` syntax.
        source_ids: ``pad_index`` (``NvDsFrameMeta.pad_index``) of each camera.
    """

    description: str
    source_ids: dict[int, str]


def _uri(camera: CameraConfig) -> str:
    if scheme_of(camera.url):
        return camera.url
    return Path(camera.url).resolve().as_uri()


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_deepstream(
    cameras: list[CameraConfig],
    cfg: StreamsService,
    *,
    infer_config: str,
    tracker_config: str,
    tracker_lib: str = "/opt/nvidia/deepstream/deepstream/lib/libnvds_nvmultiobjecttracker.so",
    rtsp_reconnect_interval_s: int = 5,
    width: int = 960,
    height: int = 540,
) -> PipelineSpec:
    """DeepStream pipeline: sources → nvstreammux → nvinferserver → nvtracker → probe sink.

    Args:
        cameras: Cameras (enabled ones get a source, in order).
        cfg: Batching settings (``max_batch``, ``push_timeout_ms``).
        infer_config: Path of the generated nvinferserver config.
        tracker_config: Path of the generated tracker config.
        tracker_lib: Low-level tracker library.
        rtsp_reconnect_interval_s: ``nvurisrcbin`` reconnect interval; its default 0
            disables reconnection, so this is always set.
        width: Mux output width.
        height: Mux output height.

    Returns:
        The description; the probe attaches to the sink pad of ``name=probe``.
    """
    cams = [c for c in cameras if c.enabled]
    live = any(scheme_of(c.url) for c in cams)
    parts = [
        f"nvstreammux name=mux batch-size={max(1, min(cfg.max_batch, len(cams) or 1))} "
        f"batched-push-timeout={cfg.push_timeout_ms * 1000} width={width} height={height} "
        f"live-source={int(live)}",
        f"! nvinferserver config-file-path={_q(infer_config)}",
        f"! nvtracker ll-lib-file={_q(tracker_lib)} ll-config-file={_q(tracker_config)}",
        "! fakesink name=probe sync=false async=false",
    ]
    srcs = []
    for i, c in enumerate(cams):
        skip = DEC_SKIP_KEYFRAMES if c.profile.keyframe_only else 0
        srcs.append(
            f"nvurisrcbin name=src{i} uri={_q(_uri(c))} "
            f"rtsp-reconnect-interval={rtsp_reconnect_interval_s} "
            f"dec-skip-frames={skip} "
            f"latency=200 select-rtp-protocol={4 if c.profile.transport == 'tcp' else 0} "
            f"! mux.sink_{i}"
        )
    return PipelineSpec(
        " ".join(parts) + " " + " ".join(srcs), {i: c.id for i, c in enumerate(cams)}
    )


def build_cpu_standin(
    cameras: list[CameraConfig], *, sink: str = "fakesink", width: int = 320, height: int = 240
) -> PipelineSpec:
    """The same graph shape with CPU elements (``uridecodebin``/``videoconvert``).

    Used to test source wiring under Debian's GStreamer without a GPU. Each source ends in
    its own ``sink`` element (``fakesink`` or ``appsink``) named ``sink{i}``.
    """
    cams = [c for c in cameras if c.enabled]
    branches = [
        f"uridecodebin uri={_q(_uri(c))} ! videoconvert ! videoscale "
        f"! video/x-raw,format=BGR,width={width},height={height} "
        f"! {sink} name=sink{i} sync=false"
        for i, c in enumerate(cams)
    ]
    return PipelineSpec("  ".join(branches), {i: c.id for i, c in enumerate(cams)})
