"""A real RTSP server for tests: Debian's GStreamer RTSP server on 127.0.0.1.

Run as a script with the *system* Python (``/usr/bin/python3`` with ``python3-gi`` and
``gir1.2-gst-rtsp-server-1.0``); :class:`RtspTestServer` does that from the test's
interpreter and can stop and restart the server on the same port to cut cameras.

Each mount serves one H.264 MP4 file through
``filesrc ! qtdemux ! h264parse config-interval=-1 ! rtph264pay``, shared between clients.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

SYSTEM_PYTHON = "/usr/bin/python3"


def gst_rtsp_available(python: str = SYSTEM_PYTHON) -> bool:
    """Whether ``python`` can import GStreamer's RTSP server bindings."""
    if not (Path(python).exists() or shutil.which(python)):
        return False
    code = (
        "import gi; gi.require_version('Gst', '1.0'); "
        "gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import Gst, GstRtspServer"
    )
    try:
        return subprocess.run([python, "-c", code], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RtspTestServer:
    """Controls a GStreamer RTSP server subprocess.

    Args:
        mounts: Mount name (``"cam1"`` -> ``rtsp://127.0.0.1:PORT/cam1``) to MP4 file.
        port: TCP port; a free one when omitted. Kept across :meth:`restart`.
        python: Interpreter with ``python3-gi``.
    """

    def __init__(
        self, mounts: dict[str, Path], port: int | None = None, python: str = SYSTEM_PYTHON
    ) -> None:
        self.mounts = {k: Path(v) for k, v in mounts.items()}
        self.port = port or _free_port()
        self.python = python
        self.proc: subprocess.Popen[str] | None = None

    def url(self, mount: str) -> str:
        """RTSP URL of a mount."""
        return f"rtsp://127.0.0.1:{self.port}/{mount}"

    def start(self, timeout_s: float = 20.0) -> RtspTestServer:
        """Start the server and wait until it listens."""
        args = [self.python, __file__, "--port", str(self.port)]
        for name, path in self.mounts.items():
            args += ["--mount", f"{name}={path}"]
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"RTSP server not listening on {self.port}")

    def stop(self) -> None:
        """Kill the server (clients see their connection drop)."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc.stdout:
            self.proc.stdout.close()
        self.proc = None

    def restart(self) -> None:
        """Start again on the same port."""
        self.stop()
        self.start()

    def __enter__(self) -> RtspTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _serve(port: int, mounts: list[tuple[str, str]]) -> None:  # pragma: no cover - system py
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    points = server.get_mount_points()
    for name, path in mounts:
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(
            f'( filesrc location="{path}" ! qtdemux ! h264parse config-interval=-1 '
            "! rtph264pay name=pay0 pt=96 )"
        )
        factory.set_shared(True)
        points.add_factory(f"/{name}", factory)
    if server.attach(None) == 0:
        print("FAILED attach", flush=True)
        sys.exit(1)
    print("READY", flush=True)
    GLib.MainLoop().run()


def main(argv: list[str] | None = None) -> None:  # pragma: no cover - system python
    """Entry point under the system Python."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mount", action="append", default=[], help="name=/path/file.mp4")
    ns = ap.parse_args(argv)
    _serve(ns.port, [(m.split("=", 1)[0], m.split("=", 1)[1]) for m in ns.mount])


if __name__ == "__main__":
    main()
