"""Triton backend of the :class:`inference.client.InferenceClient` protocol.

Frames go to the python-backend models of ``model_repo/`` over gRPC; when the server is on this
host they travel through POSIX system shared memory (one region per in-flight slot) instead of
the gRPC payload, or through CUDA IPC regions on a GPU node (``shared_memory: cuda``; without
``cuda-python`` or when the server refuses them the client falls back to system shared memory
and says why in :meth:`TritonClient.health`). Requests are bounded (``max_inflight`` slots)
and time out (``timeout_ms``). A failed, slow or absent Triton never blocks or raises into the
decoder: the affected frames are dropped and counted (:meth:`TritonClient.health`), the client
probes the server at most every ``retry_interval_s`` while it is down and resumes once it is
ready again.

Recovery asks the server instead of guessing: a transient failure (a deadline that expired
under load) leaves the server holding our shared-memory regions, a restart loses them. On
recovery the client reads the server's shared-memory status and marks as registered exactly
the slots whose region the server still reports with our key and size; a region the server
still holds under our name when we register it (``ALREADY_EXISTS``) counts as registered
when the server reports our key and size, and is otherwise unregistered and registered again
(so the server maps our current handle); and a request naming a region the server does not
know (it restarted between two requests, or someone unregistered it) is sent
again once after re-registering. Shared-memory bookkeeping errors never open the breaker:
only connection loss and expired deadlines do.

Dropped frames are left out of the returned list, so ``len(results)`` can be below
``len(batch)``; a frame is returned only when every detector it asked for answered.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from citysight.config import Detector, InferenceService
from citysight.contracts import ContractError, FrameBatch, FrameResult
from inference.detectors.base import DetectorOutput
from inference.tracker import TrackerBank

logger = logging.getLogger(__name__)

LOCAL_HOSTS = ("127.0.0.1", "localhost", "[::1]")
MAX_RESTARTS = 5
RESTART_WINDOW_S = 60.0


class _Slot:
    """One in-flight request slot, with its own shared-memory region when enabled.

    ``kind`` is ``system`` (POSIX shared memory) or ``cuda`` (a CUDA IPC region on
    ``device``); the client switches a slot's kind (dropping its region) while holding it.
    """

    def __init__(self, index: int, prefix: str, kind: str = "system", device: int = 0) -> None:
        self.name = f"{prefix}_{index}"
        self.key = f"/{self.name}"
        self.kind = kind
        self.device = device
        self.handle: Any = None
        self.size = 0
        self.registered = False

    def _module(self) -> Any:
        if self.kind == "cuda":
            import tritonclient.utils.cuda_shared_memory as cudashm

            return cudashm
        import tritonclient.utils.shared_memory as shm

        return shm

    def ensure(self, nbytes: int, client: Any) -> None:
        """Grow (re-create and re-register) the region to hold ``nbytes``."""
        if self.handle is not None and self.size >= nbytes and self.registered:
            return
        mod = self._module()
        if self.handle is None or self.size < nbytes:
            self.drop(client)
            size = max(nbytes, 1 << 20)
            if self.kind == "cuda":
                self.handle = mod.create_shared_memory_region(self.name, size, self.device)
            else:
                self.handle = mod.create_shared_memory_region(self.name, self.key, size)
            self.size = size
        try:
            self._register(client)
        except Exception as exc:
            if not _already_exists(exc):
                raise
            # The server still holds a region of this name (we forgot it after a transient
            # failure). If it is our current one (same key and size) it is registered;
            # otherwise it maps an older region of ours: replace it.
            if not self.matches(self._server_status(client)):
                self._unregister(client)
                self._register(client)
        self.registered = True

    def _server_status(self, client: Any) -> dict[str, Any] | None:
        """The server's status of this region (``None`` when it has none or cannot say)."""
        try:
            if self.kind == "cuda":
                st = client.get_cuda_shared_memory_status(self.name, as_json=True)
            else:
                st = client.get_system_shared_memory_status(self.name, as_json=True)
        except Exception:
            return None
        region: dict[str, Any] | None = (st.get("regions") or {}).get(self.name)
        return region

    def _register(self, client: Any) -> None:
        if self.kind == "cuda":
            raw = self._module().get_raw_handle(self.handle)
            client.register_cuda_shared_memory(self.name, raw, self.device, self.size)
        else:
            client.register_system_shared_memory(self.name, self.key, self.size)

    def _unregister(self, client: Any) -> None:
        if self.kind == "cuda":
            client.unregister_cuda_shared_memory(self.name)
        else:
            client.unregister_system_shared_memory(self.name)

    def matches(self, region: dict[str, Any] | None) -> bool:
        """Whether a region the server reports (status JSON) is this slot's current one."""
        if region is None or self.handle is None:
            return False
        if self.kind != "cuda" and region.get("key") != self.key:
            return False
        return int(region.get("byte_size", region.get("byteSize", 0)) or 0) == self.size

    def write(self, frames: npt.NDArray[np.uint8]) -> None:
        """Copy ``frames`` into the region (host to device for CUDA)."""
        self._module().set_shared_memory_region(self.handle, [np.ascontiguousarray(frames)])

    def drop(self, client: Any) -> None:
        """Unregister and destroy the region (errors ignored: the server may be gone)."""
        if self.registered:
            with contextlib.suppress(Exception):
                self._unregister(client)
            self.registered = False
        if self.handle is not None:
            with contextlib.suppress(Exception):
                self._module().destroy_shared_memory_region(self.handle)
            self.handle = None
            self.size = 0


def _status_of(exc: BaseException) -> str | None:
    from tritonclient.utils import InferenceServerException

    return exc.status() if isinstance(exc, InferenceServerException) else None


def _already_exists(exc: BaseException) -> bool:
    """Triton refused a registration because it holds a region of that name."""
    return _status_of(exc) == "StatusCode.ALREADY_EXISTS" or "already in manager" in str(exc)


def _region_unknown(exc: BaseException) -> bool:
    """Triton does not know a shared-memory region a request named (it lost or dropped it)."""
    msg = str(exc).lower()
    return "shared memory region" in msg and ("unable to find" in msg or "not found" in msg)


def _local_error(exc: BaseException) -> bool:
    """An error of this process (bad input, local shared memory), not of the server."""
    # tritonclient's (CUDA) SharedMemoryException classes derive from Exception only.
    return isinstance(exc, ValueError | OSError) or type(exc).__name__.endswith(
        "SharedMemoryException"
    )


def resolve_shared_memory(mode: str, host: str) -> tuple[str, str]:
    """The shared-memory kind to use (``system``, ``cuda`` or ``off``) and why, if it differs.

    ``auto`` means system shared memory for a Triton on this host and none otherwise;
    ``cuda`` needs NVIDIA's ``cuda-python`` (imported by tritonclient's CUDA utilities) and
    falls back to system shared memory without it.
    """
    if mode == "auto":
        return ("system" if host in LOCAL_HOSTS else "off"), ""
    if mode == "cuda":
        try:
            import tritonclient.utils.cuda_shared_memory  # noqa: F401
        except (ImportError, RuntimeError) as exc:
            return "system", f"CUDA shared memory unavailable ({exc}); using system shared memory"
    return mode, ""


class TritonClient:
    """Runs detectors on a Triton server (the bundled one when ``cfg.triton_url`` is empty).

    Args:
        cfg: Inference config: ``triton_url``, ``timeout_ms``, ``max_inflight``.
        models_dir: Model files for an embedded server.
        url: gRPC ``host:port``; overrides ``cfg.triton_url``.
        use_shm: Send frames through system shared memory; default: when the server is local.
        server: An already started :class:`inference.triton.server.LocalTriton` to use.
        retry_interval_s: While Triton is down, probe it at most this often.
        supervise: Restart a local server whose process died (at most
            ``MAX_RESTARTS`` per ``RESTART_WINDOW_S``); default: when this client started it.
    """

    def __init__(
        self,
        cfg: InferenceService | None = None,
        models_dir: Path = Path("model_repo/files"),
        *,
        url: str | None = None,
        use_shm: bool | None = None,
        server: Any = None,
        retry_interval_s: float = 0.5,
        supervise: bool | None = None,
    ) -> None:
        import tritonclient.grpc as grpcclient

        cfg = cfg or InferenceService(type="triton")
        self.timeout_s = cfg.timeout_ms / 1000.0
        self.max_inflight = cfg.max_inflight
        self.retry_interval_s = retry_interval_s
        self._server = server
        self._own_server = False
        url = url or cfg.triton_url
        if url is None and server is None:
            from inference.triton.server import LocalTriton

            inf = cfg.model_copy(update={"models_dir": str(models_dir)})
            self._server = LocalTriton.for_config(inf).start()
            self._own_server = True
        self.url = url or self._server.grpc_url
        self.supervise = self._own_server if supervise is None else supervise
        self._restarts: list[float] = []
        host = self.url.rsplit(":", 1)[0]
        mode = cfg.shared_memory if use_shm is None else ("system" if use_shm else "off")
        self.shm_kind, self.shm_note = resolve_shared_memory(mode, host)
        if self.shm_note:
            logger.warning("triton client: %s", self.shm_note)
        self.use_shm = self.shm_kind != "off"
        self.cuda_device = cfg.cuda_device
        self._client = grpcclient.InferenceServerClient(self.url)
        prefix = f"cs{os.getpid()}x{id(self) & 0xFFFFFF:x}"
        self._slots: queue.Queue[_Slot] = queue.Queue()
        kind = self.shm_kind if self.use_shm else "system"
        self._all_slots = [
            _Slot(i, prefix, kind, self.cuda_device) for i in range(self.max_inflight)
        ]
        for slot in self._all_slots:
            self._slots.put(slot)
        self._pool = ThreadPoolExecutor(self.max_inflight, thread_name_prefix="triton-infer")
        self._trackers = TrackerBank()
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._dropped: Counter[str] = Counter()
        self._tiers: dict[str, str] = {}
        self._down_since: float | None = None
        self._next_probe = 0.0
        self._last_error = ""
        self._probe_tiers()

    # -- protocol ------------------------------------------------------------------------

    def infer(self, batch: FrameBatch) -> list[FrameResult]:
        """Run the detectors each frame asks for; dropped frames are left out.

        Raises:
            citysight.contracts.ContractError: the batch is empty, malformed or names an
                unknown detector (caller bugs, never server trouble).
        """
        if not isinstance(batch, FrameBatch):
            raise ContractError(f"expected a FrameBatch, got {type(batch).__name__}")
        if len(batch) == 0:
            raise ContractError("empty FrameBatch")
        batch.__post_init__()
        wanted = set().union(*batch.detectors)
        unknown = wanted - {d.value for d in Detector}
        if unknown:
            raise ContractError(f"unknown detector(s): {sorted(unknown)}")
        if not self._available():
            self._drop(len(batch), "triton_down")
            return []
        groups: list[tuple[str, list[int]]] = []
        for name in sorted(wanted):
            by_shape: dict[tuple[int, ...], list[int]] = {}
            for i, dets in enumerate(batch.detectors):
                if name in dets:
                    by_shape.setdefault(batch.frames[i].shape, []).append(i)
            groups += [(name, idx) for idx in by_shape.values()]
        futures = [
            (name, idx, self._pool.submit(self._request, name, batch, idx)) for name, idx in groups
        ]
        parts: list[dict[str, DetectorOutput]] = [{} for _ in range(len(batch))]
        failed: set[int] = set()
        for name, idx, fut in futures:
            outs = fut.result()  # _request never raises
            if outs is None:
                failed.update(idx)
                continue
            for i, o in zip(idx, outs, strict=True):
                parts[i][name] = o
        results = []
        for i in range(len(batch)):
            if i in failed:
                continue
            out = DetectorOutput.concat([parts[i][n] for n in sorted(parts[i])])
            results.append(self._result(batch, i, out))
        if failed:
            self._drop(len(failed), "request_failed")
        self._count("frames_ok", len(results))
        return results

    def health(self) -> dict[str, Any]:
        """Backend state, counters and the tier each model reported."""
        with self._lock:
            since = self._down_since
            down = since is not None
            return {
                "backend": "triton",
                "url": self.url,
                "ready": not down,
                "state": "down" if down else "running",
                "down_for_s": round(time.monotonic() - since, 3) if since is not None else 0.0,
                "shared_memory": self.use_shm,
                "shared_memory_kind": self.shm_kind,
                "shared_memory_note": self.shm_note,
                "max_inflight": self.max_inflight,
                "timeout_ms": round(self.timeout_s * 1000),
                "frames_ok": self._counts["frames_ok"],
                "frames_dropped": sum(self._dropped.values()),
                "dropped_by_reason": dict(self._dropped),
                "requests": self._counts["requests"],
                "request_errors": self._counts["request_errors"],
                "recoveries": self._counts["recoveries"],
                "server_restarts": self._counts["server_restarts"],
                "server_resets": self._counts["server_resets"],
                "regions_kept": self._counts["regions_kept"],
                "reregistrations": self._counts["reregistrations"],
                "last_error": self._last_error,
                "detectors": {n: {"tier": t, "loaded": True} for n, t in self._tiers.items()},
            }

    def stats(self) -> dict[str, Any]:
        """Alias of :meth:`health` (counters for benchmarks and metrics)."""
        return self.health()

    def close(self) -> None:
        """Release shared memory, connections and an embedded server."""
        self._pool.shutdown(wait=True)
        for slot in self._all_slots:
            slot.drop(self._client)
        with contextlib.suppress(Exception):
            self._client.close()
        self._trackers.reset()
        if self._own_server and self._server is not None:
            self._server.close()

    # -- internals -----------------------------------------------------------------------

    def _probe_tiers(self) -> None:
        """Ask each detector model once for its active tier (for ``/health``); best effort."""
        import tritonclient.grpc as grpcclient

        frame = np.zeros((1, 32, 32, 3), np.uint8)
        for name in (d.value for d in Detector):
            try:
                a = grpcclient.InferInput("FRAMES", list(frame.shape), "UINT8")
                a.set_data_from_numpy(frame)
                b = grpcclient.InferInput("CAMERA_IDS", [1, 1], "BYTES")
                b.set_data_from_numpy(np.asarray([[b"__tier_probe__"]], dtype=object))
                res = self._client.infer(
                    name,
                    [a, b],
                    outputs=[grpcclient.InferRequestedOutput("TIER")],
                    client_timeout=max(self.timeout_s, 10.0),
                )
                self._tiers[name] = res.as_numpy("TIER")[0, 0].decode()
            except Exception as exc:  # the model may be absent or the server down
                logger.info("triton model %s: tier unknown (%s)", name, exc)

    def _count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._counts[key] += n

    def _drop(self, n: int, reason: str) -> None:
        with self._lock:
            self._dropped[reason] += n
        logger.debug("dropped %d frames (%s)", n, reason)

    def _mark_down(self, error: str) -> None:
        with self._lock:
            if self._down_since is None:
                logger.warning(
                    "triton %s unavailable: %s; dropping frames until it returns", self.url, error
                )
                self._down_since = time.monotonic()
                self._next_probe = self._down_since + self.retry_interval_s
            self._last_error = error

    def _available(self) -> bool:
        """False while Triton is known down; probes it at most every ``retry_interval_s``."""
        with self._lock:
            if self._down_since is None:
                return True
            if time.monotonic() < self._next_probe:
                return False
            self._next_probe = time.monotonic() + self.retry_interval_s
        self._maybe_restart()
        try:
            ready = bool(self._client.is_server_ready(client_timeout=min(self.timeout_s, 1.0)))
        except Exception:
            ready = False
        if ready:
            kept, lost = self._sync_regions()
            with self._lock:
                logger.info(
                    "triton %s is back after %.1f s (%s)",
                    self.url,
                    time.monotonic() - (self._down_since or time.monotonic()),
                    "it restarted: re-registering shared memory"
                    if lost and not kept
                    else f"it kept {kept} shared-memory region(s), lost {lost}",
                )
                self._down_since = None
                self._counts["recoveries"] += 1
                self._counts["regions_kept"] += kept
                if lost and not kept:
                    self._counts["server_resets"] += 1
        return ready

    def _server_regions(self) -> dict[str, dict[str, Any]] | None:
        """Shared-memory regions the server holds (name → status), ``None`` when unknown."""
        timeout = min(self.timeout_s, 2.0)
        try:
            regions: dict[str, dict[str, Any]] = {}
            kinds = {s.kind for s in self._all_slots}
            if "system" in kinds:
                st = self._client.get_system_shared_memory_status(
                    as_json=True, client_timeout=timeout
                )
                regions.update(st.get("regions", {}) or {})
            if "cuda" in kinds:
                st = self._client.get_cuda_shared_memory_status(
                    as_json=True, client_timeout=timeout
                )
                regions.update(st.get("regions", {}) or {})
            return regions
        except Exception as exc:
            logger.info("triton shared-memory status unavailable (%s)", exc)
            return None

    def _sync_regions(self) -> tuple[int, int]:
        """Believe the server, not our memory: a slot is registered iff the server holds it.

        Returns:
            ``(kept, lost)``: slots we had registered that the server still holds, and those
            it no longer holds (all of them lost, none kept: the server restarted).
        """
        if not self.use_shm:
            return 0, 0
        regions = self._server_regions()
        kept = lost = 0
        for slot in self._all_slots:
            had = slot.registered
            # Unknown status: assume nothing is registered; registering again is safe
            # (ALREADY_EXISTS is checked against the server's status of the region).
            slot.registered = regions is not None and slot.matches(regions.get(slot.name))
            if had:
                kept += slot.registered
                lost += not slot.registered
        return kept, lost

    def _maybe_restart(self) -> None:
        """Restart a supervised local server whose process is gone (bounded, non-blocking)."""
        server = self._server
        if not self.supervise or server is None:
            return
        if server.proc is not None and server.proc.poll() is None:
            return
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < RESTART_WINDOW_S]
        if len(self._restarts) >= MAX_RESTARTS:
            return
        self._restarts.append(now)
        logger.warning(
            "local triton died; restarting it (%d in the last %.0f s)",
            len(self._restarts),
            RESTART_WINDOW_S,
        )
        try:
            server.stop()
            server.start(wait=False, keep_ports=True)
            self._count("server_restarts")
        except Exception as exc:
            logger.error("cannot restart local triton: %s", exc)

    def _request(
        self, model: str, batch: FrameBatch, idx: list[int]
    ) -> list[DetectorOutput] | None:
        """One Triton request for frames ``idx`` of ``batch``; ``None`` when it failed."""
        try:
            slot = self._slots.get(timeout=self.timeout_s)
        except queue.Empty:
            self._count("no_slot")
            return None
        try:
            frames = np.stack([batch.frames[i] for i in idx])
            cams = np.asarray([[batch.camera_ids[i].encode()] for i in idx], dtype=object)
            opts = batch.options_of(model, idx)
            extra = np.asarray([[o.encode()] for o in opts], dtype=object) if any(opts) else None
            try:
                result = self._send(model, frames, cams, slot, extra)
            except Exception as exc:
                if not (self.use_shm and _region_unknown(exc)):
                    raise
                # The server does not hold our region (it restarted between two requests,
                # or it was unregistered behind our back): register it again and resend once.
                logger.info("triton lost region %s (%s); registering it again", slot.name, exc)
                slot.registered = False
                self._count("reregistrations")
                result = self._send(model, frames, cams, slot, extra)
            return self._decode(model, result)
        except Exception as exc:
            self._count("request_errors")
            self._on_error(model, exc)
            return None
        finally:
            self._slots.put(slot)

    def _send(
        self,
        model: str,
        frames: npt.NDArray[np.uint8],
        cams: npt.NDArray[Any],
        slot: _Slot,
        options: npt.NDArray[Any] | None = None,
    ) -> Any:
        import tritonclient.grpc as grpcclient

        self._count("requests")
        inp = grpcclient.InferInput("FRAMES", list(frames.shape), "UINT8")
        if self.use_shm:
            if slot.kind != self.shm_kind:  # the client fell back from CUDA meanwhile
                slot.drop(self._client)
                slot.kind = self.shm_kind
            try:
                slot.ensure(frames.nbytes, self._client)
            except Exception as exc:
                if slot.kind != "cuda":
                    raise
                # E.g. a Triton built without GPU support, or no usable device here: CUDA
                # regions cannot work, so every slot moves to system shared memory.
                self._fall_back_to_system_shm(f"CUDA shared memory refused ({exc})")
                slot.drop(self._client)
                slot.kind = "system"
                slot.ensure(frames.nbytes, self._client)
            slot.write(frames)
            inp.set_shared_memory(slot.name, frames.nbytes)
        else:
            inp.set_data_from_numpy(frames)
        ids = grpcclient.InferInput("CAMERA_IDS", list(cams.shape), "BYTES")
        ids.set_data_from_numpy(cams)
        inputs = [inp, ids]
        if options is not None:  # per-camera settings (an optional input of the model)
            opt = grpcclient.InferInput("OPTIONS", list(options.shape), "BYTES")
            opt.set_data_from_numpy(options)
            inputs.append(opt)
        return self._client.infer(model, inputs, client_timeout=self.timeout_s)

    def _fall_back_to_system_shm(self, why: str) -> None:
        with self._lock:
            if self.shm_kind != "cuda":
                return
            self.shm_kind = "system"
            self.shm_note = f"{why}; using system shared memory"
        logger.warning("triton client: %s", self.shm_note)

    def _decode(self, model: str, result: Any) -> list[DetectorOutput]:
        count = result.as_numpy("COUNT")[:, 0]
        boxes, scores = result.as_numpy("BOXES"), result.as_numpy("SCORES")
        class_ids, extra = result.as_numpy("CLASS_IDS"), result.as_numpy("EXTRA")
        tier = result.as_numpy("TIER")
        if tier is not None and len(tier):
            self._tiers[model] = tier[0, 0].decode()
        outs = []
        for i, n in enumerate(count):
            cols = json.loads(extra[i, 0]) if extra is not None else {}
            outs.append(
                DetectorOutput(
                    boxes=boxes[i, :n], scores=scores[i, :n], class_ids=class_ids[i, :n], extra=cols
                )
            )
        return outs

    def _on_error(self, model: str, exc: Exception) -> None:
        msg = str(exc)
        status = _status_of(exc)
        # Connection loss and deadline expiry mean the server is gone or overloaded; an
        # INVALID_ARG, a model error or a shared-memory bookkeeping error (ALREADY_EXISTS,
        # an unknown region) is specific to the request and does not trip the breaker:
        # tripping it on those is what made recovery loop forever against a living server.
        transport = status in {"StatusCode.UNAVAILABLE", "StatusCode.DEADLINE_EXCEEDED"} or (
            status is None and not _local_error(exc)
        )
        if transport:
            self._mark_down(f"{model}: {msg}")
        else:
            with self._lock:
                self._last_error = f"{model}: {msg}"
            logger.warning("triton %s request failed: %s", model, msg)

    def _result(self, batch: FrameBatch, i: int, out: DetectorOutput) -> FrameResult:
        return self._trackers.frame_result(batch, i, out)
