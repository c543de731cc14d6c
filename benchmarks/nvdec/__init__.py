"""Concurrent-stream decode benchmark: NVDEC (PyNvVideoCodec) or FFmpeg on CPU."""
