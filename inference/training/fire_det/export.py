"""ONNX export of the detector with its metadata, and the torch ↔ ONNX Runtime parity check."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from inference.training.fire_det.model import STRIDES, FireSmokeDet

logger = logging.getLogger(__name__)

#: ONNX Runtime 1.32 runs opset 17 fully (Resize, Sqrt, Exp, Clip...).
OPSET = 17
#: Largest difference allowed between torch and ONNX Runtime outputs, relative to the output's
#: largest magnitude (at least 1).
PARITY_TOLERANCE = 1e-4


def export_onnx(model: FireSmokeDet, path: Path, meta: dict[str, Any], size: int = 320) -> Path:
    """Write ``model`` (eval mode) as ONNX with dynamic batch, height and width.

    Args:
        model: The network (its EMA weights, usually).
        path: Output file.
        meta: Metadata stored in the file (``classes``, ``thresholds``, ``input_long_side``
            and the training facts); non-string values are stored as JSON.
        size: Side of the example input used for tracing.
    """
    import onnx

    model = model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(path),
        opset_version=OPSET,
        dynamo=False,
        input_names=["images"],
        output_names=["scores", "ltrb"],
        dynamic_axes={
            "images": {0: "batch", 2: "height", 3: "width"},
            "scores": {0: "batch", 1: "cells"},
            "ltrb": {0: "batch", 1: "cells"},
        },
    )
    proto = onnx.load(str(path))
    props = {"strides": list(STRIDES), **meta}
    del proto.metadata_props[:]
    for k, v in props.items():
        entry = proto.metadata_props.add()
        entry.key = k
        entry.value = v if isinstance(v, str) else json.dumps(v)
    proto.producer_name = "citysight inference.training.fire_det"
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def parity(
    model: FireSmokeDet, path: Path, inputs: list[npt.NDArray[np.float32]]
) -> dict[str, Any]:
    """Largest torch ↔ ONNX Runtime difference of both outputs on each input batch.

    Raises:
        AssertionError: a difference exceeds :data:`PARITY_TOLERANCE` (relative).
    """
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    rows = []
    model = model.eval()
    for x in inputs:
        with torch.no_grad():
            want = [t.numpy() for t in model(torch.from_numpy(x))]
        got = sess.run(None, {"images": x})
        for name, w, g in zip(("scores", "ltrb"), want, got, strict=True):
            if w.shape != g.shape:
                raise AssertionError(f"{name}: torch {w.shape} vs onnx {g.shape}")
            scale = max(1.0, float(np.abs(w).max()))
            diff = float(np.abs(w - g).max()) / scale
            worst = max(worst, diff)
            rows.append({"input": list(x.shape), "output": name, "max_rel_diff": diff})
    if worst > PARITY_TOLERANCE:
        raise AssertionError(f"torch and ONNX Runtime differ by {worst:.2e} (> {PARITY_TOLERANCE})")
    return {"max_rel_diff": worst, "tolerance": PARITY_TOLERANCE, "checks": rows}
