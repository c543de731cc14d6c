"""Helpers for the project's tests (importable from any test module)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("CITYSIGHT_SHARED", ROOT.parent / "shared"))
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def need_shared(rel: str) -> Path:
    """Path of a file or folder under ../shared; fails in CI when missing, skips elsewhere."""
    path = SHARED / rel
    if not path.exists():
        msg = f"shared test data missing: {path}"
        if IN_CI:
            pytest.fail(msg)
        pytest.skip(msg)
    return path
