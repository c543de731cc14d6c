"""Test helpers for the namespace cluster (importable: pytest's importlib mode has no
conftest module to import from)."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from benchmarks.cluster import netns

# CI sets CI=true (kept here rather than imported: citysight/ is being restructured)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

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
