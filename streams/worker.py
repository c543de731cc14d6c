"""A stream worker: the readers of a shard of cameras, their mux and the inference loop.

Decode threads push into the :class:`~streams.mux.FrameMux`; one inference thread takes
batches, calls the injected ``infer`` and publishes each :class:`FrameResult` to
``citysight:detections:{shard}`` (field ``d``, msgpack; never trimmed with MAXLEN). A
health thread applies the no-frame timeouts, publishes state changes to
``citysight:camera-status`` and refreshes the ``citysight:camera-health`` hash.

The health thread also tells whether each camera is *analysed*: a running camera whose
oldest decoded frame has waited ``analysis_timeout_s`` with no frame of that camera analysed
since (inference down, or dropping every frame) becomes ``analysed=False`` with the time
analysis stopped. It becomes ``True`` again only once its frames have been analysed steadily
for ``analysis_timeout_s`` (no wait that long in between): an overloaded node that analyses a
frame now and then stays one outage, one ``analytics_down`` alert, instead of flapping. Each
change is published on the status stream (the rules layer raises and resolves
``analytics_down`` from it) and every status carries ``frames_analysed``.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import ray
import redis

from citysight import keys, redisconn
from citysight.config import CameraConfig, LiveService, StreamsService
from citysight.contracts import CameraState, CameraStatus, FrameBatch, FrameResult, shard_of
from citysight.keys import CAMERA_STATUS_STREAM, detections_stream
from streams.clips import ClipRecorder
from streams.live import NVDEC_UNAVAILABLE, LivePublisher
from streams.mux import FrameMux
from streams.packets import PacketTaps
from streams.reader import CameraReader, ReaderOptions

logger = logging.getLogger(__name__)

SNAPSHOT_TTL_S = 600
SNAPSHOT_MIN_INTERVAL_S = 1.0
HEALTH_REFRESH_S = 2.0
_RING_SHOWN = ("ring_bytes", "ring_seconds", "ring_dropped")  # in each camera's health

InferFn = Callable[[FrameBatch], list[FrameResult]]
InferFactory = Callable[[], InferFn]


@dataclass(slots=True)
class _Analysis:
    """Whether one camera's decoded frames get analysed (see the module docstring)."""

    seen: int = 0  # frames_analysed at the last check
    out_mark: float = 0.0  # the reader's frames_out when a frame was last analysed
    pending_since: float | None = None  # monotonic: first frame decoded after that
    stopped_at: float | None = None  # wall time of pending_since
    analysed: bool | None = None
    resume_since: float | None = None  # monotonic: analysis steady again since (while False)


class StreamWorker:
    """Owns a set of cameras: readers, mux, inference loop and publishing.

    Args:
        cameras: Cameras to read (disabled ones are skipped).
        streams_cfg: Ingest settings (batching, queues, restarts, shards).
        redis_url: Redis for detections, snapshots and camera health.
        infer_factory: Called once inside the worker (so a model loads in the actor
            process); returns ``infer(batch) -> list[FrameResult]``.
        reader_options: Reader tunables; restarts default to ``streams_cfg``'s.
        autostart: Start threads in the constructor (what the Ray actor needs).
        live_cfg: Live-view settings (``services.live``); live view is off when disabled.
    """

    def __init__(
        self,
        cameras: list[CameraConfig],
        streams_cfg: StreamsService,
        redis_url: str,
        infer_factory: InferFactory,
        reader_options: ReaderOptions | None = None,
        autostart: bool = True,
        live_cfg: LiveService | None = None,
    ) -> None:
        self.cfg = streams_cfg
        self.redis = redisconn.connect(redis_url)
        opts = reader_options or ReaderOptions(
            max_restarts=streams_cfg.max_restarts,
            restart_window_s=streams_cfg.restart_window_s,
            decode_deadline_ms=streams_cfg.decode_deadline_ms,
            decoder=streams_cfg.decoder,
        )
        # The network allow-list and the camera secrets are the operator's, always from the
        # streams config (explicit reader options tune timing, never widen the policy).
        self.reader_options = dataclasses.replace(
            opts,
            network_policy=opts.network_policy or streams_cfg.network_policy(),
            camera_secrets=opts.camera_secrets or streams_cfg.camera_secrets,
        )
        self.mux = FrameMux(streams_cfg.queue_frames)
        # Consumers of the cameras' compressed packets (evidence clips, live view).
        self.taps = PacketTaps()
        # Evidence clips: a packet ring per camera and the writer of alert clips.
        self.clips: ClipRecorder | None = None
        if streams_cfg.clips.enabled:
            self.clips = ClipRecorder(streams_cfg.clips, self.redis, self.camera_ids)
            self.taps.add(self.clips)
        live = live_cfg or LiveService()
        self.live: LivePublisher | None = None
        if live.enabled:
            # Its own Redis client: the publisher thread never shares the inference loop's.
            nvdec = streams_cfg.decoder != "pyav"
            self.live = LivePublisher(
                redisconn.connect(redis_url),
                live,
                self.camera_ids,
                unavailable=NVDEC_UNAVAILABLE if nvdec else "",
                camera_of=self._camera_of,
                reader_options=self.reader_options,
            )
            self.taps.add(self.live)
        self._infer_factory = infer_factory
        self._infer: InferFn | None = None
        self._readers: dict[str, CameraReader] = {}
        self._lock = threading.RLock()
        self._status_q: queue.SimpleQueue[CameraStatus] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._last_snap: dict[str, float] = {}
        self._analysed: Counter[str] = Counter()  # camera → frames analysed and published
        self._analysis: dict[str, _Analysis] = {}
        # Deleted cameras: their health entry is dropped and never written again (a stopping
        # reader's last status would otherwise bring it back after the API removed it).
        self._forgotten: set[str] = set()
        self._health_lock = threading.Lock()  # one health write at a time (see forget_camera)
        self.published = 0
        self.batches = 0
        self.infer_errors = 0
        self.publish_errors = 0
        self.loop_errors = 0  # errors the inference and health loops survived
        self.bad_results = 0  # malformed results dropped one by one
        self.infer_ms = 0.0
        self._initial = [c for c in cameras if c.enabled]
        if autostart:
            self.start()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Load the inference function and start the loops and the initial cameras."""
        if self._threads:
            return
        self._infer = self._infer_factory()
        self._stop.clear()
        if self.live is not None:
            self.live.start()
        for target, name in ((self._infer_loop, "infer"), (self._health_loop, "health")):
            t = threading.Thread(target=target, name=f"stream-worker-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        for cam in self._initial:
            self.add_camera(cam)
        if self.clips is not None:
            self.clips.start()

    def stop(self) -> None:
        """Stop every reader and loop and wait for their threads."""
        with self._lock:
            readers = list(self._readers.values())
            self._readers.clear()
        for r in readers:
            r._stop.set()  # signal all first, then join: stops in parallel
        for r in readers:
            r.stop()
            self.mux.remove_camera(r.camera_id)
        self._stop.set()
        if self.live is not None:
            self.live.stop()
            self.live.r.close()
        self.mux.close()
        if self.clips is not None:
            self.clips.stop()
        for t in self._threads:
            t.join(10)
        self._threads.clear()
        close = getattr(self._infer, "close", None)
        if callable(close):  # releases the client's shared memory and connections
            try:
                close()
            except Exception:
                logger.exception("closing the inference client failed")
        self._drain_status()
        self._write_health(list(readers))
        self.redis.close()

    # -- camera management ------------------------------------------------------------

    def add_camera(self, camera: CameraConfig) -> None:
        """Start reading a camera (replaces a reader with the same id)."""
        if not camera.enabled:
            self.remove_camera(camera.id)
            return
        with self._lock:
            old = self._readers.pop(camera.id, None)
            self._forgotten.discard(camera.id)
        if old is not None:
            old.stop()
        self.mux.add_camera(
            camera.id, frozenset(d.value for d in camera.detectors), camera.detector_options()
        )
        reader = CameraReader(
            camera, self.mux.push, self._put_status, self.reader_options, taps=self.taps
        )
        with self._lock:
            self._readers[camera.id] = reader
            prev = self._analysis.get(camera.id)
            # A new reader counts frames from 0; an outage in progress keeps its start time
            # (so it stays one analytics_down alert).
            self._analysis[camera.id] = _Analysis(
                seen=self._analysed[camera.id],
                stopped_at=prev.stopped_at if prev else None,
                analysed=prev.analysed if prev else None,
            )
        reader.start()

    def update_camera(self, camera: CameraConfig) -> None:
        """Apply a changed camera config (restarts that camera's reader only)."""
        self.add_camera(camera)

    def remove_camera(self, camera_id: str) -> bool:
        """Stop reading a camera; returns whether it was read here."""
        with self._lock:
            reader = self._readers.pop(camera_id, None)
            self._analysis.pop(camera_id, None)
        if reader is None:
            return False
        reader.stop()
        self.mux.remove_camera(camera_id)
        if self.clips is not None:
            self.clips.forget(camera_id)
        self._drain_status()
        with self._health_lock:
            if camera_id not in self._forgotten:
                self.redis.hset(keys.CAMERA_HEALTH, camera_id, reader.status().model_dump_json())
        return True

    def forget_camera(self, camera_id: str) -> bool:
        """Stop reading a deleted camera and drop its health entry for good.

        Returns:
            Whether it was read here.
        """
        with self._lock:
            self._forgotten.add(camera_id)
        found = self.remove_camera(camera_id)
        with self._health_lock:  # after any health write already under way
            self.redis.hdel(keys.CAMERA_HEALTH, camera_id)
        return found

    def _camera_of(self, camera_id: str) -> CameraConfig | None:
        """The config of a camera read here (live view reads its sub-stream from it)."""
        with self._lock:
            reader = self._readers.get(camera_id)
        return reader.camera if reader is not None else None

    def camera_ids(self) -> list[str]:
        """Ids of the cameras read by this worker."""
        with self._lock:
            return sorted(self._readers)

    def statuses(self) -> dict[str, CameraStatus]:
        """Current status (state, reason, metrics) of every camera."""
        with self._lock:
            readers = list(self._readers.values())
        return {r.camera_id: self._status_with_drops(r) for r in readers}

    def stats(self) -> dict[str, Any]:
        """Worker and per-camera metrics."""
        return {
            "published": self.published,
            "batches": self.batches,
            "infer_errors": self.infer_errors,
            "publish_errors": self.publish_errors,
            "loop_errors": self.loop_errors,
            "bad_results": self.bad_results,
            "infer_ms": round(self.infer_ms, 3),
            "cameras": {
                cid: {
                    "state": st.state.value,
                    "reason": st.reason,
                    "analysed": st.analysed,
                    **st.metrics,
                }
                for cid, st in self.statuses().items()
            },
            "inference": self._inference_health(),
            "clips": self.clips.stats() if self.clips is not None else None,
            "live": self.live.stats() if self.live is not None else None,
        }

    def _inference_health(self) -> dict[str, Any] | None:
        """The inference client's own health, when the injected ``infer`` exposes it."""
        health = getattr(self._infer, "health", None)
        if not callable(health):
            return None
        try:
            out = health()
        except Exception as exc:  # health must never break stats
            return {"state": "failed", "error": f"{type(exc).__name__}: {exc}"}
        return out if isinstance(out, dict) else None

    def ping(self) -> bool:
        """Liveness probe for the supervisor."""
        return True

    # -- loops --------------------------------------------------------------------------

    def _status_with_drops(self, reader: CameraReader) -> CameraStatus:
        return self._enrich(reader.status())

    def _put_status(self, st: CameraStatus) -> None:
        """Queue a status change for the stream, with what the worker knows added."""
        self._status_q.put(self._enrich(st))

    def _enrich(self, st: CameraStatus) -> CameraStatus:
        """Add what the worker knows to a reader's status: mux drops and analysis."""
        st.metrics["drops"] = float(self.mux.drops(st.camera_id))
        st.metrics["frames_analysed"] = float(self._analysed[st.camera_id])
        if self.clips is not None:  # the clip ring's memory and drops, per camera
            ring = self.clips.ring_stats(st.camera_id)
            st.metrics.update({k: v for k, v in ring.items() if k in _RING_SHOWN})
        a = self._analysis.get(st.camera_id)
        if a is not None and st.analysed is None:
            st.analysed = a.analysed
            st.analysis_stopped_at = a.stopped_at if a.analysed is False else None
        return st

    def _check_analysis(self, reader: CameraReader, now: float) -> None:
        """Update whether ``reader``'s camera is analysed; publish a status on a change."""
        a = self._analysis.get(reader.camera_id)
        if a is None:
            return
        n = self._analysed[reader.camera_id]
        out = reader.metrics()["frames_out"]
        state = a.analysed
        timeout = self.cfg.analysis_timeout_s
        if n != a.seen:
            a.seen, a.out_mark, a.pending_since = n, out, None
            if a.analysed is False:
                # Resumed only after analysis held for as long as it took to call it down.
                a.resume_since = a.resume_since if a.resume_since is not None else now
                state = now - a.resume_since >= timeout
            else:
                state = True
        elif out > a.out_mark:
            if a.pending_since is None:
                a.pending_since = now
                if a.analysed is not False:  # an outage keeps the time it started
                    a.stopped_at = time.time()
            waited = now - a.pending_since
            if waited > timeout and reader.state == CameraState.RUNNING:
                state = False
                a.resume_since = None
        if state == a.analysed:
            return
        if state is False:
            logger.warning(
                "camera %s: no frame analysed for %.0f s while its reader runs",
                reader.camera_id,
                now - (a.pending_since or now),
            )
        elif a.analysed is False:
            logger.info("camera %s: frames are analysed again", reader.camera_id)
        a.analysed = state
        if state:
            a.stopped_at = a.resume_since = None
        self._put_status(reader.status())

    def _infer_loop(self) -> None:
        assert self._infer is not None
        while not self._stop.is_set():
            batch = self.mux.next_batch(self.cfg.max_batch, self.cfg.push_timeout_ms, 0.2)
            if batch is None:
                continue
            t0 = time.perf_counter()
            try:
                results = self._infer(batch)
            except Exception:
                self.infer_errors += 1
                logger.exception("inference failed on a batch of %d frames", len(batch))
                continue
            ms = (time.perf_counter() - t0) * 1e3
            self.infer_ms = ms if not self.batches else 0.9 * self.infer_ms + 0.1 * ms
            self.batches += 1
            try:
                self._analysed.update(self._publish(batch, results))
            except redis.RedisError as exc:
                self.publish_errors += 1
                logger.warning("publishing %d results failed: %s", len(results), exc)
            except Exception:
                # One camera's bad frame or result must not end the loop of every camera.
                self.publish_errors += 1
                self.loop_errors += 1
                logger.exception("publishing %d results failed", len(results))

    def _publish(self, batch: FrameBatch, results: list[FrameResult]) -> list[str]:
        """Publish each result (a malformed one alone is dropped); the cameras published."""
        ids = zip(batch.camera_ids, batch.frame_nos, strict=True)
        frames = dict(zip(ids, batch.frames, strict=True))
        pipe = self.redis.pipeline(transaction=False)
        now = time.time()
        done: list[str] = []
        for res in results:
            try:
                if len(res):
                    frame = frames.get((res.camera_id, res.frame_no))
                    last = self._last_snap.get(res.camera_id, 0.0)
                    if frame is not None and now - last >= SNAPSHOT_MIN_INTERVAL_S:
                        jpeg = _encode_jpeg(frame)
                        if jpeg is not None:
                            key = keys.snapshot_key(res.camera_id, res.frame_no)
                            pipe.set(key, jpeg, ex=SNAPSHOT_TTL_S)
                            res.snapshot_key = key
                            self._last_snap[res.camera_id] = now
                res.published_at = time.time()
                payload = res.to_msgpack()
            except Exception:
                # One camera's malformed result is dropped alone, never its batch-mates.
                self.bad_results += 1
                logger.exception("result of camera %s is malformed; dropped", res.camera_id)
                continue
            # No MAXLEN: trimming can drop entries still pending in a consumer group.
            pipe.xadd(detections_stream(shard_of(res.camera_id, self.cfg.shards)), {"d": payload})
            done.append(res.camera_id)
        pipe.execute()
        self.published += len(done)
        return done

    def _drain_status(self) -> None:
        with self._health_lock:
            pipe = self.redis.pipeline(transaction=False)
            n = 0
            while True:
                try:
                    st = self._status_q.get_nowait()
                except queue.Empty:
                    break
                # A hard cap only: the rules consumers trim by age below what they still need.
                pipe.xadd(
                    CAMERA_STATUS_STREAM,
                    {"d": st.to_msgpack()},
                    maxlen=self.cfg.status_max_entries,
                    approximate=True,
                )
                if st.camera_id not in self._forgotten:
                    pipe.hset(keys.CAMERA_HEALTH, st.camera_id, st.model_dump_json())
                n += 1
            if n:
                try:
                    pipe.execute()
                except redis.RedisError as exc:
                    logger.warning("publishing %d camera status changes failed: %s", n, exc)

    def _write_health(self, readers: list[CameraReader]) -> None:
        with self._health_lock:
            live = [r for r in readers if r.camera_id not in self._forgotten]
            if not live:
                return
            mapping = {r.camera_id: self._status_with_drops(r).model_dump_json() for r in live}
            try:
                self.redis.hset(keys.CAMERA_HEALTH, mapping=mapping)  # type: ignore[arg-type]
            except redis.RedisError as exc:
                logger.warning("camera health refresh failed: %s", exc)

    def _health_loop(self) -> None:
        next_refresh = 0.0
        while not self._stop.wait(0.25):
            with self._lock:
                readers = list(self._readers.values())
            now = time.monotonic()
            for r in readers:
                try:
                    r.check_health(now)
                    self._check_analysis(r, now)
                except Exception:  # one camera's fault must not stop every camera's health
                    self.loop_errors += 1
                    logger.exception("health check of camera %s failed", r.camera_id)
            try:
                self._drain_status()
                if now >= next_refresh:
                    self._write_health(readers)
                    next_refresh = now + HEALTH_REFRESH_S
            except Exception:
                self.loop_errors += 1
                logger.exception("camera status publishing failed")


def _encode_jpeg(frame: npt.NDArray[np.uint8], quality: int = 80) -> bytes | None:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return buf.tobytes() if ok else None


# One Ray actor per worker; threads keep running between method calls.
StreamWorkerActor = ray.remote(num_cpus=0.1, max_restarts=0)(StreamWorker)
