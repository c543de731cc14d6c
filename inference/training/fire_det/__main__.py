"""``python -m inference.training.fire_det``: train, export and score the fire/smoke detector.

One reproducible command trains, chooses the per-class thresholds on the clips held out of
training, exports ``fire_smoke_det.onnx`` (with the thresholds and training facts in its
metadata) and checks it against torch::

    citysight models train fire_smoke --out runs/fire_det --seed 0   # [--resume]

(the same as ``python -m inference.training.fire_det train ...``, except that the
``citysight`` command hands in the procedural demo scenes whose fire-free frames join the
background bank; the bare module trains without them and says so).

The defaults read ``../shared`` (``CITYSIGHT_SHARED`` overrides): the two training sets, the
no-fire clips and the smoke plume video in ``data/videos``, and the pretrained backbone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[3]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
DEFAULT_DATA = [
    str(SHARED / "data" / "train" / "fire_cctv"),
    str(SHARED / "data" / "train" / "fire_smoke_cctv"),
]
DEFAULT_VIDEOS = str(SHARED / "data" / "videos")
DEFAULT_BACKBONE = str(SHARED / "models" / "shufflenetv2_x1_imagenet.pth")
MODEL_NAME = "fire_smoke_det.onnx"

logger = logging.getLogger("inference.training.fire_det")


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def finish(run_dir: Path, epoch: int | None, onnx_out: Path, command: str) -> dict[str, Any]:
    """Choose thresholds on the held-out clips with the EMA weights of ``epoch`` (default:
    the last), export ONNX, check torch ↔ ONNX Runtime parity and write ``report.json``."""
    import numpy as np
    import torch

    from inference.detectors.common import read_image
    from inference.detectors.fire_smoke_net import preprocess
    from inference.training.fire_det import evaluate
    from inference.training.fire_det.dataset import Mix
    from inference.training.fire_det.export import export_onnx, parity
    from inference.training.fire_det.model import FireSmokeDet
    from inference.training.fire_det.synth import VALIDATION_NEGATIVE_CLIPS
    from inference.training.fire_det.train import TrainConfig, held_out_scores, load_split

    ck = torch.load(run_dir / "last.pt", map_location="cpu", weights_only=False)
    raw_cfg = dict(ck["config"])
    raw_cfg["mix"] = Mix(**raw_cfg["mix"])
    cfg = TrainConfig(**raw_cfg)
    epoch = epoch or ck["epoch"]
    state = torch.load(run_dir / f"ema_epoch{epoch:02d}.pt", map_location="cpu", weights_only=False)
    model = FireSmokeDet()
    model.load_state_dict(state["ema"])
    model.eval()
    _, held = load_split(cfg)
    videos = Path(cfg.videos) if cfg.videos else None
    neg_frames, neg_names = (
        evaluate.video_negative_frames(videos, VALIDATION_NEGATIVE_CLIPS, 60)
        if videos
        else ([], [])
    )
    scored = held_out_scores(model, held, neg_frames, neg_names, cfg.size)
    thresholds, _ = evaluate.choose_thresholds(scored)
    held_summary = evaluate.summary(scored, thresholds)
    history = ck["history"]
    meta = {
        "classes": list(evaluate.CLASSES),
        "thresholds": list(thresholds),
        "input_long_side": cfg.size,
        "input": "BGR 0..255 float32 [N,3,H,W]; long side resized to input_long_side, "
        "padded black bottom/right to multiples of 32",
        "outputs": "scores [N,A,C] sqrt(cls*centreness); ltrb [N,A,4] px; cells of strides 8,16,32",
        "trained_on": json.dumps([Path(d).name for d in cfg.data]),
        "training_command": command,
        "seed": str(cfg.seed),
        "epochs": str(cfg.epochs),
        "epoch_exported": str(epoch),
        "git_commit": _git_commit(),
        "thresholds_chosen_on": "held-out training clips (split.json): best image-level F1 "
        "flagging at most 5 % of the validation no-fire video frames; never on "
        "../shared/data/eval",
        "licence": "weights: Apache-2.0 (citysight); backbone BSD-3-Clause (FastestDet "
        "ShuffleNetV2); training data CC BY 4.0 (see MODEL_CARD.md)",
    }
    onnx_out.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(model, onnx_out, meta, cfg.size)
    rng = np.random.default_rng(0)
    probes = [
        (rng.random((1, 3, 320, 320)) * 255).astype(np.float32),
        (rng.random((3, 3, 192, 320)) * 255).astype(np.float32),
    ]
    if held:
        probes.append(preprocess(read_image(held[0].path), cfg.size)[0][None])
    par = parity(model, onnx_out, probes)
    report = {
        "onnx": str(onnx_out),
        "bytes": onnx_out.stat().st_size,
        "epoch_exported": epoch,
        "thresholds": dict(zip(evaluate.CLASSES, thresholds, strict=True)),
        "held_out": held_summary,
        "held_out_what": "images of clips held out of training by clip (split.json) plus "
        f"{len(neg_names)} frames of {list(VALIDATION_NEGATIVE_CLIPS)}; thresholds were chosen "
        "on these same images, so the at_threshold figures are optimistic",
        "held_out_images": {
            "fire_known": sum(1 for s in scored if s.gt[0] is not None),
            "fire_positive": sum(1 for s in scored if s.gt[0] is not None and len(s.gt[0])),
            "smoke_known": sum(1 for s in scored if s.gt[1] is not None),
            "smoke_positive": sum(1 for s in scored if s.gt[1] is not None and len(s.gt[1])),
        },
        "parity": par,
        "history": history,
        "train_seconds": round(sum(h["train_seconds"] for h in history), 1),
        "command": command,
    }
    (run_dir / "report.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


def main(argv: list[str] | None = None, scenes: Mapping[str, Any] | None = None) -> int:
    """Command line entry point.

    Args:
        argv: Arguments (default ``sys.argv[1:]``).
        scenes: The demo scenes for the background bank (``streams.synthetic.scenes.SCENES``;
            ``citysight models train fire_smoke`` passes them, the bare module does not, and
            then trains without demo-scene backgrounds, with a warning).
    """
    ap = argparse.ArgumentParser(prog="python -m inference.training.fire_det", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    tr = sub.add_parser("train", help="train, choose thresholds on held-out clips, export ONNX")
    tr.add_argument("--data", action="append", help="YOLO-format set (repeatable)")
    tr.add_argument(
        "--videos", default=DEFAULT_VIDEOS, help="folder of no-fire clips and the plume"
    )
    tr.add_argument("--no-videos", action="store_true", help="train without the videos folder")
    tr.add_argument("--backbone", default=DEFAULT_BACKBONE, help="pretrained ShuffleNetV2 .pth")
    tr.add_argument("--out", required=True, type=Path, help="run folder (checkpoints, report)")
    tr.add_argument("--onnx", type=Path, help=f"exported model (default OUT/{MODEL_NAME})")
    tr.add_argument("--epochs", type=int, default=12)
    tr.add_argument("--batch", type=int, default=16)
    tr.add_argument("--size", type=int, default=320)
    tr.add_argument("--lr", type=float, default=2e-3)
    tr.add_argument("--held-out", type=float, default=0.2, help="share held out by clip")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--threads", type=int, default=2)
    tr.add_argument("--workers", type=int, default=1)
    tr.add_argument("--limit", type=int, help="use only N training images (a smoke test)")
    tr.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    ex = sub.add_parser("export", help="re-export a run's EMA weights of one epoch")
    ex.add_argument("--run", required=True, type=Path)
    ex.add_argument("--epoch", type=int)
    ex.add_argument("--onnx", required=True, type=Path)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    command = " ".join(
        ["python -m inference.training.fire_det", *(argv if argv is not None else sys.argv[1:])]
    )
    if args.cmd == "train":
        from inference.training.fire_det.dataset import Mix
        from inference.training.fire_det.train import TrainConfig, run

        data = args.data or DEFAULT_DATA
        for d in data:
            if not (Path(d) / "data.yaml").is_file():
                ap.error(f"--data {d}: no data.yaml there")
        videos = None if args.no_videos else args.videos
        if videos is not None and not Path(videos).is_dir():
            ap.error(f"--videos {videos}: not a folder (pass --no-videos to train without it)")
        if args.backbone and not Path(args.backbone).is_file():
            ap.error(f"--backbone {args.backbone}: no such file")
        if args.size % 32:
            ap.error("--size must be a multiple of 32")
        cfg = TrainConfig(
            data=[str(Path(d).resolve()) for d in data],
            out=str(args.out),
            videos=str(Path(videos).resolve()) if videos else None,
            backbone=str(Path(args.backbone).resolve()) if args.backbone else None,
            epochs=args.epochs,
            batch=args.batch,
            size=args.size,
            lr=args.lr,
            seed=args.seed,
            threads=args.threads,
            workers=args.workers,
            held_out=args.held_out,
            # A --limit smoke test shrinks the synthetic part of the epoch alike.
            mix=Mix()
            if args.limit is None
            else Mix(
                smoke_composites=args.limit // 2,
                hard_negatives=args.limit // 4,
                backgrounds=args.limit // 8,
            ),
            limit=args.limit,
        )
        t0 = time.perf_counter()
        run(cfg, resume=args.resume, scenes=scenes)
        report = finish(args.out, None, args.onnx or args.out / MODEL_NAME, command)
        report["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
        (args.out / "report.json").write_text(json.dumps(report, indent=1) + "\n")
        print(json.dumps({k: report[k] for k in ("onnx", "bytes", "thresholds", "train_seconds")}))
        return 0
    report = finish(args.run, args.epoch, args.onnx, command)
    print(json.dumps({k: report[k] for k in ("onnx", "bytes", "thresholds")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
