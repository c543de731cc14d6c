"""Batched ONNX Runtime runs: one session call for many frames.

The shipped detector files (YuNet, y5fu, YOLOX-nano) were exported with the batch dimension
fixed at 1, and y5fu and YuNet also hard-code ``1`` as the first entry of their ``Reshape``
target shapes. :func:`batch_symbolic` rewrites the graph in memory: the batch dimension of
every graph input and output becomes symbolic, and a constant ``Reshape`` shape whose first
entry is ``1`` gets ``0`` there ("copy the input's dimension", which is 1 at batch 1 and N at
batch N). Optionally the spatial input dimensions become symbolic too (YuNet runs at the
frame's own size, as OpenCV's ``FaceDetectorYN`` does).

:class:`BatchedModel` loads the rewritten graph and checks it on load: at batch 1 it must
give the original file's outputs, and a batch of 2 must equal two single runs (within
:data:`CHECK_TOLERANCE`). A graph that fails the check, or that cannot be rewritten, runs
the original file one frame per call instead (``batchable`` is then ``False``), so
batching can never change detections.
"""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from inference.detectors.base import DetectorLoadError
from inference.detectors.common import OrtOptions, active_provider, ort_options, ort_session

logger = logging.getLogger(__name__)

#: Largest difference allowed between a batched row and the same frame run alone, relative
#: to the output's largest magnitude (at least 1). ONNX Runtime's CPU kernels give
#: bit-identical rows for the shipped graphs; GPU kernels may pick other algorithms per
#: batch size.
CHECK_TOLERANCE = 1e-4
#: The same on GPU providers, whose convolution algorithms (TF32 included) may differ with the
#: batch size: a relative 1e-3 is far below anything that moves a box or a score threshold.
GPU_CHECK_TOLERANCE = 1e-3

F32 = npt.NDArray[np.float32]


def batch_symbolic(path: Path, spatial: bool = False) -> bytes:
    """The ONNX model at ``path`` with a symbolic batch dimension, serialised.

    Args:
        path: ONNX file whose single image input is ``[N, C, H, W]``.
        spatial: Make ``H`` and ``W`` of the input, and the second dimension of every
            output, symbolic too.

    Raises:
        DetectorLoadError: the ``onnx`` package is missing or the file is not a model.
    """
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # a declared dependency; be explicit if it is missing
        raise DetectorLoadError(f"the onnx package is needed to batch {path.name}") from exc
    try:
        model = onnx.load(str(path))
    except Exception as exc:
        raise DetectorLoadError(f"cannot parse ONNX model {path}: {exc}") from exc
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    inputs = [v for v in graph.input if v.name not in inits]

    def symbolic(dim: Any, name: str) -> None:
        dim.ClearField("dim_value")
        dim.dim_param = name

    for v in (*inputs, *graph.output):
        dims = v.type.tensor_type.shape.dim
        if len(dims):
            symbolic(dims[0], "batch")
    if spatial:
        for v in inputs:
            dims = v.type.tensor_type.shape.dim
            if len(dims) == 4:
                symbolic(dims[2], "height")
                symbolic(dims[3], "width")
        for v in graph.output:
            dims = v.type.tensor_type.shape.dim
            if len(dims) >= 2:
                symbolic(dims[1], f"{v.name}_rows")
    # Stale inferred shapes would pin the old sizes: let ONNX Runtime infer them again.
    del graph.value_info[:]
    constants = {n.output[0] for n in graph.node if n.op_type == "Constant"}
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in inits:
            continue
        if node.input[0] in inits or node.input[0] in constants:
            continue  # reshapes a weight, not the activations: no batch axis there
        shape = numpy_helper.to_array(inits[node.input[1]])
        if shape.ndim == 1 and len(shape) > 1 and shape[0] == 1:
            shape = shape.copy()
            shape[0] = 0
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(shape, node.input[1]))
    data: bytes = model.SerializeToString()
    return data


def rows_match(
    a: npt.NDArray[Any], b: npt.NDArray[Any], tolerance: float = CHECK_TOLERANCE
) -> bool:
    """Same shape and equal within ``tolerance`` of the larger magnitude (at least 1)."""
    if a.shape != b.shape:
        return False
    if a.size == 0:
        return True
    scale = max(1.0, float(np.abs(b).max()))
    return bool(np.abs(a.astype(np.float64) - b).max() <= tolerance * scale)


class BatchedModel:
    """An image ONNX model run on ``[N, C, H, W]`` batches.

    Args:
        path: ONNX file (one image input).
        spatial: Also make the input's height and width symbolic (required: raises
            :class:`DetectorLoadError` when the graph cannot be rewritten).
        check_hw: Input height and width of the load-time check of a spatial model.
        check_scale: Pixel range of the check input (1 for 0..1 models, 255 for raw pixels).
        opts: Provider and max batch; default :func:`inference.detectors.common.ort_options`.

    Attributes:
        batchable: Whether one call runs many frames (else one frame per call).
        max_batch: Frames per session call when batchable.
        provider: The execution provider ONNX Runtime actually uses.
        input_shape: The input's shape as the session reports it.
        output_names: Output names, in the order :meth:`run` returns them.
        output_shapes: Their shapes as the session reports them.
    """

    def __init__(
        self,
        path: Path,
        *,
        spatial: bool = False,
        check_hw: tuple[int, int] | None = None,
        check_scale: float = 1.0,
        opts: OrtOptions | None = None,
    ) -> None:
        opts = opts or ort_options()
        self.model_file = str(path)
        self.max_batch = opts.frames_per_run
        original = ort_session(path, threads=opts.threads, provider=opts.provider)
        self.input_name: str = original.get_inputs()[0].name  # type: ignore[attr-defined]
        fixed_shape = list(original.get_inputs()[0].shape)  # type: ignore[attr-defined]
        self.batchable = False
        self.reason = ""
        try:
            rewritten = batch_symbolic(path, spatial)
            sess = ort_session(path, opts.threads, opts.provider, model=rewritten)
        except DetectorLoadError as exc:
            if spatial:
                raise
            self.reason = str(exc)
            sess = original
        if sess is not original:
            self.reason = self._check(original, sess, fixed_shape, spatial, check_hw, check_scale)
            if not self.reason:
                self.batchable = True
            elif spatial:
                raise DetectorLoadError(f"{path.name}: {self.reason}")
            else:
                sess = original
        if not self.batchable:
            logger.warning("%s: one frame per ONNX Runtime call (%s)", path.name, self.reason)
        self._sess = sess
        self.provider = active_provider(sess)
        self.input_shape: list[int | str | None] = list(sess.get_inputs()[0].shape)  # type: ignore[attr-defined]
        outputs = sess.get_outputs()  # type: ignore[attr-defined]
        self.output_names: list[str] = [o.name for o in outputs]
        self.output_shapes: list[list[int | str | None]] = [list(o.shape) for o in outputs]
        self._lock = threading.Lock()

    def _check(
        self,
        original: Any,
        batched: Any,
        fixed_shape: list[Any],
        spatial: bool,
        check_hw: tuple[int, int] | None,
        scale: float,
    ) -> str:
        """Why the rewritten graph is unusable ("" when it gives the original's rows)."""
        on_cpu = active_provider(batched) == "CPUExecutionProvider"
        tol = CHECK_TOLERANCE if on_cpu else GPU_CHECK_TOLERANCE
        dims = [d if isinstance(d, int) and d > 0 else 32 for d in fixed_shape[1:]]
        rng = np.random.default_rng(3)
        x1 = (rng.random((1, *dims), dtype=np.float32) * scale).astype(np.float32)
        if spatial and check_hw is not None:
            dims = [dims[0], *check_hw]
        x2 = (rng.random((2, *dims), dtype=np.float32) * scale).astype(np.float32)
        try:
            want = original.run(None, {self.input_name: x1})
            got = batched.run(None, {self.input_name: x1})
            pair = batched.run(None, {self.input_name: x2})
            singles = [batched.run(None, {self.input_name: x2[i : i + 1]}) for i in range(2)]
        except Exception as exc:  # a graph that hard-codes batch 1 may fail anywhere
            return f"batched graph does not run: {exc}"
        for a, b in zip(want, got, strict=True):
            if not rows_match(a, b, tol):
                return "rewritten graph differs from the original at batch 1"
        for k, out in enumerate(pair):
            for i in range(2):
                if not rows_match(out[i], singles[i][k][0], tol):
                    return f"batch-2 output {k} row {i} differs from a single run"
        return ""

    def run(self, x: F32) -> list[npt.NDArray[Any]]:
        """All outputs of ``x`` ``[N, C, H, W]`` (``N`` ≥ 1), each with ``N`` first.

        Runs chunks of :attr:`max_batch` frames per call (one frame per call when the
        model is not batchable).
        """
        step = self.max_batch if self.batchable else 1
        parts: list[list[npt.NDArray[Any]]] = []
        with self._lock:
            for i in range(0, len(x), step):
                chunk = np.ascontiguousarray(x[i : i + step])
                parts.append(self._sess.run(None, {self.input_name: chunk}))  # type: ignore[attr-defined]
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self.output_names))]


def main(argv: list[str] | None = None) -> int:
    """``python -m inference.detectors.batching SRC DEST``: write a batchable copy of SRC.

    For Triton's native onnxruntime / tensorrt backends (``model_repo/production``), which
    need the batch dimension in the file itself. The copy is checked like at load time.
    """
    import argparse

    p = argparse.ArgumentParser(
        prog="python -m inference.detectors.batching", description=main.__doc__
    )
    p.add_argument("src", type=Path, help="ONNX file with a fixed batch of 1")
    p.add_argument("dest", type=Path, help="where to write the batchable copy")
    p.add_argument("--spatial", action="store_true", help="also make height and width symbolic")
    p.add_argument("--scale", type=float, default=1.0, help="input pixel range of the check")
    args = p.parse_args(argv)
    net = BatchedModel(args.src, spatial=args.spatial, check_hw=(96, 128), check_scale=args.scale)
    if not net.batchable:
        print(f"error: {args.src.name} cannot run batched: {net.reason}", file=sys.stderr)
        return 1
    args.dest.parent.mkdir(parents=True, exist_ok=True)
    args.dest.write_bytes(batch_symbolic(args.src, args.spatial))
    print(f"written {args.dest} (input {net.input_shape})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
