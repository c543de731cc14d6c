"""Live-view measurements: glass-to-glass delay from a burnt-in clock, CPU per viewer, and the
analytics frame rate of the same worker with 0 / 4 / 16 viewers (one run, one baseline).

The *glass* is a live H.264 camera simulated here: :class:`ClockCamera` encodes frames in
real time with the wall clock drawn into them (a 40-bit barcode of the Unix time in ms,
plus the time as text) and serves them as MPEG-TS over HTTP on 127.0.0.1, the way an
IP camera's HTTP stream works. A real stream worker reads it, the real ingress remuxes its
packets to fragmented MP4 over the WebSocket, and :class:`LiveViewer` decodes what arrives
and reads the barcode back: delay = wall time at decode − the clock in the picture.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import queue
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from typing import Any

import av
import cv2
import numpy as np
import numpy.typing as npt

BITS = 40
_COLS, _ROWS = 8, 5


def draw_clock(frame: npt.NDArray[np.uint8], t_ms: int) -> None:
    """Burn ``t_ms`` (Unix ms, low 40 bits) into the top half of a BGR frame, and as text."""
    h, w = frame.shape[:2]
    bw, bh = w // _COLS, (h // 2) // _ROWS
    for i in range(BITS):
        r, c = divmod(i, _COLS)
        on = (t_ms >> (BITS - 1 - i)) & 1
        frame[r * bh : (r + 1) * bh, c * bw : (c + 1) * bw] = 255 if on else 0
    stamp = time.strftime("%H:%M:%S", time.gmtime(t_ms / 1000)) + f".{t_ms % 1000:03d}"
    cv2.putText(frame, stamp, (8, h - 16), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (0, 255, 255), 2)


def read_clock(gray: npt.NDArray[np.uint8], now_ms: int) -> int | None:
    """The clock of :func:`draw_clock` read back from a decoded frame's luma (``None``: no
    clock there); the high bits come from ``now_ms``."""
    h, w = gray.shape[:2]
    bw, bh = w // _COLS, (h // 2) // _ROWS
    v = 0
    for i in range(BITS):
        r, c = divmod(i, _COLS)
        cell = gray[
            r * bh + bh // 4 : (r + 1) * bh - bh // 4, c * bw + bw // 4 : (c + 1) * bw - bw // 4
        ]
        m = float(cell.mean())
        if 60 < m < 195:
            return None  # not a clean black/white cell: not the clock
        v = (v << 1) | (m >= 128)
    mask = (1 << BITS) - 1
    t = (now_ms & ~mask) | v
    if t > now_ms + (1 << (BITS - 1)):
        t -= 1 << BITS
    return t


class ClockCamera:
    """A live H.264 camera on ``http://127.0.0.1:<port>/live.ts`` showing the wall clock.

    Encodes only while a client is connected (each client gets its own encoder, starting
    with a keyframe), in real time at ``fps``.
    """

    def __init__(
        self, width: int = 320, height: int = 240, fps: int = 25, gop: int = 25, noise: bool = False
    ) -> None:
        self.width, self.height, self.fps, self.gop = width, height, fps, gop
        self.noise = noise  # random pixels below the clock: a high bit rate
        self.frames = 0
        self._stop = threading.Event()
        cam = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "video/mp2t")
                self.end_headers()
                with contextlib.suppress(OSError, av.FFmpegError):
                    cam._stream(self.wfile)

            def log_message(self, *args: Any) -> None:
                pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._srv = Server(("127.0.0.1", 0), Handler)
        self.port = int(self._srv.server_address[1])
        self._thread = threading.Thread(target=self._srv.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """The camera's stream URL."""
        return f"http://127.0.0.1:{self.port}/live.ts"

    def start(self) -> ClockCamera:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (open streams end)."""
        self._stop.set()
        self._srv.shutdown()
        self._srv.server_close()
        self._thread.join(5)

    def _stream(self, wfile: Any) -> None:
        out = av.open(wfile, "w", format="mpegts", options={"flush_packets": "1"})
        s = out.add_stream("libx264", rate=self.fps)
        s.width, s.height, s.pix_fmt = self.width, self.height, "yuv420p"
        s.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "g": str(self.gop),
            "keyint_min": str(self.gop),
            "sc_threshold": "0",
            "crf": "18",
        }
        s.codec_context.time_base = Fraction(1, self.fps)
        frame = np.zeros((self.height, self.width, 3), np.uint8)
        rng = np.random.default_rng(0)
        t0 = time.monotonic()
        i = 0
        try:
            while not self._stop.is_set():
                due = t0 + i / self.fps
                lag = due - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
                frame[:] = 40
                if self.noise:
                    frame[self.height // 2 :] = rng.integers(
                        0, 256, frame[self.height // 2 :].shape
                    )
                draw_clock(frame, int(time.time() * 1000))
                vf = av.VideoFrame.from_ndarray(frame, format="bgr24")
                vf.pts = i
                for pk in s.encode(vf):
                    out.mux(pk)
                wfile.flush()
                self.frames += 1
                i += 1
        finally:
            with contextlib.suppress(Exception):
                out.close()


class _Pipe:
    """Blocking file-like reader fed with WebSocket messages (for PyAV's demuxer)."""

    def __init__(self) -> None:
        self.q: queue.Queue[bytes | None] = queue.Queue()
        self._buf = b""

    def read(self, n: int) -> bytes:
        while not self._buf:
            item = self.q.get()
            if item is None:
                return b""
            self._buf = item
        out, self._buf = self._buf[:n], self._buf[n:]
        return out


class LiveViewer:
    """Decodes the fragmented MP4 a live WebSocket delivers and reads the burnt-in clock.

    Feed binary messages to :meth:`feed`; :attr:`delays_ms` collects one delay per frame
    whose clock could be read, after ``warmup_s`` (the fast start replays the last GOP).
    """

    def __init__(self, warmup_s: float = 1.5) -> None:
        self.pipe = _Pipe()
        self.frames = 0
        self.delays_ms: list[float] = []
        self.errors: list[str] = []
        self._t0 = time.monotonic()
        self._warmup_s = warmup_s
        self._thread = threading.Thread(target=self._decode, daemon=True)
        self._thread.start()

    def feed(self, data: bytes) -> None:
        """One binary message (init segment or fragment)."""
        self.pipe.q.put(data)

    def close(self) -> None:
        """End of stream; waits for the decoder."""
        self.pipe.q.put(None)
        self._thread.join(10)

    def _decode(self) -> None:
        try:
            with av.open(self.pipe, "r", format="mp4", options={"probesize": "32"}) as c:
                st = c.streams.video[0]
                st.thread_type = "SLICE"  # frame threads would hold frames back
                for frame in c.decode(st):
                    now = time.time() * 1000
                    self.frames += 1
                    if time.monotonic() - self._t0 < self._warmup_s:
                        continue
                    gray = np.asarray(frame.to_ndarray(format="gray"), np.uint8)
                    t = read_clock(gray, int(now))
                    if t is not None:
                        self.delays_ms.append(now - t)
        except Exception as exc:  # reported, not raised: the test reads errors
            self.errors.append(f"{type(exc).__name__}: {exc}")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(xs: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``xs`` (nearest rank); NaN when empty."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    return s[min(len(s) - 1, max(0, round(q * (len(s) - 1))))]


@contextlib.contextmanager
def timed() -> Iterator[dict[str, float]]:
    """Wall and process CPU seconds of a block."""
    out: dict[str, float] = {}
    w, c = time.monotonic(), time.process_time()
    yield out
    out["wall_s"] = time.monotonic() - w
    out["cpu_s"] = time.process_time() - c


def dumps(d: dict[str, Any]) -> str:
    """Stable JSON."""
    return json.dumps(d, indent=2, sort_keys=True)
