"""Alert store, dispatch lifecycle, evidence, audit log, plate reads and camera registry."""

from serve_app.store.alerts import AlertStore
from serve_app.store.audit import AuditLog
from serve_app.store.cameras import CameraRegistry
from serve_app.store.evidence import EvidenceStore
from serve_app.store.feed import publish_feed, read_feed
from serve_app.store.lifecycle import AlertNotFound, InvalidTransition
from serve_app.store.plates import PlateReads

__all__ = [
    "AlertNotFound",
    "AlertStore",
    "AuditLog",
    "CameraRegistry",
    "EvidenceStore",
    "InvalidTransition",
    "PlateReads",
    "publish_feed",
    "read_feed",
]
