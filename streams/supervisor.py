"""The stream supervisor: assigns cameras to stream-worker actors and keeps them assigned.

Cameras live in the Redis registry (hash ``citysight:cameras``: id -> CameraConfig JSON);
the API announces a change by publishing the camera id on ``citysight:cameras:changed``.
The supervisor applies adds, updates and removes within about a second, assigns each
camera to a worker by consistent hashing of its id, pings the workers, and moves the shard
of a dead worker to the living ones. A dead worker is then respawned under the same name
(bounded: ``max_respawns`` per ``respawn_window_s``, Frigate's watchdog rule) and the
cameras the ring gives back to it move back; past the budget it stays down and the
survivors keep its shard.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from typing import Any

import ray
import redis
from pydantic import ValidationError

from citysight import keys, redisconn
from citysight.config import CameraConfig, LiveService, StreamsService, format_validation_error
from streams.reader import ReaderOptions
from streams.ring import HashRing
from streams.worker import InferFactory, StreamWorkerActor

logger = logging.getLogger(__name__)


class StreamSupervisor:
    """Owns the stream-worker actors and the camera assignment.

    Args:
        streams_cfg: Ingest settings (``workers`` actors are started).
        redis_url: Redis holding the camera registry.
        infer_factory: Passed to every worker (called inside the worker process).
        reader_options: Reader tunables for every worker.
        resync_s: Full registry re-read period (catches missed notifications).
        ping_timeout_s: A worker that does not answer a ping within this is dead.
        autostart: Start in the constructor (what the Ray actor needs).
        max_respawns: Respawns allowed per worker name within ``respawn_window_s``.
        respawn_window_s: Window of ``max_respawns``.
        live_cfg: Live-view settings passed to every worker (default: the defaults).
    """

    def __init__(
        self,
        streams_cfg: StreamsService,
        redis_url: str,
        infer_factory: InferFactory,
        reader_options: ReaderOptions | None = None,
        resync_s: float = 5.0,
        ping_timeout_s: float = 3.0,
        autostart: bool = True,
        max_respawns: int = 3,
        respawn_window_s: float = 300.0,
        live_cfg: LiveService | None = None,
    ) -> None:
        self.cfg = streams_cfg
        self.live_cfg = live_cfg
        self.redis_url = redis_url
        self.redis = redisconn.connect(redis_url)
        self.infer_factory = infer_factory
        self.reader_options = reader_options
        self.resync_s = resync_s
        self.ping_timeout_s = ping_timeout_s
        self.ring = HashRing()
        self.workers: dict[str, Any] = {}
        self.cameras: dict[str, CameraConfig] = {}
        self.owner: dict[str, str] = {}
        self.moves = 0
        self.respawns = 0
        self.max_respawns = max_respawns
        self.respawn_window_s = respawn_window_s
        self._respawned: dict[str, deque[float]] = {}
        self.watch_errors = 0
        self.watch_last_error = ""
        self.watch_last_error_at = 0.0
        self._lock = threading.RLock()
        self._check_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if autostart:
            self.start()

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers, load the registry and watch for changes."""
        for i in range(self.cfg.workers):
            name = f"stream-worker-{i}"
            self.workers[name] = self._spawn()
            self.ring.add(name)
        ray.get([w.ping.remote() for w in self.workers.values()])
        self.sync()
        self.start_watching()

    def start_watching(self) -> None:
        """Start the watch thread (registry changes, resyncs, worker pings)."""
        self._thread = threading.Thread(target=self._watch, name="stream-supervisor", daemon=True)
        self._thread.start()

    def watch_health(self) -> dict[str, Any]:
        """The watch loop's state: ``running``, or ``degraded`` while it fails or is dead."""
        alive = self._thread is not None and self._thread.is_alive()
        recent = bool(self.watch_last_error_at) and time.time() - self.watch_last_error_at < 30
        reason = "" if alive else "watch thread not running"
        if alive and recent:
            reason = f"watch loop failing ({self.watch_last_error})"
        return {
            "state": "degraded" if reason else "running",
            "reason": reason,
            "errors": self.watch_errors,
            "last_error": self.watch_last_error,
        }

    def stop(self) -> None:
        """Stop watching and stop every worker (their readers and threads)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        with self._lock:
            workers = dict(self.workers)
            self.workers.clear()
        refs = [w.stop.remote() for w in workers.values()]
        try:
            ray.get(refs, timeout=30)
        except Exception as exc:
            logger.warning("stopping workers: %s", exc)
        for w in workers.values():
            ray.kill(w)
        self.redis.close()

    def _actor_options(self) -> dict[str, Any]:
        """Placement of every worker: on a node with ``node_resource``, spread over them."""
        if not self.cfg.node_resource:
            return {}
        # a share, not a unit: several workers fit on one node of the role
        return {"resources": {self.cfg.node_resource: 0.01}, "scheduling_strategy": "SPREAD"}

    def _spawn(self) -> Any:
        return StreamWorkerActor.options(**self._actor_options()).remote(
            [],
            self.cfg,
            self.redis_url,
            self.infer_factory,
            self.reader_options,
            live_cfg=self.live_cfg,
        )

    # -- queries ----------------------------------------------------------------------

    def assignments(self) -> dict[str, list[str]]:
        """Worker name -> sorted camera ids."""
        with self._lock:
            out: dict[str, list[str]] = {n: [] for n in self.workers}
            for cid, node in self.owner.items():
                out.setdefault(node, []).append(cid)
            return {k: sorted(v) for k, v in out.items()}

    def worker(self, name: str) -> Any:
        """Actor handle of a worker, ``None`` while it is down (tests kill one)."""
        with self._lock:
            return self.workers.get(name)

    def stats(self) -> dict[str, Any]:
        """Per-worker stats."""
        with self._lock:
            items = list(self.workers.items())
        out: dict[str, Any] = {
            "moves": self.moves,
            "respawns": self.respawns,
            "watch": self.watch_health(),
        }
        for name, w in items:
            try:
                out[name] = ray.get(w.stats.remote(), timeout=self.ping_timeout_s)
            except Exception as exc:
                out[name] = {"error": type(exc).__name__}
        return out

    # -- reconciliation ---------------------------------------------------------------

    def _load(self, camera_id: str | None = None) -> dict[str, CameraConfig | None]:
        raw: dict[Any, Any]
        if camera_id is None:
            raw = self.redis.hgetall(keys.CAMERAS)
        else:
            v = self.redis.hget(keys.CAMERAS, camera_id)
            raw = {camera_id.encode(): v} if v is not None else {}
        out: dict[str, CameraConfig | None] = {}
        for k, v in raw.items():
            cid = k.decode() if isinstance(k, bytes) else str(k)
            try:
                cam = CameraConfig.model_validate_json(v)
            except ValidationError as exc:
                # Paths and messages only: pydantic's own text quotes the input, which can be
                # a URL with a password in it (the reason it was refused).
                logger.warning(
                    "camera %s in the registry is invalid: %s",
                    cid[:64],
                    "; ".join(format_validation_error(exc)),
                )
                continue
            out[cid] = cam if cam.enabled else None
        if camera_id is not None and camera_id not in out:
            out[camera_id] = None
        return out

    def sync(self, camera_id: str | None = None) -> None:
        """Apply the registry (one camera, or all) to the workers."""
        wanted = self._load(camera_id)
        with self._lock:
            if camera_id is None:
                for cid in list(self.cameras):
                    wanted.setdefault(cid, None)
            for cid, cam in wanted.items():
                self._apply(cid, cam)

    def _apply(self, cid: str, cam: CameraConfig | None) -> None:
        current = self.cameras.get(cid)
        if cam is None:
            if current is not None:
                node = self.owner.pop(cid)
                self.cameras.pop(cid)
                # Disabled: stopped, health kept. Deleted: the worker drops its health too.
                deleted = not self.redis.hexists(keys.CAMERAS, cid)
                self._call(node, "forget_camera" if deleted else "remove_camera", cid)
                logger.info("camera %s %s from %s", cid, "deleted" if deleted else "removed", node)
            return
        node = self.ring.node_for(cid)
        old = self.owner.get(cid)
        if current is not None and current == cam and old == node:
            return
        if old is not None and old != node:
            self._call(old, "remove_camera", cid)
        self.cameras[cid] = cam
        self.owner[cid] = node
        self._call(node, "add_camera" if current is None or old != node else "update_camera", cam)
        logger.info("camera %s -> %s", cid, node)

    def _call(self, node: str, method: str, arg: Any) -> None:
        w = self.workers.get(node)
        if w is None:
            return
        try:
            ray.get(getattr(w, method).remote(arg), timeout=15)
        except Exception as exc:
            logger.warning("%s.%s failed: %s", node, method, exc)

    def check_workers(self) -> list[str]:
        """Ping the workers; move the cameras of dead ones, then respawn them (bounded).

        Returns:
            The workers found dead.
        """
        # The watch thread and callers (an actor method) may check at once: one at a time,
        # or a dead worker would be respawned twice.
        with self._check_lock:
            return self._check_workers()

    def _check_workers(self) -> list[str]:
        with self._lock:
            items = list(self.workers.items())
        refs = {name: w.ping.remote() for name, w in items}
        dead: list[str] = []
        for name, ref in refs.items():
            try:
                ray.get(ref, timeout=self.ping_timeout_s)
            except Exception as exc:
                logger.warning("stream worker %s is dead (%s): moving its cameras", name, exc)
                dead.append(name)
        if not dead:
            return []
        with self._lock:
            for name in dead:
                self.workers.pop(name, None)
                self.ring.remove(name)
            if self.workers:
                # Survivors take the shard at once; a respawn takes seconds.
                self._rebalance(dead)
            else:
                logger.error("no stream workers left: %d cameras unassigned", len(self.owner))
        self._respawn(dead)
        return dead

    def _respawn_allowed(self, name: str) -> bool:
        now = time.monotonic()
        times = self._respawned.setdefault(name, deque())
        while times and now - times[0] > self.respawn_window_s:
            times.popleft()
        return len(times) < self.max_respawns

    def _respawn(self, names: list[str]) -> None:
        """Start a new actor under each dead worker's name and give its shard back."""
        fresh: dict[str, Any] = {}
        for name in names:
            if self._stop.is_set():
                return
            if not self._respawn_allowed(name):
                logger.error(
                    "stream worker %s: %d respawns within %.0f s; leaving it down",
                    name,
                    self.max_respawns,
                    self.respawn_window_s,
                )
                continue
            self._respawned[name].append(time.monotonic())
            actor = self._spawn()
            try:
                # Outside the lock: an actor start takes seconds and queries must not wait.
                ray.get(actor.ping.remote(), timeout=60)
            except Exception as exc:
                logger.error("respawning stream worker %s failed: %s", name, exc)
                ray.kill(actor)
                continue
            fresh[name] = actor
        if not fresh:
            return
        with self._lock:
            for name, actor in fresh.items():
                self.workers[name] = actor
                self.ring.add(name)
                self.respawns += 1
                logger.info("stream worker %s respawned", name)
            self._rebalance(list(fresh))

    def _rebalance(self, changed: list[str]) -> None:
        """Move every camera whose ring owner differs from its current (or a dead) owner.

        Args:
            changed: Worker names that died or came back (their cameras must be re-added
                even when the owner name is unchanged).
        """
        gone = set(changed)
        for cid, cam in list(self.cameras.items()):
            old = self.owner.get(cid)
            node = self.ring.node_for(cid)
            if node == old and old not in gone:
                continue
            if old is not None and old != node and old in self.workers and old not in gone:
                self._call(old, "remove_camera", cid)
            self.owner[cid] = node
            self._call(node, "add_camera", cam)
            self.moves += 1

    def _watch(self) -> None:
        """Apply registry changes, resync, ping workers, until stopped.

        Survives any error: it is logged, counted (:meth:`watch_health`, in ``/health``
        under ``streams``), and the loop backs off and goes on with a fresh subscription.
        """
        backoff = 0.5
        pubsub: Any = None
        next_resync = time.monotonic() + self.resync_s
        next_ping = time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                try:
                    if pubsub is None:
                        pubsub = self.redis.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
                        pubsub.subscribe(keys.CAMERAS_CHANGED)
                    msg = pubsub.get_message(timeout=0.2)
                    if msg and msg.get("type") == "message":
                        data = msg["data"]
                        self.sync(data.decode() if isinstance(data, bytes) else str(data))
                    now = time.monotonic()
                    if now >= next_resync:
                        self.sync()
                        next_resync = now + self.resync_s
                    if now >= next_ping:
                        self.check_workers()
                        next_ping = now + 1.0
                    backoff = 0.5
                except Exception as exc:  # one bad message or a Redis outage: never the end
                    self.watch_errors += 1
                    self.watch_last_error = type(exc).__name__
                    self.watch_last_error_at = time.time()
                    if isinstance(exc, redis.RedisError):
                        logger.warning("camera registry watch: %s", exc)
                        if pubsub is not None:
                            with contextlib.suppress(Exception):
                                pubsub.close()
                            pubsub = None
                    else:
                        logger.exception("camera registry watch failed; going on")
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, 5.0)
        finally:
            if pubsub is not None:
                pubsub.close()


# The supervisor owns its workers (Ray fate-sharing: they die with it), so a restarted
# supervisor starts clean workers and reloads the camera registry from Redis.
StreamSupervisorActor = ray.remote(num_cpus=0, max_restarts=0)(StreamSupervisor)
