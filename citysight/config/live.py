"""Live view: how stream workers publish packets for viewers, and the viewer caps."""

from __future__ import annotations

from citysight.config.base import Strict, _f


class LiveService(Strict):
    """Live view of cameras (fragmented MP4 over WebSocket, remuxed, never re-encoded)."""

    enabled: bool = _f(
        "Enabled",
        "Serve live view at WS /ws/live/{camera_id}; off: the route refuses every viewer "
        "(close 4503) and stream workers never publish packets.",
        default=True,
    )
    max_viewers_per_camera: int = _f(
        "Viewers per camera",
        "Open live viewers of one camera across every ingress replica; the next is refused "
        "(close 4429).",
        default=8,
        ge=1,
        le=1000,
    )
    max_viewers_per_node: int = _f(
        "Viewers per node",
        "Open live viewers one ingress replica serves; the next is refused (close 4503).",
        default=64,
        ge=1,
        le=10000,
    )
    viewer_queue_fragments: int = _f(
        "Viewer queue",
        "Fragments (about one per frame) buffered per viewer; a viewer that falls this far "
        "behind is closed (4008) instead of slowing anyone else.",
        default=150,
        ge=4,
        le=10000,
    )
    interest_ttl_s: float = _f(
        "Interest TTL",
        "Lifetime of a camera's viewer-interest key, refreshed by the ingress while someone "
        "watches; stream workers publish a camera's packets only while it exists.",
        default=6.0,
        ge=1,
        le=120,
    )
    stream_max_packets: int = _f(
        "Packet stream cap",
        "Approximate MAXLEN of a camera's packet stream in Redis (keep it above two GOPs so "
        "a new viewer finds a keyframe).",
        default=600,
        ge=50,
        le=100000,
    )
    gop_max_packets: int = _f(
        "Kept GOP",
        "Packets since the last keyframe a worker keeps per camera for a fast start (a "
        "longer GOP starts at the next keyframe instead).",
        default=300,
        ge=10,
        le=10000,
    )
    publish_queue_packets: int = _f(
        "Publish queue",
        "Packets per camera waiting for the worker's publisher thread (drop-oldest, counted: "
        "a stalled Redis never blocks the decode thread).",
        default=500,
        ge=10,
        le=100000,
    )
    start_timeout_s: float = _f(
        "Start timeout",
        "A viewer that gets no packet of the camera within this time is closed (4504): the "
        "camera is offline or not read by any worker.",
        default=10.0,
        ge=1,
        le=300,
    )
