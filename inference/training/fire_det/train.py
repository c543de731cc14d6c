"""Training loop: loss, EMA weights, per-epoch checkpoints (resumable), held-out scores.

One run writes into ``out/``:

* ``last.pt``: model, EMA, optimiser, epoch and history after every epoch (written to a
  temporary name and renamed, so a kill never leaves a torn checkpoint); ``--resume``
  continues from it with the same samples an uninterrupted run would have drawn;
* ``ema_epochNN.pt``: the EMA weights of each epoch (small);
* ``split.json``: which clips trained and which were held out;
* ``history.json``: per-epoch losses and held-out scores.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from inference.detectors.fire_smoke_net import input_shape, preprocess
from inference.training.fire_det import evaluate
from inference.training.fire_det.data import Item, read_items, split_by_clip
from inference.training.fire_det.dataset import FireSmokeSamples, Mix
from inference.training.fire_det.model import FireSmokeDet
from inference.training.fire_det.synth import (
    SMOKE_VIDEO,
    VALIDATION_NEGATIVE_CLIPS,
    Backgrounds,
    SceneFactory,
    load_plumes,
)
from inference.training.fire_det.targets import Assigner

logger = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Everything a run depends on (stored in each checkpoint).

    Attributes:
        data: YOLO-format training sets.
        out: Output folder.
        videos: ``../shared/data/videos`` (backgrounds, plumes, validation negatives); ``None``
            trains without them (demo-scene backgrounds only, no smoke composites).
        backbone: ImageNet-pretrained ShuffleNetV2 state dict (``None``: random init).
        epochs: Epochs (fixed: no early stopping).
        batch: Images per step.
        size: Training canvas side (pixels, multiple of 32).
        lr: Peak learning rate of the heads (the backbone gets half).
        weight_decay: AdamW weight decay (not on norms and biases).
        seed: Seed of the split, the samples and the initialisation.
        threads: torch intra-op threads.
        workers: Data-loading processes (0: in the training process).
        held_out: Share of each stratum's images held out by clip (0: train on all).
        mix: Epoch composition.
        limit: Use only this many training items (smoke tests of the command).
        eval_every: Score the held-out clips every this many epochs (and after the last).
    """

    data: list[str]
    out: str
    videos: str | None = None
    backbone: str | None = None
    epochs: int = 12
    batch: int = 16
    size: int = 320
    lr: float = 2e-3
    weight_decay: float = 5e-4
    seed: int = 0
    threads: int = 2
    workers: int = 1
    held_out: float = 0.2
    mix: Mix = field(default_factory=Mix)
    limit: int | None = None
    eval_every: int = 2


class Ema:
    """Exponential moving average of the weights (BatchNorm buffers copied)."""

    def __init__(self, model: torch.nn.Module, decay: float = 0.998) -> None:
        self.module = copy.deepcopy(model).eval()
        self.decay = decay
        self.updates = 0
        for p in self.module.parameters():
            p.requires_grad_(False)

    def update(self, model: torch.nn.Module) -> None:
        """Blend in the current weights (short memory at first, so early epochs count)."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / 500))
        with torch.no_grad():
            for k, v in model.state_dict().items():
                e = self.module.state_dict()[k]
                if v.dtype.is_floating_point:
                    e.mul_(d).add_(v.detach(), alpha=1 - d)
                else:
                    e.copy_(v)


def focal_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weight: torch.Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> torch.Tensor:
    """Summed sigmoid focal loss, each element weighted (0 where the class is unknown)."""
    p = torch.sigmoid(logits)
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    a_t = alpha * target + (1 - alpha) * (1 - target)
    return (a_t * ce * (1 - p_t) ** gamma * weight).sum()


def giou(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Elementwise GIoU of ``[K, 4]`` x1y1x2y2 boxes."""
    ix1 = torch.max(pred[:, 0], target[:, 0])
    iy1 = torch.max(pred[:, 1], target[:, 1])
    ix2 = torch.min(pred[:, 2], target[:, 2])
    iy2 = torch.min(pred[:, 3], target[:, 3])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    ap = (pred[:, 2] - pred[:, 0]) * (pred[:, 3] - pred[:, 1])
    at = (target[:, 2] - target[:, 0]) * (target[:, 3] - target[:, 1])
    union = ap + at - inter + 1e-6
    hull = (torch.max(pred[:, 2], target[:, 2]) - torch.min(pred[:, 0], target[:, 0])) * (
        torch.max(pred[:, 3], target[:, 3]) - torch.min(pred[:, 1], target[:, 1])
    ) + 1e-6
    return inter / union - (hull - union) / hull


def detection_loss(
    model: FireSmokeDet, x: torch.Tensor, t: dict[str, torch.Tensor], centres: torch.Tensor
) -> tuple[torch.Tensor, dict[str, float]]:
    """Focal class loss + 2 · centre-ness-weighted GIoU + centre-ness BCE."""
    logits, ctr, dist = model.split(model.raw(x))
    pos = t["positive"]
    npos = max(1.0, float(pos.sum()))
    cls = focal_loss(logits, t["cls"], t["weight"]) / npos
    box = ctr_l = torch.zeros((), dtype=logits.dtype)
    if pos.any():
        c = centres[None].expand(len(x), -1, -1)[pos]
        d = dist[pos]
        pred = torch.cat([c - d[:, :2], c + d[:, 2:]], 1)
        w = t["centreness"][pos]
        box = ((1 - giou(pred, t["box"][pos])) * w).sum() / w.sum().clamp(min=1e-6)
        ctr_l = F.binary_cross_entropy_with_logits(ctr[pos], w)
    total = cls + 2.0 * box + ctr_l
    return total, {"cls": cls.item(), "box": box.item(), "ctr": ctr_l.item()}


def torch_raw(model: FireSmokeDet, long_side: int) -> evaluate.RawFn:
    """The network's raw outputs on frames, preprocessed exactly as the ONNX tier does."""

    def run(frames: list[Any]) -> list[Any]:
        out = []
        for f in frames:
            x, scale = preprocess(f, long_side)
            with torch.no_grad():
                s, d = model(torch.from_numpy(x)[None])
            out.append((s[0].numpy(), d[0].numpy(), tuple(x.shape[1:]), scale))
        return out

    fn: evaluate.RawFn = run
    return fn


def _per_clip(items: list[Item], cap: int, seed: int) -> list[Item]:
    rng = np.random.default_rng(seed)
    by: dict[str, list[Item]] = {}
    for it in items:
        by.setdefault(it.clip, []).append(it)
    out: list[Item] = []
    for clip in sorted(by):
        its = by[clip]
        if len(its) > cap:
            its = [its[int(i)] for i in sorted(rng.choice(len(its), cap, replace=False))]
        out += its
    return out


def _worker_init(_: int) -> None:
    # The data worker shares 2 cores with the training threads: one thread each.
    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _atomic_save(obj: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _param_groups(model: FireSmokeDet, lr: float, wd: float) -> list[dict[str, Any]]:
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        key = (name.startswith("backbone."), p.ndim <= 1)
        groups.setdefault(key, []).append(p)
    return [
        {
            "params": ps,
            "lr": lr * (0.5 if bb else 1.0),
            "base_lr": lr * (0.5 if bb else 1.0),
            "weight_decay": 0.0 if no_wd else wd,
        }
        for (bb, no_wd), ps in groups.items()
    ]


def _lr_factor(step: int, total: int, warmup: int = 300) -> float:
    if step < warmup:
        return 0.1 + 0.9 * step / warmup
    p = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, p)))


def load_split(cfg: TrainConfig) -> tuple[list[Item], list[Item]]:
    """Training and held-out items of the configured sets (split by clip with the seed)."""
    items: list[Item] = []
    for d in cfg.data:
        items += read_items(d)
    if cfg.held_out > 0:
        train, held = split_by_clip(items, cfg.held_out, cfg.seed)
    else:
        train, held = items, []
    if cfg.limit is not None:
        train, held = train[: cfg.limit], held[: max(2, cfg.limit // 4)]
    return train, held


def held_out_scores(
    model: FireSmokeDet,
    held: list[Item],
    neg_frames: list[Any],
    neg_names: list[str],
    long_side: int,
) -> list[evaluate.Scored]:
    """Score the EMA model on held-out items and validation negative frames."""
    raw = torch_raw(model, long_side)
    return evaluate.score_items(raw, held) + evaluate.score_negative_frames(
        raw, neg_frames, neg_names
    )


def run(
    cfg: TrainConfig, resume: bool = False, scenes: Mapping[str, SceneFactory] | None = None
) -> dict[str, Any]:
    """Train (or resume) and return the final state summary (history, split, thresholds).

    ``scenes``: the procedural demo scenes whose fire-free frames join the background bank
    (``streams.synthetic.scenes.SCENES``, handed in by ``citysight models train fire_smoke``).

    Raises:
        FileNotFoundError: a data set or the backbone file is missing.
        ValueError: the configuration is invalid or ``--resume`` finds another run's state.
    """
    if cfg.size % 32:
        raise ValueError(f"size must be a multiple of 32, got {cfg.size}")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    import cv2

    # OpenCV's thread pool does not survive fork(): a data worker forked after the parent
    # ran a parallel OpenCV call can hang in its first one. One thread everywhere.
    cv2.setNumThreads(1)
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    train_items, held = load_split(cfg)
    videos = Path(cfg.videos) if cfg.videos else None
    bank = Backgrounds.load(videos, scenes=scenes)
    plumes = (
        load_plumes(videos / SMOKE_VIDEO) if videos and (videos / SMOKE_VIDEO).is_file() else []
    )
    neg_frames, neg_names = (
        evaluate.video_negative_frames(videos, VALIDATION_NEGATIVE_CLIPS, 60)
        if videos
        else ([], [])
    )
    split = {
        "seed": cfg.seed,
        "train_images": len(train_items),
        "held_out_images": len(held),
        "validation_negative_frames": len(neg_names),
        "validation_negative_clips": list(VALIDATION_NEGATIVE_CLIPS) if videos else [],
        "train_clips": sorted({i.clip for i in train_items}),
        "held_out_clips": sorted({i.clip for i in held}),
        "held_out_files": [str(i.path) for i in held],
    }
    (out / "split.json").write_text(json.dumps(split, indent=1) + "\n")
    ds = FireSmokeSamples(train_items, bank, plumes, cfg.size, cfg.seed, cfg.mix)
    model = FireSmokeDet()
    if cfg.backbone:
        model.load_backbone(cfg.backbone)
    ema = Ema(model)
    opt = torch.optim.AdamW(_param_groups(model, cfg.lr, cfg.weight_decay))
    start, step, history = 1, 0, []
    ckpt_path = out / "last.pt"
    if resume and ckpt_path.is_file():
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck["config"]["data"] != cfg.data or ck["config"]["seed"] != cfg.seed:
            raise ValueError(f"{ckpt_path} belongs to another run (data/seed differ)")
        model.load_state_dict(ck["model"])
        ema.module.load_state_dict(ck["ema"])
        ema.updates = ck["ema_updates"]
        opt.load_state_dict(ck["opt"])
        start, step, history = ck["epoch"] + 1, ck["step"], ck["history"]
        logger.info("resumed from %s at epoch %d (step %d)", ckpt_path, start, step)
    centres = torch.from_numpy(Assigner(cfg.size, 2).centres)
    # Per-epoch progress is scored on at most 20 frames per held-out clip (the full held-out
    # set is scored once, when the thresholds are chosen).
    held_sample = _per_clip(held, 20, cfg.seed)
    steps_per_epoch = len(ds) // cfg.batch
    total = steps_per_epoch * cfg.epochs
    long_side = cfg.size
    for epoch in range(start, cfg.epochs + 1):
        ds.set_epoch(epoch)
        loader = torch.utils.data.DataLoader(
            ds,
            batch_size=cfg.batch,
            shuffle=False,
            drop_last=True,
            num_workers=cfg.workers,
            worker_init_fn=_worker_init,
        )
        model.train()
        t0 = time.perf_counter()
        sums: dict[str, float] = {"loss": 0.0, "cls": 0.0, "box": 0.0, "ctr": 0.0}
        n = 0
        for x, t in loader:
            f = _lr_factor(step, total)
            for g in opt.param_groups:
                g["lr"] = g["base_lr"] * f
            loss, parts = detection_loss(model, x.float(), t, centres)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
            opt.step()
            ema.update(model)
            step += 1
            n += 1
            sums["loss"] += loss.item()
            for k, v in parts.items():
                sums[k] += v
            if n % 50 == 0:
                logger.info(
                    "epoch %d step %d/%d loss %.3f (%.1f img/s)",
                    epoch,
                    n,
                    steps_per_epoch,
                    sums["loss"] / n,
                    n * cfg.batch / (time.perf_counter() - t0),
                )
        train_s = time.perf_counter() - t0
        rec: dict[str, Any] = {"epoch": epoch, "train_seconds": round(train_s, 1)}
        rec.update({k: round(v / max(n, 1), 4) for k, v in sums.items()})
        if (held or neg_frames) and (epoch % cfg.eval_every == 0 or epoch == cfg.epochs):
            t1 = time.perf_counter()
            scored = held_out_scores(ema.module, held_sample, neg_frames, neg_names, long_side)
            _, at = evaluate.choose_thresholds(scored)
            rec["held_out"] = {
                name: {k: at[c][k] for k in ("threshold", "precision", "recall", "f1", "box_f1")}
                for c, name in enumerate(evaluate.CLASSES)
            }
            rec["held_out"]["at_0.5"] = {
                name: evaluate.metrics(scored, c, 0.5) for c, name in enumerate(evaluate.CLASSES)
            }
            rec["eval_seconds"] = round(time.perf_counter() - t1, 1)
        history.append(rec)
        logger.info("epoch %d done: %s", epoch, json.dumps(rec))
        _atomic_save(
            {"ema": ema.module.state_dict(), "epoch": epoch}, out / f"ema_epoch{epoch:02d}.pt"
        )
        _atomic_save(
            {
                "model": model.state_dict(),
                "ema": ema.module.state_dict(),
                "ema_updates": ema.updates,
                "opt": opt.state_dict(),
                "epoch": epoch,
                "step": step,
                "history": history,
                "config": asdict(cfg),
            },
            ckpt_path,
        )
        (out / "history.json").write_text(json.dumps(history, indent=1) + "\n")
    return {
        "history": history,
        "split": split,
        "out": str(out),
        "input_shape_16_9": input_shape(720, 1280, long_side),
    }
