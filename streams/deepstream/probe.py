"""Pad probe: ``NvDsBatchMeta`` → plain :class:`FrameResult` s.

``pyds`` objects are views into recycled buffers, so every value is copied inside the
probe. The probe never blocks (results go to a non-blocking sink) and never raises into
GStreamer (errors are counted and logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from citysight.contracts import FrameResult

logger = logging.getLogger(__name__)

UNTRACKED_OBJECT_ID = 0xFFFFFFFFFFFFFFFF


def batch_meta_to_results(
    pyds: Any,
    batch_meta: Any,
    source_ids: Mapping[int, str],
    class_map: Mapping[int, int] | None = None,
    now: float | None = None,
) -> list[FrameResult]:
    """Convert one batch's metadata.

    Args:
        pyds: The bindings module (injected; a fake in tests).
        batch_meta: ``NvDsBatchMeta`` of the buffer.
        source_ids: ``pad_index`` → camera id.
        class_map: Detector class id → :class:`~citysight.contracts.ObjectClass` value;
            unmapped classes are dropped. ``None`` keeps class ids as they are.
        now: Wall time for frames without an NTP timestamp.

    Returns:
        One result per frame of a known source.
    """
    out: list[FrameResult] = []
    wall = time.time() if now is None else now
    l_frame = batch_meta.frame_meta_list
    while l_frame is not None:
        fm = pyds.NvDsFrameMeta.cast(l_frame.data)
        cam = source_ids.get(int(fm.pad_index))
        boxes: list[list[float]] = []
        scores: list[float] = []
        classes: list[int] = []
        tracks: list[int] = []
        l_obj = fm.obj_meta_list
        while l_obj is not None:
            om = pyds.NvDsObjectMeta.cast(l_obj.data)
            cls = int(om.class_id)
            mapped = cls if class_map is None else class_map.get(cls)
            if mapped is not None:
                r = om.rect_params
                left, top = float(r.left), float(r.top)
                boxes.append([left, top, left + float(r.width), top + float(r.height)])
                scores.append(float(om.confidence))
                classes.append(int(mapped))
                oid = int(om.object_id)
                tracks.append(-1 if oid == UNTRACKED_OBJECT_ID else oid)
            l_obj = l_obj.next
        if cam is not None:
            ntp = int(fm.ntp_timestamp)
            out.append(
                FrameResult(
                    camera_id=cam,
                    frame_time=ntp / 1e9 if ntp else wall,
                    frame_no=int(fm.frame_num),
                    width=int(fm.source_frame_width),
                    height=int(fm.source_frame_height),
                    boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
                    scores=np.asarray(scores, np.float32),
                    class_ids=np.asarray(classes, np.int32),
                    track_ids=np.asarray(tracks, np.int64),
                )
            )
        l_frame = l_frame.next
    return out


class BatchMetaProbe:
    """A pad-probe callable for ``pad.add_probe(Gst.PadProbeType.BUFFER, probe)``.

    Args:
        pyds: The bindings module (injected).
        source_ids: ``pad_index`` → camera id.
        sink: Receives each batch's results; must not block (e.g. a bounded queue put).
        ok: The value to return (``Gst.PadProbeReturn.OK``).
        class_map: See :func:`batch_meta_to_results`.
    """

    def __init__(
        self,
        pyds: Any,
        source_ids: Mapping[int, str],
        sink: Callable[[list[FrameResult]], None],
        ok: Any,
        class_map: Mapping[int, int] | None = None,
    ) -> None:
        self.pyds = pyds
        self.source_ids = dict(source_ids)
        self.sink = sink
        self.ok = ok
        self.class_map = class_map
        self.batches = 0
        self.frames = 0
        self.errors = 0

    def __call__(self, pad: Any, info: Any, *user_data: Any) -> Any:
        try:
            buf = info.get_buffer()
            if buf is None:
                return self.ok
            meta = self.pyds.gst_buffer_get_nvds_batch_meta(hash(buf))
            if meta is None:
                return self.ok
            results = batch_meta_to_results(self.pyds, meta, self.source_ids, self.class_map)
            self.batches += 1
            self.frames += len(results)
            self.sink(results)
        except Exception:
            # Never raise into GStreamer: a probe exception stalls the streaming thread.
            self.errors += 1
            if self.errors <= 10 or self.errors % 1000 == 0:
                logger.exception("DeepStream probe failed (%d errors)", self.errors)
        return self.ok
