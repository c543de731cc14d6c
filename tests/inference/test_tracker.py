"""ByteTrack-style tracker (table-driven)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.tracker import Tracker, TrackerBank

B = np.array([[0, 0, 10, 10]], np.float32)


def _run(tr: Tracker, frames: list[tuple[list, list, list]]) -> list[list[int]]:
    return [
        tr.update(np.array(b, np.float32).reshape(-1, 4), np.array(s), np.array(c)).tolist()
        for b, s, c in frames
    ]


@pytest.mark.parametrize(
    ("frames", "expected", "kwargs"),
    [
        # same object moving slowly keeps its id
        (
            [
                ([[0, 0, 10, 10]], [0.9], [0]),
                ([[1, 0, 11, 10]], [0.9], [0]),
                ([[2, 0, 12, 10]], [0.9], [0]),
            ],
            [[1], [1], [1]],
            {},
        ),
        # two objects, order swapped in the second frame
        (
            [
                ([[0, 0, 10, 10], [50, 50, 60, 60]], [0.9, 0.8], [0, 0]),
                ([[50, 50, 60, 60], [0, 0, 10, 10]], [0.8, 0.9], [0, 0]),
            ],
            [[1, 2], [2, 1]],
            {},
        ),
        # low-score detection continues a track but never starts one
        (
            [
                ([[0, 0, 10, 10]], [0.9], [0]),
                ([[0, 0, 10, 10]], [0.2], [0]),
                ([[80, 80, 90, 90]], [0.2], [0]),
            ],
            [[1], [1], [-1]],
            {},
        ),
        # below low threshold: ignored
        ([([[0, 0, 10, 10]], [0.05], [0])], [[-1]], {}),
        # different classes at the same place get different tracks
        ([([[0, 0, 10, 10], [0, 0, 10, 10]], [0.9, 0.9], [0, 1])], [[1, 2]], {}),
        # track dies after max_age missed updates, then a new id is born
        (
            [
                ([[0, 0, 10, 10]], [0.9], [0]),
                ([], [], []),
                ([], [], []),
                ([[0, 0, 10, 10]], [0.9], [0]),
            ],
            [[1], [], [], [2]],
            {"max_age": 1},
        ),
        # survives a gap shorter than max_age
        (
            [([[0, 0, 10, 10]], [0.9], [0]), ([], [], []), ([[0, 0, 10, 10]], [0.9], [0])],
            [[1], [], [1]],
            {"max_age": 3},
        ),
    ],
)
def test_tracker(frames: list, expected: list, kwargs: dict) -> None:
    assert _run(Tracker(**kwargs), frames) == expected


def test_velocity_prediction_follows_fast_object() -> None:
    tr = Tracker()
    ids = [tr.update(B + np.array([5 * i, 0, 5 * i, 0]), [0.9], [0])[0] for i in range(12)]
    assert ids == [1] * 12


def test_bank_is_per_camera() -> None:
    bank = TrackerBank()
    a = bank.assign("a", B, np.array([0.9]), np.array([0]))
    b = bank.assign("b", B, np.array([0.9]), np.array([0]))
    assert a.tolist() == [1] and b.tolist() == [1] and len(bank) == 2
