"""Locust users for citysight: WebSocket subscribers, REST readers, dispatchers, ingest.

Run through ``benchmarks/locust/run.py`` (its own process: locust's gevent monkey-patching
must happen before ssl/redis are imported). Settings come from the environment:

* ``CITYSIGHT_LOCUST_TOKENS``: JSON ``{"department": "bearer token", ...}``; users pick
  one round-robin (``CITYSIGHT_LOCUST_TOKEN`` for a single token).
* ``CITYSIGHT_LOCUST_REDIS_URL``: Redis of the system under test (ingest publisher).
* ``CITYSIGHT_LOCUST_CAMERAS`` (comma-separated ids), ``CITYSIGHT_LOCUST_SHARDS``,
  ``CITYSIGHT_LOCUST_INGEST_BATCH`` (XADDs per task), ``CITYSIGHT_LOCUST_INGEST_RATE``
  (batches per second per user), ``CITYSIGHT_LOCUST_FIRE_EVERY`` (every n-th frame of a
  camera carries a persistent fire detection, so rules fire and subscribers get alerts).

Latency entries ``WS alert (raised→recv)`` and ``WS alert (detected→recv)`` are the alert's
``raised_at`` / ``detected_at`` to receipt, in ms (same-machine clocks).
"""

from __future__ import annotations

import itertools
import json
import os
import time
from typing import Any

import gevent
import websocket
from locust import HttpUser, User, between, constant_throughput, events, task

_counter = itertools.count()


def _tokens() -> list[str]:
    raw = os.environ.get("CITYSIGHT_LOCUST_TOKENS")
    if raw:
        return list(json.loads(raw).values())
    single = os.environ.get("CITYSIGHT_LOCUST_TOKEN", "")
    return [single] if single else []


def _next_token() -> str:
    toks = _tokens()
    if not toks:
        raise RuntimeError("set CITYSIGHT_LOCUST_TOKENS or CITYSIGHT_LOCUST_TOKEN")
    return toks[next(_counter) % len(toks)]


class WsSubscriber(User):
    """Holds one ``/ws`` connection; reports each alert's delivery latency."""

    wait_time = between(4, 6)

    def on_start(self) -> None:
        """Connect with a bearer token and start the receive loop."""
        if self.host is None:
            raise RuntimeError("set the base host (--host or the host attribute)")
        url = self.host.replace("http://", "ws://").rstrip("/") + "/ws"
        t0 = time.perf_counter()
        try:
            self.ws = websocket.create_connection(
                url, header=[f"Authorization: Bearer {_next_token()}"], timeout=10
            )
        except Exception as exc:
            self._fire("WS", "connect", (time.perf_counter() - t0) * 1000, 0, exc)
            raise
        self._fire("WS", "connect", (time.perf_counter() - t0) * 1000, 0, None)
        self.seen: set[str] = set()
        self.receiver = gevent.spawn(self._receive)

    def _fire(self, kind: str, name: str, ms: float, length: int, exc: Exception | None) -> None:
        self.environment.events.request.fire(
            request_type=kind,
            name=name,
            response_time=ms,
            response_length=length,
            exception=exc,
            context={},
        )

    def _receive(self) -> None:
        while True:
            try:
                raw = self.ws.recv()
            except websocket.WebSocketConnectionClosedException as exc:
                self._fire("WS", "closed", 0, 0, exc)
                return
            except Exception as exc:
                self._fire("WS", "recv error", 0, 0, exc)
                return
            now = time.time()
            if not raw:
                continue
            msg = json.loads(raw)
            if msg.get("type") != "alert":
                continue
            a = msg["alert"]
            dup = a["id"] in self.seen
            self.seen.add(a["id"])
            if dup:
                self._fire("WS", "duplicate alert", 0, len(raw), RuntimeError(a["id"]))
                continue
            if a.get("raised_at"):
                self._fire(
                    "WS", "alert (raised→recv)", (now - a["raised_at"]) * 1000, len(raw), None
                )
            if a.get("detected_at"):
                ms = (now - a["detected_at"]) * 1000
                self._fire("WS", "alert (detected→recv)", ms, len(raw), None)

    @task
    def ping(self) -> None:
        """Application-level ping (keeps the connection in use like a real client)."""
        self.ws.send(json.dumps({"type": "ping"}))

    def on_stop(self) -> None:
        """Close the socket."""
        self.receiver.kill(block=False)
        self.ws.close()


class RestReader(HttpUser):
    """Lists alerts and opens some of them (``GET /api/alerts``, ``/api/alerts/{id}``)."""

    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        """Pick a token."""
        self.client.headers["Authorization"] = f"Bearer {_next_token()}"
        self.ids: list[str] = []

    @task(3)
    def list_alerts(self) -> None:
        """The alert list, newest first."""
        with self.client.get(
            "/api/alerts?limit=20", name="/api/alerts", catch_response=True
        ) as resp:
            if resp.status_code == 200:
                self.ids = [a["id"] for a in resp.json()][:20]
                resp.success()

    @task(2)
    def open_alert(self) -> None:
        """One alert from the last list."""
        if not self.ids:
            return
        aid = self.ids[next(_counter) % len(self.ids)]
        self.client.get(f"/api/alerts/{aid}", name="/api/alerts/{id}")


class Dispatcher(HttpUser):
    """Moves raised alerts along the lifecycle (``POST /api/alerts/{id}/transitions``).

    Two dispatchers racing on one alert is normal: a 409 (transition no longer allowed)
    counts as success, anything else non-2xx as a failure.
    """

    wait_time = between(1, 2)

    def on_start(self) -> None:
        """Pick a token."""
        self.client.headers["Authorization"] = f"Bearer {_next_token()}"

    @task
    def dispatch(self) -> None:
        """Acknowledge a raised alert, or resolve an acknowledged one."""
        resp = self.client.get(
            "/api/alerts?state=raised,acknowledged&limit=10", name="/api/alerts?state"
        )
        if resp.status_code != 200 or not resp.json():
            return
        alerts = resp.json()
        a = alerts[next(_counter) % len(alerts)]
        body: dict[str, Any] = (
            {"to": "acknowledged", "note": "locust"}
            if a["state"] == "raised"
            else {"to": "resolved", "outcome": "confirmed", "note": "locust"}
        )
        with self.client.post(
            f"/api/alerts/{a['id']}/transitions",
            json=body,
            name="/api/alerts/{id}/transitions",
            catch_response=True,
        ) as r:
            if r.status_code in (200, 409):
                r.success()
            else:
                r.failure(f"{r.status_code}: {r.text[:200]}")


class IngestPublisher(User):
    """XADDs FrameResults to ``citysight:detections:{shard}`` at a set rate."""

    wait_time = constant_throughput(float(os.environ.get("CITYSIGHT_LOCUST_INGEST_RATE", "10")))

    def on_start(self) -> None:
        """Connect to Redis and prepare the cameras."""
        import redis

        url = os.environ.get("CITYSIGHT_LOCUST_REDIS_URL", "")
        if not url:
            raise RuntimeError("set CITYSIGHT_LOCUST_REDIS_URL for IngestPublisher")
        self.r = redis.Redis.from_url(url)
        cams = os.environ.get("CITYSIGHT_LOCUST_CAMERAS", "cam-00000").split(",")
        self.cams = [c for c in cams if c]
        self.shards = int(os.environ.get("CITYSIGHT_LOCUST_SHARDS", "4"))
        self.batch = int(os.environ.get("CITYSIGHT_LOCUST_INGEST_BATCH", "50"))
        self.fire_every = int(os.environ.get("CITYSIGHT_LOCUST_FIRE_EVERY", "0"))
        self.frame_no = next(_counter) * 1_000_000

    @task
    def publish(self) -> None:
        """One pipelined batch of frame results."""
        import numpy as np

        from citysight.contracts import FrameResult, ObjectClass, shard_of
        from citysight.keys import detections_stream

        t0 = time.perf_counter()
        pipe = self.r.pipeline(transaction=False)
        now = time.time()
        size = 0
        for _ in range(self.batch):
            self.frame_no += 1
            cam = self.cams[self.frame_no % len(self.cams)]
            fire = self.fire_every and self.frame_no % self.fire_every == 0
            fr = FrameResult(
                camera_id=cam,
                frame_time=now,
                frame_no=self.frame_no,
                width=1280,
                height=720,
                boxes=np.array([[500, 200, 700, 400]] if fire else np.zeros((0, 4)), np.float32),
                scores=np.array([0.9] if fire else [], np.float32),
                class_ids=np.array([int(ObjectClass.FIRE)] if fire else [], np.int32),
                track_ids=np.array([1] if fire else [], np.int64),
                published_at=now,
            )
            data = fr.to_msgpack()
            size += len(data)
            pipe.xadd(detections_stream(shard_of(cam, self.shards)), {"d": data})
        exc: Exception | None = None
        try:
            pipe.execute()
        except Exception as e:
            exc = e
        # locust's EventHook.fire is unannotated (no stubs to correct it).
        events.request.fire(  # type: ignore[no-untyped-call]
            request_type="XADD",
            name=f"detections batch of {self.batch}",
            response_time=(time.perf_counter() - t0) * 1000,
            response_length=size,
            exception=exc,
            context={},
        )

    def on_stop(self) -> None:
        """Close Redis."""
        self.r.close()
