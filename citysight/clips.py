"""Evidence clips: the clip record every layer reads, and the stores clip files live in.

A clip is written by the stream worker that reads the alert's camera (``streams/clips.py``)
and served by the ingress (``serve_app/api/clips.py``); both meet here and in Redis:

* ``citysight:clip-requests:{camera_id}`` (stream, group ``clips``): a request per alert,
  written by the rules consumer next to the alert (:func:`request_fields`).
* ``citysight:clip:{alert_id}`` (string, TTL ``retention.clip_ttl_s``): the
  :class:`ClipRecord` JSON, ``pending`` first, then ``ready`` with sha256, duration, frames
  and size, or ``failed``/``unavailable`` with a reason. Never a silent nothing.
* ``citysight:clips:expiry`` (zset): alert id → when its files expire; the stream workers
  sweep it and delete the original and every face-blurred copy (:func:`sweep_expired`).

Stores (:class:`ClipStore`) hold the MP4 files by object name ``{alert_id}/original.mp4``
and ``{alert_id}/redacted-{fingerprint}.mp4``: a local directory by default, an
S3-compatible bucket by config (``services.streams.clips.storage``).
"""

from __future__ import annotations

import enum
import logging
import os
import re
import tempfile
import time
from pathlib import Path
from typing import Any, Protocol, cast

import redis
from pydantic import BaseModel, ConfigDict, Field

from citysight import keys
from citysight.choices import CLIP_STORES
from citysight.config import ClipStorage
from citysight.registry import Registry

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}){0,3}$")


class ClipState(enum.StrEnum):
    """Where an alert's clip stands."""

    PENDING = "pending"  # requested; the post-roll is being recorded or the file written
    READY = "ready"
    FAILED = "failed"  # writing it went wrong (the reason says how)
    UNAVAILABLE = "unavailable"  # there is no video to write (camera gone, ring empty...)


class ClipRecord(BaseModel):
    """The clip of one alert, as recorded in ``citysight:clip:{alert_id}``."""

    model_config = ConfigDict(extra="ignore")

    alert_id: str
    camera_id: str
    state: ClipState = ClipState.PENDING
    reason: str = ""
    event_at: float = Field(description="Wall time of the triggering detection (unix s)")
    pre_s: float = 10.0
    post_s: float = 10.0
    requested_at: float = 0.0
    expires_at: float = 0.0
    grace_s: float = 60.0
    object: str = Field(default="", description="Object name of the original in the clip store")
    sha256: str = ""
    size: int = 0
    frames: int = 0
    duration_s: float = 0.0
    start_at: float = Field(default=0.0, description="Wall time of the clip's first frame")
    codec: str = ""
    width: int = 0
    height: int = 0
    write_ms: float = 0.0
    written_at: float = 0.0
    writer: str = ""

    def overdue(self, now: float | None = None) -> bool:
        """A pending request nobody answered well after its post-roll (no worker reads it)."""
        now = time.time() if now is None else now
        return self.state == ClipState.PENDING and now > self.event_at + self.post_s + self.grace_s

    def to_api(self) -> dict[str, Any]:
        """What ``GET /api/alerts/{id}`` and the clip route show (no storage names)."""
        out = self.model_dump(
            mode="json",
            include={
                "state", "reason", "sha256", "size", "frames", "duration_s", "start_at",
                "event_at", "pre_s", "post_s", "codec", "width", "height", "expires_at",
            },
        )  # fmt: skip
        if self.overdue():
            out["state"] = ClipState.UNAVAILABLE.value
            out["reason"] = "no stream worker answered the clip request (camera not being read)"
        return out


def original_name(alert_id: str) -> str:
    """Object name of an alert's original clip."""
    return f"{alert_id}/original.mp4"


def redacted_name(alert_id: str, fingerprint: str) -> str:
    """Object name of a face-blurred copy of an alert's clip."""
    return f"{alert_id}/redacted-{fingerprint}.mp4"


def read_record(r: redis.Redis, alert_id: str) -> ClipRecord | None:
    """The alert's clip record, or ``None`` when none was requested (or it expired)."""
    raw = r.get(keys.clip_key(alert_id))
    if raw is None:
        return None
    return ClipRecord.model_validate_json(raw)


def write_record(r: redis.Redis | Any, rec: ClipRecord, *, nx: bool = False) -> None:
    """Store ``rec`` until its files expire (``r`` may be a pipeline)."""
    ttl = max(60, int(rec.expires_at - time.time()) + 60) if rec.expires_at else 7 * 86400
    r.set(keys.clip_key(rec.alert_id), rec.model_dump_json(), ex=ttl, nx=nx)


def request_fields(rec: ClipRecord) -> dict[str, str]:
    """Fields of a clip request on ``citysight:clip-requests:{camera_id}``."""
    return {"d": rec.model_dump_json()}


# -- stores ----------------------------------------------------------------------------------


class ClipStoreError(RuntimeError):
    """The clip store failed (I/O, network, permissions)."""


class ClipStore(Protocol):
    """Where clip files live: the same objects for every writer and reader."""

    def put_file(self, name: str, path: Path) -> None:
        """Store the file at ``path`` as ``name`` (atomically: readers never see half)."""
        ...

    def get(self, name: str) -> bytes | None:
        """The whole object, or ``None`` when absent."""
        ...

    def size(self, name: str) -> int | None:
        """The object's size in bytes, or ``None`` when absent."""
        ...

    def open_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` inclusive (``KeyError`` when absent)."""
        ...

    def exists(self, name: str) -> bool:
        """Whether the object exists."""
        ...

    def delete(self, name: str) -> bool:
        """Delete one object; whether it existed."""
        ...

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object whose name starts with ``prefix``; how many."""
        ...


def _check(name: str) -> str:
    if not _NAME.match(name) or ".." in name:
        raise ValueError(f"invalid clip object name {name!r}")
    return name


class LocalClipStore:
    """A directory (one node, or a volume every worker and ingress replica mounts).

    Args:
        root: The directory (created on first write).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root / _check(name)

    def put_file(self, name: str, path: Path) -> None:
        """Copy ``path`` in through a temporary file and a rename."""
        dst = self._path(name)
        try:
            dst.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dst.parent, prefix=".part-")
            with os.fdopen(fd, "wb") as out, open(path, "rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            os.replace(tmp, dst)
        except OSError as exc:
            raise ClipStoreError(f"cannot store clip {name}: {exc.strerror or exc}") from None

    def get(self, name: str) -> bytes | None:
        """The whole file, or ``None``."""
        try:
            return self._path(name).read_bytes()
        except FileNotFoundError:
            return None

    def size(self, name: str) -> int | None:
        """The file's size, or ``None``."""
        try:
            return self._path(name).stat().st_size
        except FileNotFoundError:
            return None

    def open_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` inclusive."""
        try:
            with open(self._path(name), "rb") as f:
                f.seek(start)
                return f.read(end - start + 1)
        except FileNotFoundError:
            raise KeyError(name) from None

    def exists(self, name: str) -> bool:
        """Whether the file exists."""
        return self._path(name).is_file()

    def delete(self, name: str) -> bool:
        """Delete one file."""
        try:
            self._path(name).unlink()
            return True
        except FileNotFoundError:
            return False

    def delete_prefix(self, prefix: str) -> int:
        """Delete the files of ``prefix`` (an alert's directory, e.g. ``al_x/``)."""
        d = self.root / _check(prefix.rstrip("/"))
        if not d.is_dir():
            return 0
        n = 0
        for p in d.iterdir():
            p.unlink(missing_ok=True)
            n += 1
        d.rmdir()
        return n


class S3ClipStore:
    """An S3-compatible bucket (MinIO, Ceph RGW, AWS S3) through boto3.

    Args:
        cfg: ``services.streams.clips.storage`` (endpoint, bucket, prefix, credentials named
            by environment variables).

    Raises:
        ClipStoreError: boto3 is not installed.
    """

    def __init__(self, cfg: ClipStorage) -> None:
        try:
            import boto3
        except ImportError:
            raise ClipStoreError(
                "clips.storage.type is s3 but boto3 is not installed (pip install boto3)"
            ) from None
        kw: dict[str, Any] = {"region_name": cfg.region}
        if cfg.endpoint_url:
            kw["endpoint_url"] = cfg.endpoint_url
        if cfg.access_key_env:
            kw["aws_access_key_id"] = os.environ.get(cfg.access_key_env, "")
        if cfg.secret_key_env:
            kw["aws_secret_access_key"] = os.environ.get(cfg.secret_key_env, "")
        self._s3 = boto3.client("s3", **kw)
        self.bucket = cfg.bucket
        self.prefix = cfg.prefix

    def _key(self, name: str) -> str:
        return self.prefix + _check(name)

    def _missing(self, exc: Exception) -> bool:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        return code in ("404", "NoSuchKey", "NotFound")

    def put_file(self, name: str, path: Path) -> None:
        """Upload (an object appears whole or not at all)."""
        key = self._key(name)
        try:
            self._s3.upload_file(str(path), self.bucket, key)
        except Exception as exc:
            raise ClipStoreError(f"cannot upload clip {name}: {type(exc).__name__}") from None

    def get(self, name: str) -> bytes | None:
        """The whole object, or ``None``."""
        key = self._key(name)
        try:
            return bytes(self._s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())
        except Exception as exc:
            if self._missing(exc):
                return None
            raise ClipStoreError(f"cannot read clip {name}: {type(exc).__name__}") from None

    def size(self, name: str) -> int | None:
        """The object's size, or ``None``."""
        key = self._key(name)
        try:
            head = self._s3.head_object(Bucket=self.bucket, Key=key)
        except Exception as exc:
            if self._missing(exc):
                return None
            raise ClipStoreError(f"cannot stat clip {name}: {type(exc).__name__}") from None
        return int(head["ContentLength"])

    def open_range(self, name: str, start: int, end: int) -> bytes:
        """Bytes ``start`` to ``end`` inclusive (an HTTP range GET)."""
        key = self._key(name)
        try:
            obj = self._s3.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={start}-{end}")
        except Exception as exc:
            if self._missing(exc):
                raise KeyError(name) from None
            raise ClipStoreError(f"cannot read clip {name}: {type(exc).__name__}") from None
        return bytes(obj["Body"].read())

    def exists(self, name: str) -> bool:
        """Whether the object exists."""
        return self.size(name) is not None

    def delete(self, name: str) -> bool:
        """Delete one object."""
        existed = self.exists(name)
        self._s3.delete_object(Bucket=self.bucket, Key=self._key(name))
        return existed

    def delete_prefix(self, prefix: str) -> int:
        """Delete every object under ``prefix``."""
        n = 0
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix.rstrip("/")) + "/"
        )
        for page in pages:
            objs = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if objs:
                self._s3.delete_objects(Bucket=self.bucket, Delete={"Objects": objs})
                n += len(objs)
        return n


def _local(cfg: ClipStorage) -> LocalClipStore:
    if not cfg.path:
        raise ClipStoreError(
            "services.streams.clips.storage.path is empty (citysight run/demo set it to "
            "<workdir>/clips; set it when running the services yourself)"
        )
    return LocalClipStore(cfg.path)


STORES: Registry[Any] = Registry(
    "clip store", {"local": _local, "s3": S3ClipStore}, names=CLIP_STORES
)


def open_store(cfg: ClipStorage) -> ClipStore:
    """The clip store ``cfg`` names.

    Raises:
        ClipStoreError: it cannot be opened (no path, boto3 missing...).
    """
    store: ClipStore = STORES.get(cfg.type)(cfg)
    return store


def sweep_expired(
    r: redis.Redis, store: ClipStore, now: float | None = None, limit: int = 200
) -> int:
    """Delete the files of every clip past ``retention.clip_ttl_s``; how many clips.

    Safe to run from several workers at once: a clip is claimed by the ``ZREM`` that removes
    it from ``citysight:clips:expiry``; a failed deletion puts it back for the next sweep.
    """
    now = time.time() if now is None else now
    due = r.zrangebyscore(keys.CLIPS_EXPIRY, "-inf", now, start=0, num=limit)
    done = 0
    for raw in cast("list[bytes | str]", due):
        alert_id = keys.text(raw) or ""
        if not r.zrem(keys.CLIPS_EXPIRY, alert_id):
            continue  # another worker took it
        try:
            store.delete_prefix(f"{alert_id}/")
        except (OSError, ClipStoreError, ValueError) as exc:
            logger.warning(
                "deleting the expired clip of %s failed (%s); retried later", alert_id, exc
            )
            r.zadd(keys.CLIPS_EXPIRY, {alert_id: now})
            continue
        r.delete(keys.clip_key(alert_id))
        done += 1
    return done
