"""Detectors behind one client interface (in-process ONNX Runtime or Triton)."""
