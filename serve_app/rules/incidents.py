"""Cross-camera incident merge, global across rules consumers: the open incidents live in Redis.

An alert joins the most recently active open incident of its kind whose *first* alert lies
within ``incidents.radius_m`` and whose *latest* alert started at most
``incidents.window_s`` before or after it; otherwise it opens a new incident with id
``in_`` + its alert id. The incident's ``camera_ids`` so far are copied onto the alert.
``camera_offline`` and ``analytics_down`` alerts are never merged.

Each assignment is one atomic Lua script (``GEOSEARCH`` over the kind's open incidents,
Redis >= 6.2), so consumers owning different shards, and threads racing on nearby cameras,
always agree: concurrent alerts of one place open exactly one incident. The script also
records the answer per alert id, so a replayed or retried alert (alert ids are
deterministic) gets the same incident and never a second one. A batch's alerts go in one
pipeline of ``EVALSHA``: one round trip per batch that raised alerts; detections never
touch it.

Open incidents are pruned by alert time (4 windows after their latest alert) and the keys
expire by wall clock when a kind goes quiet. Key layout: ``serve_app/INTERFACES.md``.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import redis

from citysight import keys
from citysight.config import IncidentsConfig
from citysight.contracts import Alert, AlertKind
from serve_app.store.scripts import evalsha_pipelined

logger = logging.getLogger(__name__)

GEO_MAX_LAT = 85.05112878
"""Redis GEO indexes only latitudes within ±85.05° (Web Mercator); nearer the poles we clamp."""
PRUNE_WINDOWS = 4
"""Open incidents are dropped this many merge windows after their latest alert."""
PRUNE_BATCH = 100
"""At most this many stale incidents are dropped per assignment (bounded script time)."""
TTL_MARGIN_S = 3600
"""The kind's keys expire this long after the prune horizon (wall clock) once it is quiet."""

# KEYS: 1 GEO set of open incidents at their first location, 2 zset incident -> latest alert
#       time, 3 hash incident -> {"t0", "cams", "alerts"} (JSON), 4 hash alert id -> reply
#       (JSON; replays get the first answer again).
# ARGV: 1 alert id, 2 id of a new incident, 3 lon, 4 lat, 5 alert time, 6 radius (m),
#       7 window (s), 8 camera id, 9 prune below this latest-alert time, 10 key TTL (s),
#       11 most incidents pruned per call.
# Reply: {incident id, camera id...}.
_ASSIGN = """
local memo = redis.call('HGET', KEYS[4], ARGV[1])
if memo then return cjson.decode(memo) end
local t, window = tonumber(ARGV[5]), tonumber(ARGV[7])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[9],
                               'LIMIT', 0, tonumber(ARGV[11]))) do
  local st = redis.call('HGET', KEYS[3], id)
  if st then
    for _, a in ipairs(cjson.decode(st).alerts) do redis.call('HDEL', KEYS[4], a) end
  end
  redis.call('HDEL', KEYS[3], id)
  redis.call('ZREM', KEYS[2], id)
  redis.call('ZREM', KEYS[1], id)
end
local best, best_last, state = nil, nil, nil
local near = redis.call('GEOSEARCH', KEYS[1], 'FROMLONLAT', ARGV[3], ARGV[4],
                        'BYRADIUS', ARGV[6], 'm', 'ASC')
for _, id in ipairs(near) do
  local last = tonumber(redis.call('ZSCORE', KEYS[2], id))
  if last and math.abs(t - last) <= window and (best == nil or last > best_last) then
    local st = redis.call('HGET', KEYS[3], id)
    if st then best, best_last, state = id, last, cjson.decode(st) end
  end
end
if best then
  local seen = false
  for _, c in ipairs(state.cams) do if c == ARGV[8] then seen = true end end
  if not seen then table.insert(state.cams, ARGV[8]) end
  table.insert(state.alerts, ARGV[1])
  if t > best_last then redis.call('ZADD', KEYS[2], t, best) end
else
  best = ARGV[2]
  state = {t0 = t, cams = {ARGV[8]}, alerts = {ARGV[1]}}
  redis.call('GEOADD', KEYS[1], ARGV[3], ARGV[4], best)
  redis.call('ZADD', KEYS[2], t, best)
end
redis.call('HSET', KEYS[3], best, cjson.encode(state))
local reply = {best}
for _, c in ipairs(state.cams) do table.insert(reply, c) end
redis.call('HSET', KEYS[4], ARGV[1], cjson.encode(reply))
for i = 1, 4 do redis.call('EXPIRE', KEYS[i], ARGV[10]) end
return reply
"""


# Errors that pass: the write is retried later (Redis down, read-only replica, out of memory,
# script cache flushed). Any other error reply is specific to one alert and must not block
# the consumer: that alert keeps an incident of its own.
_TRANSIENT = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.OutOfMemoryError,
    redis.exceptions.NoScriptError,
)


def own_incident_id(alert: Alert) -> str:
    """Id of the incident an alert opens: ``in_`` + its alert id (without ``al_``)."""
    return "in_" + alert.id.removeprefix("al_")


class IncidentIndex:
    """Assigns ``incident_id`` and ``camera_ids`` to alerts through Redis (global merge).

    Args:
        r: Redis client (with or without ``decode_responses``).
        cfg: Merge radius and window (swap it to hot-reload).
    """

    def __init__(self, r: redis.Redis, cfg: IncidentsConfig) -> None:
        self.r = r
        self.cfg = cfg
        self._assign = r.register_script(_ASSIGN)

    def assign(self, alerts: list[Alert], now: float | None = None) -> list[Alert]:
        """The alerts with ``incident_id`` and ``camera_ids`` set, in one round trip.

        Alerts that already carry an ``incident_id`` (a retried write) and
        ``camera_offline`` alerts are returned unchanged. When the script fails for one
        alert with a lasting error reply, that alert is logged and keeps an incident of its
        own rather than blocking the consumer.

        Raises:
            redis.RedisError: A passing failure (Redis unreachable, read-only, out of
                memory): the caller retries the write later; replies are idempotent per
                alert id.
        """
        todo = [
            i
            for i, a in enumerate(alerts)
            if a.incident_id is None
            and a.kind not in (AlertKind.CAMERA_OFFLINE, AlertKind.ANALYTICS_DOWN)
        ]
        if not todo:
            return alerts
        now = time.time() if now is None else now
        radius, window = self.cfg.radius_m, self.cfg.window_s
        ttl = math.ceil(PRUNE_WINDOWS * window) + TTL_MARGIN_S
        calls: dict[int, list[Any]] = {}
        for i in todo:
            a = alerts[i]
            t = a.started_at.timestamp()
            lat = min(GEO_MAX_LAT, max(-GEO_MAX_LAT, a.location.lat))
            calls[i] = [
                4, *keys.incident_index_keys(a.kind.value),
                a.id, own_incident_id(a), repr(a.location.lon), repr(lat), repr(t),
                repr(radius), repr(window), a.camera_id,
                repr(min(t, now) - PRUNE_WINDOWS * window), ttl, PRUNE_BATCH,
            ]  # fmt: skip
        replies = evalsha_pipelined(self.r, self._assign, list(calls.values()))
        out = list(alerts)
        for i, reply in zip(calls, replies, strict=True):
            a = alerts[i]
            if isinstance(reply, _TRANSIENT):
                raise reply
            if isinstance(reply, Exception):
                logger.error("incident merge failed for alert %s (not merged): %s", a.id, reply)
                update: dict[str, Any] = {"incident_id": own_incident_id(a)}
            else:
                iid, *cams = (keys.text(x) or "" for x in reply)
                update = {"incident_id": iid, "camera_ids": cams}
            out[i] = a.model_copy(update=update)
        return out
