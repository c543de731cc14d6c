"""Inference client backends, one module per ``InferenceService.type``."""
