"""Fast decoding of detections-stream entries.

Most frame results are empty (nothing detected). ``FrameResult.from_msgpack`` converts and
validates every array, which costs more than the rules themselves for an empty frame; here
an empty frame is built directly from the msgpack map (with the same checks that apply to
an empty frame) and only frames with detections take the full contract path.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

from citysight.contracts import ContractError, FrameResult, check_time

_EMPTY_BOXES = np.zeros((0, 4), np.float32)
_EMPTY_F32 = np.zeros(0, np.float32)
_EMPTY_I32 = np.zeros(0, np.int32)
_EMPTY_I64 = np.zeros(0, np.int64)
for _a in (_EMPTY_BOXES, _EMPTY_F32, _EMPTY_I32, _EMPTY_I64):
    _a.flags.writeable = False  # shared by every empty frame


def decode_frame(data: bytes) -> FrameResult:
    """Decode one ``FrameResult.to_msgpack()`` payload.

    Raises:
        ContractError: Malformed payload (same as :meth:`FrameResult.from_msgpack`), whatever
            the field that is wrong: a bad entry must never raise anything else.
    """
    try:
        d: Any = msgpack.unpackb(data, raw=False)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ContractError(f"not a msgpack frame result: {exc}") from exc
    if not isinstance(d, dict) or d.get("scores", None) != b"" or d.get("boxes") != b"":
        return FrameResult.from_msgpack(data)
    version = d.get("v", 1)
    cam = d.get("cam")
    if not isinstance(version, int) or version < 1 or not cam or not isinstance(cam, str):
        return FrameResult.from_msgpack(data)
    if d.get("extra"):
        return FrameResult.from_msgpack(data)
    try:
        f = object.__new__(FrameResult)
        f.camera_id = cam
        f.frame_time = float(d["t"])
        f.frame_no = int(d["n"])
        f.width = int(d.get("w", 0))
        f.height = int(d.get("h", 0))
        f.published_at = float(d.get("pub", 0.0))
        f.snapshot_key = str(d.get("snap", ""))
        f.schema_version = version
        check_time(f.frame_time, "frame_time")
        if not math.isfinite(f.published_at):
            raise ContractError(f"published_at must be finite, got {f.published_at!r}")
    except ContractError:
        raise
    except Exception as exc:  # OverflowError (n: inf), ValueError, TypeError, ...
        raise ContractError(f"malformed frame result: {type(exc).__name__}: {exc}") from exc
    f.boxes, f.scores, f.class_ids, f.track_ids = _EMPTY_BOXES, _EMPTY_F32, _EMPTY_I32, _EMPTY_I64
    f.extra = {}
    return f
