"""The rules consumer: detections streams → rules engine → alerts in Redis → ``XACK``.

Durability (docs/architecture.md, "Hard rules"):

* Group ``rules`` on every owned ``citysight:detections:{shard}`` (and on
  ``citysight:camera-status``). Entries are acknowledged only after the alerts, plate reads
  and cooldowns they produced are written; alert ids are deterministic and saving is
  ``SET NX``, so a redelivered entry never duplicates an alert.
* On start the consumer reads its *own* pending entries first (id ``0``), then new ones
  (``>``) in batches. Entries of dead consumers idle longer than ``claim_min_idle_ms`` are
  taken over with ``XAUTOCLAIM``, on the owned streams and (``claim_peer_shards``) on the
  other shard groups' streams too: when a consumer's host dies, a living consumer of
  another group handles its delivered-but-unacknowledged detections without waiting for
  the dead one's restart (cooldowns reloaded from Redis first, so the takeover cannot alert
  twice within a cooldown; new entries of those shards still wait for their owner).
* Poison entries are isolated per entry, whatever they raise: an entry that fails to decode
  (any exception: a malformed entry is that entry's fault) or whose frame makes the
  evaluation raise is retried while the batch's other entries are written and
  acknowledged; once its delivery count (from ``XPENDING``) reaches ``max_deliveries`` it is
  written to ``citysight:detections:dead`` and only then acknowledged. Camera-status
  entries are handled the same way.
* A failed *write* is never the entries' fault when Redis raised it (unreachable, an error
  reply, out of memory): the batch is kept (see below) and nothing is dead-lettered. An
  exception raised in our own code while preparing a write (a value Redis cannot take) is
  isolated per alert / plate read, which is then dead-lettered with its data.
* The consumer publishes the truth about itself in ``citysight:components`` (``rules``):
  ``running``; ``degraded`` with a ``reason`` (a failing step, a write backlog, entries being
  retried, lag above ``lag_degraded_s``); ``stuck`` when entries are outstanding but none was
  acknowledged for ``stuck_after_s``; with ``processed``, ``lag_ms`` (age of the oldest entry
  not yet acknowledged), ``dead``, ``pending`` and ``backlog`` (not yet delivered).
* Streams are trimmed with ``XTRIM MINID`` below the oldest pending entry and the oldest
  last-delivered id of every group, and never by ``MAXLEN``.

Shard ownership and restarts: each consumer owns a set of shards (a camera always maps to
one shard, so all state of a camera lives in one consumer). Rule state is in memory; a
restarted consumer rebuilds it by *replaying* the last ``replay_s`` seconds of each owned
stream (acknowledged entries are still there: trimming keeps ``detections_max_age_s``)
through the engine before reading its pending entries. Alerts produced by the replay are
saved idempotently (same ids), pending entries already replayed are acknowledged without a
second evaluation, and cooldowns are reloaded from ``citysight:rules:cooldown``, so an
ongoing condition does not alert again after a restart. State older than ``replay_s``
(e.g. a dwell that started earlier) restarts: such an alert may come later than without
the restart, never twice within its cooldown.

Writes and Redis outages: evaluation advances in-memory rule state, so a batch whose write
fails (Redis unreachable) keeps its output in a write backlog that is retried, in order,
before anything else is written; its entries stay pending meanwhile. Alerts are thus never
dropped by an outage, and the retry is idempotent (same alert ids, same incidents).

Cross-camera incidents are assigned in Redis just before the alerts are saved
(:class:`serve_app.rules.incidents.IncidentIndex`): global across consumers, one round trip
per batch that raised alerts.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any, cast

import redis
from redis.typing import EncodableT, FieldT, KeyT, StreamIdT

from citysight import keys, redisconn
from citysight.config import CameraConfig, CitysightConfig
from citysight.contracts import (
    Alert,
    AlertKind,
    CameraState,
    CameraStatus,
    FrameResult,
    make_alert_id,
    shard_of,
)
from citysight.keys import CAMERA_STATUS_STREAM, detections_stream
from citysight.metrics import publish_snapshot
from serve_app.rules.analytics import AnalyticsWatch
from serve_app.rules.engine import (
    OFFLINE_COOLDOWN_S,
    OFFLINE_RULE_ID,
    EngineOutput,
    RulesEngine,
    cooldown_key,
)
from serve_app.rules.incidents import IncidentIndex
from serve_app.rules.recheck import Recheck
from serve_app.store.alerts import AlertStore
from serve_app.store.audit import AuditLog
from serve_app.store.cameras import CameraRegistry
from serve_app.store.clips import request_clips
from serve_app.store.evidence import EvidenceStore
from serve_app.store.feed import publish_feed, trim_feed
from serve_app.store.plates import PlateReads

logger = logging.getLogger(__name__)

Entry = tuple[str, str, dict[bytes, bytes] | None]  # (stream, id, fields)
# Replies of the binary (no ``decode_responses``) RESP2 client used here.
_Rows = list[tuple[bytes, dict[bytes, bytes] | None]]  # XREADGROUP: None for deleted entries
_ReadReply = list[tuple[bytes, _Rows]]  # XREADGROUP: [stream, rows] per stream
_RangeRows = list[tuple[bytes, dict[bytes, bytes]]]  # XRANGE


def _sid(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


class DetectionsConsumer:
    """Consumes detections of some shards, evaluates rules and writes alerts.

    Args:
        redis_url: Redis URL.
        cfg: Configuration (cameras, rules, routing, retention).
        consumer_name: Name in the consumer group. Keep it stable per shard set (e.g.
            ``rules-0-1``) so a restarted consumer finds its own pending entries at once.
        shards: Shards this consumer owns.
        count: Entries per read.
        block_ms: How long a read waits for new entries.
        claim_min_idle_ms: Pending entries idle this long are claimed from other consumers.
        claim_interval_s: How often to run ``XAUTOCLAIM``.
        claim_peer_shards: Also claim idle entries of the other shard groups' streams (a
            dead peer's pending detections; see the module docstring).
        max_deliveries: Deliveries after which a failing entry is dead-lettered.
        retry_interval_s: Wait before a failed entry is read again.
        stuck_after_s: Outstanding entries and no acknowledgement for this long: ``stuck``.
        lag_degraded_s: Oldest unacknowledged entry older than this: ``degraded``.
        replay_s: Seconds of stream history replayed at start to rebuild rule state.
        escalate_interval_s: How often to run SLA escalation.
        maintenance_interval_s: How often to trim streams and prune indexes.
        feed_max_age_s: Age of feed messages kept (resume window of WebSocket clients).
        recheck_interval_s: How often the camera re-check reloads its watches and verifies
            those whose camera looked long enough (``serve_app/rules/recheck.py``).
        engine_kwargs: Extra arguments of :class:`RulesEngine`.
        on_batch: Optional callback ``(frames, new_alerts, done_time)`` after each write
            (benchmarks use it for latency).
    """

    def __init__(
        self,
        redis_url: str,
        cfg: CitysightConfig,
        consumer_name: str,
        shards: Iterable[int],
        *,
        count: int = 500,
        block_ms: int = 200,
        claim_min_idle_ms: int = 30_000,
        claim_interval_s: float = 5.0,
        claim_peer_shards: bool = True,
        max_deliveries: int = 5,
        retry_interval_s: float = 1.0,
        stuck_after_s: float = 30.0,
        lag_degraded_s: float = 15.0,
        replay_s: float = 15.0,
        escalate_interval_s: float = 5.0,
        maintenance_interval_s: float = 10.0,
        feed_max_age_s: float = 86_400.0,
        recheck_interval_s: float = 1.0,
        engine_kwargs: dict[str, Any] | None = None,
        on_batch: Callable[[list[FrameResult], list[Alert], float], None] | None = None,
    ) -> None:
        self.r = redisconn.connect(redis_url, health_check_interval=30, protocol=2)
        self.cfg = cfg
        self.name = consumer_name
        self.shards = sorted(set(shards))
        self.streams = [detections_stream(s) for s in self.shards]
        self.count = count
        self.block_ms = block_ms
        self.claim_min_idle_ms = claim_min_idle_ms
        self.claim_interval_s = claim_interval_s
        self.peer_streams = (
            [
                detections_stream(s)
                for s in range(cfg.services.streams.shards)
                if s not in self.shards
            ]
            if claim_peer_shards
            else []
        )
        # peer streams where this consumer holds claimed entries (read with its own pending)
        self._peer_held: set[str] = set()
        self.max_deliveries = max_deliveries
        self.retry_interval_s = retry_interval_s
        self.stuck_after_s = stuck_after_s
        self.lag_degraded_s = lag_degraded_s
        self.replay_s = replay_s
        self.escalate_interval_s = escalate_interval_s
        self.maintenance_interval_s = maintenance_interval_s
        self.feed_max_age_s = feed_max_age_s
        self.recheck_interval_s = recheck_interval_s
        self.on_batch = on_batch
        # The consumers whose statuses make up the ``rules`` component: every consumer of
        # the configured shard groups when this is one of them, else this one alone.
        peers = [
            "rules-" + "-".join(str(s) for s in sorted(g))
            for g in cfg.services.rules_shard_groups()
        ]
        self.peers = peers if consumer_name in peers else [consumer_name]
        self.engine = RulesEngine(cfg, **(engine_kwargs or {}))
        self.incidents = IncidentIndex(self.r, cfg.incidents)
        self.alerts = AlertStore(self.r, cfg)
        self.evidence = EvidenceStore(self.r, cfg)
        self.plates = PlateReads(self.r, cfg)
        self.cameras = CameraRegistry(self.r)
        self.analytics = AnalyticsWatch(
            self.r, self.alerts, cfg, self._camera_config, self.engine.camera_place
        )
        self.recheck = Recheck(
            self.r, cfg, self.alerts, self.evidence, self._owns_camera, primary=0 in self.shards
        )
        self.stats: dict[str, Any] = {
            "processed": 0, "alerts": 0, "plate_reads": 0, "dead": 0, "failures": 0,
            "claimed": 0, "claimed_peer": 0, "replayed": 0, "escalated": 0, "trimmed": 0,
            "lag_ms": 0.0, "batch_lag_ms": 0.0, "pending": 0, "backlog": 0, "resolved": 0,
        }  # fmt: skip
        self.state = "starting"  # lifecycle; the published state is health() (the truth)
        self.last_error = ""  # the last error seen (kept for diagnostics)
        self.error = ""  # the error of the last step; empty once a step succeeds
        self.reason = ""
        self._last_progress = time.monotonic()  # last acknowledgement (or nothing to do)
        # (stream, id) -> (deliveries, why) of entries that failed and wait for a retry
        self._failing: dict[tuple[str, str], tuple[int, str]] = {}
        self._replayed: set[tuple[str, str]] = set()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_due = True
        self._retry_at = 0.0
        self._replay_done = False
        self._due: dict[str, float] = {}
        self._pubsub: Any = None
        # Outputs evaluated but not yet written (a write failed); retried first, in order.
        # It cannot grow while Redis is down: nothing new is read then.
        self._unwritten: deque[EngineOutput] = deque()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`run` in a daemon thread."""
        self._thread = threading.Thread(target=self.run, name=f"rules-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the loop to stop and wait for it."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._publish_status("stopping" if self.alive() else "stopped")

    def alive(self) -> bool:
        """Whether the consume thread is running."""
        return self._thread is not None and self._thread.is_alive()

    def reconfigure(self, cfg: CitysightConfig) -> None:
        """Hot-reload rules, hotlist, routing (state of unchanged rules is kept)."""
        with self._lock:
            self.cfg = cfg
            self.engine.reconfigure(cfg)
            self.alerts.cfg = self.evidence.cfg = self.plates.cfg = cfg
            self.incidents.cfg = cfg.incidents
            self.analytics.cfg = cfg
            self.recheck.cfg = cfg

    def run(self) -> None:
        """Set up, replay, then consume until :meth:`stop` (errors are retried)."""
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self.state in ("starting", "degraded"):
                    self.setup()
                    self._publish_status()
                self.step()
                self.error = ""
                backoff = 0.2
            except Exception as exc:  # keep consuming: Redis restarts, transient errors
                self.state = "degraded"
                self.error = self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("rules consumer %s: step failed; retrying", self.name)
                if self._every("status", 1.0):  # a consumer failing every step says so
                    self._publish_status()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                self._pending_due = True

    def setup(self) -> None:
        """Create groups, load cameras and cooldowns, replay recent history."""
        for s in [*self.streams, CAMERA_STATUS_STREAM]:
            try:
                self.r.xgroup_create(s, keys.RULES_GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        self._load_cameras()
        if self._pubsub is None:
            self._pubsub = self.r.pubsub(  # type: ignore[no-untyped-call]  # redis: unannotated
                ignore_subscribe_messages=True
            )
            self._pubsub.subscribe(keys.CAMERAS_CHANGED)
        cooldowns = {_sid(k): float(v) for k, v in self.r.hgetall(keys.RULES_COOLDOWN).items()}
        with self._lock:
            self.engine.restore_cooldowns(cooldowns)
        if not self._replay_done:  # once: replaying into live state would count frames twice
            with self._lock:  # the watches first, so replayed sightings can reopen alerts
                self.recheck.tick(caught_up=False)
            self.replay()
            self._replay_done = True
        self._pending_due = True
        self.state = "running"

    def _camera_config(self, cid: str) -> CameraConfig | None:
        """A camera's config: the runtime registry first, then the configured cameras."""
        try:
            cam = self.cameras.get(cid)
        except Exception:  # a malformed registry entry: fall back to the config
            logger.warning("camera %s: registry entry unreadable", cid)
            cam = None
        return cam or self.cfg.camera(cid)

    def _owns_camera(self, cid: str) -> bool:
        """Whether this consumer evaluates the camera (frames seen, or its shard is ours)."""
        if cid in self.recheck.seen:
            return True
        return shard_of(cid, self.cfg.services.streams.shards) in self.shards

    def _load_cameras(self) -> None:
        try:
            cams: list[CameraConfig] = self.cameras.list()
        except Exception:
            logger.exception("camera registry unreadable; using configured cameras")
            return
        with self._lock:
            self.engine.set_cameras(cams)

    # -- the loop --------------------------------------------------------------------------

    def _every(self, name: str, interval: float) -> bool:
        now = time.monotonic()
        if now >= self._due.get(name, 0.0):
            self._due[name] = now + interval
            return True
        return False

    def step(self) -> int:
        """One iteration: pending (when due), claims (when due), new entries, upkeep.

        Returns:
            Number of detection entries handled.
        """
        n = 0
        if self._pending_due or (self._retry_at and time.monotonic() >= self._retry_at):
            self._pending_due = False
            self._retry_at = 0.0
            n += self.read_pending()
        if self._every("claim", self.claim_interval_s):
            n += self.claim()
        n += self.read_new()
        if self._pubsub is not None and self._pubsub.get_message(timeout=0) is not None:
            while self._pubsub.get_message(timeout=0) is not None:
                pass
            self._load_cameras()
        if self._every("escalate", self.escalate_interval_s):
            self.stats["escalated"] += len(self.alerts.escalate_overdue())
        if self._every("maintain", self.maintenance_interval_s):
            self.maintain()
        if self._every("recheck", self.recheck_interval_s):
            with self._lock:
                # A full batch read means more may wait: no camera is called silent then.
                self.recheck.tick(caught_up=n < self.count)
        if self._every("status", 1.0):
            self._publish_status()
        return n

    def read_pending(self) -> int:
        """Process this consumer's own pending entries (delivered before, not acknowledged).

        Covers the owned detection streams, the peer streams it claimed entries of, and the
        camera-status stream (whose entries are retried the same way when their processing
        failed).
        """
        n = 0
        for s in [*self.streams, *sorted(self._peer_held), CAMERA_STATUS_STREAM]:
            last = "0"
            found = False
            while not self._stop.is_set():
                reply = cast(
                    _ReadReply,
                    self.r.xreadgroup(keys.RULES_GROUP, self.name, {s: last}, count=self.count),
                )
                entries = [(s, _sid(i), f) for _, rows in reply for i, f in rows]
                if not entries:
                    break
                found = True
                if s == CAMERA_STATUS_STREAM:
                    self.process_status(entries)
                elif s in self._peer_held:
                    n += self._process_peer(entries)
                else:
                    n += self.process(entries, redelivered=True)
                last = entries[-1][1]
            if not found:
                self._peer_held.discard(s)
        return n

    def read_new(self) -> int:
        """Block up to ``block_ms`` for new entries of every owned stream and camera status."""
        streams: dict[KeyT, StreamIdT] = {s: ">" for s in self.streams}
        streams[CAMERA_STATUS_STREAM] = ">"
        reply = cast(
            "_ReadReply | None",
            self.r.xreadgroup(
                keys.RULES_GROUP, self.name, streams, count=self.count, block=self.block_ms
            ),
        )
        n = 0
        for stream, rows in reply or []:
            s = _sid(stream)
            entries = [(s, _sid(i), f) for i, f in rows]
            if s == CAMERA_STATUS_STREAM:
                self.process_status(entries)
            else:
                n += self.process(entries, redelivered=False)
        return n

    def claim(self) -> int:
        """Take over entries of consumers that stopped (idle past ``claim_min_idle_ms``).

        Owned streams, the camera-status stream and, with ``claim_peer_shards``, the other
        shard groups' streams (see :meth:`_process_peer`).
        """
        n = 0
        for s in [*self.streams, CAMERA_STATUS_STREAM, *self.peer_streams]:
            cursor = "0-0"
            for _ in range(100):  # bounded: a huge backlog is taken over across iterations
                try:
                    res = self.r.xautoclaim(
                        s,
                        keys.RULES_GROUP,
                        self.name,
                        self.claim_min_idle_ms,
                        start_id=cursor,
                        count=self.count,
                    )
                except redis.ResponseError as exc:
                    if s in self.peer_streams and "NOGROUP" in str(exc):
                        break  # that group's owner never started: nothing to take over
                    raise
                cursor = _sid(res[0])
                entries = [(s, _sid(i), f) for i, f in res[1]]
                if entries:
                    self.stats["claimed"] += len(entries)
                    logger.info("claimed %d idle entries of %s", len(entries), s)
                    if s == CAMERA_STATUS_STREAM:
                        self.process_status(entries)
                    elif s in self.peer_streams:
                        self._peer_held.add(s)
                        n += self._process_peer(entries)
                    else:
                        n += self.process(entries, redelivered=True)
                if cursor == "0-0":
                    break
        return n

    def _process_peer(self, entries: list[Entry]) -> int:
        """Process entries claimed from another shard group's consumer (it stopped).

        The cooldowns are reloaded from Redis first (the owner persisted its own), so the
        takeover cannot alert twice within a cooldown; cameras seen only here are not added
        to this consumer's re-check ownership (their owner's restart takes them back).
        """
        cooldowns = {_sid(k): float(v) for k, v in self.r.hgetall(keys.RULES_COOLDOWN).items()}
        with self._lock:
            self.engine.restore_cooldowns(cooldowns)
            before = set(self.recheck.seen)
        n = self.process(entries, redelivered=True)
        with self._lock:
            nshards = self.cfg.services.streams.shards
            for cid in set(self.recheck.seen) - before:
                if shard_of(cid, nshards) not in self.shards:
                    del self.recheck.seen[cid]
        self.stats["claimed_peer"] += len(entries)
        return n

    # -- processing ------------------------------------------------------------------------

    def process(self, entries: list[Entry], *, redelivered: bool) -> int:
        """Evaluate entries, write what they produced, then acknowledge them.

        A bad entry (undecodable, or its frame makes the rules raise) is set aside for a
        retry, then dead-lettered; the others are written and acknowledged. A write that
        Redis refuses raises, acknowledging nothing: the batch stays pending.
        """
        ack: list[tuple[str, str]] = []
        frames: list[FrameResult] = []
        refs: list[Entry] = []
        bad: list[tuple[Entry, str]] = []
        for e in entries:
            s, eid, fields = e
            if not fields or (s, eid) in self._replayed:
                ack.append((s, eid))  # deleted from the stream, or handled by the replay
                self._replayed.discard((s, eid))
                continue
            try:
                frames.append(FrameResult.from_msgpack(fields[b"d"]))
                refs.append(e)
            except Exception as exc:  # whatever it raises, a malformed entry is its own fault
                bad.append((e, f"decode: {_describe(exc)}"))
        out = self._evaluate(frames)
        failed = set(out.failed)
        for i in sorted(failed):
            bad.append((refs[i], "evaluation raised (see the consumer log)"))
        self._write(out)
        ack.extend((e[0], e[1]) for i, e in enumerate(refs) if i not in failed)
        if bad:
            ack.extend(self._handle_failures(bad))
        self._ack(ack)
        now = time.time()
        self.stats["processed"] += len(ack)
        if frames:
            last = frames[-1]
            pub = last.published_at or keys.stream_id(refs[-1][1])[0] / 1000
            self.stats["batch_lag_ms"] = round(max(0.0, now - pub) * 1000, 1)
        if self.on_batch is not None:
            self.on_batch(frames, out.alerts, now)
        return len(entries)

    def _evaluate(self, frames: list[FrameResult]) -> EngineOutput:
        """Evaluate a batch; an engine error outside its per-camera guard is isolated per frame.

        The engine already retries a failing camera frame by frame; this covers whatever it
        raises outside that guard, so one frame can never block the batch.
        """
        with self._lock:
            try:
                return self.engine.evaluate(frames)
            except Exception:
                logger.exception("rules failed on %d frames; frame by frame", len(frames))
                out = EngineOutput(frames=len(frames))
                for i, f in enumerate(frames):
                    try:
                        one = self.engine.evaluate([f])
                    except Exception:
                        logger.exception("rules failed on frame %s of %s", f.frame_no, f.camera_id)
                        out.failed.append(i)
                        continue
                    out.alerts += one.alerts
                    out.plate_reads += one.plate_reads
                    out.snapshots.update(one.snapshots)
                    out.cooldowns.update(one.cooldowns)
                    out.sightings.update(one.sightings)
                    for cid, t in one.seen.items():
                        out.seen[cid] = max(t, out.seen.get(cid, 0.0))
                    if one.failed:
                        out.failed.append(i)
                return out

    def _write(self, out: EngineOutput) -> None:
        """Write ``out`` after any backlog; on failure it stays queued and this raises.

        With ``services.redis.alert_replicas`` set, an output with alerts counts as written
        only once ``WAIT`` says that many replicas hold it; fewer raises
        :class:`NotReplicated` (the detections stay pending and the output is written again:
        alert writes are idempotent per alert id).
        """
        self._unwritten.append(out)
        while self._unwritten:
            first = self._unwritten[0]
            try:
                self._write_one(first, retry=first is not out)
            except Exception as exc:
                if _is_redis_side(exc):
                    raise  # infrastructure: keep the output (and its entries pending)
                # Our own code could not prepare a value for Redis: the data's fault. Write
                # item by item and dead-letter what cannot be written (never drop it).
                logger.exception("writing a batch output failed; writing it item by item")
                self._write_isolated(first)
            if first.alerts:
                self._wait_replicas(len(first.alerts))
            self._unwritten.popleft()

    def _wait_replicas(self, alerts: int) -> None:
        """``WAIT`` for ``alert_replicas`` replicas; raises :class:`NotReplicated` on fewer."""
        want = self.cfg.services.redis.alert_replicas
        if want <= 0:
            return
        timeout_ms = self.cfg.services.redis.alert_wait_ms
        t0 = time.monotonic()
        got = int(self.r.wait(want, timeout_ms))
        self.stats["wait_ms"] = round((time.monotonic() - t0) * 1000, 2)
        if got < want:
            self.stats["not_replicated"] = self.stats.get("not_replicated", 0) + 1
            raise NotReplicated(
                f"{alerts} alert(s) reached {got} of {want} replica(s) within {timeout_ms} ms"
            )

    def _write_one(self, out: EngineOutput, *, retry: bool) -> None:
        # Incidents first: the saved alert carries its incident id. A retry keeps the ids
        # assigned before (the script's replies are idempotent per alert id anyway).
        out.alerts = self.incidents.assign(out.alerts)
        new = self.alerts.save_new(out.alerts)
        self.analytics.saved(out.alerts)  # idempotent; only analytics_down alerts
        self.alerts.track_system_alerts(out.alerts)  # idempotent; only system kinds
        # A retried output's alerts may have been saved before the failure without their
        # evidence: copy it for all of them (idempotent), not only the new ones.
        shown = out.alerts if retry else new
        if shown:
            self.evidence.copy_snapshots(
                {a.id: out.snapshots[a.id] for a in shown if a.id in out.snapshots}
            )
            # An evidence clip per alert, written by the worker reading its camera
            # (idempotent: a retry keeps a clip already written).
            request_clips(self.r, self.cfg, shown)
        if new:
            self.stats["alerts"] += len(new)
        if out.plate_reads:
            self.plates.add_many(out.plate_reads)
            self.stats["plate_reads"] += len(out.plate_reads)
        if out.cooldowns:
            self.r.hset(
                keys.RULES_COOLDOWN, mapping=cast("dict[FieldT, EncodableT]", out.cooldowns)
            )
        self.recheck.observe(out)

    def _write_isolated(self, out: EngineOutput) -> None:
        """Write ``out`` one alert / plate read at a time; dead-letter the unwritable ones.

        Raises:
            redis.RedisError: Redis itself failed (the caller keeps ``out`` for a retry).
        """
        unwritable: list[tuple[str, str, str]] = []  # (kind, id, data)
        for a in out.alerts:
            one = EngineOutput(alerts=[a], snapshots={a.id: out.snapshots[a.id]}
                               if a.id in out.snapshots else {})  # fmt: skip
            try:
                self._write_one(one, retry=True)
            except Exception as exc:
                if _is_redis_side(exc):
                    raise
                unwritable.append(("alert", a.id, f"{_safe_repr(a)} ({_describe(exc)})"))
        for read in out.plate_reads:
            try:
                self._write_one(EngineOutput(plate_reads=[read]), retry=True)
            except Exception as exc:
                if _is_redis_side(exc):
                    raise
                unwritable.append(("plate_read", str(read[0]), f"{read!r} ({_describe(exc)})"))
        if out.cooldowns:
            self._write_one(EngineOutput(cooldowns=out.cooldowns), retry=True)
        for kind, ident, data in unwritable:
            self.r.xadd(
                keys.DEAD_LETTER_STREAM,
                {"src": f"rules-output:{kind}", "id": ident, "d": data[:65536],
                 "error": "unwritable output", "deliveries": 1},
                maxlen=self.cfg.retention.dead_letter_max_entries, approximate=True,
            )  # fmt: skip
            self.stats["dead"] += 1
            logger.error("%s %s could not be written; dead-lettered: %s", kind, ident, data)

    def _handle_failures(self, bad: list[tuple[Entry, str]]) -> list[tuple[str, str]]:
        """Dead-letter entries delivered ``max_deliveries`` times; return those to ack."""
        done: list[tuple[str, str]] = []
        self.stats["failures"] += len(bad)
        for (s, eid, fields), why in bad:
            info = self.r.xpending_range(s, keys.RULES_GROUP, min=eid, max=eid, count=1)
            deliveries = int(info[0]["times_delivered"]) if info else self.max_deliveries
            if deliveries < self.max_deliveries:
                self._failing[(s, eid)] = (deliveries, why)
                logger.warning(
                    "entry %s of %s failed (%s), delivery %d of %d; will retry",
                    eid,
                    s,
                    why,
                    deliveries,
                    self.max_deliveries,
                )
                self._retry_at = time.monotonic() + self.retry_interval_s
                continue
            data = (fields or {}).get(b"d", b"")
            self.r.xadd(
                keys.DEAD_LETTER_STREAM,
                {"src": s, "id": eid, "d": data, "error": why[:2000], "deliveries": deliveries},
                # Nobody consumes it: a plain cap loses only the oldest dead letters.
                maxlen=self.cfg.retention.dead_letter_max_entries,
                approximate=True,
            )
            logger.error(
                "entry %s of %s dead-lettered after %d deliveries: %s", eid, s, deliveries, why
            )
            self.stats["dead"] += 1
            self.stats["last_dead_at"] = time.time()
            self.stats["last_dead_error"] = why[:200]
            done.append((s, eid))
        if len(done) < len(bad):
            self._due["claim"] = 0.0
        return done

    def _ack(self, ack: list[tuple[str, str]]) -> None:
        if not ack:
            return
        by: dict[str, list[str]] = {}
        for s, eid in ack:
            by.setdefault(s, []).append(eid)
            self._failing.pop((s, eid), None)
        pipe = self.r.pipeline(transaction=False)
        for s, ids in by.items():
            pipe.xack(s, keys.RULES_GROUP, *ids)
        pipe.execute()
        if any(s != CAMERA_STATUS_STREAM for s in by):  # progress is on the detections
            self._last_progress = time.monotonic()

    def process_status(self, entries: list[Entry]) -> None:
        """Camera status messages → ``camera_offline`` and ``analytics_down`` alerts.

        * ``offline`` raises a ``camera_offline`` alert (once per outage, see the engine);
          ``offline`` again within the cooldown reopens the alert the system had resolved.
        * ``running`` resolves the camera's open ``camera_offline`` alerts (event by
          ``system``, outcome ``recovered``).
        * ``running`` but ``analysed=False`` raises ``analytics_down`` alerts, resolved when
          the camera is reported analysed again (``serve_app/rules/analytics.py``).
        * Every status is relayed to the feed (the map's live camera health).

        A malformed status is retried, then dead-lettered, like a detection entry.
        """
        ack: list[tuple[str, str]] = []
        statuses: list[CameraStatus] = []
        refs: list[Entry] = []
        bad: list[tuple[Entry, str]] = []
        for e in entries:
            _, eid, fields = e
            if not fields:
                ack.append((CAMERA_STATUS_STREAM, eid))
                continue
            try:
                statuses.append(CameraStatus.from_msgpack(fields[b"d"]))
                refs.append(e)
            except Exception as exc:  # whatever it raises, a malformed entry is its own fault
                bad.append((e, f"decode: {_describe(exc)}"))
        with self._lock:
            out = self._camera_status(statuses)
            failed = set(out.failed)
            ok = [st for i, st in enumerate(statuses) if i not in failed]
            places = {st.camera_id: self.engine.camera_place(st.camera_id) for st in ok}
        bad.extend((refs[i], "camera status raised (see the consumer log)") for i in sorted(failed))
        out.alerts += self.analytics.alerts_for(ok)
        self._write(out)
        self._camera_lifecycle(ok, out)
        self.stats["analytics_resolved"] = self.stats.get("analytics_resolved", 0) + len(
            self.analytics.resumed(ok)
        )
        # Relay every status to the feed (the map's live camera health), scoped to the
        # department that receives the camera's offline alerts.
        pipe = self.r.pipeline(transaction=False)
        for st in ok:
            loc, jurisdiction = places[st.camera_id]
            publish_feed(
                pipe, type="camera_status", payload=st.model_dump(mode="json"),
                department=self.cfg.route(AlertKind.CAMERA_OFFLINE, jurisdiction) or "unrouted",
                kind=AlertKind.CAMERA_OFFLINE.value, camera_id=st.camera_id,
                severity="info", lat=loc.lat, lon=loc.lon,
                jurisdictions=self.cfg.jurisdiction_path(jurisdiction),
            )  # fmt: skip
        pipe.execute()
        ack.extend((CAMERA_STATUS_STREAM, e[1]) for i, e in enumerate(refs) if i not in failed)
        if bad:
            ack.extend(self._handle_failures(bad))
        self._ack(ack)

    def _camera_status(self, statuses: list[CameraStatus]) -> EngineOutput:
        """``engine.camera_status``, isolated per status when it raises (caller holds the lock)."""
        try:
            return self.engine.camera_status(statuses)
        except Exception:
            logger.exception("camera statuses failed as a batch; one by one")
        out = EngineOutput()
        for i, st in enumerate(statuses):
            try:
                one = self.engine.camera_status([st])
            except Exception:
                logger.exception("camera status of %s failed", st.camera_id)
                out.failed.append(i)
                continue
            out.alerts += one.alerts
            out.cooldowns.update(one.cooldowns)
        return out

    def _camera_lifecycle(self, statuses: list[CameraStatus], out: EngineOutput) -> None:
        """Resolve offline alerts of cameras running again; reopen those offline again.

        Acts on each camera's last status of the batch, after the batch's alerts were
        written (an outage and its end in one batch raise and then resolve the alert).
        Idempotent: a redelivered batch finds the alerts already resolved or open.
        """
        last: dict[str, CameraStatus] = {}
        for st in statuses:
            last[st.camera_id] = st
        running = [c for c, st in last.items() if st.state is CameraState.RUNNING]
        if running:
            pipe = self.r.pipeline(transaction=False)
            for c in running:
                pipe.scard(keys.camera_system_alerts_key(c))
            for c, n in zip(running, pipe.execute(), strict=True):
                if int(n):
                    done = self.alerts.resolve_camera_alerts(
                        c, kinds={AlertKind.CAMERA_OFFLINE}, note="camera running again"
                    )
                    self.stats["resolved"] += len(done)
        raised = {a.camera_id for a in out.alerts if a.kind is AlertKind.CAMERA_OFFLINE}
        again = [c for c, st in last.items() if st.state is CameraState.OFFLINE and c not in raised]
        if again:
            # Offline again within the cooldown (no new alert): the alert of the outage
            # before is the camera's latest offline alert; its time is the cooldown's.
            fields = [cooldown_key(c, OFFLINE_RULE_ID, "offline") for c in again]
            times = cast("list[bytes | None]", self.r.hmget(keys.RULES_COOLDOWN, fields))
            for c, t in zip(again, times, strict=True):
                if t is None:
                    continue
                alert_id = make_alert_id(c, OFFLINE_RULE_ID, "offline", float(t))
                reason = last[c].reason
                self.alerts.reopen_system_alert(
                    alert_id, note=f"camera offline again: {reason}".rstrip(": ")
                )

    # -- replay ----------------------------------------------------------------------------

    def replay(self) -> int:
        """Rebuild rule state from the last ``replay_s`` seconds of each owned stream.

        Covers entries up to the group's last-delivered id (entries acknowledged by a
        previous owner and entries still pending). Pending entries handled here are
        acknowledged later without a second evaluation.
        """
        total = 0
        start_ms = int((time.time() - self.replay_s) * 1000)
        for s in self.streams:
            groups = {_sid(g["name"]): g for g in self.r.xinfo_groups(s)}
            last = _sid(groups[keys.RULES_GROUP]["last-delivered-id"])
            if last == "0-0" or self.replay_s <= 0:
                continue
            pel = {
                _sid(cast("bytes | str", p["message_id"]))
                for p in self.r.xpending_range(
                    s, keys.RULES_GROUP, min="-", max="+", count=1_000_000
                )
            }
            cursor = f"{start_ms}-0"
            while True:
                rows = cast(_RangeRows, self.r.xrange(s, min=cursor, max=last, count=1000))
                if not rows:
                    break
                frames, ids = [], []
                for i, f in rows:
                    try:
                        frames.append(FrameResult.from_msgpack(f[b"d"]))
                        ids.append(_sid(i))
                    except Exception:  # the pending path dead-letters it
                        continue
                out = self._evaluate(frames)
                self._write(out)
                failed = set(out.failed)
                self._replayed.update(
                    (s, i) for k, i in enumerate(ids) if i in pel and k not in failed
                )
                total += len(rows)
                if len(rows) < 1000:
                    break
                cursor = "(" + _sid(rows[-1][0])
        if total:
            logger.info("consumer %s replayed %d entries to rebuild rule state", self.name, total)
        self.stats["replayed"] += total
        return total

    # -- upkeep ----------------------------------------------------------------------------

    def maintain(self, now: float | None = None) -> None:
        """Trim owned streams below what any group still needs; trim feed and indexes."""
        now = time.time() if now is None else now
        for s in self.streams:
            self.stats["trimmed"] += self.trim_stream(s, now)
        # Shared by every consumer; trimming it twice is harmless (MINID is idempotent).
        self.stats["trimmed"] += self.trim_stream(CAMERA_STATUS_STREAM, now)
        self.stats["cooldowns_pruned"] = self.stats.get("cooldowns_pruned", 0) + (
            self.prune_cooldowns(now)
        )
        trim_feed(self.r, self.feed_max_age_s, now)
        self.analytics.reconcile(now)
        self.alerts.prune_indexes(now)
        self.plates.sweep(now)  # plate reads past retention, also of plates not seen again
        AuditLog(self.r, self.cfg).trim(now)

    def prune_cooldowns(self, now: float | None = None) -> int:
        """Drop cooldowns older than the longest cooldown of any rule (they suppress nothing).

        ``citysight:rules:cooldown`` has one field per (camera, rule, subject), and a plate
        rule's subject is the plate: without this the hash kept every plate ever alerted.
        """
        now = time.time() if now is None else now
        longest = max([OFFLINE_COOLDOWN_S, *(r.cooldown_s for r in self.cfg.rules)])
        cutoff = now - longest
        removed = 0
        for batch in _batched(self.r.hscan_iter(keys.RULES_COOLDOWN, count=1000), 1000):
            old = [k for k, v in batch if _float(v) < cutoff]
            if old:
                removed += int(self.r.hdel(keys.RULES_COOLDOWN, *old))
        return removed

    def trim_stream(self, stream: str, now: float | None = None) -> int:
        """``XTRIM MINID`` below the oldest id any group still needs.

        The bound is the smallest of: the age cutoff (``detections_max_age_s``), each
        group's oldest pending id, and each group's last-delivered id (entries after it are
        undelivered).
        """
        now = time.time() if now is None else now
        cutoff = (int((now - self.cfg.retention.detections_max_age_s) * 1000), 0)
        bound = cutoff
        for g in self.r.xinfo_groups(stream):
            ms, seq = keys.stream_id(_sid(g["last-delivered-id"]))
            bound = min(bound, (ms, seq + 1))  # the last delivered entry itself may go
            if int(g["pending"]):
                summary = self.r.xpending(stream, _sid(g["name"]))
                bound = min(bound, keys.stream_id(_sid(summary["min"])))
        if bound <= (0, 0):
            return 0
        return int(self.r.xtrim(stream, minid=f"{bound[0]}-{bound[1]}", approximate=False))

    def backlog(self) -> dict[str, Any]:
        """What is outstanding on the owned streams, from Redis (group ``rules``).

        Returns:
            ``pending`` (delivered, not acknowledged), ``backlog`` (not delivered yet) and
            ``lag_ms``: age of the oldest entry not yet acknowledged (0 when caught up).
        """
        pipe = self.r.pipeline(transaction=False)
        for s in self.streams:
            pipe.xinfo_groups(s)
            pipe.xpending(s, keys.RULES_GROUP)
        replies = pipe.execute()
        oldest: list[int] = []
        pending = waiting = 0
        heads: list[tuple[str, str, int | None]] = []  # stream, last delivered, lag
        for k, s in enumerate(self.streams):
            groups = {_sid(g["name"]): g for g in replies[2 * k]}
            summary = replies[2 * k + 1]
            g = groups.get(keys.RULES_GROUP)
            if g is None:
                continue
            if int(summary["pending"]):
                pending += int(summary["pending"])
                oldest.append(keys.stream_id(_sid(summary["min"]))[0])
            lag = g.get("lag")  # Redis >= 7: entries not delivered yet (None: unknown)
            heads.append((s, _sid(g["last-delivered-id"]), None if lag is None else int(lag)))
        todo = [(s, last, lag) for s, last, lag in heads if lag is None or lag > 0]
        if todo:
            pipe = self.r.pipeline(transaction=False)
            for s, last, _ in todo:
                pipe.xrange(s, min="-" if last == "0-0" else "(" + last, max="+", count=1)
            for (_, _, lag), rows in zip(todo, pipe.execute(), strict=True):
                if rows:
                    oldest.append(keys.stream_id(_sid(rows[0][0]))[0])
                    waiting += lag if lag is not None else 1  # unknown lag: at least one
        lag_ms = max(0.0, time.time() * 1000 - min(oldest)) if oldest else 0.0
        return {"pending": pending, "backlog": waiting, "lag_ms": round(lag_ms, 1)}

    def health(self) -> tuple[str, str]:
        """The consumer's true state and why: what ``/health`` shows for ``rules``.

        ``stuck``: entries outstanding but none acknowledged for ``stuck_after_s`` (a poison
        batch retried forever, a write that keeps failing). ``degraded``: the last step
        failed, a write backlog, entries failing (retried, then dead-lettered) or lag above
        ``lag_degraded_s``. Otherwise ``running`` (or ``starting`` before the first setup).
        Updates ``stats`` (``pending``, ``backlog``, ``lag_ms``).

        Returns:
            ``(state, reason)``; the reason is empty when ``running``.
        """
        now = time.monotonic()
        try:
            b = self.backlog()
        except redis.RedisError as exc:
            return "degraded", f"backlog unknown: {_describe(exc)}"
        self.stats.update(b)
        if not b["pending"]:  # failing entries taken over (or deleted) elsewhere
            for key in [k for k in self._failing if k[0] != CAMERA_STATUS_STREAM]:
                del self._failing[key]
        outstanding = b["pending"] + b["backlog"] > 0
        if not outstanding:
            self._last_progress = now  # nothing to do is progress
        idle = now - self._last_progress
        if outstanding and idle >= self.stuck_after_s:
            why = (
                f"no entry acknowledged for {idle:.0f} s: {b['pending']} pending, "
                f"{b['backlog']} not delivered, oldest {b['lag_ms'] / 1000:.0f} s old"
            )
            return "stuck", why + (f"; error: {self.error}" if self.error else "")
        if self.state == "starting":
            return "starting", ""
        if self.error:
            return "degraded", f"step failing: {self.error}"
        if self._unwritten:
            return "degraded", f"{len(self._unwritten)} evaluated batch(es) not written yet"
        if self._failing:
            worst = max(d for d, _ in self._failing.values())
            why = next(iter(self._failing.values()))[1]
            return "degraded", (
                f"{len(self._failing)} entr{'y' if len(self._failing) == 1 else 'ies'} failing "
                f"(delivery {worst} of {self.max_deliveries}, then dead-lettered): {why}"
            )
        if b["lag_ms"] > self.lag_degraded_s * 1000:
            return "degraded", f"lag {b['lag_ms'] / 1000:.1f} s (over {self.lag_degraded_s:g} s)"
        return "running", ""

    def _publish_status(self, state: str | None = None) -> None:
        if state is None:
            state, self.reason = self.health()
        else:
            self.reason = ""
        detail = {
            **self.stats,
            "consumer": self.name,
            "shards": self.shards,
            "state_size": self.engine.state_size(),
            "recheck": dict(self.recheck.stats),  # camera re-check: watching, verified, ...
            "reason": self.reason,
            "error": self.error,
            "last_error": self.last_error,
            "since_progress_s": round(time.monotonic() - self._last_progress, 1),
        }
        now = time.time()
        mine = {"state": state, "detail": detail, "updated_at": now}
        try:
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(keys.RULES_CONSUMERS, self.name, json.dumps(mine))
            pipe.hmget(keys.RULES_CONSUMERS, self.peers)
            # Per consumer: GET /metrics renders every live consumer's counters.
            publish_snapshot(pipe, "rules", self.name, {"state": state, **detail})
            _, raw, _ = pipe.execute()
            peers = {n: json.loads(v) if v else None for n, v in zip(self.peers, raw, strict=True)}
            summary = summarise_consumers({**peers, self.name: mine}, now)
            self.r.hset(keys.COMPONENTS, "rules", json.dumps(summary))
        except redis.RedisError:
            logger.warning("could not publish rules status")


# Worst first wins the summary: one stuck consumer makes ``rules`` stuck.
_RANK = {"running": 0, "starting": 1, "stopping": 2, "stopped": 2, "degraded": 3, "unknown": 3}
_RANK |= {"stale": 4, "stuck": 5}
STALE_AFTER_S = 60.0


def summarise_consumers(entries: dict[str, dict[str, Any] | None], now: float) -> dict[str, Any]:
    """The ``rules`` component from every consumer's own status (the worst state wins).

    A consumer with no status is ``unknown``, one silent for ``STALE_AFTER_S`` is ``stale``.
    With one consumer the summary is its status.
    """
    states: dict[str, dict[str, Any]] = {}
    for name, e in entries.items():
        if e is None:
            e = {"state": "unknown", "detail": {"reason": "no status published"}}
        elif now - float(e.get("updated_at", 0)) > STALE_AFTER_S:
            e = {**e, "state": "stale"}
        states[name] = e
    if len(states) == 1:
        (only,) = states.values()
        return {"updated_at": now, **only}
    worst = max(states.values(), key=lambda e: _RANK.get(str(e.get("state")), 3))
    details = {n: e.get("detail") or {} for n, e in states.items()}
    counters = ("processed", "alerts", "dead", "pending", "backlog", "failures")
    detail: dict[str, Any] = {
        k: sum(int(d.get(k) or 0) for d in details.values()) for k in counters
    }
    detail["lag_ms"] = max(float(d.get("lag_ms") or 0) for d in details.values())
    detail["reason"] = "; ".join(
        f"{n}: {e['state']}"
        + (f" ({details[n].get('reason')})" if details[n].get("reason") else "")
        for n, e in states.items()
        if e.get("state") != "running"
    )
    detail["consumers"] = {
        n: {"state": e.get("state"), "reason": details[n].get("reason", "")}
        for n, e in states.items()
    }
    return {"state": worst.get("state"), "detail": detail, "updated_at": now}


class NotReplicated(redis.RedisError):
    """Alerts written to the primary but not to ``services.redis.alert_replicas`` replicas."""


def _is_redis_side(exc: BaseException) -> bool:
    """Whether Redis (not the data we prepared) raised: a connection failure or error reply.

    ``DataError`` is redis-py refusing a value before sending it: the data's fault.
    """
    return isinstance(exc, redis.RedisError) and not isinstance(exc, redis.DataError)


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[:1]
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _safe_repr(alert: Alert) -> str:
    try:
        return alert.model_dump_json()
    except Exception:
        return repr(alert)[:65536]


def _batched(items: Iterable[Any], n: int) -> Iterable[list[Any]]:
    """``items`` in lists of at most ``n``."""
    batch: list[Any] = []
    for it in items:
        batch.append(it)
        if len(batch) >= n:
            yield batch
            batch = []
    if batch:
        yield batch


def _float(v: Any) -> float:
    """A cooldown time; a malformed one counts as long past (so it is pruned)."""
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0
