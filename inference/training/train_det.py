"""Train a tiny anchor-free fire/smoke box detector and export it in the YOLOv8 ONNX layout.

Usage::

    python -m inference.training.train_det --data YOLO_DIR --out fire_smoke.onnx \\
        --epochs 30 --size 320

The export is read by the existing ``yolo`` tier (``fire_smoke.onnx`` + ``fire_smoke.json``
with ``{"layout": "yolov8", "size": S, "classes": [...]}``, written next to it): input
``images`` float32 ``[N, 3, S, S]`` RGB ``0..1`` letterboxed (padded bottom/right with 114,
as :func:`inference.detectors.common.letterbox` does); output ``[N, 4 + C, A]`` with ``cx,
cy, w, h`` in input pixels and per-class sigmoid scores for the ``A`` cells of one stride-16
grid.

Network: the :class:`~inference.training.train_cls.FireSmokeNet` backbone up to stride 16
and an FCOS-style head (per cell: class scores and distances to the four box sides).
Assignment: a cell is positive for the smallest box whose centre region (radius 1.5 cells)
holds the cell centre. Loss: BCE on classes (unknown classes masked) + GIoU on positives.

This is a small CPU-sized recipe meant to prove the data → ONNX → ``yolo`` tier path; real
detector training (YOLOX-nano or YOLOv8n scale) belongs on a GPU machine. Images whose boxes
are unknown (``labels.json`` objects with ``box: null``) are left out.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from inference.detectors.common import letterbox, read_image
from inference.training.datasets import CLASSES, Sample, load
from inference.training.train_cls import FireSmokeNet, _conv_bn, group_split

logger = logging.getLogger(__name__)

STRIDE = 16


class TinyDet(nn.Module):
    """Backbone (stride 16) + FCOS-style head; ``forward`` returns the YOLOv8 layout."""

    def __init__(self, num_classes: int = len(CLASSES), size: int = 320) -> None:
        super().__init__()
        base = FireSmokeNet(num_classes)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", base.mean.clone())
        self.register_buffer("std", base.std.clone())
        self.backbone = base.features[:6]  # stem, /4, /8, /8, /16, /16 → 128 channels
        self.neck = _conv_bn(128, 96, 3, 1)
        self.cls = nn.Conv2d(96, num_classes, 1)
        self.box = nn.Conv2d(96, 4, 1)
        assert self.cls.bias is not None  # Conv2d has a bias by default
        nn.init.constant_(self.cls.bias, -4.0)  # rare positives: start near 2 % score
        self.size = size

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits ``[N, C, A]`` and side distances ``[N, 4, A]`` (pixels)."""
        f = self.neck(self.backbone((x - self.mean) / self.std))
        n = f.shape[0]
        logits = self.cls(f).flatten(2)
        dist = nn.functional.softplus(self.box(f)).flatten(2) * STRIDE
        return logits.view(n, -1, logits.shape[-1]), dist

    def centres(self, hw: tuple[int, int]) -> torch.Tensor:
        """Cell centres ``[2, A]`` in input pixels."""
        ys, xs = torch.meshgrid(torch.arange(hw[0]), torch.arange(hw[1]), indexing="ij")
        return torch.stack([xs.flatten(), ys.flatten()]).float() * STRIDE + STRIDE / 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """YOLOv8 layout ``[N, 4 + C, A]``: cx, cy, w, h (input pixels) and class scores."""
        logits, dist = self.raw(x)
        h, w = x.shape[2] // STRIDE, x.shape[3] // STRIDE
        c = self.centres((h, w)).to(x.dtype)
        x1, y1 = c[0] - dist[:, 0], c[1] - dist[:, 1]
        x2, y2 = c[0] + dist[:, 2], c[1] + dist[:, 3]
        xywh = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1], 1)
        return torch.cat([xywh, torch.sigmoid(logits)], 1)


def _pixel_boxes(s: Sample, w: int, h: int, classes: tuple[str, ...]) -> list[list[float]]:
    out = []
    for cls, box in s.boxes:
        if box is None:
            continue
        x1, y1, x2, y2 = box
        if s.normalised:
            x1, y1, x2, y2 = x1 * w, y1 * h, x2 * w, y2 * h
        out.append([x1, y1, x2, y2, float(classes.index(cls))])
    return out


class _Cache:
    """Letterboxed RGB canvases and boxes in canvas pixels."""

    def __init__(self, samples: list[Sample], size: int, classes: tuple[str, ...]) -> None:
        self.images, self.boxes, self.mask = [], [], []
        for s in samples:
            im = read_image(s.path)
            canvas, scale = letterbox(np.ascontiguousarray(im[:, :, ::-1]), size)
            b = np.asarray(_pixel_boxes(s, im.shape[1], im.shape[0], classes), np.float32)
            b = b.reshape(-1, 5)
            b[:, :4] *= scale
            self.images.append(canvas)
            self.boxes.append(b)
            self.mask.append([1.0 if c in s.known else 0.0 for c in classes])


def _augment(
    canvas: npt.NDArray[np.uint8], boxes: npt.NDArray[np.float32], rng: random.Random
) -> tuple[Any, Any]:
    """Horizontal flip and brightness/saturation jitter (boxes follow the flip)."""
    img: cv2.typing.MatLike = canvas
    b = boxes.copy()
    if rng.random() < 0.5:
        size = img.shape[1]
        img = img[:, ::-1]
        b[:, [0, 2]] = size - b[:, [2, 0]]
    hsv = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[:, :, 1] *= rng.uniform(0.7, 1.3)
    hsv[:, :, 2] *= rng.uniform(0.75, 1.25)
    img = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return img, b


def assign(
    boxes: npt.NDArray[np.float32], centres: npt.NDArray[np.float32], num_classes: int
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """Per-cell class targets ``[C, A]`` and assigned box ``[A, 4]`` (NaN where negative)."""
    a = centres.shape[1]
    cls_t = np.zeros((num_classes, a), np.float32)
    box_t = np.full((a, 4), np.nan, np.float32)
    best_area = np.full(a, np.inf, np.float32)
    cx, cy = centres
    for x1, y1, x2, y2, c in boxes:
        bx, by = (x1 + x2) / 2, (y1 + y2) / 2
        r = 1.5 * STRIDE
        inside = (cx > x1) & (cx < x2) & (cy > y1) & (cy < y2)
        near = (np.abs(cx - bx) <= max(r, (x2 - x1) / 2 * 0.5)) & (
            np.abs(cy - by) <= max(r, (y2 - y1) / 2 * 0.5)
        )
        pos = near & (inside | ((np.abs(cx - bx) < STRIDE) & (np.abs(cy - by) < STRIDE)))
        area = (x2 - x1) * (y2 - y1)
        take = pos & (area < best_area)
        best_area[take] = area
        box_t[take] = (x1, y1, x2, y2)
        cls_t[int(c), pos] = 1.0
    return cls_t, box_t


def giou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean ``1 - GIoU`` of ``[K, 4]`` x1y1x2y2 boxes."""
    ix1, iy1 = torch.max(pred[:, 0], target[:, 0]), torch.max(pred[:, 1], target[:, 1])
    ix2, iy2 = torch.min(pred[:, 2], target[:, 2]), torch.min(pred[:, 3], target[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    at = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = ap + at - inter + 1e-6
    cx1, cy1 = torch.min(pred[:, 0], target[:, 0]), torch.min(pred[:, 1], target[:, 1])
    cx2, cy2 = torch.max(pred[:, 2], target[:, 2]), torch.max(pred[:, 3], target[:, 3])
    hull = (cx2 - cx1) * (cy2 - cy1) + 1e-6
    giou = inter / union - (hull - union) / hull
    return (1 - giou).mean()


def train(
    cache: _Cache, idx: list[int], size: int, epochs: int, batch: int, lr: float, seed: int
) -> tuple[TinyDet, list[dict[str, Any]]]:
    """Train for a fixed number of epochs; returns the model and per-epoch losses."""
    torch.manual_seed(seed)
    rng = random.Random(seed)
    nc = len(cache.mask[0])
    model = TinyDet(nc, size)
    g = size // STRIDE
    centres_t = model.centres((g, g))
    centres = centres_t.numpy()
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    history = []
    for epoch in range(1, epochs + 1):
        model.train()
        order = list(idx)
        rng.shuffle(order)
        total, n = 0.0, 0
        for b in range(0, len(order), batch):
            part = order[b : b + batch]
            if len(part) < 2:
                continue
            ims, cls_t, box_t = [], [], []
            for i in part:
                im, bx = _augment(cache.images[i], cache.boxes[i], rng)
                c, t = assign(bx, centres, nc)
                ims.append(im)
                cls_t.append(c)
                box_t.append(t)
            x = torch.from_numpy(np.stack(ims).transpose(0, 3, 1, 2).astype(np.float32) / 255)
            logits, dist = model.raw(x)
            ct = torch.from_numpy(np.stack(cls_t))
            m = torch.tensor([cache.mask[i] for i in part])[:, :, None].expand_as(ct)
            cls_loss = nn.functional.binary_cross_entropy_with_logits(logits, ct, reduction="none")
            bt = torch.from_numpy(np.stack(box_t))  # [B, A, 4]
            pos = ~torch.isnan(bt[..., 0])
            npos = max(1, int(pos.sum()))
            loss = (cls_loss * m).sum() / npos
            if pos.any():
                ce = centres_t.T[None].expand(len(part), -1, -1)  # [B, A, 2]
                d = dist.permute(0, 2, 1)  # [B, A, 4]
                pred = torch.cat([ce - d[..., :2], ce + d[..., 2:]], -1)
                loss = loss + 2.0 * giou_loss(pred[pos], bt[pos])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(part)
            n += len(part)
        history.append({"epoch": epoch, "train_loss": round(total / max(n, 1), 4)})
        logger.info("epoch %d loss %.4f", epoch, total / max(n, 1))
    model.eval()
    return model, history


def export_onnx(
    model: TinyDet, path: Path | str, classes: tuple[str, ...], extra: dict[str, Any]
) -> Path:
    """Export (opset 17, dynamic batch) and write the ``yolo`` tier's sidecar JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, model.size, model.size),),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["images"],
        output_names=["output0"],
        dynamic_axes={"images": {0: "batch"}, "output0": {0: "batch"}},
    )
    meta = {"layout": "yolov8", "size": model.size, "classes": list(classes), "conf": 0.35, **extra}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="YOLO or labels.json folder")
    ap.add_argument("--out", default="fire_smoke.onnx")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--size", type=int, default=320, help="input size (multiple of 16)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--val-frac", type=float, default=0.0, help="hold out groups (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.size % STRIDE:
        ap.error(f"--size must be a multiple of {STRIDE}")
    torch.set_num_threads(args.threads)
    samples = [s for s in load(args.data, CLASSES) if all(b is not None for _, b in s.boxes)]
    cache = _Cache(samples, args.size, CLASSES)
    idx = list(range(len(samples)))
    val: list[int] = []
    if args.val_frac > 0:
        idx, val = group_split(samples, args.val_frac, args.seed)
    model, history = train(cache, idx, args.size, args.epochs, args.batch, args.lr, args.seed)
    out = export_onnx(
        model,
        args.out,
        CLASSES,
        {
            "trained_on": [str(d) for d in args.data],
            "train_images": len(idx),
            "held_out_files": [str(samples[i].path) for i in val],
            "final_train_loss": history[-1]["train_loss"] if history else None,
        },
    )
    print(json.dumps({"onnx": str(out), "train_images": len(idx), "held_out": len(val)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
