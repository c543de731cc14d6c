"""The README's Quick start, run exactly as written, in a clean clone of the repository.

Used by the README test (``tests/citysight/test_readme_quickstart.py``) and by the soak
(:mod:`benchmarks.soak.run`). The first command of the first fenced block under
``## Quick start`` runs as ``bash -c "<line>"`` in a ``git clone`` of the committed state
(``HEAD``; uncommitted changes are not part of a clone), with the environment a user's shell
has (this test tier's own variables removed) and nothing else passed.

The clone's setup is made cheap without skipping it: :func:`prepare_clone_venv` gives the
clone a ``.venv`` whose dependencies are this test tier's installed ones (a path entry to its
``site-packages``, installed by ``infra/local/setup.sh --test`` from an identical
``pyproject.toml``) and an editable install of *the clone itself* (the files pip writes:
finder, ``.pth``, dist-info and the ``citysight`` console script, with the clone's paths), and
writes the stamp ``setup.sh`` checks. ``setup.sh`` then runs for real (system packages,
interpreter, stamp check, model install step) and the demo imports only the clone's files: a
file missing from the repository fails there as it would for a user. When the tier's stamp
does not match the clone's ``pyproject.toml``, nothing is prepared and ``setup.sh`` installs
everything itself (minutes).

Ctrl-C is what a terminal does: SIGINT to the command's whole foreground process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import IO, Any

import psutil

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORTS = (8000, 6390)
PORTS_LOCK = Path("/tmp/citysight-default-ports.lock")
# Variables this test tier (infra/local/test.sh, pytest) sets that a user's shell does not.
TIER_ONLY_ENV = ("ORT_DISABLE_TELEMETRY", "RAY_USAGE_STATS_ENABLED", "VIRTUAL_ENV", "PYTHONPATH")
TIER_ONLY_PREFIXES = ("PYTEST_", "CITYSIGHT_", "_PYTEST")
TOKEN_LINE = re.compile(r"^\s+token (\w+)\s+(\S+)\s*$")
BANNER = "citysight is running:"
RAY_SESSION = re.compile(r"/session_\d{4}-\d\d-\d\d_[\d_-]+")


class QuickStartError(RuntimeError):
    """The Quick start could not be run or did not behave as the README says."""


def quick_start_commands(readme: Path = ROOT / "README.md") -> list[str]:
    """The non-empty lines of the first fenced block under ``## Quick start``.

    Raises:
        QuickStartError: the section or its fenced block is missing.
    """
    text = readme.read_text(encoding="utf-8")
    if "\n## Quick start" not in text:
        raise QuickStartError(f"{readme}: no '## Quick start' section")
    section = text.split("\n## Quick start", 1)[1].split("\n## ", 1)[0]
    m = re.search(r"^```[^\n]*\n(.*?)^```", section, re.S | re.M)
    if m is None:
        raise QuickStartError(f"{readme}: no fenced block under '## Quick start'")
    return [ln for ln in m.group(1).splitlines() if ln.strip()]


@contextlib.contextmanager
def default_ports_lock(timeout_s: float = 600.0) -> Iterator[None]:
    """Hold ``flock /tmp/citysight-default-ports.lock`` (anything using ports 8000/6390).

    Raises:
        QuickStartError: the lock was not free within ``timeout_s``.
    """
    fd = os.open(PORTS_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise QuickStartError(
                        f"{PORTS_LOCK} still held after {timeout_s:.0f} s: another run on the "
                        "default ports (8000, 6390) is going on"
                    ) from None
                time.sleep(1.0)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def listening(port: int) -> bool:
    """Whether something accepts connections on 127.0.0.1:``port``."""
    with socket.socket() as s:
        s.settimeout(0.3)
        return s.connect_ex(("127.0.0.1", port)) == 0


def require_free_ports(ports: tuple[int, ...] = DEFAULT_PORTS) -> None:
    """Raise :class:`QuickStartError` naming the ports (and their owners) already taken."""
    taken = [p for p in ports if listening(p)]
    if not taken:
        return
    owners = []
    with contextlib.suppress(psutil.Error):
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port in taken:
                try:
                    owners.append(f"{c.laddr.port}: pid {c.pid} {psutil.Process(c.pid).name()}")
                except (psutil.Error, TypeError):
                    owners.append(f"{c.laddr.port}: pid {c.pid}")
    raise QuickStartError(
        f"the README's demo needs ports {', '.join(map(str, ports))} but "
        f"{', '.join(map(str, taken))} already listen ({'; '.join(owners) or 'owner unknown'}): "
        "stop that (another citysight demo?) and run again"
    )


def clean_clone(dest: Path, source: Path = ROOT) -> Path:
    """``git clone`` of ``source``'s committed ``HEAD`` into ``dest`` (no uncommitted files).

    Raises:
        QuickStartError: ``source`` is not a git work tree or the clone failed.
    """
    probe = subprocess.run(
        ["git", "-C", str(source), "rev-parse", "--is-inside-work-tree"],
        capture_output=True,
        text=True,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "true":
        raise QuickStartError(f"{source} is not a git work tree: cannot make a clean clone")
    res = subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(source), str(dest)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        raise QuickStartError(f"git clone failed: {res.stderr.strip()}")
    return dest


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_clone_venv(clone: Path) -> bool:
    """Give ``clone`` a ``.venv`` built from this test tier's installed environment.

    Returns:
        ``True`` when prepared (``setup.sh`` will find it installed); ``False`` when this
        tier was not installed from an identical ``pyproject.toml`` (``setup.sh`` then
        installs everything itself).
    """
    want = _sha256(clone / "pyproject.toml")
    stamps = [
        Path(sys.prefix) / ".citysight-installed[test]",
        Path(sys.prefix) / ".citysight-installed",
    ]
    if not any(s.is_file() and s.read_text().strip() == want for s in stamps):
        logger.info("test tier not installed from this pyproject.toml: setup.sh installs")
        return False
    tier_site = Path(sysconfig.get_paths()["purelib"])
    # The tier's own install record, not a citysight.egg-info that sys.path may also reach.
    dist = next(iter(metadata.distributions(name="citysight", path=[str(tier_site)])), None)
    direct = json.loads((dist.read_text("direct_url.json") if dist else None) or "{}")
    if dist is None or not direct.get("dir_info", {}).get("editable"):
        logger.info("citysight is not installed editable in this tier: setup.sh installs")
        return False
    source = direct["url"].removeprefix("file://")
    venv = clone / ".venv"
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = site / "site-packages"
    # A plain path line: the tier's modules become importable, but the tier's own .pth
    # files (its editable finder pointing at the source checkout) are not run.
    (site / "_citysight_test_tier_deps.pth").write_text(f"{tier_site}\n")

    def rewrite(text: str) -> str:
        return text.replace(f"'{source}", f"'{clone}").replace(f'"{source}', f'"{clone}')

    installed: list[str] = []
    for f in dist.files or []:
        src = Path(str(dist.locate_file(f)))
        name = str(f)
        if name.startswith("..") or "__pycache__" in name or name.endswith("RECORD"):
            continue
        dst = site / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith("direct_url.json"):
            dst.write_text(json.dumps({"dir_info": {"editable": True}, "url": f"file://{clone}"}))
        elif name.endswith(("_finder.py", ".pth")):
            dst.write_text(rewrite(src.read_text()))
        else:
            shutil.copy2(src, dst)
        installed.append(name)
    record = next(str(f) for f in dist.files or [] if str(f).endswith("RECORD"))
    (site / record).write_text("".join(f"{n},,\n" for n in [*installed, record]))
    for ep in dist.entry_points:
        if ep.group != "console_scripts":
            continue
        module, func = ep.value.split(":")
        script = venv / "bin" / ep.name
        script.write_text(
            f"#!{venv / 'bin' / 'python'}\nimport sys\nfrom {module} import {func}\n"
            "if __name__ == '__main__':\n"
            "    sys.argv[0] = sys.argv[0].removesuffix('.exe')\n"
            f"    sys.exit({func}())\n"
        )
        script.chmod(0o755)
    (venv / ".citysight-installed").write_text(want + "\n")
    return True


def user_env(base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a user's shell: this one without the test tier's own variables."""
    env = dict(os.environ if base is None else base)
    for k in list(env):
        if k in TIER_ONLY_ENV or k.startswith(TIER_ONLY_PREFIXES):
            del env[k]
    tier_bin = str(Path(sys.prefix) / "bin")
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != tier_bin)
    return env


@dataclass
class QuickStartRun:
    """One Quick start command running as ``bash -c "<line>"`` in ``cwd``.

    Attributes:
        line: The command, exactly as the README has it.
        cwd: Where it runs (the clean clone).
        log_path: Where its output (stdout and stderr, in order) is written.
    """

    line: str
    cwd: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    banner_at: float | None = None
    tokens: dict[str, str] = field(default_factory=dict)
    seen_pids: dict[int, str] = field(default_factory=dict)
    _lines: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _reader: threading.Thread | None = None
    _sampler: threading.Thread | None = None
    _halt: threading.Event = field(default_factory=threading.Event)

    def start(self, env: dict[str, str] | None = None) -> QuickStartRun:
        """Start the command in its own session (as a terminal's foreground job)."""
        self.proc = subprocess.Popen(
            ["bash", "-c", self.line],
            cwd=self.cwd,
            env=user_env() if env is None else env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        self._reader = threading.Thread(
            target=self._read, args=(self.proc.stdout,), name="quickstart-out", daemon=True
        )
        self._reader.start()
        self._sampler = threading.Thread(target=self._sample, name="quickstart-ps", daemon=True)
        self._sampler.start()
        return self

    def _read(self, stream: IO[bytes]) -> None:
        with self.log_path.open("a", encoding="utf-8") as log:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace").rstrip("\n")
                log.write(line + "\n")
                log.flush()
                with self._lock:
                    self._lines.append(line)
                    if BANNER in line and self.banner_at is None:
                        self.banner_at = time.monotonic()
                    m = TOKEN_LINE.match(line)
                    if m and self.banner_at is not None:
                        self.tokens[m.group(1)] = m.group(2)

    def _sample(self) -> None:
        # Every process the command started, to prove later that none is left.
        while not self._halt.wait(1.0):
            self.snapshot()

    def snapshot(self) -> None:
        """Record the command's process tree as it is now."""
        if self.proc is None:
            return
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            return
        for p in kids:
            if p.pid not in self.seen_pids:
                with contextlib.suppress(psutil.Error):
                    self.seen_pids[p.pid] = " ".join(p.cmdline())[:200] or p.name()

    def output(self, last: int | None = None) -> str:
        """What the command printed so far (the last ``last`` lines)."""
        with self._lock:
            lines = self._lines[-last:] if last else list(self._lines)
        return "\n".join(lines)

    def alive(self) -> bool:
        """Whether the command is still running."""
        return self.proc is not None and self.proc.poll() is None

    def wait_banner(self, timeout_s: float, roles: tuple[str, ...] = ("admin",)) -> float:
        """Wait for the demo's banner and the tokens of ``roles``; returns the banner time.

        Raises:
            QuickStartError: the command exited or the banner did not come in time.
        """
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                done = self.banner_at is not None and all(r in self.tokens for r in roles)
            if done:
                assert self.banner_at is not None
                return self.banner_at
            if not self.alive():
                time.sleep(0.5)  # let the reader drain
                rc = self.proc.returncode if self.proc else None
                raise QuickStartError(
                    f"`{self.line}` exited ({rc}) before its banner:\n{self.output(60)}"
                )
            time.sleep(0.5)
        raise QuickStartError(
            f"no banner with tokens {roles} within {timeout_s:.0f} s:\n{self.output(60)}"
        )

    def interrupt(self, timeout_s: float = 120.0) -> int:
        """Ctrl-C: SIGINT to the foreground process group; wait for the exit code.

        A command that has not exited after ``timeout_s`` is killed (its group and every
        process it was seen to start) and :class:`QuickStartError` is raised.
        """
        if self.proc is None:
            return 0
        self.snapshot()
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.kill()
                raise QuickStartError(
                    f"`{self.line}` did not stop within {timeout_s:.0f} s of Ctrl-C:\n"
                    f"{self.output(40)}"
                ) from None
        self._finish()
        return int(self.proc.returncode)

    def kill(self) -> None:
        """SIGKILL the command's group and every process it was seen to start (cleanup)."""
        if self.proc is None:
            return
        self.snapshot()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        for pid in list(self.seen_pids):
            with contextlib.suppress(psutil.Error):
                psutil.Process(pid).kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        self._finish()

    def _finish(self) -> None:
        self._halt.set()
        if self._reader is not None:
            self._reader.join(5)

    def ray_sessions(self) -> list[str]:
        """Ray session dirs of this run's Ray (from its processes' command lines).

        The demo's Ray temp dir is shared by every demo of this user on the machine; its
        session dir is this run's own.
        """
        found = set()
        for cmd in self.seen_pids.values():
            found.update(RAY_SESSION.findall(cmd))
        return sorted(found)

    def leftovers(self, extra_markers: tuple[str, ...] = ()) -> list[str]:
        """Processes still alive that the command started, or that carry its markers.

        Markers are substrings of command lines that only this run's processes have (the
        clone's path, the demo's Ray temp dir); matching processes are reported even when
        they escaped the process tree (daemonised).
        """
        out = []
        for pid, cmd in self.seen_pids.items():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                    out.append(f"{pid} {cmd}")
        markers = (str(self.cwd), *extra_markers)
        for p in psutil.process_iter(["pid", "cmdline"]):
            cmd = " ".join(p.info.get("cmdline") or [])
            if p.info["pid"] in self.seen_pids or p.info["pid"] == os.getpid():
                continue
            if any(m in cmd for m in markers):
                out.append(f"{p.info['pid']} {cmd[:200]}")
        return out


def wait_health(base_url: str, run: QuickStartRun, timeout_s: float) -> dict[str, Any]:
    """Poll ``GET /health`` until it answers 200; returns its body.

    Raises:
        QuickStartError: the command exited or ``/health`` did not answer in time.
    """
    import httpx

    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        if not run.alive():
            raise QuickStartError(f"the demo exited while waiting for /health:\n{run.output(60)}")
        try:
            r = httpx.get(f"{base_url}/health", timeout=3)
            if r.status_code == 200:
                body: dict[str, Any] = r.json()
                return body
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(1.0)
    raise QuickStartError(f"/health did not answer 200 within {timeout_s:.0f} s (last: {last})")
