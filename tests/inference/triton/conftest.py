"""One real Triton (the nvidia-pytriton binary) per test session, against model_repo/."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from inference.triton.server import LocalTriton


@pytest.fixture(scope="session")
def triton(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalTriton]:
    """Every model of model_repo/ served from ../shared/models; stopped at session end."""
    server = LocalTriton(models_dir=models_dir, workdir=tmp_path_factory.mktemp("triton"))
    server.start()
    yield server
    server.close()


@pytest.fixture(scope="session")
def eval_images(data_dir: Path) -> Callable[[str, int], list[tuple[np.ndarray, list[dict]]]]:
    """``eval_images(task, n)``: the first ``n`` labelled images with objects, and labels."""
    return functools.partial(load_images, data_dir)


def load_images(data_dir: Path, task: str, n: int) -> list[tuple[np.ndarray, list[dict]]]:
    """The first ``n`` labelled images of an eval task that have objects, with their labels."""
    folder = data_dir / "eval" / task
    labels = json.loads((folder / "labels.json").read_text())["images"]
    out = []
    for item in labels:
        if item["objects"]:
            img = cv2.imread(str(folder / item["file"]))
            assert img is not None, item["file"]
            out.append((img, item["objects"]))
        if len(out) == n:
            break
    return out
