"""Real helper services for tests (an RTSP server on 127.0.0.1)."""
