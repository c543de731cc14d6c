"""Train a small fire/smoke image classifier in plain torch and export it to ONNX.

Usage::

    python -m inference.training.train_cls --data DIR [--data DIR2] \\
        --out fire_smoke_cls.onnx --epochs 30 --size 128

``--data`` takes YOLO-format datasets (``data.yaml``) and/or ``labels.json`` sets, merged.
The network (:class:`FireSmokeNet`, ~150k parameters) is a MobileNet-style stack of
depthwise-separable convolutions with two sigmoid outputs (fire, smoke; "none" is both low,
and an image may be both). Frames are split into train/validation by source group
(:func:`inference.training.datasets.group_of`) so frames of one video never straddle the
split; training stops early when the validation mean F1 stops improving.

The exported ONNX takes ``images``: float32 ``[N, 3, size, size]`` RGB in ``0..1`` (the
whole frame resized without letterboxing) and returns ``scores``: ``[N, 2]`` probabilities.
A sidecar ``<out>.json`` records classes, input size, threshold, the data it was trained on
and the validation metrics. ``--cv K`` instead runs a group-aware K-fold cross-validation
(fixed epoch count, no early stopping on the held-out fold) and writes out-of-fold
predictions to ``--report``.

Requires the ``train`` extra (``torch``) and ``onnx`` for the export.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from inference.detectors.common import read_image
from inference.training.datasets import CLASSES, Sample, load
from inference.training.metrics import prf

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- network


def _conv_bn(cin: int, cout: int, k: int, stride: int, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class DSBlock(nn.Module):
    """Depthwise 3×3 + pointwise 1×1 convolution, residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.dw = _conv_bn(cin, cin, 3, stride, groups=cin)
        self.pw = _conv_bn(cin, cout, 1, 1)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block."""
        y: torch.Tensor = self.pw(self.dw(x))
        return x + y if self.residual else y


class FireSmokeNet(nn.Module):
    """MobileNet-ish classifier: RGB ``0..1`` in, per-class probabilities out.

    Args:
        num_classes: Number of sigmoid outputs.
        width: Channel multiplier.
    """

    STAGES = ((32, 2), (64, 2), (64, 1), (128, 2), (128, 1), (192, 2), (192, 1), (256, 1))

    def __init__(self, num_classes: int = len(CLASSES), width: float = 1.0) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        c = max(8, int(16 * width))
        layers: list[nn.Module] = [_conv_bn(3, c, 3, 2)]
        for cout, stride in self.STAGES:
            cout = max(8, int(cout * width))
            layers.append(DSBlock(c, cout, stride))
            c = cout
        self.features = nn.Sequential(*layers)
        self.dropout = nn.Dropout(0.2)
        self.head = nn.Linear(c, num_classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Raw scores of ``x`` (``[N, 3, H, W]`` RGB ``0..1``)."""
        x = (x - self.mean) / self.std
        x = self.features(x).mean(dim=(2, 3))
        out: torch.Tensor = self.head(self.dropout(x))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities (sigmoid of the logits)."""
        return torch.sigmoid(self.logits(x))


# ---------------------------------------------------------------------------- data


def read_rgb(path: Path, size: int) -> npt.NDArray[np.uint8]:
    """Read an image as RGB ``uint8`` resized (no letterbox) to ``size × size``."""
    im = read_image(path)
    return cast(
        npt.NDArray[np.uint8],
        cv2.cvtColor(cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB),
    )


def augment(rgb: npt.NDArray[np.uint8], size: int, rng: random.Random) -> npt.NDArray[np.uint8]:
    """Random resized crop, horizontal flip and colour jitter (brightness, contrast,
    saturation, a small hue shift: a large one would turn fire colours into non-fire)."""
    h, w = rgb.shape[:2]
    area = rng.uniform(0.55, 1.0) * h * w
    ratio = math.exp(rng.uniform(math.log(3 / 4), math.log(4 / 3)))
    cw = min(w, max(8, round(math.sqrt(area * ratio))))
    ch = min(h, max(8, round(math.sqrt(area / ratio))))
    x0, y0 = rng.randint(0, w - cw), rng.randint(0, h - ch)
    out = cv2.resize(rgb[y0 : y0 + ch, x0 : x0 + cw], (size, size), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    hsv = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[:, :, 0] = (hsv[:, :, 0] + rng.uniform(-4, 4)) % 180
    hsv[:, :, 1] *= rng.uniform(0.7, 1.3)
    out = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    mean = out.mean()
    out = (out - mean) * rng.uniform(0.75, 1.25) + mean * rng.uniform(0.75, 1.25)
    res: npt.NDArray[np.uint8] = np.clip(out, 0, 255).astype(np.uint8)
    return res


def to_tensor(batch: list[npt.NDArray[np.uint8]]) -> torch.Tensor:
    """RGB ``uint8`` HWC images → float ``[N, 3, H, W]`` in ``0..1``."""
    return torch.from_numpy(np.stack(batch).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)


def _stratum(samples: list[Sample], classes: tuple[str, ...]) -> str:
    """A group's stratum: its most frequent positive class, else ``none``."""
    counts = {c: sum(s.has(c) for s in samples) for c in classes}
    best = max(counts, key=lambda c: counts[c])
    return best if counts[best] else "none"


def group_folds(
    samples: list[Sample], k: int, seed: int = 0, classes: tuple[str, ...] = CLASSES
) -> list[int]:
    """Assign every sample a fold ``0..k-1``: whole groups per fold, stratified by class.

    Within each stratum (fire, smoke, none) groups go, largest first, to the fold holding
    the fewest images of that stratum so far.
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        groups.setdefault(s.group, []).append(i)
    rng = random.Random(seed)
    by_stratum: dict[str, list[str]] = {}
    for g, idx in groups.items():
        by_stratum.setdefault(_stratum([samples[i] for i in idx], classes), []).append(g)
    fold_of = [0] * len(samples)
    total = [0] * k
    for stratum in sorted(by_stratum):
        names = by_stratum[stratum]
        rng.shuffle(names)
        names.sort(key=lambda g: -len(groups[g]))
        load_ = [0] * k
        for g in names:
            f = min(range(k), key=lambda j: (load_[j], total[j], rng.random()))
            load_[f] += len(groups[g])
            total[f] += len(groups[g])
            for i in groups[g]:
                fold_of[i] = f
    return fold_of


def group_split(
    samples: list[Sample], val_frac: float = 0.2, seed: int = 0
) -> tuple[list[int], list[int]]:
    """Train/validation indices with whole groups on one side, stratified by class."""
    k = max(2, round(1 / max(val_frac, 1e-3)))
    folds = group_folds(samples, k, seed)
    strata = {c: [s.has(c) for s in samples] for c in CLASSES}
    strata["none"] = [not any(s.has(c) for c in CLASSES) for s in samples]

    def cost(f: int) -> float:
        """Distance of fold ``f``'s class shares from ``1/k``; a class it lacks costs most."""
        total = 0.0
        for flags in strata.values():
            n = sum(flags)
            if not n:
                continue
            share = sum(fl for fl, g in zip(flags, folds, strict=True) if g == f) / n
            total += abs(share - 1 / k) + (1.0 if share == 0 else 0.0)
        return total

    best = min(range(k), key=cost)
    train = [i for i, f in enumerate(folds) if f != best]
    val = [i for i, f in enumerate(folds) if f == best]
    return train, val


# ---------------------------------------------------------------------------- metrics


def class_metrics(
    scores: npt.NDArray[np.float32],
    samples: list[Sample],
    threshold: float,
    classes: tuple[str, ...] = CLASSES,
) -> dict[str, dict[str, float | int]]:
    """Per-class image-level metrics over the samples whose label of that class is known."""
    out = {}
    for j, c in enumerate(classes):
        idx = [i for i, s in enumerate(samples) if c in s.known]
        out[c] = prf(
            [bool(scores[i, j] >= threshold) for i in idx], [samples[i].has(c) for i in idx]
        )
    return out


# ---------------------------------------------------------------------------- training


@dataclass
class TrainConfig:
    """Training hyper-parameters."""

    size: int = 128
    epochs: int = 30
    batch: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    patience: int = 8
    threshold: float = 0.5
    seed: int = 0
    width: float = 1.0
    threads: int = 2


class _Cache:
    """Images decoded once, at a size a little larger than the crop size."""

    def __init__(self, samples: list[Sample], size: int, classes: tuple[str, ...]) -> None:
        self.big = [read_rgb(s.path, round(size * 1.25)) for s in samples]
        self.exact = [read_rgb(s.path, size) for s in samples]
        t = [s.targets(classes) for s in samples]
        self.y = torch.tensor([a for a, _ in t], dtype=torch.float32)
        self.mask = torch.tensor([m for _, m in t], dtype=torch.float32)


def predict(
    model: FireSmokeNet, images: list[npt.NDArray[np.uint8]], batch: int = 64
) -> npt.NDArray[np.float32]:
    """Probabilities ``[N, C]`` for RGB ``uint8`` images already at the input size."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            out.append(model(to_tensor(images[i : i + batch])).numpy())
    return np.concatenate(out) if out else np.zeros((0, model.head.out_features), np.float32)


def train(
    cache: _Cache,
    train_idx: list[int],
    val_idx: list[int] | None,
    cfg: TrainConfig,
    samples: list[Sample],
    classes: tuple[str, ...] = CLASSES,
) -> tuple[FireSmokeNet, list[dict[str, Any]]]:
    """Train on ``train_idx``; early-stop on the validation mean F1 when ``val_idx`` is given.

    Returns:
        The model (best validation epoch, or the last one without validation) and the
        per-epoch history.
    """
    torch.manual_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    model = FireSmokeNet(len(classes), cfg.width)
    y, mask = cache.y[train_idx], cache.mask[train_idx]
    pos = (y * mask).sum(0)
    neg = ((1 - y) * mask).sum(0)
    pos_weight = torch.clamp(neg / pos.clamp(min=1), 1.0, 10.0)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=pos_weight, reduction="none")
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps = cfg.epochs * max(1, math.ceil(len(train_idx) / cfg.batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, cfg.lr, total_steps=steps, pct_start=0.15)
    history: list[dict[str, Any]] = []
    best_key: tuple[float, float] = (-1.0, 0.0)
    best_state = None
    stale = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        order = list(train_idx)
        rng.shuffle(order)
        total, n, t0 = 0.0, 0, time.perf_counter()
        for b in range(0, len(order), cfg.batch):
            idx = order[b : b + cfg.batch]
            if len(idx) < 2:  # BatchNorm needs more than one image
                continue
            x = to_tensor([augment(cache.big[i], cfg.size, rng) for i in idx])
            logits = model.logits(x)
            m = cache.mask[idx]
            loss = (loss_fn(logits, cache.y[idx]) * m).sum() / m.sum().clamp(min=1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            n += len(idx)
        row: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": round(total / max(n, 1), 4),
            "seconds": round(time.perf_counter() - t0, 1),
        }
        if val_idx:
            scores = predict(model, [cache.exact[i] for i in val_idx])
            vm = class_metrics(scores, [samples[i] for i in val_idx], cfg.threshold, classes)
            row["val"] = vm
            f1s = [vm[c]["f1"] for c in classes if vm[c]["labelled"]]
            mean_f1 = float(np.mean(f1s)) if f1s else 0.0
            row["val_mean_f1"] = round(mean_f1, 4)
            key = (mean_f1, -row["train_loss"])
            if key > best_key:
                best_key, stale = key, 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
                row["best"] = True
            else:
                stale += 1
        history.append(row)
        logger.info("epoch %d %s", epoch, json.dumps({k: v for k, v in row.items() if k != "val"}))
        if val_idx and stale >= cfg.patience:
            logger.info("early stop: no validation F1 gain in %d epochs", cfg.patience)
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    return model, history


def export_onnx(model: FireSmokeNet, path: Path | str, size: int) -> Path:
    """Export to ONNX (opset 17, dynamic batch): ``images`` → ``scores``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    torch.onnx.export(
        model,
        (torch.zeros(1, 3, size, size),),
        str(path),
        opset_version=17,
        dynamo=False,
        input_names=["images"],
        output_names=["scores"],
        dynamic_axes={"images": {0: "batch"}, "scores": {0: "batch"}},
    )
    return path


def sidecar(
    onnx_path: Path, cfg: TrainConfig, classes: tuple[str, ...], extra: dict[str, Any]
) -> Path:
    """Write ``<model>.json`` next to the ONNX file (read by the ``cnn`` tier)."""
    meta = {
        "classes": list(classes),
        "size": cfg.size,
        "input": "RGB float32 0..1, NCHW, whole frame resized without letterbox",
        "threshold": cfg.threshold,
        **extra,
    }
    path = onnx_path.with_suffix(".json")
    path.write_text(json.dumps(meta, indent=2) + "\n")
    return path


def cross_validate(
    samples: list[Sample], cache: _Cache, k: int, cfg: TrainConfig, classes: tuple[str, ...]
) -> dict[str, Any]:
    """Group-aware K-fold CV with a fixed epoch count: out-of-fold scores for every image."""
    folds = group_folds(samples, k, cfg.seed, classes)
    scores = np.zeros((len(samples), len(classes)), np.float32)
    models = []
    for f in range(k):
        tr = [i for i, x in enumerate(folds) if x != f]
        te = [i for i, x in enumerate(folds) if x == f]
        logger.info("fold %d/%d: %d train, %d held out", f + 1, k, len(tr), len(te))
        model, _ = train(cache, tr, None, cfg, samples, classes)
        scores[te] = predict(model, [cache.exact[i] for i in te])
        models.append(model)
    return {"folds": folds, "scores": scores, "models": models}


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", action="append", required=True, help="YOLO or labels.json folder")
    ap.add_argument("--out", default="fire_smoke_cls.onnx", help="ONNX file to write")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--patience", type=int, default=8)
    ap.add_argument("--val-frac", type=float, default=0.2)
    ap.add_argument("--threshold", type=float, default=0.5)
    ap.add_argument("--width", type=float, default=1.0, help="channel multiplier")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cv", type=int, default=0, help="K-fold CV instead of one split")
    ap.add_argument("--report", default="", help="JSON file for metrics / CV predictions")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = TrainConfig(
        size=args.size,
        epochs=args.epochs,
        batch=args.batch,
        lr=args.lr,
        patience=args.patience,
        threshold=args.threshold,
        seed=args.seed,
        width=args.width,
        threads=args.threads,
    )
    torch.set_num_threads(cfg.threads)
    classes = CLASSES
    samples = load(args.data, classes)
    cache = _Cache(samples, cfg.size, classes)
    params = sum(p.numel() for p in FireSmokeNet(len(classes), cfg.width).parameters())
    logger.info(
        "%d images, %d groups, model %d parameters",
        len(samples),
        len({s.group for s in samples}),
        params,
    )
    report: dict[str, Any] = {
        "data": [str(d) for d in args.data],
        "config": vars(cfg),
        "params": params,
    }
    if args.cv:
        res = cross_validate(samples, cache, args.cv, cfg, classes)
        report["cv"] = {
            "k": args.cv,
            "metrics": class_metrics(res["scores"], samples, cfg.threshold, classes),
            "predictions": [
                {
                    "file": str(s.path),
                    "group": s.group,
                    "fold": res["folds"][i],
                    "scores": [round(float(v), 4) for v in res["scores"][i]],
                }
                for i, s in enumerate(samples)
            ],
        }
        print(json.dumps(report["cv"]["metrics"], indent=2))
    else:
        tr, va = group_split(samples, args.val_frac, cfg.seed)
        logger.info("split: %d train, %d validation images", len(tr), len(va))
        model, history = train(cache, tr, va, cfg, samples, classes)
        best = next((h for h in reversed(history) if h.get("best")), history[-1] if history else {})
        out = export_onnx(model, args.out, cfg.size)
        sidecar(
            out,
            cfg,
            classes,
            {
                "trained_on": [str(d) for d in args.data],
                "train_images": len(tr),
                "val_images": len(va),
                "val_groups": sorted({samples[i].group for i in va}),
                "best_epoch": best.get("epoch"),
                "val_metrics": best.get("val", {}),
                "params": params,
            },
        )
        report["history"] = history
        report["best_epoch"] = best.get("epoch")
        report["val_metrics"] = best.get("val", {})
        print(
            json.dumps(
                {"onnx": str(out), "best_epoch": best.get("epoch"), "val": best.get("val")},
                indent=2,
            )
        )
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
