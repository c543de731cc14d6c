"""The main job: start every service in order, run, and shut down cleanly.

Order: preflight checks → Redis (embedded or external) → principals and camera registry
→ webhook delivery (when configured) → Triton (when configured) → private local Ray → the
Serve app (API, WebSocket, rules) → stream workers. Anything that fails stops what was
already started, prints one line naming the cause and what to do, and exits non-zero.
Ctrl-C (SIGINT) or SIGTERM stops everything in reverse order and leaves no processes behind.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from citysight import keys, redisconn
from citysight.app.services.redis_server import EmbeddedRedis, ServiceError, port_in_use
from citysight.config import CitysightConfig
from citysight.metrics import metered_inference

logger = logging.getLogger(__name__)

#: Tries of a private Ray's start when its node times out during startup (load).
RAY_START_ATTEMPTS = 3
RAY_STARTUP_TIMEOUT = "timed out during startup"


def kill_children_using(path: str | None) -> int:
    """Kill this process's descendants whose command line mentions ``path`` (what a failed
    private Ray start leaves behind: its GCS, raylet and helpers); returns how many."""
    import psutil

    if not path:
        return 0
    victims = []
    for child in psutil.Process().children(recursive=True):
        try:
            if any(path in part for part in child.cmdline()):
                victims.append(child)
        except psutil.Error:
            continue
    for child in victims:
        try:
            child.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(victims, timeout=10)
    return len(victims)


def token_hash(token: str) -> str:
    """Hash under which a bearer token's principal is stored (tokens are never stored)."""
    return hashlib.sha256(token.encode()).hexdigest()


def resolve_principals(cfg: CitysightConfig) -> dict[str, dict[str, Any]]:
    """Map token hashes to principals, reading each token from its environment variable.

    Raises:
        ServiceError: a token variable is unset or empty.
    """
    out: dict[str, dict[str, Any]] = {}
    for t in cfg.tokens:
        tok = os.environ.get(t.token_env, "")
        if not tok:
            raise ServiceError(
                f"token variable {t.token_env} (principal {t.name!r}) is not set: export it "
                "before starting"
            )
        if len(tok) < 16:
            raise ServiceError(f"token in {t.token_env} is shorter than 16 characters")
        out[token_hash(tok)] = {
            "name": t.name,
            "role": t.role,
            "department": t.department,
            "jurisdiction": t.jurisdiction,
            "scopes": [str(s) for s in t.scopes],
        }
    return out


HEALTH_PERIOD_S = 5.0


def write_component(r: Any, name: str, state: str, detail: dict[str, Any]) -> None:
    """Record a component's state in ``citysight:components`` (read by ``GET /health``)."""
    r.hset(
        keys.COMPONENTS,
        name,
        json.dumps({"state": state, "detail": detail, "updated_at": time.time()}, default=str),
    )


class WorkerInference:
    """The inference callable of one stream worker, with its health.

    Counts frames in, analysed (``frames_ok``) and dropped for any backend; the stream
    worker returns :meth:`health` in its stats and the runtime aggregates the workers into
    the ``inference`` component of ``/health``.
    """

    def __init__(self, client: Any) -> None:
        self.client = client
        self.frames_in = 0
        self.frames_ok = 0
        self.errors = 0

    def __call__(self, batch: Any) -> list[Any]:
        self.frames_in += len(batch)
        try:
            results: list[Any] = self.client.infer(batch)
        except Exception:
            self.errors += 1
            raise
        self.frames_ok += len(results)
        return results

    def close(self) -> None:
        """Close the client (its shared-memory regions, connections, an embedded server)."""
        self.client.close()

    def health(self) -> dict[str, Any]:
        """The client's health plus frame counters; ``state`` is always set."""
        h = dict(self.client.health() or {})
        h.setdefault("frames_ok", self.frames_ok)
        h.setdefault("frames_dropped", self.frames_in - self.frames_ok)
        h["frames_in"] = self.frames_in
        h["infer_errors"] = self.errors
        h.setdefault("state", "running" if h.get("ready", True) else "failed")
        return h


def make_infer(inference_json: str, models_dir: str) -> WorkerInference:
    """Inference callable built inside a stream worker (so models load in that process)."""
    from citysight.config import InferenceService
    from inference.client import create_client

    client = create_client(InferenceService.model_validate_json(inference_json), Path(models_dir))
    return WorkerInference(client)


_STATE_RANK = {"running": 0, "unknown": 1, "degraded": 2, "down": 3}
INFERENCE_COUNTERS = (
    "frames_in", "frames_ok", "frames_dropped", "infer_errors", "requests", "request_errors",
    "recoveries", "server_restarts", "server_resets", "regions_kept", "reregistrations",
)  # fmt: skip
"""Counters summed over the workers in the ``inference`` component's detail."""


def inference_component(
    workers: dict[str, Any], previous: dict[str, tuple[int, int]], server: dict[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    """The ``inference`` component from every stream worker's stats.

    A worker's inference is ``down`` when its client is down (or failed), ``degraded`` when
    it dropped every frame since the previous report (``previous``: worker → ``(frames_ok,
    frames_dropped)``, updated here), ``unknown`` when the worker did not answer. The
    component is ``down`` when every worker's is (or the local Triton could not be
    restarted), ``degraded`` when any is not running, else ``running``; counters are summed,
    so ``frames_ok`` is the frames analysed by the living workers since they started.
    """
    per: dict[str, dict[str, Any]] = {}
    first: dict[str, Any] | None = None
    sums: dict[str, int] = {}
    for name, stats in sorted(workers.items()):
        h = stats.get("inference") if isinstance(stats, dict) else None
        if not isinstance(h, dict):
            why = stats.get("error", "no inference health") if isinstance(stats, dict) else ""
            per[name] = {"state": "unknown", "reason": str(why)}
            previous.pop(name, None)
            continue
        ok, dropped = int(h.get("frames_ok", 0)), int(h.get("frames_dropped", 0))
        state, reason = "running", ""
        if h.get("state") in ("down", "failed"):
            state, reason = "down", str(h.get("last_error", "") or h.get("state"))
        else:
            prev = previous.get(name)
            if prev is not None and dropped > prev[1] and ok <= prev[0]:
                state, reason = "degraded", "dropping every frame"
        previous[name] = (ok, dropped)
        per[name] = {"state": state, "reason": reason, "frames_ok": ok, "frames_dropped": dropped}
        first = first or h
        for k in INFERENCE_COUNTERS:
            if isinstance(h.get(k), int | float):
                sums[k] = sums.get(k, 0) + int(h[k])
    for name in [n for n in previous if n not in workers]:
        del previous[name]
    states = [w["state"] for w in per.values()]
    server_failed = server is not None and server.get("state") == "failed"
    if server_failed or (states and all(st == "down" for st in states)):
        overall = "down"
    elif not states:
        overall = "unknown"
    else:
        overall = max(states, key=lambda st: _STATE_RANK.get(st, 1))
        overall = "running" if overall == "running" else "degraded"
    # One worker's descriptive fields (backend, url, tiers); its own state is in `workers`.
    shown = {k: v for k, v in (first or {}).items() if k not in ("state", "ready")}
    detail = {**shown, **sums, "ready": overall not in ("down", "unknown"), "workers": per}
    detail.setdefault("frames_ok", 0)
    detail.setdefault("frames_dropped", 0)
    if server is not None:
        detail["server"] = server
    return overall, detail


class Runtime:
    """Starts and stops the services of one citysight deployment on this machine."""

    def __init__(
        self, cfg: CitysightConfig, workdir: Path, *, demo: bool = False, serve: bool = True
    ) -> None:
        # Absolute at the edge: tritonserver, Ray actors and Serve replicas do not run in
        # the directory this command was started from.
        self.cfg = cfg.with_absolute_paths()
        self.workdir = Path(os.path.abspath(workdir))
        # The audit key and the exported chain head live in the work dir, outside Redis.
        audit = self.cfg.audit
        audit.key_file = audit.key_file or str(self.workdir / "audit.key")
        audit.head_file = audit.head_file or str(self.workdir / "audit-head.json")
        clip_store = self.cfg.services.streams.clips.storage
        clip_store.path = clip_store.path or str(self.workdir / "clips")
        self.demo = demo
        self.serve = serve  # False: the Serve app is deployed elsewhere (a RayService)
        self.redis: EmbeddedRedis | None = None
        self.redis_url = cfg.services.redis.url or ""
        self.triton: Any = None
        self.triton_watchdog: Any = None
        self.ray_started = False
        self.serve_started = False
        self.supervisor: Any = None
        self.webhooks: Any = None
        self._stopped = False
        self._halt = threading.Event()
        self._health_thread: threading.Thread | None = None

    # -- start -------------------------------------------------------------------------

    def start(self) -> None:
        """Start everything; on failure, stop what started and re-raise."""
        try:
            self._preflight()
            self._start_redis()
            self._seed_redis()
            self._start_webhooks()
            self._start_triton()
            self._start_ray()
            if self.serve:
                self._start_serve()
            self._start_streams()
        except BaseException:
            self.stop()
            raise

    def _preflight(self) -> None:
        http = self.cfg.services.http
        if port_in_use(http.port, http.host if http.host != "0.0.0.0" else "127.0.0.1"):
            raise ServiceError(
                f"port {http.port} is already in use: stop what listens there (another "
                "citysight?) or choose another port (--port, services.http.port)"
            )
        models = Path(self.cfg.services.inference.models_dir)
        if not models.exists():
            logger.warning(
                "models dir %s does not exist: detectors use their fallback tiers "
                "(run `citysight models install --from DIR` to add model files)",
                models,
            )
        for cam in self.cfg.cameras:
            if cam.enabled and "://" not in cam.url and not Path(cam.url).exists():
                raise ServiceError(
                    f"camera {cam.id}: video file {cam.url} not found: fix cameras[].url"
                )
        self._check_webhooks()

    def _check_webhooks(self) -> None:
        if not self.cfg.webhooks:
            return
        from serve_app.webhooks.delivery import resolve_secrets

        try:
            resolve_secrets(self.cfg)
        except ValueError as exc:
            raise ServiceError(str(exc)) from None

    def _start_webhooks(self) -> None:
        if not any(w.enabled for w in self.cfg.webhooks):
            return
        from serve_app.webhooks.delivery import WebhookService

        # Before the Serve app: its consumer group exists before the first alert event.
        self.webhooks = WebhookService(self.cfg, self.redis_url).start()

    def _start_redis(self) -> None:
        import redis

        rcfg = self.cfg.services.redis
        if rcfg.url or rcfg.sentinels:
            from citysight.urls import redact

            try:
                # Every client (Serve replicas, stream workers) gets the password this way.
                url = rcfg.connection_url() or rcfg.url or ""
            except ValueError as exc:
                raise ServiceError(f"services.redis.password_env: {exc}") from None
            client = redisconn.connect(url, socket_timeout=3)
            try:
                client.ping()
            except redis.RedisError as exc:
                raise ServiceError(
                    f"Redis at {redact(url)} is unreachable ({exc}): start it or "
                    "fix services.redis.url / sentinels / password_env"
                ) from None
            finally:
                client.close()
            self.redis_url = url
            return
        data_dir = Path(rcfg.data_dir)
        self.redis = EmbeddedRedis(
            rcfg.embedded_port,
            data_dir,
            password=rcfg.embedded_password,
            maxmemory_mb=rcfg.maxmemory_mb,
        ).start()
        self.redis_url = self.redis.url

    def _seed_redis(self) -> None:

        from citysight.keyfiles import SecretError, audit_key

        try:
            # Created here, before any replica needs it, so every process reads one key.
            audit_key(self.cfg.audit)
        except SecretError as exc:
            raise ServiceError(str(exc)) from None
        principals = resolve_principals(self.cfg)
        r = redisconn.connect(self.redis_url)
        try:
            pipe = r.pipeline()
            pipe.delete(keys.PRINCIPALS)
            if principals:
                pipe.hset(
                    keys.PRINCIPALS, mapping={k: json.dumps(v) for k, v in principals.items()}
                )
            for cam in self.cfg.cameras:
                pipe.hset(keys.CAMERAS, cam.id, cam.model_dump_json())
            pipe.hset(
                keys.COMPONENTS,
                "streams",
                json.dumps({"state": "starting", "detail": {}, "updated_at": time.time()}),
            )
            pipe.execute()
        finally:
            r.close()

    def _start_triton(self) -> None:
        inf = self.cfg.services.inference
        if inf.type != "triton" or inf.triton_url:
            return
        from inference.triton.server import LocalTriton, TritonStartError, TritonWatchdog

        # One Triton per node, next to the decoders; the stream workers connect to it.
        self.triton = LocalTriton.for_config(inf, workdir=self.workdir / "triton")
        try:
            self.triton.start()
        except TritonStartError as exc:
            raise ServiceError(
                f"the bundled Triton server did not start ({exc}); see "
                f"{self.triton.log_path} or use --inference onnxruntime"
            ) from None
        inf.triton_url = self.triton.grpc_url
        # The workers only know the URL: if the process dies, restart it on the same ports.
        self.triton_watchdog = TritonWatchdog(self.triton).start()

    def _start_ray(self) -> None:
        import ray

        rcfg = self.cfg.services.ray
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
        if rcfg.address:
            ray.init(address=rcfg.address, log_to_driver=False)
            self.ray_started = True
            return
        for attempt in range(1, RAY_START_ATTEMPTS + 1):
            try:
                # Never attach to some other Ray on this machine: address="local" starts a
                # private one in its own temp dir.
                ray.init(
                    address="local",
                    include_dashboard=False,
                    _temp_dir=rcfg.temp_dir,
                    num_cpus=rcfg.num_cpus or max(4, os.cpu_count() or 2),
                    log_to_driver=False,
                    configure_logging=False,
                )
                break
            except Exception as exc:
                # Ray gives its raylet a fixed 30 s to register with the GCS; on a loaded
                # 2-core box that can pass, and the processes it started stay behind.
                if RAY_STARTUP_TIMEOUT not in str(exc) or attempt == RAY_START_ATTEMPTS:
                    raise
                killed = kill_children_using(rcfg.temp_dir)
                logger.warning(
                    "Ray did not start in time (attempt %d of %d, %d leftover processes "
                    "stopped); starting it again",
                    attempt,
                    RAY_START_ATTEMPTS,
                    killed,
                )
        self.ray_started = True

    def _start_serve(self) -> None:
        from ray import serve

        from serve_app.app import build_app

        http = self.cfg.services.http
        serve.start(
            http_options={"host": http.host, "port": http.port},
            logging_config={"log_level": "WARNING"},
        )
        self.serve_started = True
        app = build_app({"config": self.cfg.model_dump(mode="json"), "redis_url": self.redis_url})
        serve.run(app, name="citysight", route_prefix="/", blocking=False)

    def _start_streams(self) -> None:
        from streams.supervisor import StreamSupervisor

        inf = self.cfg.services.inference
        factory = functools.partial(
            make_infer, inf.model_dump_json(), str(Path(inf.models_dir).resolve())
        )
        self.supervisor = StreamSupervisor(
            self.cfg.services.streams,
            self.redis_url,
            # Each worker's inference, measured for GET /metrics (citysight.metrics).
            functools.partial(metered_inference, factory, self.redis_url),
            live_cfg=self.cfg.services.live,
        )
        self._health_thread = threading.Thread(
            target=self._report_streams, name="streams-health", daemon=True
        )
        self._health_thread.start()

    def _report_streams(self) -> None:
        r = redisconn.connect(self.redis_url)
        previous: dict[str, tuple[int, int]] = {}
        try:
            while True:
                sup = self.supervisor
                if sup is None:
                    break
                try:
                    self._report_once(r, sup, previous)
                except Exception as exc:
                    logger.warning("streams health report failed: %s", exc)
                if self._halt.wait(HEALTH_PERIOD_S):
                    break
        finally:
            r.close()

    def _report_once(self, r: Any, sup: Any, previous: dict[str, tuple[int, int]]) -> None:
        """Write the ``streams`` and ``inference`` components from the workers' stats."""
        stats = sup.stats()
        workers = {k: v for k, v in stats.items() if isinstance(v, dict) and k != "watch"}
        broken = sorted(k for k, v in workers.items() if "error" in v)
        detail = {
            "workers": len(workers),
            "assignments": sup.assignments(),
            "unreachable_workers": broken,
            "moves": stats.get("moves", 0),
            "respawns": stats.get("respawns", 0),
        }
        watch = stats.get("watch") if isinstance(stats.get("watch"), dict) else {}
        detail["watch"] = watch
        bad = bool(broken) or watch.get("state", "running") != "running"
        write_component(r, "streams", "degraded" if bad else "running", detail)
        dog = self.triton_watchdog
        state, inf_detail = inference_component(
            workers, previous, dog.health() if dog is not None else None
        )
        write_component(r, "inference", state, inf_detail)

    # -- stop --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything that was started, in reverse order. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        self._halt.set()
        if self._health_thread is not None:
            self._health_thread.join(10)
        steps: list[tuple[str, Callable[[], None]]] = [
            ("streams", self._stop_streams),
            ("serve", self._stop_serve),
            ("webhooks", self._stop_webhooks),
            ("ray", self._stop_ray),
            ("triton", self._stop_triton),
            ("redis", self._stop_redis),
        ]
        for name, step in steps:
            try:
                step()
            except Exception:  # keep stopping the rest
                logger.exception("error while stopping %s", name)

    def _stop_streams(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None

    def _stop_webhooks(self) -> None:
        if self.webhooks is not None:
            self.webhooks.stop()
            self.webhooks = None

    def _stop_serve(self) -> None:
        if self.serve_started:
            from ray import serve

            serve.shutdown()  # type: ignore[no-untyped-call]
            self.serve_started = False

    def _stop_ray(self) -> None:
        if self.ray_started:
            import ray

            ray.shutdown()
            self.ray_started = False

    def _stop_triton(self) -> None:
        if self.triton_watchdog is not None:
            self.triton_watchdog.stop()
            self.triton_watchdog = None
        if self.triton is not None:
            self.triton.stop()
            self.triton = None

    def _stop_redis(self) -> None:
        if self.redis is not None:
            self.redis.stop()
            self.redis = None


def _print_banner(cfg: CitysightConfig, demo: bool, serve: bool = True) -> None:
    if not serve:
        n = sum(c.enabled for c in cfg.cameras)
        print(
            f"citysight is running: stream supervisor for {n} cameras (the Serve app runs "
            "elsewhere)",
            flush=True,
        )
        return
    http = cfg.services.http
    base = f"http://{http.host}:{http.port}"
    print(
        f"citysight is running: map {base}/  health {base}/health  "
        f"WebSocket ws://{http.host}:{http.port}/ws",
        flush=True,
    )
    if demo:
        for t in cfg.tokens:
            print(f"  token {t.role:<12} {os.environ.get(t.token_env, '')}", flush=True)
        print("  (synthetic demo cameras; Ctrl-C stops everything)", flush=True)


def run_forever(
    cfg: CitysightConfig,
    *,
    workdir: Path,
    duration_s: float | None = None,
    demo: bool = False,
    serve: bool = True,
) -> int:
    """Start, wait for Ctrl-C/SIGTERM (or ``duration_s``), stop. Returns the exit code.

    ``serve=False`` is the cluster's control process: Redis seeding and the stream
    supervisor, with the Serve app deployed by the RayService.
    """
    workdir = Path(os.path.abspath(workdir))
    workdir.mkdir(parents=True, exist_ok=True)
    if demo:
        from citysight.app.demo import demo_tokens

        demo_tokens()
    rt = Runtime(cfg, workdir, demo=demo, serve=serve)
    stop_event = threading.Event()

    def _on_signal(signum: int, _frame: Any) -> None:
        logger.info("signal %s: stopping", signum)
        stop_event.set()

    old = {s: signal.signal(s, _on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            rt.start()
        except ServiceError as exc:
            print(f"citysight: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:
            logger.debug("start failed", exc_info=True)
            first = str(exc).strip().splitlines()[-1:] or [""]
            print(
                f"citysight: failed to start: {type(exc).__name__}: {first[0]} "
                "(run with -v for the traceback)",
                file=sys.stderr,
            )
            return 1
        _print_banner(cfg, demo, serve)
        deadline = time.monotonic() + duration_s if duration_s else None
        while not stop_event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop_event.wait(0.5)
        return 0
    finally:
        rt.stop()
        for s, h in old.items():
            signal.signal(s, h)
