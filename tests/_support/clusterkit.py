"""Test helpers for the namespace cluster (on the pytest pythonpath, like testkit: they import
pytest, so they stay out of the shipped package)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from testkit import IN_CI

from benchmarks.cluster import netns

# test clusters use their own prefixes and subnets, never the CLI's default `cscl`
TEST_SLOTS = [(f"cst{k}", f"10.213.{100 + k}.0/24") for k in range(1, 10)]


def need_netns() -> None:
    """Skip unless this process can build namespace clusters; in CI a missing package fails."""
    if netns.ip_binary() is None and IN_CI:
        pytest.fail("iproute2 is missing after setup (infra/local/setup.sh --test installs it)")
    reason = netns.unavailable_reason()
    if reason:
        pytest.skip(reason)
    missing = [b for b in ("redis-server",) if shutil.which(b) is None]
    if not (Path(sys.executable).parent / "ray").exists():
        missing.append("ray (the venv's ray CLI)")
    if missing:
        msg = f"cluster tests need {', '.join(missing)}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
