"""HashRing: balance and minimal movement."""

from __future__ import annotations

import pytest

from streams.ring import HashRing

KEYS = [f"cam-{i:05d}" for i in range(7500)]


@pytest.mark.parametrize("n_nodes", [2, 4, 16])
def test_balance(n_nodes: int) -> None:
    ring = HashRing([f"w{i}" for i in range(n_nodes)])
    sizes = [len(v) for v in ring.assign(KEYS).values()]
    mean = len(KEYS) / n_nodes
    assert sum(sizes) == len(KEYS)
    assert max(sizes) <= 1.25 * mean and min(sizes) >= 0.75 * mean, sizes


def test_removing_a_node_moves_only_its_keys() -> None:
    ring = HashRing([f"w{i}" for i in range(8)])
    before = {k: ring.node_for(k) for k in KEYS}
    ring.remove("w3")
    after = {k: ring.node_for(k) for k in KEYS}
    moved = {k for k in KEYS if before[k] != after[k]}
    assert moved == {k for k in KEYS if before[k] == "w3"}
    assert "w3" not in set(after.values())


def test_adding_a_node_moves_about_one_nth() -> None:
    ring = HashRing([f"w{i}" for i in range(8)])
    before = {k: ring.node_for(k) for k in KEYS}
    ring.add("w8")
    moved = [k for k in KEYS if ring.node_for(k) != before[k]]
    assert all(ring.node_for(k) == "w8" for k in moved)
    assert 0.5 / 9 < len(moved) / len(KEYS) < 1.5 / 9


def test_deterministic_and_idempotent() -> None:
    a = HashRing(["x", "y", "z"])
    b = HashRing(["z", "y", "x", "x"])
    assert [a.node_for(k) for k in KEYS[:200]] == [b.node_for(k) for k in KEYS[:200]]
    b.remove("nope")
    assert b.nodes == {"x", "y", "z"}


def test_empty_ring_raises() -> None:
    with pytest.raises(LookupError, match="no nodes"):
        HashRing().node_for("cam")
