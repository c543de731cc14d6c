"""The system under test: embedded Redis, a private local Ray and the citysight Serve app."""

from __future__ import annotations

import logging
import os
import time
import urllib.request
from pathlib import Path
from typing import Any, cast

import psutil
import redis
from redis.typing import EncodableT, FieldT

from benchmarks.common.procmon import children_of
from citysight import keys
from citysight.app.services.redis_server import EmbeddedRedis, free_port
from citysight.keys import detections_stream

logger = logging.getLogger(__name__)


class CitySystem:
    """Starts and stops Redis, Ray and the Serve app (real rules consumer, real /ws).

    Args:
        cfg: CitysightConfig as a JSON dict (``services.http.port`` is where Serve listens).
        principals: ``citysight:principals`` entries to write.
        workdir: Private folder for Redis data and Ray's temp dir.
        num_cpus: CPUs given to the private Ray.
        rules: Deploy the rules consumer (``False`` measures ingest and fan-out only).
    """

    def __init__(
        self,
        cfg: dict[str, Any],
        principals: dict[str, str],
        workdir: Path,
        num_cpus: int = 4,
        *,
        rules: bool = True,
    ) -> None:
        self.cfg = cfg
        self.principals = principals
        self.workdir = workdir
        self.num_cpus = num_cpus
        self.rules = rules
        self.redis: EmbeddedRedis | None = None
        self.ray_started = False
        self.mode = "serve"
        self.port = int(cfg["services"]["http"]["port"])
        self.shards = int(cfg["services"]["streams"]["shards"])

    @property
    def redis_url(self) -> str:
        """URL of the embedded Redis."""
        assert self.redis is not None
        return self.redis.url

    def start(self, timeout_s: float = 120.0) -> None:
        """Start everything and wait until ``/health`` answers; stop all on failure."""
        try:
            self._start(timeout_s)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout_s: float) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.redis = EmbeddedRedis(free_port(), self.workdir / "redis", appendonly=False).start()
        r = redis.Redis.from_url(self.redis.url)
        pipe = r.pipeline()
        pipe.hset(keys.PRINCIPALS, mapping=cast("dict[FieldT, EncodableT]", self.principals))
        for cam in self.cfg["cameras"]:
            pipe.hset(keys.CAMERAS, cam["id"], _json(cam))
        for shard in range(self.shards):
            # Created at 0 before any frame is written, so nothing produced before the
            # consumer's first read can be skipped by a group created at "$".
            pipe.xgroup_create(detections_stream(shard), keys.RULES_GROUP, id="0", mkstream=True)
        pipe.execute()
        r.close()

        import ray
        from ray import serve

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        ray.init(
            address="local",
            include_dashboard=False,
            _temp_dir=f"/tmp/csbench-ray-{os.getpid()}",
            num_cpus=self.num_cpus,
            log_to_driver=False,
            configure_logging=False,
        )
        self.ray_started = True
        from serve_app.app import build_app

        serve.start(
            http_options={"host": "127.0.0.1", "port": self.port},
            logging_config={"log_level": "WARNING"},
        )
        app = build_app({"config": self.cfg, "redis_url": self.redis.url, "rules": self.rules})
        serve.run(app, name="citysight", route_prefix="/", blocking=False)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/health", timeout=2
                ) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"Serve app not healthy on port {self.port}")
            time.sleep(0.5)
        logger.info("system up: redis %s, serve on 127.0.0.1:%d", self.redis.url, self.port)

    def stop(self) -> None:
        """Stop Serve, Ray and Redis (in that order). Safe to call twice."""
        if self.ray_started:
            try:
                from ray import serve

                # ray.serve.shutdown is unannotated in ray's sources.
                serve.shutdown()  # type: ignore[no-untyped-call]
            except Exception:
                logger.exception("serve shutdown failed")
            import ray

            ray.shutdown()
            self.ray_started = False
        if self.redis is not None:
            self.redis.stop()
            self.redis = None

    # -- accounting ------------------------------------------------------------------------

    def group_stats(self, r: redis.Redis) -> dict[str, int]:
        """Sum over shards of entries added, read by the rules group, pending and lag."""
        out = {"added": 0, "read": 0, "pending": 0, "lag": 0}
        pipe = r.pipeline(transaction=False)
        for shard in range(self.shards):
            pipe.xinfo_stream(detections_stream(shard))
            pipe.xinfo_groups(detections_stream(shard))
        res = pipe.execute()
        for info, groups in zip(res[::2], res[1::2], strict=True):
            added = int(info.get("entries-added") or info.get(b"entries-added") or 0)
            out["added"] += added
            for g in groups:
                name = g.get("name") or g.get(b"name")
                if name in (keys.RULES_GROUP, keys.RULES_GROUP.encode()):
                    lag = g.get("lag")
                    if lag is None:  # unknown after deletions: fall back to entries-read
                        lag = added - int(g.get("entries-read") or 0)
                    out["read"] += added - int(lag)
                    out["pending"] += int(g.get("pending") or 0)
                    out["lag"] += int(lag)
        return out

    def trim(self, r: redis.Redis) -> None:
        """Trim each detections stream below the oldest entry the group still needs (MINID)."""
        for shard in range(self.shards):
            key = detections_stream(shard)
            pend = r.xpending(key, keys.RULES_GROUP)
            groups = r.xinfo_groups(key)
            last = next(
                (
                    g.get("last-delivered-id")
                    for g in groups
                    if g.get("name") in (keys.RULES_GROUP, b"rules")
                ),
                None,
            )
            floor = pend.get("min") if pend and pend.get("pending") else last
            if floor:
                r.xtrim(key, minid=floor, approximate=True)

    def components(self) -> dict[str, Any]:
        """Component name → pid source, for :class:`~benchmarks.common.procmon.ProcessSampler`."""
        me = os.getpid()
        redis_pid = self.redis.proc.pid if self.redis and self.redis.proc else None

        def by_cmd(*subs: str, exclude: tuple[str, ...] = ()) -> Any:
            def pids() -> list[int]:
                out = []
                for pid in children_of(me, include_self=False):
                    try:
                        cmd = " ".join(psutil.Process(pid).cmdline())
                    except psutil.Error:
                        continue
                    if any(s in cmd for s in subs) and not any(e in cmd for e in exclude):
                        out.append(pid)
                return out

            return pids

        return {
            "redis-server": lambda: [redis_pid] if redis_pid else [],
            "ray:rules": by_cmd("RulesConsumer"),
            "ray:ingress": by_cmd("Ingress"),
            "ray:proxy": by_cmd("ProxyActor"),
            "ray:system": by_cmd(
                "raylet", "gcs_server", "ServeController", "default_worker", "ray::IDLE",
                "log_monitor", "monitor.py", "dashboard",
                exclude=("RulesConsumer", "Ingress", "ProxyActor"),
            ),
            "driver": lambda: [me],
        }  # fmt: skip


def _json(obj: Any) -> str:
    import json

    return json.dumps(obj, ensure_ascii=False)
