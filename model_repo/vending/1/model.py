"""Triton python-backend entry point of the ``vending`` model (see inference.triton.pymodel)."""

import os
import site
import sys
from pathlib import Path

# Triton's python stub embeds an isolated interpreter that ignores PYTHONPATH: add the venv's
# site-packages (LocalTriton sets CITYSIGHT_SITE_PACKAGES) and the project root by hand. In
# NVIDIA's containers the project is installed into the container's Python instead.
_before = list(sys.path)
for _site in filter(None, os.environ.get("CITYSIGHT_SITE_PACKAGES", "").split(os.pathsep)):
    site.addsitedir(_site)
# The venv must win over the base interpreter's own site-packages.
sys.path[:] = [p for p in sys.path if p not in _before] + _before
_root = os.environ.get("CITYSIGHT_PROJECT_ROOT") or str(Path(__file__).resolve().parents[3])
if _root not in sys.path:
    sys.path.insert(0, _root)

from inference.triton.pymodel import DetectorModel


class TritonPythonModel(DetectorModel):
    """``vending`` detector served by Triton's python backend."""
