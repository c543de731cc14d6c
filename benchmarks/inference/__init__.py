"""Inference benchmarks: in-process ONNX Runtime vs Triton."""
