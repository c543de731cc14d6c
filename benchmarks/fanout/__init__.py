"""WebSocket fan-out benchmark: citysight's /ws against a bare uvicorn broadcast server."""
