"""FrameMux: drop-oldest queues, nvstreammux batching semantics, round-robin fairness."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from streams.mux import FrameMux


def _frame(v: int = 0) -> np.ndarray:
    return np.full((8, 8, 3), v, np.uint8)


def test_drop_oldest_counts_and_keeps_newest() -> None:
    mux = FrameMux(queue_frames=2)
    mux.add_camera("a", frozenset({"fire_smoke"}))
    assert mux.push("a", 1, 1.0, _frame())
    assert mux.push("a", 2, 2.0, _frame())
    assert not mux.push("a", 3, 3.0, _frame())
    assert not mux.push("a", 4, 4.0, _frame())
    assert mux.drops("a") == 2
    batch = mux.next_batch(8, 1)
    assert batch is not None
    assert batch.frame_nos == [3, 4]
    assert batch.detectors == [frozenset({"fire_smoke"})] * 2
    assert mux.pending() == 0


def test_unknown_camera_is_refused() -> None:
    mux = FrameMux()
    assert not mux.push("nope", 1, 0.0, _frame())
    assert mux.next_batch(4, 1, idle_timeout_s=0.01) is None


@pytest.mark.parametrize(
    ("frames", "max_batch", "push_timeout_ms", "expect_len", "max_wait_s"),
    [
        (4, 4, 5000, 4, 0.5),  # full batch returns at once, not after the timeout
        (2, 4, 100, 2, 0.6),  # partial batch returns after the push timeout
        (6, 4, 5000, 4, 0.5),  # never more than max_batch
    ],
)
def test_batching(
    frames: int, max_batch: int, push_timeout_ms: int, expect_len: int, max_wait_s: float
) -> None:
    mux = FrameMux(queue_frames=8)
    for c in range(frames):
        mux.add_camera(f"c{c}")
        mux.push(f"c{c}", 1, 0.0, _frame())
    t0 = time.monotonic()
    batch = mux.next_batch(max_batch, push_timeout_ms)
    waited = time.monotonic() - t0
    assert batch is not None and len(batch) == expect_len
    assert waited < max_wait_s
    if frames < max_batch:
        assert waited >= push_timeout_ms / 1000 * 0.8


def test_timeout_counts_from_first_frame_and_late_frames_join() -> None:
    mux = FrameMux(queue_frames=4)
    for c in ("a", "b"):
        mux.add_camera(c)
    mux.push("a", 1, 0.0, _frame())
    threading.Timer(0.05, lambda: mux.push("b", 1, 0.0, _frame())).start()
    batch = mux.next_batch(2, 1000)
    assert batch is not None and sorted(batch.camera_ids) == ["a", "b"]


def test_idle_returns_none_and_close_wakes_waiter() -> None:
    mux = FrameMux()
    mux.add_camera("a")
    assert mux.next_batch(4, 10, idle_timeout_s=0.05) is None
    threading.Timer(0.05, mux.close).start()
    t0 = time.monotonic()
    assert mux.next_batch(4, 10, idle_timeout_s=5) is None
    assert time.monotonic() - t0 < 2


def test_round_robin_fairness() -> None:
    mux = FrameMux(queue_frames=100)
    for c in ("busy", "q1", "q2"):
        mux.add_camera(c)
    for i in range(50):
        mux.push("busy", i, 0.0, _frame())
    for c in ("q1", "q2"):
        for i in range(5):
            mux.push(c, i, 0.0, _frame())
    batch = mux.next_batch(6, 1)
    assert batch is not None
    assert sorted(batch.camera_ids) == ["busy", "busy", "q1", "q1", "q2", "q2"]
    # Over successive batches every camera is served before a camera is served twice more.
    seen: list[str] = []
    for _ in range(4):
        b = mux.next_batch(2, 1)
        assert b is not None
        seen.extend(b.camera_ids)
    assert seen.count("q1") >= 2 and seen.count("q2") >= 2


def test_remove_camera_discards_its_frames() -> None:
    mux = FrameMux(queue_frames=4)
    mux.add_camera("a")
    mux.add_camera("b")
    mux.push("a", 1, 0.0, _frame())
    mux.push("b", 1, 0.0, _frame())
    mux.remove_camera("a")
    assert mux.pending() == 1
    batch = mux.next_batch(4, 1)
    assert batch is not None and batch.camera_ids == ["b"]
    assert mux.stats() == {"b": {"pushed": 1, "drops": 0, "queued": 0}}


def test_camera_settings_travel_with_its_frames() -> None:
    """A camera's per-detector settings come out with each of its frames; a batch where no
    camera has any carries none; re-adding a camera updates them."""
    mux = FrameMux(queue_frames=4)
    mux.add_camera("a", frozenset({"fire_smoke"}), {"fire_smoke": '{"sensitivity": "high"}'})
    mux.add_camera("b", frozenset({"fire_smoke"}))
    mux.push("a", 1, 0.0, _frame())
    mux.push("b", 1, 0.0, _frame())
    batch = mux.next_batch(8, 1)
    assert batch is not None and batch.camera_ids == ["a", "b"]
    assert batch.options_of("fire_smoke", [0, 1]) == ['{"sensitivity": "high"}', ""]
    mux.push("b", 2, 0.0, _frame())
    only_b = mux.next_batch(8, 1)
    assert only_b is not None and only_b.options == []
    assert only_b.options_of("fire_smoke", [0]) == [""]
    mux.add_camera("a", frozenset({"fire_smoke"}), {})
    mux.push("a", 2, 0.0, _frame())
    again = mux.next_batch(8, 1)
    assert again is not None and again.options == []
