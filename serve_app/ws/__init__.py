"""The WebSocket feed: authentication, scoped filters and cross-replica fan-out."""
