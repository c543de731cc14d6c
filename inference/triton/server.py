"""A real local Triton: the ``tritonserver`` binary bundled in the nvidia-pytriton wheel.

The wheel ships tritonserver 2.51 with only the python backend. :class:`LocalTriton` prepares a
private copy of the server tree with the python stub of this interpreter, starts it standalone
on ``127.0.0.1`` (free ports) against ``model_repo/``, and gates readiness on
``/v2/health/ready`` plus a canary inference on a known frame with known boxes.

Known trap handled here: the python stub links ``libpython3.11.so``; under a non-system Python
(pyenv, uv) it would resolve to Debian's libpython and model ``initialize()`` dies with
``'_thread.RLock' object has no attribute '_recursion_count'``. The interpreter's own
``LIBDIR`` is therefore put first in ``LD_LIBRARY_PATH``.

:class:`TritonWatchdog` restarts a server whose process died, on the same ports, so clients
that only know its URL (the stream workers) find it again.
"""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from inference.triton.pymodel import MODELS_DIR_ENV, TIERS_ENV, canary_frame

if TYPE_CHECKING:
    from inference.detectors.common import OrtOptions

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_REPOSITORY = PROJECT_ROOT / "model_repo"
DEFAULT_MODELS_DIR = DEFAULT_REPOSITORY / "files"
DETECTOR_MODELS = ("face", "plate", "fire_smoke", "vending")


class TritonStartError(RuntimeError):
    """Triton did not become ready (the message carries the tail of its log)."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pytriton_dist() -> Path:
    """The ``tritonserver`` tree inside the installed nvidia-pytriton wheel."""
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def pytriton_libs() -> Path:
    """The bundled shared libraries of the nvidia-pytriton wheel."""
    import pytriton

    return Path(pytriton.__file__).resolve().parent.parent / "nvidia_pytriton.libs"


def prepare_server_tree(dest: Path) -> Path:
    """Copy the bundled server to ``dest`` with this interpreter's python stub in place.

    Returns:
        Path of the ``tritonserver`` binary in ``dest``.
    """
    src = pytriton_dist()
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = src / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not stub.is_file():
        raise TritonStartError(f"nvidia-pytriton has no python stub for Python {version}")
    if not (dest / "bin" / "tritonserver").is_file():
        shutil.copytree(
            src,
            dest,
            dirs_exist_ok=True,
            ignore=shutil.ignore_patterns("python_backend_stubs", "__pycache__"),
        )
        shutil.copy2(stub, dest / "backends" / "python" / "triton_python_backend_stub")
    return dest / "bin" / "tritonserver"


def server_env(models_dir: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for tritonserver and its python stubs (libpython first, project importable)."""
    env = dict(os.environ if base is None else base)
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    libs = [p for p in (libdir, str(pytriton_libs())) if p]
    if env.get("LD_LIBRARY_PATH"):
        libs.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = os.pathsep.join(libs)
    # The stub's embedded interpreter ignores PYTHONPATH; model.py reads these instead.
    env["CITYSIGHT_SITE_PACKAGES"] = os.pathsep.join(
        dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    )
    env["CITYSIGHT_PROJECT_ROOT"] = str(PROJECT_ROOT)
    env[MODELS_DIR_ENV] = str(Path(models_dir).resolve())
    env.setdefault("ORT_DISABLE_TELEMETRY", "1")
    # One thread per numeric library in each stub: several stubs share the host's cores.
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


def run_canary(http_url: str, timeout_s: float = 10.0) -> bool:
    """Infer the known canary frame on Triton at ``http_url`` and compare the boxes.

    Returns:
        ``True`` when the ``canary`` model found exactly the drawn boxes; ``False`` on any
        error or mismatch (never raises).
    """
    import tritonclient.http as httpclient

    frame, expected = canary_frame()
    try:
        client = httpclient.InferenceServerClient(
            http_url, network_timeout=timeout_s, connection_timeout=timeout_s
        )
        try:
            frames = httpclient.InferInput("FRAMES", [1, *frame.shape], "UINT8")
            frames.set_data_from_numpy(frame[None])
            cams = httpclient.InferInput("CAMERA_IDS", [1, 1], "BYTES")
            cams.set_data_from_numpy(np.asarray([[b"canary"]], dtype=object))
            result = client.infer("canary", [frames, cams])
        finally:
            client.close()
    except Exception as exc:  # any failure means "not ready"
        logger.warning("triton canary failed: %s", exc)
        return False
    count = int(result.as_numpy("COUNT")[0, 0])
    boxes = result.as_numpy("BOXES")[0, :count]
    ok = boxes.shape == expected.shape and bool(np.allclose(boxes, expected, atol=0.5))
    if not ok:
        logger.warning("triton canary: boxes %s, expected %s", boxes.tolist(), expected.tolist())
    return ok


class LocalTriton:
    """A standalone tritonserver process on 127.0.0.1.

    Args:
        model_repository: Triton model repository (``model_repo/``).
        models_dir: Directory of model files, handed to the models as
            ``CITYSIGHT_MODELS_DIR``.
        models: Models to load (explicit model control); ``None`` loads every model.
        workdir: Where the server tree, logs and nothing else go; a temp dir by default.
        tiers: Optional ``{detector: [tier, ...]}`` restriction of detector tiers.
        startup_timeout_s: Seconds to wait for health and the canary.
        log_verbose: tritonserver ``--log-verbose`` level.
        ports: Fixed ``(http, grpc, metrics)`` ports; free ones by default.
        ort: ONNX Runtime provider and max batch of the python models' detectors (passed as
            ``CITYSIGHT_ORT_*`` environment variables); ``None`` leaves this process's
            environment as it is.

    Example:
        >>> with LocalTriton() as triton:  # doctest: +SKIP
        ...     triton.grpc_url
    """

    def __init__(
        self,
        model_repository: Path = DEFAULT_REPOSITORY,
        models_dir: Path = DEFAULT_MODELS_DIR,
        models: list[str] | None = None,
        workdir: Path | None = None,
        tiers: dict[str, list[str]] | None = None,
        startup_timeout_s: float = 90.0,
        log_verbose: int = 0,
        ports: tuple[int, int, int] | None = None,
        ort: OrtOptions | None = None,
    ) -> None:
        self.model_repository = Path(model_repository).resolve()
        self.models_dir = Path(models_dir).resolve()
        self.models = list(models) if models is not None else None
        self.tiers = tiers or {}
        self.ort = ort
        self.startup_timeout_s = startup_timeout_s
        self.log_verbose = log_verbose
        self._own_workdir = workdir is None
        # Absolute: the server runs with cwd=workdir, so a relative binary path inside it
        # would be resolved against the work dir a second time (FileNotFoundError).
        self.workdir = Path(
            os.path.abspath(workdir or tempfile.mkdtemp(prefix="citysight-triton-"))
        )
        self.http_port, self.grpc_port, self.metrics_port = ports or (0, 0, 0)
        self._fixed_ports = ports is not None
        self.shm_prefix = f"citysight{os.getpid()}x{id(self) & 0xFFFFFF:x}_"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "tritonserver.log"
        self.starts = 0

    @classmethod
    def for_config(cls, inf: Any, **kw: Any) -> LocalTriton:
        """A server for a :class:`citysight.config.InferenceService`: its model files, tier
        order and ONNX Runtime options (provider, max batch) reach the python models."""
        from inference.detectors.common import OrtOptions

        return cls(
            models_dir=Path(inf.models_dir),
            tiers=inf.tiers,
            ort=OrtOptions.from_config(inf),
            **kw,
        )

    # -- addresses ----------------------------------------------------------------------

    @property
    def http_url(self) -> str:
        """``host:port`` of the HTTP endpoint."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        """``host:port`` of the gRPC endpoint."""
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def metrics_url(self) -> str:
        """URL of the Prometheus metrics."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    # -- lifecycle ----------------------------------------------------------------------

    def command(self, binary: Path) -> list[str]:
        """The tritonserver command line."""
        cmd = [
            str(binary),
            f"--model-repository={self.model_repository}",
            "--http-address=127.0.0.1",
            f"--http-port={self.http_port}",
            "--grpc-address=127.0.0.1",
            f"--grpc-port={self.grpc_port}",
            "--metrics-address=127.0.0.1",
            f"--metrics-port={self.metrics_port}",
            f"--backend-directory={binary.parent.parent / 'backends'}",
            f"--cache-directory={binary.parent.parent / 'caches'}",
            # A private shm prefix: several servers on one host must not share regions.
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            # Rate limiting makes the models' rate_limiter priorities real (fire_smoke first)
            # when more executions are ready than the host has cores.
            "--rate-limit=execution_count",
            f"--rate-limit-resource=cpu:{max(2, os.cpu_count() or 2)}",
            "--exit-timeout-secs=5",
            # Keep serving the models that load; a broken one is reported UNAVAILABLE.
            "--exit-on-error=false",
            "--strict-readiness=true",
            f"--log-verbose={self.log_verbose}",
            "--allow-gpu-metrics=false",
        ]
        # Always explicit: model_repo/ also holds files/ and production/, which are not models.
        cmd.append("--model-control-mode=explicit")
        cmd += [f"--load-model={m}" for m in self.model_names()]
        return cmd

    def environment(self) -> dict[str, str]:
        """The server's environment: :func:`server_env` plus tiers and ONNX Runtime options."""
        env = server_env(self.models_dir)
        if self.ort is not None:
            env.update(self.ort.env())
        if self.tiers:
            env[TIERS_ENV] = ",".join(f"{k}={'+'.join(v)}" for k, v in self.tiers.items())
        return env

    def model_names(self) -> list[str]:
        """Models this server loads: the explicit list, or every folder with a config."""
        if self.models is not None:
            return list(self.models)
        return sorted(p.parent.name for p in self.model_repository.glob("*/config.pbtxt"))

    def start(self, wait: bool = True, keep_ports: bool = False) -> LocalTriton:
        """Start the server; with ``wait`` block until it is ready and the canary passes.

        Args:
            wait: Block until ready (health and, when loaded, the canary).
            keep_ports: Reuse the previous ports (a restart clients can reconnect to).

        Raises:
            TritonStartError: it exited or did not become ready in time.
        """
        if self.proc is not None and self.proc.poll() is None:
            return self
        binary = prepare_server_tree(self.workdir / "tritonserver")
        if not ((keep_ports or self._fixed_ports) and self.http_port):
            self.http_port, self.grpc_port, self.metrics_port = (
                free_port(),
                free_port(),
                free_port(),
            )
        env = self.environment()
        log = self.log_path.open("ab")
        logger.info(
            "starting tritonserver (http %s, grpc %s) on %s",
            self.http_url,
            self.grpc_url,
            self.model_repository,
        )
        self.proc = subprocess.Popen(
            self.command(binary),
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=str(self.workdir),
            start_new_session=True,
        )
        log.close()
        self.starts += 1
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float | None = None) -> None:
        """Block until ``/v2/health/ready`` and the canary pass.

        Raises:
            TritonStartError: the server exited or the deadline passed.
        """
        deadline = time.monotonic() + (timeout_s or self.startup_timeout_s)
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                raise TritonStartError(f"tritonserver exited:\n{self.log_tail()}")
            failed = self.failed_models()
            if failed:
                raise TritonStartError(
                    "model(s) UNAVAILABLE: "
                    + "; ".join(f"{name}: {reason}" for name, reason in failed.items())
                )
            if self.ready() and self.canary():
                logger.info("tritonserver ready in %s", self.http_url)
                return
            time.sleep(0.25)
        raise TritonStartError(
            f"tritonserver not ready after {timeout_s or self.startup_timeout_s:.0f} s; "
            f"models: {self.model_states()}\n{self.log_tail()}"
        )

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the server and its stubs (SIGTERM, then SIGKILL); remove its shm regions."""
        proc, self.proc = self.proc, None
        stubs = self._children(proc)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                logger.warning("tritonserver ignored SIGTERM; killing it")
        if proc is not None:
            # The stubs live in the server's session: make sure none survives.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self._kill_all(stubs)
        for path in glob.glob(f"/dev/shm/{self.shm_prefix}*"):
            with contextlib.suppress(OSError):
                os.unlink(path)

    def kill(self) -> None:
        """SIGKILL the server and its stubs at once (fault injection)."""
        if self.proc is not None:
            stubs = self._children(self.proc)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            self.proc = None
            self._kill_all(stubs)

    @staticmethod
    def _children(proc: subprocess.Popen[bytes] | None) -> list[Any]:
        """The python stubs of a running server (they may leave its process group)."""
        import psutil

        if proc is None or proc.poll() is not None:
            return []
        try:
            return list(psutil.Process(proc.pid).children(recursive=True))
        except psutil.Error:
            return []

    @staticmethod
    def _kill_all(procs: list[Any]) -> None:
        import psutil

        for p in procs:
            with contextlib.suppress(psutil.Error):
                p.kill()
        psutil.wait_procs(procs, timeout=5)

    def close(self) -> None:
        """Stop the server and remove a temporary work dir."""
        self.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> LocalTriton:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- probes -------------------------------------------------------------------------

    def _http(
        self, method: str, path: str, body: bytes | None = None, timeout_s: float = 2.0
    ) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://{self.http_url}{path}", data=body, method=method)
        try:
            with urllib.request.urlopen(req, timeout=timeout_s) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            return int(exc.code), exc.read()
        except (OSError, urllib.error.URLError):
            return 0, b""

    def live(self) -> bool:
        """``/v2/health/live``."""
        return self.http_port > 0 and self._http("GET", "/v2/health/live")[0] == 200

    def ready(self) -> bool:
        """``/v2/health/ready`` (every loaded model ready, with ``--strict-readiness``)."""
        return self.http_port > 0 and self._http("GET", "/v2/health/ready")[0] == 200

    def model_states(self) -> list[dict[str, Any]]:
        """Triton's repository index: ``name``, ``version``, ``state``, ``reason`` per model."""
        status, body = self._http("POST", "/v2/repository/index", b"{}")
        if status != 200:
            return []
        return list(json.loads(body or b"[]"))

    def failed_models(self) -> dict[str, str]:
        """Models of :meth:`model_names` that Triton reports UNAVAILABLE, with the reason."""
        names = set(self.model_names())
        return {
            str(s["name"]): str(s.get("reason", ""))
            for s in self.model_states()
            if s.get("name") in names
            and s.get("state") == "UNAVAILABLE"
            and s.get("reason") not in (None, "", "unloaded")
        }

    def model_ready(self, name: str) -> bool:
        """``/v2/models/{name}/ready``."""
        return self._http("GET", f"/v2/models/{name}/ready")[0] == 200

    def canary(self, timeout_s: float = 10.0) -> bool:
        """Run :func:`run_canary` on this server (``True`` when no canary model is loaded)."""
        if "canary" not in self.model_names():
            return True
        return run_canary(self.http_url, timeout_s)

    def log_tail(self, lines: int = 40) -> str:
        """Last lines of the server log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class TritonWatchdog:
    """Restarts a :class:`LocalTriton` whose process died, on the same ports (bounded).

    Frigate's watchdog rule: at most ``max_restarts`` per ``window_s``; past that budget it
    waits until the oldest restart leaves the window instead of restarting in a loop. A
    server stopped on purpose (:meth:`LocalTriton.stop`, ``proc`` is ``None``) is left alone.

    Args:
        server: The server to watch.
        interval_s: How often the process is checked.
        max_restarts: Restarts allowed per ``window_s``.
        window_s: Window of ``max_restarts``.
        ready_timeout_s: How long a restarted server may take to pass its readiness gate.
    """

    def __init__(
        self,
        server: LocalTriton,
        *,
        interval_s: float = 1.0,
        max_restarts: int = 5,
        window_s: float = 60.0,
        ready_timeout_s: float = 90.0,
    ) -> None:
        self.server = server
        self.interval_s = interval_s
        self.max_restarts = max_restarts
        self.window_s = window_s
        self.ready_timeout_s = ready_timeout_s
        self.restarts = 0
        self.state = "running"
        self.last_error = ""
        self._times: deque[float] = deque()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> TritonWatchdog:
        """Watch in a daemon thread."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="triton-watchdog", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop watching (the server keeps running)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.ready_timeout_s + 10)
            self._thread = None

    def health(self) -> dict[str, Any]:
        """``state`` (``running``, ``restarting``, ``failed``), restarts and the last error."""
        return {"state": self.state, "restarts": self.restarts, "last_error": self.last_error}

    def check(self) -> bool:
        """Restart the server if its process died and the budget allows; True if restarted."""
        proc = self.server.proc
        if proc is None or proc.poll() is None:
            return False
        now = time.monotonic()
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()
        if len(self._times) >= self.max_restarts:
            self.state = "failed"
            return False
        self._times.append(now)
        code = proc.returncode
        logger.warning(
            "tritonserver exited (code %s); restarting it on the same ports (%d in %.0f s)",
            code,
            len(self._times),
            self.window_s,
        )
        self.state = "restarting"
        try:
            self.server.stop()
            self.server.start(wait=False, keep_ports=True)
            self._wait_ready()
        except Exception as exc:  # the next check tries again (bounded)
            self.last_error = f"restart failed: {exc}".splitlines()[0]
            logger.error("tritonserver restart failed: %s", exc)
            return False
        self.restarts += 1
        self.state = "running"
        self.last_error = f"process exited with code {code}; restarted"
        logger.info("tritonserver restarted (%d so far)", self.restarts)
        return True

    def _wait_ready(self) -> None:
        """:meth:`LocalTriton.wait_ready`, but a :meth:`stop` interrupts it."""
        deadline = time.monotonic() + self.ready_timeout_s
        while not self._stop.is_set():
            proc = self.server.proc
            if proc is None or proc.poll() is not None:
                raise TritonStartError(f"tritonserver exited:\n{self.server.log_tail(10)}")
            if self.server.ready() and self.server.canary():
                return
            if time.monotonic() > deadline:
                raise TritonStartError(f"not ready after {self.ready_timeout_s:.0f} s")
            self._stop.wait(0.25)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.check()
            except Exception:  # never let the watchdog die
                logger.exception("triton watchdog check failed")
