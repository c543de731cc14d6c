"""Consistent hashing of camera ids onto stream workers (a ring with virtual nodes)."""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Iterable


def _h(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


class HashRing:
    """Maps keys to nodes; adding or removing a node moves only ~1/N of the keys.

    Args:
        nodes: Initial node names.
        vnodes: Virtual nodes per node (more: better balance, larger ring).
    """

    def __init__(self, nodes: Iterable[str] = (), vnodes: int = 160) -> None:
        self.vnodes = vnodes
        self._points: list[int] = []
        self._owner: dict[int, str] = {}
        self._nodes: set[str] = set()
        for n in nodes:
            self.add(n)

    @property
    def nodes(self) -> set[str]:
        """Current nodes."""
        return set(self._nodes)

    def add(self, node: str) -> None:
        """Add a node (idempotent)."""
        if node in self._nodes:
            return
        self._nodes.add(node)
        for i in range(self.vnodes):
            p = _h(f"{node}#{i}")
            if p in self._owner:  # 64-bit collision: astronomically rare, keep first owner
                continue
            self._owner[p] = node
            bisect.insort(self._points, p)

    def remove(self, node: str) -> None:
        """Remove a node (idempotent)."""
        if node not in self._nodes:
            return
        self._nodes.discard(node)
        gone = [p for p, n in self._owner.items() if n == node]
        for p in gone:
            del self._owner[p]
        self._points = sorted(self._owner)

    def node_for(self, key: str) -> str:
        """The node owning ``key``.

        Raises:
            LookupError: The ring is empty.
        """
        if not self._points:
            raise LookupError("hash ring has no nodes")
        i = bisect.bisect(self._points, _h(key)) % len(self._points)
        return self._owner[self._points[i]]

    def assign(self, keys: Iterable[str]) -> dict[str, list[str]]:
        """Group keys by owning node (every node present, possibly empty)."""
        out: dict[str, list[str]] = {n: [] for n in sorted(self._nodes)}
        for k in keys:
            out[self.node_for(k)].append(k)
        return out
