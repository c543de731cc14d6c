"""``citysight models train DETECTOR``: the project's training commands (the ``train`` extra).

The composition root hands each trainer what lives in other layers: the fire/smoke trainer
(``inference.training.fire_det``) gets the procedural demo scenes of ``streams.synthetic``,
whose fire-free frames join its background bank of hard negatives.
"""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    """Train the model of one detector; what follows the detector goes to its trainer."""
    ap = argparse.ArgumentParser(
        prog="citysight models train",
        description="Train a detector model (needs the 'train' extra). "
        "`citysight models train fire_smoke --help` lists the trainer's options.",
    )
    ap.add_argument("detector", choices=["fire_smoke"], help="the detector to train")
    ap.add_argument("rest", nargs=argparse.REMAINDER, help="the trainer's options")
    args = ap.parse_args(argv)
    from inference.training.fire_det.__main__ import main as fire_smoke_main
    from streams.synthetic.scenes import SCENES

    return fire_smoke_main(["train", *args.rest], scenes=SCENES)
