"""Evidence clips: the packet ring of every camera and where the clips are stored."""

from __future__ import annotations

from pydantic import model_validator

from citysight.choices import ClipStorageName
from citysight.config.base import Strict, _f


class ClipStorage(Strict):
    """Where clip files live (the stream workers write them, the ingress reads them)."""

    type: ClipStorageName = _f(
        "Type",
        "local: a directory every stream worker and ingress replica can reach (one node, or a "
        "shared volume); s3: an S3-compatible object store (needs boto3).",
        default="local",
    )
    path: str = _f(
        "Path",
        "Directory of the local store. Empty: <workdir>/clips under citysight run/demo.",
        default="",
    )
    endpoint_url: str = _f(
        "S3 endpoint", "S3-compatible endpoint (e.g. http://minio:9000); empty: AWS.", default=""
    )
    bucket: str = _f("S3 bucket", "Bucket of the s3 store.", default="citysight-clips")
    prefix: str = _f("S3 prefix", "Key prefix inside the bucket.", default="clips/")
    region: str = _f("S3 region", "Region of the s3 store.", default="us-east-1")
    access_key_env: str = _f(
        "S3 access key env", "Environment variable holding the access key id.", default=""
    )
    secret_key_env: str = _f(
        "S3 secret key env", "Environment variable holding the secret access key.", default=""
    )


class ClipsConfig(Strict):
    """Evidence clips: a bounded ring of compressed packets per camera, a clip per alert."""

    enabled: bool = _f(
        "Enabled", "Keep a packet ring per camera and write alert clips.", default=True
    )
    pre_s: float = _f("Before", "Seconds of video before the alert.", default=10, ge=0, le=120)
    post_s: float = _f("After", "Seconds of video after the alert.", default=10, ge=0, le=120)
    ring_max_s: float = _f(
        "Ring seconds",
        "Seconds of packets kept per camera (from a keyframe): at least pre_s + post_s plus a "
        "GOP, so the pre-roll is still there when the post-roll has been recorded.",
        default=30,
        ge=1,
        le=600,
    )
    ring_max_bytes: int = _f(
        "Ring bytes",
        "Bytes of packets kept per camera at most; the oldest GOPs are dropped first (and "
        "counted) when a camera's bitrate would exceed it.",
        default=32 * 1024 * 1024,
        ge=64 * 1024,
        le=4 * 1024**3,
    )
    write_grace_s: float = _f(
        "Write grace",
        "A clip request no stream worker has answered this long after its post-roll ended is "
        "reported unavailable (camera not read by any worker).",
        default=60,
        ge=5,
        le=3600,
    )
    redact_crf: int = _f(
        "Redacted quality",
        "x264 CRF of the face-blurred copy (lower: better quality, larger files).",
        default=26,
        ge=10,
        le=45,
    )
    storage: ClipStorage = _f("Storage", "Where clip files live.", default_factory=ClipStorage)

    @model_validator(mode="after")
    def _ring_covers_clip(self) -> ClipsConfig:
        if self.enabled and self.ring_max_s < self.pre_s + self.post_s:
            raise ValueError(
                f"ring_max_s ({self.ring_max_s:g}) is shorter than pre_s + post_s "
                f"({self.pre_s + self.post_s:g}): the pre-roll would be gone when the clip is "
                "written; raise ring_max_s (a GOP more is best)"
            )
        return self
