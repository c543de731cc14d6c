"""One supervised decode thread per camera (PyAV on CPU).

The reader opens a file, RTSP or HTTP source, decodes (optionally keyframes only), samples
to the camera's analytics fps, resizes to the detector input and hands each frame to
``on_frame``. It owns the camera's lifecycle state (``starting``, ``running``, ``stalled``,
``offline``, ``failed``, ``stopped``), reconnects with exponential backoff and jitter, and
bounds its restarts per window (Frigate's watchdog: 5 per 60 s).
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import av
import numpy as np
import numpy.typing as npt

from citysight.config import CameraConfig, CameraSecret
from citysight.contracts import CameraState, CameraStatus
from citysight.urls import (
    FORBIDDEN_SCHEMES,
    AddressRefused,
    NetworkPolicy,
    check_url,
    ffmpeg_options,
    redact,
    resolve_source,
    scheme_of,
    with_secret,
)
from streams.decoders import (
    BACKENDS,
    DecoderUnavailable,
    DecodeSession,
    SourceRefused,
    get_backend,
)
from streams.packets import PacketTaps

logger = logging.getLogger(__name__)

FrameCallback = Callable[[str, int, float, "npt.NDArray[np.uint8]"], object]
StatusCallback = Callable[[CameraStatus], None]

DEFAULT_MAX_PIXELS = 8192 * 8192
LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")


class PermanentSourceError(Exception):
    """The source cannot work without operator action (missing file, refused size...).

    Its message is a camera's public ``reason`` (any reader sees it): never an address, a
    resolution result, a variable name or an FFmpeg message.
    """


# Public reasons for source errors, by phase: every way a connect can fail (refused, timed
# out, reset, 401, 404, not a stream) reads the same, so camera health is no port scanner.
# The error class and its (redacted) text go to the worker log for the operator.
OPEN_FAILED = "cannot open source (details in the stream worker log)"
STREAM_LOST = "stream interrupted (details in the stream worker log)"
UNRESOLVED = "camera host does not resolve (details in the stream worker log)"
SECRET_UNAVAILABLE = (
    "camera password unavailable: services.streams.camera_secrets entry cannot be read "
    "(details in the stream worker log)"
)
SECRET_OTHER_HOST = (
    "camera password withheld: the URL's host is not one of the hosts its "
    "services.streams.camera_secrets entry is bound to"
)


class _Unresolved(OSError):
    """The camera host did not resolve (transient: retried with backoff)."""


@dataclass(slots=True)
class ReaderOptions:
    """Tunables of a reader that do not belong to the camera profile.

    Attributes:
        max_restarts: Restarts allowed per ``restart_window_s`` before ``failed``.
        restart_window_s: Window of ``max_restarts``.
        backoff_base_s: First reconnect delay.
        backoff_max_s: Largest reconnect delay.
        io_timeout_s: Open and read timeout of the source.
        max_pixels: Streams declaring more pixels than this are refused before decoding.
        pace_files: Deliver file sources at their native rate (a file behaves like a camera).
        decode_threads: FFmpeg decode threads per camera (1 scales best with many cameras).
        max_consecutive_errors: Decode errors in a row that force a reconnect.
        decode_deadline_ms: A frame whose decode took longer than this is counted as
            ``late`` and not handed to inference (it would only add latency).
        decoder: Decoder backend (``pyav`` on CPU, ``nvdec`` for NVIDIA's PyNvVideoCodec).
        network_policy: Camera network allow-list, checked on the resolved address before
            every connect, whatever the decoder; ``None``: the default allow-list (private
            networks, camera ports).
        camera_secrets: Camera id → its operator-bound password
            (``services.streams.camera_secrets``).
    """

    max_restarts: int = 5
    restart_window_s: float = 60.0
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    io_timeout_s: float = 5.0
    max_pixels: int = DEFAULT_MAX_PIXELS
    pace_files: bool = True
    decode_threads: int = 1
    max_consecutive_errors: int = 200
    decode_deadline_ms: float = 500.0
    decoder: str = "pyav"
    network_policy: NetworkPolicy | None = None
    camera_secrets: Mapping[str, CameraSecret] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.decoder not in BACKENDS:
            raise ValueError(f"unknown decoder {self.decoder!r}; choose one of {sorted(BACKENDS)}")
        if self.decode_deadline_ms <= 0:
            raise ValueError("decode_deadline_ms must be > 0")


class _Metrics:
    __slots__ = (
        "behind_s",
        "convert_cpu_s",
        "convert_s",
        "decode_ms",
        "decode_s",
        "errors",
        "frames_in",
        "frames_out",
        "last_frame_mono",
        "late",
        "reconnects",
        "skipped",
    )

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.skipped = 0
        self.late = 0
        self.decode_ms = 0.0
        self.decode_s = 0.0
        self.convert_s = 0.0
        self.convert_cpu_s = 0.0
        self.behind_s = 0.0
        self.reconnects = 0
        self.errors = 0
        self.last_frame_mono = 0.0


class CameraReader:
    """Decode thread of one camera.

    Args:
        camera: The camera's config (URL, profile).
        on_frame: Called as ``on_frame(camera_id, frame_no, frame_time, bgr)`` for every
            sampled frame, from the decode thread; must not block (push into the mux).
        on_status: Called with a :class:`CameraStatus` on every state change.
        options: Reader tunables.
        taps: Consumers of the compressed packets (evidence clips, live view), shared by
            the worker's readers; ``None``: no packet is copied.
    """

    def __init__(
        self,
        camera: CameraConfig,
        on_frame: FrameCallback,
        on_status: StatusCallback | None = None,
        options: ReaderOptions | None = None,
        taps: PacketTaps | None = None,
    ) -> None:
        self.camera = camera
        self.taps = taps
        self.on_frame = on_frame
        self.on_status = on_status
        self.opts = options or ReaderOptions()
        self._m = _Metrics()
        self._state = CameraState.STOPPED
        self._reason = ""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._restarts: deque[float] = deque()
        self._frame_no = 0
        self._started_mono = 0.0
        self._connected = False

    # -- public API -------------------------------------------------------------------

    @property
    def camera_id(self) -> str:
        """The camera's id."""
        return self.camera.id

    @property
    def state(self) -> CameraState:
        """Current lifecycle state."""
        return self._state

    @property
    def reason(self) -> str:
        """Why the reader is in its current state (empty when running)."""
        return self._reason

    def start(self) -> None:
        """Start the decode thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._started_mono = time.monotonic()
        self._set_state(CameraState.STARTING, "opening source")
        self._thread = threading.Thread(
            target=self._run, name=f"reader-{self.camera.id}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the decode thread and wait for it (the source is closed)."""
        self._stop.set()
        t = self._thread
        if t is not None:
            t.join(timeout_s)
            if t.is_alive():
                logger.warning("reader %s did not stop within %.1f s", self.camera.id, timeout_s)
        self._thread = None
        self._set_state(CameraState.STOPPED, "stopped")

    def is_alive(self) -> bool:
        """Whether the decode thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def metrics(self) -> dict[str, float]:
        """Per-camera metrics (frames in/out, decode ms, reconnects, errors, frame age).

        ``late`` counts frames past ``decode_deadline_ms`` (not handed to inference);
        ``decode_s`` and ``convert_s`` are the wall totals spent decoding every frame and
        converting the sampled ones (``convert_cpu_s``: the conversion's thread CPU
        time); ``behind_s`` is how far a paced file source runs behind its native rate
        (0 while decode keeps up).
        """
        m = self._m
        age = time.monotonic() - m.last_frame_mono if m.last_frame_mono else -1.0
        return {
            "frames_in": float(m.frames_in),
            "frames_out": float(m.frames_out),
            "skipped": float(m.skipped),
            "late": float(m.late),
            "decode_ms": round(m.decode_ms, 3),
            "decode_s": round(m.decode_s, 6),
            "convert_s": round(m.convert_s, 6),
            "convert_cpu_s": round(m.convert_cpu_s, 6),
            "behind_s": round(m.behind_s, 3),
            "reconnects": float(m.reconnects),
            "errors": float(m.errors),
            "last_frame_age_s": round(age, 3),
        }

    def status(self) -> CameraStatus:
        """The current state as a :class:`CameraStatus` (with metrics)."""
        return CameraStatus(
            camera_id=self.camera.id,
            state=self._state,
            reason=self._reason,
            metrics=self.metrics(),
        )

    def check_health(self, now_mono: float | None = None) -> CameraState:
        """Apply the no-frame timeout: ``stalled`` after half of it, ``offline`` after it.

        Called by the reader itself and by the worker's health loop (the decode thread can
        sit in a blocking read while a camera is cut).
        """
        now = time.monotonic() if now_mono is None else now_mono
        st = self._state
        if st in (CameraState.FAILED, CameraState.STOPPED) or self._stop.is_set():
            return st
        timeout = self.camera.profile.no_frame_timeout_s
        last = self._m.last_frame_mono or self._started_mono
        age = now - last
        if age > timeout and st != CameraState.OFFLINE:
            self._set_state(CameraState.OFFLINE, f"no frame for {age:.1f} s")
        elif timeout / 2 < age <= timeout and st == CameraState.RUNNING:
            self._set_state(CameraState.STALLED, f"no frame for {age:.1f} s")
        return self._state

    # -- internals --------------------------------------------------------------------

    def _set_state(self, state: CameraState, reason: str = "") -> None:
        with self._lock:
            if state == self._state and reason == self._reason:
                return
            changed = state != self._state
            self._state = state
            self._reason = reason
        if changed:
            logger.info("camera %s: %s (%s)", self.camera.id, state.value, reason)
            if self.on_status is not None:
                try:
                    self.on_status(self.status())
                except Exception:
                    logger.exception("status callback failed for camera %s", self.camera.id)

    def _source(self) -> tuple[str, bool]:
        """URL to open (pinned to the checked address, with its secret) and whether it is live.

        Runs before every connect: a name is resolved and checked against the network
        allow-list each time, so a record changed after the camera was added (DNS
        rebinding) is caught at the next reconnect.

        Raises:
            PermanentSourceError: Needs operator action (public reason).
            _Unresolved: The host does not resolve now.
        """
        cam = self.camera
        url = cam.url
        scheme = scheme_of(url)
        if cam.url_password_env is not None:
            # Only registry entries written before camera secrets existed carry one (the API
            # refuses it, the config loader moves it): never read a variable an API caller
            # may have named.
            logger.warning(
                "camera %s: url_password_env from the registry is ignored (camera passwords "
                "come from services.streams.camera_secrets)",
                cam.id,
            )
        if not scheme:
            path = Path(url)
            if not path.is_file():
                raise PermanentSourceError(f"file not found: {url}")
            return str(path), False
        if scheme in FORBIDDEN_SCHEMES or any(p in FORBIDDEN_SCHEMES for p in scheme.split("+")):
            raise PermanentSourceError(f"URL scheme {scheme!r} is not allowed")
        policy = self.opts.network_policy or NetworkPolicy.default()
        try:
            check_url(url, LIVE_SCHEMES, policy)
            pinned = resolve_source(url, policy)
        except AddressRefused as exc:
            logger.warning("camera %s: %s", cam.id, exc)
            raise PermanentSourceError(AddressRefused.public) from None
        except OSError as exc:
            logger.warning("camera %s: host does not resolve: %s", cam.id, exc)
            raise _Unresolved(UNRESOLVED) from None
        except ValueError as exc:
            # Messages about the URL as written (scheme, length, host spelling): the caller
            # who wrote it may see them.
            raise PermanentSourceError(str(exc)) from None
        secret = self.opts.camera_secrets.get(cam.id)
        if secret is None:
            return pinned, True
        parts = urlsplit(url)
        if not secret.allows(scheme, parts.hostname or "", parts.port):
            logger.warning(
                "camera %s: its secret is bound to %s, the URL names another host: not opened",
                cam.id,
                ", ".join(secret.hosts),
            )
            raise PermanentSourceError(SECRET_OTHER_HOST)
        try:
            password = secret.reveal()
        except ValueError as exc:
            logger.warning("camera %s: camera secret: %s", cam.id, exc)
            raise PermanentSourceError(SECRET_UNAVAILABLE) from None
        return with_secret(pinned, password, secret.username), True

    def _budget_left(self) -> bool:
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > self.opts.restart_window_s:
            self._restarts.popleft()
        return len(self._restarts) < self.opts.max_restarts

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            got_frames = False
            self._connected = False
            live = scheme_of(self.camera.url) != ""
            try:
                url, live = self._source()
                got_frames = self._session(url, live)
                if not live and not self.camera.profile.loop and not self._stop.is_set():
                    self._set_state(CameraState.STOPPED, "end of file")
                    return
                reason = "stream ended"
            except PermanentSourceError as exc:
                self._m.errors += 1
                self._set_state(CameraState.FAILED, str(exc))
                return
            except _Unresolved as exc:
                self._m.errors += 1
                reason = str(exc)
            except (av.FFmpegError, OSError, EOFError, RuntimeError) as exc:
                self._m.errors += 1
                # The class and the scrubbed text for the operator; readers get a reason
                # built from the phase only (see OPEN_FAILED).
                logger.warning(
                    "camera %s: source error: %s: %s",
                    self.camera.id,
                    type(exc).__name__,
                    redact(str(exc))[:500],
                )
                if not live and not got_frames:
                    # A file that cannot be opened or decoded will not heal by retrying.
                    self._set_state(CameraState.FAILED, f"cannot read file: {type(exc).__name__}")
                    return
                if not live and not self.camera.profile.loop:
                    self._set_state(CameraState.STOPPED, f"file ended early: {type(exc).__name__}")
                    return
                reason = STREAM_LOST if got_frames or self._connected else OPEN_FAILED
            if self._stop.is_set():
                return
            attempt = 0 if got_frames else attempt + 1
            if self._state == CameraState.RUNNING:
                self._set_state(CameraState.STALLED, reason)
            self.check_health()
            if not self._budget_left():
                # Bounded restarts: past the budget the camera is reported failed and is
                # only retried at the slowest backoff until a session delivers frames again.
                if self._state != CameraState.FAILED:
                    self._set_state(
                        CameraState.FAILED,
                        f"{self.opts.max_restarts} restarts within "
                        f"{self.opts.restart_window_s:.0f} s; last error: {reason}",
                    )
                attempt = 64
            delay = min(self.opts.backoff_max_s, self.opts.backoff_base_s * 2 ** min(attempt, 16))
            # Jitter: cameras cut together must not reconnect together.
            delay *= random.uniform(0.5, 1.0)
            end = time.monotonic() + delay
            while not self._stop.is_set() and time.monotonic() < end:
                self._stop.wait(min(0.25, max(end - time.monotonic(), 0)))
                self.check_health()
            if self._stop.is_set():
                return
            self._restarts.append(time.monotonic())
            self._m.reconnects += 1

    def _session(self, url: str, live: bool) -> bool:
        """Open the source and decode until it ends; returns whether frames came."""
        prof = self.camera.profile
        opts = ffmpeg_options(url, transport=prof.transport, timeout_s=self.opts.io_timeout_s)
        try:
            backend = get_backend(self.opts.decoder)
            session = backend.open(
                url,
                options=opts,
                timeout_s=self.opts.io_timeout_s,
                keyframe_only=prof.keyframe_only,
                threads=self.opts.decode_threads,
                max_pixels=self.opts.max_pixels,
            )
        except (DecoderUnavailable, SourceRefused) as exc:
            raise PermanentSourceError(str(exc)) from None
        self._connected = True
        got = False
        try:
            while not self._stop.is_set():
                got |= self._decode_pass(session, live)
                if live or not prof.loop or self._stop.is_set():
                    break
                session.rewind()
        finally:
            session.close()
        return got

    def _decode_pass(self, session: DecodeSession, live: bool) -> bool:
        taps = self.taps
        info = session.stream_info() if taps is not None else None
        if taps is not None and info is not None:
            taps.opened(self.camera.id, info)
        else:
            taps = None
        try:
            return self._decode_units(session, live, taps)
        finally:
            if taps is not None:
                taps.closed(self.camera.id)

    def _decode_units(self, session: DecodeSession, live: bool, taps: PacketTaps | None) -> bool:
        prof = self.camera.profile
        period = 1.0 / prof.analytics_fps
        frame_dur = 1.0 / max(session.fps, 1e-3)
        deadline_s = self.opts.decode_deadline_ms / 1e3
        next_emit = -1.0
        t0_media: float | None = None
        t0_wall = time.monotonic()
        consecutive_errors = 0
        got = False
        size = (prof.input_width, prof.input_height)
        for unit in session.units():
            if self._stop.is_set():
                break
            if taps:
                taps.packet(self.camera.id, session.packet(unit))
            t_start = time.perf_counter()
            try:
                frames = session.decode(unit)
                consecutive_errors = 0
            except av.FFmpegError as exc:
                self._m.errors += 1
                consecutive_errors += 1
                if consecutive_errors >= self.opts.max_consecutive_errors:
                    raise RuntimeError(f"{consecutive_errors} decode errors in a row") from exc
                continue
            decode_s = time.perf_counter() - t_start
            self._m.decode_s += decode_s
            for frame in frames:
                m = self._m
                m.frames_in += 1
                if decode_s > deadline_s:
                    # Past its deadline the frame would only add latency: count it and
                    # skip it for inference; the sampler takes the next on-time frame.
                    m.late += 1
                    continue
                ft = session.frame_time(frame)
                if live or ft is None:
                    # Live pts can be missing or jump (RTCP resync): sample by arrival time.
                    t_media = time.monotonic() if live else m.frames_in * frame_dur
                else:
                    t_media = ft
                if t0_media is None:
                    t0_media = t_media
                rel = t_media - t0_media
                if not live and self.opts.pace_files:
                    # Deliver at the native rate so a file behaves like a live camera.
                    lag = t0_wall + rel - time.monotonic()
                    # How far decode runs behind the file's own clock (0 when keeping up).
                    m.behind_s = max(0.0, -lag)
                    if lag > 0 and self._stop.wait(lag):
                        return got
                # Tolerate early arrivals (network jitter) so 10 fps -> 5 fps stays 5 fps.
                if rel < next_emit - 0.15 * period:
                    m.skipped += 1
                    continue
                next_emit = max(next_emit + period, rel) if next_emit >= 0 else rel + period
                t_conv, c_conv = time.perf_counter(), time.thread_time()
                bgr = session.convert(frame, size[0], size[1])
                m.convert_cpu_s += time.thread_time() - c_conv
                conv_s = time.perf_counter() - t_conv
                m.convert_s += conv_s
                now = time.monotonic()
                # Decode + conversion only: the pacing wait above is not decode time.
                ms = (decode_s + conv_s) * 1e3
                m.decode_ms = 0.9 * m.decode_ms + 0.1 * ms if m.frames_out else ms
                m.last_frame_mono = now
                m.frames_out += 1
                self._frame_no += 1
                got = True
                if self._state != CameraState.RUNNING:
                    self._set_state(CameraState.RUNNING, "")
                try:
                    self.on_frame(self.camera.id, self._frame_no, time.time(), bgr)
                except Exception:
                    m.errors += 1
                    logger.exception("on_frame failed for camera %s", self.camera.id)
            if live:
                self.check_health()
        return got
