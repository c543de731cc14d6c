"""Runtime add/remove of sources, following DeepStream's ``runtime_source_add_delete``.

Add: build a source bin (``nvurisrcbin`` on GPU nodes, ``uridecodebin`` → ``videoconvert``
on CPU), add it to the running pipeline, request a mux sink pad ``sink_<id>``, link the
bin's ghost ``src`` pad to it and set the bin PLAYING. Remove: set the bin to NULL, send a
flush-stop into its mux pad, release the request pad and remove the bin; the rest of the
pipeline keeps running.

The ``Gst`` module is injected (this module imports nothing outside the standard library,
so it runs under the system ``python3`` with ``python3-gi`` as well as inside the DeepStream
container). The mux is ``nvstreammux`` on GPU nodes; on CPU a ``funnel`` (or any element
with ``sink_%u`` request pads) stands in for it.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)

# nvurisrcbin's dec-skip-frames: 2 decodes keyframes only.
DEC_SKIP_KEYFRAMES = 2

BinFactory = Callable[[int, str], Any]


def _link_video_pad(bin_: Any, target: Any, pace: bool) -> Callable[..., None]:
    def on_pad_added(_: Any, pad: Any) -> None:
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name() if caps and caps.get_size() else ""
        if not name.startswith("video/"):
            return
        if pace:
            # A file added at run time starts at pts 0: shift it to the pipeline's running
            # time so a synchronising element downstream plays it at its native rate.
            clock = bin_.get_clock()
            if clock is not None:
                pad.set_offset(clock.get_time() - bin_.get_base_time())
        if hasattr(target, "set_target"):
            target.set_target(pad)
        elif not pad.is_linked():
            pad.link(target)

    return on_pad_added


def deepstream_source_bin(
    gst: Any,
    source_id: int,
    uri: str,
    *,
    rtsp_reconnect_interval_s: int = 5,
    keyframe_only: bool = False,
) -> Any:
    """``nvurisrcbin`` in a bin with a ghost ``src`` pad (DeepStream's ``create_source_bin``).

    Args:
        gst: The ``Gst`` module.
        source_id: Index of the source (mux pad ``sink_<id>``, ``NvDsFrameMeta.pad_index``).
        uri: Source URI (``rtsp://``, ``file://``).
        rtsp_reconnect_interval_s: Always set: nvurisrcbin's default 0 never reconnects.
        keyframe_only: Decode keyframes only (``dec-skip-frames=2``, saves NVDEC work).
    """
    b = gst.Bin.new(f"source-bin-{source_id:04d}")
    src = gst.ElementFactory.make("nvurisrcbin", f"uri-src-{source_id:04d}")
    if src is None:
        raise RuntimeError("nvurisrcbin is missing: run inside the DeepStream container")
    src.set_property("uri", uri)
    src.set_property("rtsp-reconnect-interval", rtsp_reconnect_interval_s)
    src.set_property("dec-skip-frames", DEC_SKIP_KEYFRAMES if keyframe_only else 0)
    b.add(src)
    ghost = gst.GhostPad.new_no_target("src", gst.PadDirection.SRC)
    b.add_pad(ghost)
    src.connect("pad-added", _link_video_pad(b, ghost, pace=False))
    return b


def cpu_source_bin(
    gst: Any, source_id: int, uri: str, *, width: int = 320, height: int = 240, pace: bool = True
) -> Any:
    """The CPU stand-in: ``uridecodebin`` → ``videoconvert`` → ``videoscale`` → caps.

    Args:
        gst: The ``Gst`` module.
        source_id: Index of the source.
        uri: Source URI.
        width: Output width (every source gives the same caps into the mux).
        height: Output height.
        pace: Play files at their native rate (``identity sync=true`` with the pad offset
            moved to the running time), like a live camera.
    """
    b = gst.Bin.new(f"source-bin-{source_id:04d}")
    names = ["uridecodebin", "videoconvert", "videoscale", "capsfilter"]
    if pace:
        names.append("identity")
    els = [gst.ElementFactory.make(n, f"{n}-{source_id:04d}") for n in names]
    if any(e is None for e in els):
        raise RuntimeError("GStreamer base plugins are missing (uridecodebin, videoconvert)")
    dec, conv, _, caps = els[:4]
    dec.set_property("uri", uri)
    caps.set_property(
        "caps", gst.Caps.from_string(f"video/x-raw,format=I420,width={width},height={height}")
    )
    for e in els:
        b.add(e)
    for a, z in itertools.pairwise(els[1:]):
        a.link(z)
    if pace:
        els[-1].set_property("sync", True)
    b.add_pad(gst.GhostPad.new("src", els[-1].get_static_pad("src")))
    dec.connect("pad-added", _link_video_pad(b, conv.get_static_pad("sink"), pace=pace))
    return b


class RuntimeSources:
    """Adds and removes sources of a running pipeline.

    Args:
        gst: The ``Gst`` module.
        pipeline: The running ``Gst.Pipeline``.
        mux: Element with ``sink_%u`` request pads (``nvstreammux``; ``funnel`` on CPU).
        make_bin: ``make_bin(source_id, uri)`` -> a bin with a ``src`` pad.
    """

    def __init__(self, gst: Any, pipeline: Any, mux: Any, make_bin: BinFactory) -> None:
        self.gst = gst
        self.pipeline = pipeline
        self.mux = mux
        self.make_bin = make_bin
        self._bins: dict[int, Any] = {}
        self._buffers: dict[int, int] = {}
        self._lock = threading.Lock()

    def add(self, source_id: int, uri: str) -> None:
        """Build, link and start a source while the pipeline runs.

        Raises:
            ValueError: ``source_id`` is in use.
            RuntimeError: The mux pad cannot be requested or linked.
        """
        gst = self.gst
        with self._lock:
            if source_id in self._bins:
                raise ValueError(f"source {source_id} already exists")
            b = self.make_bin(source_id, uri)
            self.pipeline.add(b)
            pad_name = f"sink_{source_id}"
            request = getattr(self.mux, "request_pad_simple", None) or self.mux.get_request_pad
            sinkpad = request(pad_name)
            if sinkpad is None:
                self.pipeline.remove(b)
                raise RuntimeError(f"mux gave no pad {pad_name}")
            srcpad = b.get_static_pad("src")
            if srcpad.link(sinkpad) != gst.PadLinkReturn.OK:
                self.mux.release_request_pad(sinkpad)
                self.pipeline.remove(b)
                raise RuntimeError(f"cannot link source {source_id} to the mux")
            self._buffers[source_id] = 0
            srcpad.add_probe(gst.PadProbeType.BUFFER, self._count, source_id)
            self._bins[source_id] = b
            ret = b.set_state(gst.State.PLAYING)
            logger.info("source %d added (%s)", source_id, ret.value_nick)

    def remove(self, source_id: int) -> bool:
        """Stop and detach a source; returns whether it existed.

        The DeepStream order: bin to NULL, flush-stop into the mux pad, release the pad,
        remove the bin (nothing of the source stays in the pipeline).
        """
        gst = self.gst
        with self._lock:
            b = self._bins.pop(source_id, None)
            if b is None:
                return False
            ret = b.set_state(gst.State.NULL)
            if ret == gst.StateChangeReturn.FAILURE:
                logger.warning("source %d did not stop cleanly", source_id)
            sinkpad = self.mux.get_static_pad(f"sink_{source_id}")
            if sinkpad is not None:
                srcpad = b.get_static_pad("src")
                if srcpad is not None and srcpad.is_linked():
                    srcpad.unlink(sinkpad)
                sinkpad.send_event(gst.Event.new_flush_stop(False))
                self.mux.release_request_pad(sinkpad)
            self.pipeline.remove(b)
            logger.info("source %d removed", source_id)
            return True

    def sources(self) -> list[int]:
        """Ids of the sources in the pipeline."""
        with self._lock:
            return sorted(self._bins)

    def buffers(self) -> dict[int, int]:
        """Buffers each source has pushed into the mux (kept after removal)."""
        return dict(self._buffers)

    def _count(self, _pad: Any, _info: Any, source_id: int) -> Any:
        # Never block or raise in a probe: count and pass.
        self._buffers[source_id] = self._buffers.get(source_id, 0) + 1
        return self.gst.PadProbeReturn.OK


def cpu_runtime_pipeline(gst: Any) -> tuple[Any, Any, Any]:
    """An empty running pipeline for CPU tests: ``funnel name=mux ! appsink``.

    Returns:
        ``(pipeline, mux, sink)``; the sink does not wait for preroll (``async=false``),
        so the pipeline plays before any source exists, as a DeepStream app does.
    """
    pipeline = gst.Pipeline.new("citysight-runtime")
    mux = gst.ElementFactory.make("funnel", "mux")
    sink = gst.ElementFactory.make("appsink", "out")
    sink.set_property("sync", False)
    sink.set_property("async", False)
    sink.set_property("emit-signals", True)
    sink.set_property("max-buffers", 4)
    sink.set_property("drop", True)
    pipeline.add(mux)
    pipeline.add(sink)
    mux.link(sink)
    return pipeline, mux, sink
