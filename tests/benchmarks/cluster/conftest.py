"""Fixtures for the namespace-cluster tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from clusterkit import TEST_SLOTS, need_netns

from benchmarks.cluster.harness import Cluster, up_first_free
from benchmarks.cluster.spec import ClusterSpec


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """Ray head + 2 stream nodes + Redis primary/replica + 3 Sentinels + a client host."""
    need_netns()
    c = up_first_free(ClusterSpec(prefix=p, subnet=s) for p, s in TEST_SLOTS)
    try:
        yield c
    finally:
        c.down()
