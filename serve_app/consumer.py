"""The rules consumer: detections streams → rules engine → alerts in Redis → ``XACK``.

Durability (ARCHITECTURE.md, "Hard rules"):

* Group ``rules`` on every owned ``citysight:detections:{shard}`` (and on
  ``citysight:camera-status``). Entries are acknowledged only after the alerts, plate reads
  and cooldowns they produced are written; alert ids are deterministic and saving is
  ``SET NX``, so a redelivered entry never duplicates an alert.
* On start the consumer reads its *own* pending entries first (id ``0``), then new ones
  (``>``) in batches. Entries of dead consumers idle longer than ``claim_min_idle_ms`` are
  taken over with ``XAUTOCLAIM``.
* An entry that fails to decode or crashes the evaluation is retried; once its delivery
  count (from ``XPENDING``) reaches ``max_deliveries`` it is written to
  ``citysight:detections:dead`` and only then acknowledged.
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

from citysight.config import CameraConfig, CitysightConfig
from citysight.contracts import (
    CAMERA_STATUS_STREAM,
    Alert,
    AlertKind,
    CameraStatus,
    ContractError,
    FrameResult,
    detections_stream,
)
from citysight.metrics import publish_snapshot
from serve_app.rules.codec import decode_frame
from serve_app.rules.engine import EngineOutput, RulesEngine
from serve_app.rules.incidents import IncidentIndex
from serve_app.store import keys
from serve_app.store.alerts import AlertStore
from serve_app.store.audit import AuditLog
from serve_app.store.cameras import CameraRegistry
from serve_app.store.evidence import EvidenceStore
from serve_app.store.feed import publish_feed, trim_feed
from serve_app.store.plates import PlateReads

logger = logging.getLogger(__name__)

GROUP = "rules"
Entry = tuple[str, str, dict[bytes, bytes] | None]  # (stream, id, fields)
# Replies of the binary (no ``decode_responses``) RESP2 client used here.
_Rows = list[tuple[bytes, dict[bytes, bytes] | None]]  # XREADGROUP: None for deleted entries
_ReadReply = list[tuple[bytes, _Rows]]  # XREADGROUP: [stream, rows] per stream
_RangeRows = list[tuple[bytes, dict[bytes, bytes]]]  # XRANGE


def _sid(x: bytes | str) -> str:
    return x.decode() if isinstance(x, bytes) else x


def _id_tuple(i: str) -> tuple[int, int]:
    ms, _, seq = i.partition("-")
    return int(ms), int(seq or 0)


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
        max_deliveries: Deliveries after which a failing entry is dead-lettered.
        retry_interval_s: Wait before a failed entry is read again.
        replay_s: Seconds of stream history replayed at start to rebuild rule state.
        escalate_interval_s: How often to run SLA escalation.
        maintenance_interval_s: How often to trim streams and prune indexes.
        feed_max_age_s: Age of feed messages kept (resume window of WebSocket clients).
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
        max_deliveries: int = 5,
        retry_interval_s: float = 1.0,
        replay_s: float = 15.0,
        escalate_interval_s: float = 5.0,
        maintenance_interval_s: float = 10.0,
        feed_max_age_s: float = 86_400.0,
        engine_kwargs: dict[str, Any] | None = None,
        on_batch: Callable[[list[FrameResult], list[Alert], float], None] | None = None,
    ) -> None:
        self.r = redis.Redis.from_url(redis_url, health_check_interval=30, protocol=2)
        self.cfg = cfg
        self.name = consumer_name
        self.shards = sorted(set(shards))
        self.streams = [detections_stream(s) for s in self.shards]
        self.count = count
        self.block_ms = block_ms
        self.claim_min_idle_ms = claim_min_idle_ms
        self.claim_interval_s = claim_interval_s
        self.max_deliveries = max_deliveries
        self.retry_interval_s = retry_interval_s
        self.replay_s = replay_s
        self.escalate_interval_s = escalate_interval_s
        self.maintenance_interval_s = maintenance_interval_s
        self.feed_max_age_s = feed_max_age_s
        self.on_batch = on_batch
        self.engine = RulesEngine(cfg, **(engine_kwargs or {}))
        self.incidents = IncidentIndex(self.r, cfg.incidents)
        self.alerts = AlertStore(self.r, cfg)
        self.evidence = EvidenceStore(self.r, cfg)
        self.plates = PlateReads(self.r, cfg)
        self.cameras = CameraRegistry(self.r)
        self.stats: dict[str, Any] = {
            "processed": 0, "alerts": 0, "plate_reads": 0, "dead": 0, "failures": 0,
            "claimed": 0, "replayed": 0, "escalated": 0, "trimmed": 0, "lag_ms": 0.0,
        }  # fmt: skip
        self.state = "starting"
        self.last_error = ""
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

    def run(self) -> None:
        """Set up, replay, then consume until :meth:`stop` (errors are retried)."""
        backoff = 0.2
        while not self._stop.is_set():
            try:
                if self.state in ("starting", "degraded"):
                    self.setup()
                    self._publish_status()
                self.step()
                backoff = 0.2
            except Exception as exc:  # keep consuming: Redis restarts, transient errors
                self.state = "degraded"
                self.last_error = f"{type(exc).__name__}: {exc}"
                logger.exception("rules consumer %s: step failed; retrying", self.name)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                self._pending_due = True

    def setup(self) -> None:
        """Create groups, load cameras and cooldowns, replay recent history."""
        for s in [*self.streams, CAMERA_STATUS_STREAM]:
            try:
                self.r.xgroup_create(s, GROUP, id="0", mkstream=True)
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
            self.replay()
            self._replay_done = True
        self._pending_due = True
        self.state = "running"

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
        if self._every("status", 1.0):
            self._publish_status()
        return n

    def read_pending(self) -> int:
        """Process this consumer's own pending entries (delivered before, not acknowledged)."""
        n = 0
        for s in self.streams:
            last = "0"
            while not self._stop.is_set():
                reply = cast(
                    _ReadReply, self.r.xreadgroup(GROUP, self.name, {s: last}, count=self.count)
                )
                entries = [(s, _sid(i), f) for _, rows in reply for i, f in rows]
                if not entries:
                    break
                n += self.process(entries, redelivered=True)
                last = entries[-1][1]
        return n

    def read_new(self) -> int:
        """Block up to ``block_ms`` for new entries of every owned stream and camera status."""
        streams: dict[KeyT, StreamIdT] = {s: ">" for s in self.streams}
        streams[CAMERA_STATUS_STREAM] = ">"
        reply = cast(
            "_ReadReply | None",
            self.r.xreadgroup(GROUP, self.name, streams, count=self.count, block=self.block_ms),
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
        """Take over entries of consumers that stopped (idle past ``claim_min_idle_ms``)."""
        n = 0
        for s in self.streams:
            cursor = "0-0"
            for _ in range(100):  # bounded: a huge backlog is taken over across iterations
                res = self.r.xautoclaim(
                    s, GROUP, self.name, self.claim_min_idle_ms, start_id=cursor, count=self.count
                )
                cursor = _sid(res[0])
                entries = [(s, _sid(i), f) for i, f in res[1]]
                if entries:
                    self.stats["claimed"] += len(entries)
                    logger.info("claimed %d idle entries of %s", len(entries), s)
                    n += self.process(entries, redelivered=True)
                if cursor == "0-0":
                    break
        return n

    # -- processing ------------------------------------------------------------------------

    def process(self, entries: list[Entry], *, redelivered: bool) -> int:
        """Evaluate entries, write what they produced, then acknowledge them."""
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
                frames.append(decode_frame(fields[b"d"]))
                refs.append(e)
            except (ContractError, KeyError) as exc:
                bad.append((e, f"decode: {exc}"))
        with self._lock:
            out = self.engine.evaluate(frames)
        failed = set(out.failed)
        for i in sorted(failed):
            bad.append((refs[i], "evaluation raised (see the consumer log)"))
        self._write(out)
        ack.extend((e[0], e[1]) for i, e in enumerate(refs) if i not in failed)
        if bad:
            ack.extend(self._handle_failures(bad))
        self._ack(ack)
        now = time.time()
        self.stats["processed"] += len(entries)
        if frames:
            last = frames[-1]
            pub = last.published_at or _id_tuple(refs[-1][1])[0] / 1000
            self.stats["lag_ms"] = round(max(0.0, now - pub) * 1000, 1)
        if self.on_batch is not None:
            self.on_batch(frames, out.alerts, now)
        return len(entries)

    def _write(self, out: EngineOutput) -> None:
        """Write ``out`` after any backlog; on failure it stays queued and this raises."""
        self._unwritten.append(out)
        while self._unwritten:
            first = self._unwritten[0]
            self._write_one(first, retry=first is not out)
            self._unwritten.popleft()

    def _write_one(self, out: EngineOutput, *, retry: bool) -> None:
        # Incidents first: the saved alert carries its incident id. A retry keeps the ids
        # assigned before (the script's replies are idempotent per alert id anyway).
        out.alerts = self.incidents.assign(out.alerts)
        new = self.alerts.save_new(out.alerts)
        # A retried output's alerts may have been saved before the failure without their
        # evidence: copy it for all of them (idempotent), not only the new ones.
        shown = out.alerts if retry else new
        if shown:
            self.evidence.copy_snapshots(
                {a.id: out.snapshots[a.id] for a in shown if a.id in out.snapshots}
            )
        if new:
            self.stats["alerts"] += len(new)
        if out.plate_reads:
            self.plates.add_many(out.plate_reads)
            self.stats["plate_reads"] += len(out.plate_reads)
        if out.cooldowns:
            self.r.hset(
                keys.RULES_COOLDOWN, mapping=cast("dict[FieldT, EncodableT]", out.cooldowns)
            )

    def _handle_failures(self, bad: list[tuple[Entry, str]]) -> list[tuple[str, str]]:
        """Dead-letter entries delivered ``max_deliveries`` times; return those to ack."""
        done: list[tuple[str, str]] = []
        self.stats["failures"] += len(bad)
        for (s, eid, fields), why in bad:
            info = self.r.xpending_range(s, GROUP, min=eid, max=eid, count=1)
            deliveries = int(info[0]["times_delivered"]) if info else self.max_deliveries
            if deliveries < self.max_deliveries:
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
                {"src": s, "id": eid, "d": data, "error": why, "deliveries": deliveries},
            )
            logger.error(
                "entry %s of %s dead-lettered after %d deliveries: %s", eid, s, deliveries, why
            )
            self.stats["dead"] += 1
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
        pipe = self.r.pipeline(transaction=False)
        for s, ids in by.items():
            pipe.xack(s, GROUP, *ids)
        pipe.execute()

    def process_status(self, entries: list[Entry]) -> None:
        """Camera status messages → ``camera_offline`` alerts."""
        statuses: list[CameraStatus] = []
        for _, eid, fields in entries:
            try:
                statuses.append(CameraStatus.from_msgpack((fields or {})[b"d"]))
            except (ContractError, KeyError) as exc:
                logger.warning("bad camera status %s: %s (dead-lettered)", eid, exc)
                self.r.xadd(
                    keys.DEAD_LETTER_STREAM,
                    {
                        "src": CAMERA_STATUS_STREAM,
                        "id": eid,
                        "d": (fields or {}).get(b"d", b""),
                        "error": str(exc),
                        "deliveries": 1,
                    },
                )
        with self._lock:
            out = self.engine.camera_status(statuses)
            places = {st.camera_id: self.engine.camera_place(st.camera_id) for st in statuses}
        self._write(out)
        # Relay every status to the feed (the map's live camera health), scoped to the
        # department that receives the camera's offline alerts.
        pipe = self.r.pipeline(transaction=False)
        for st in statuses:
            loc, jurisdiction = places[st.camera_id]
            publish_feed(
                pipe, type="camera_status", payload=st.model_dump(mode="json"),
                department=self.cfg.route(AlertKind.CAMERA_OFFLINE, jurisdiction) or "unrouted",
                kind=AlertKind.CAMERA_OFFLINE.value, camera_id=st.camera_id,
                severity="info", lat=loc.lat, lon=loc.lon,
            )  # fmt: skip
        pipe.execute()
        self._ack([(CAMERA_STATUS_STREAM, eid) for _, eid, _ in entries])

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
            last = _sid(groups[GROUP]["last-delivered-id"])
            if last == "0-0" or self.replay_s <= 0:
                continue
            pel = {
                _sid(cast("bytes | str", p["message_id"]))
                for p in self.r.xpending_range(s, GROUP, min="-", max="+", count=1_000_000)
            }
            cursor = f"{start_ms}-0"
            while True:
                rows = cast(_RangeRows, self.r.xrange(s, min=cursor, max=last, count=1000))
                if not rows:
                    break
                frames, ids = [], []
                for i, f in rows:
                    try:
                        frames.append(decode_frame(f[b"d"]))
                        ids.append(_sid(i))
                    except (ContractError, KeyError):
                        continue  # the pending path dead-letters it
                with self._lock:
                    out = self.engine.evaluate(frames)
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
        trim_feed(self.r, self.feed_max_age_s, now)
        self.alerts.prune_indexes(now)
        AuditLog(self.r, self.cfg).trim(now)

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
            ms, seq = _id_tuple(_sid(g["last-delivered-id"]))
            bound = min(bound, (ms, seq + 1))  # the last delivered entry itself may go
            if int(g["pending"]):
                summary = self.r.xpending(stream, _sid(g["name"]))
                bound = min(bound, _id_tuple(_sid(summary["min"])))
        if bound <= (0, 0):
            return 0
        return int(self.r.xtrim(stream, minid=f"{bound[0]}-{bound[1]}", approximate=False))

    def _publish_status(self, state: str | None = None) -> None:
        detail = {
            **self.stats,
            "consumer": self.name,
            "shards": self.shards,
            "state_size": self.engine.state_size(),
            "error": self.last_error,
        }
        try:
            pipe = self.r.pipeline(transaction=False)
            pipe.hset(
                keys.COMPONENTS,
                "rules",
                json.dumps(
                    {"state": state or self.state, "detail": detail, "updated_at": time.time()}
                ),
            )
            # Per consumer (the component entry is shared by all consumers): GET /metrics.
            publish_snapshot(pipe, "rules", self.name, {"state": state or self.state, **detail})
            pipe.execute()
        except redis.RedisError:
            logger.warning("could not publish rules status")
