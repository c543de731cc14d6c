"""Detector implementations (pure numpy / OpenCV / ONNX Runtime), tiered per detector.

The registry lives in :mod:`inference.detectors.base`; built-in tiers register on first use.
"""
