"""Linux network namespaces as cluster hosts: a bridge, veth pairs, one IP per namespace.

Everything here goes through Debian's ``ip`` (iproute2). Every object it creates is named
``<prefix>-<name>`` so that :func:`leftovers` and :func:`purge` find exactly what a harness
with that prefix made, and nothing else: namespaces and links that do not start with
``<prefix>-`` are never touched.

Namespaces get no default route: the only network they see is the cluster's /24 (and the
bridge's address in the root namespace), so nothing started in them can reach beyond the
machine even by mistake.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

logger = logging.getLogger(__name__)

IFNAMSIZ = 15  # Linux interface names are at most 15 characters


class NetnsError(RuntimeError):
    """An ``ip`` command failed or network namespaces are not usable here."""


def ip_binary() -> str | None:
    """Path of iproute2's ``ip``, or ``None`` when it is not installed."""
    for cand in ("ip", "/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip"):
        path = shutil.which(cand)
        if path:
            return path
    return None


def unavailable_reason() -> str | None:
    """Why network namespaces cannot be used by this process, or ``None`` when they can."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add); run as root"
    ip = ip_binary()
    if ip is None:
        return "iproute2 is not installed (apt-get install iproute2; setup.sh --test does it)"
    res = subprocess.run([ip, "netns", "list"], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        return f"`ip netns list` failed: {res.stderr.strip()}"
    # root without CAP_SYS_ADMIN/CAP_NET_ADMIN (an unprivileged container) can list but
    # not create: try once with a throwaway namespace of our own
    probe = f"csprobe{os.getpid()}"
    res = subprocess.run([ip, "netns", "add", probe], capture_output=True, text=True, timeout=10)
    if res.returncode != 0:
        return f"cannot create network namespaces here: {res.stderr.strip()}"
    subprocess.run([ip, "netns", "del", probe], capture_output=True, timeout=10)
    return None


def run_ip(*args: str, check: bool = True, timeout_s: float = 20.0) -> str:
    """Run ``ip ARGS`` and return its stdout; raises :class:`NetnsError` on failure."""
    ip = ip_binary()
    if ip is None:
        raise NetnsError("iproute2 is not installed (apt-get install iproute2)")
    res = subprocess.run([ip, *args], capture_output=True, text=True, timeout=timeout_s)
    if check and res.returncode != 0:
        raise NetnsError(f"ip {' '.join(args)}: {res.stderr.strip() or res.returncode}")
    return res.stdout


def list_namespaces() -> list[str]:
    """Names of all named network namespaces (``ip netns list``)."""
    out = run_ip("netns", "list")
    # lines look like "cscl-head (id: 3)" or just "cscl-head"
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def list_links() -> list[dict[str, object]]:
    """All links of the root namespace with their addresses (``ip -j addr``)."""
    out = run_ip("-j", "addr", "show")
    return list(json.loads(out or "[]"))


def ns_pids(ns: str) -> list[int]:
    """PIDs of every process whose network namespace is ``ns`` (``ip netns pids``)."""
    out = run_ip("netns", "pids", ns, check=False)
    return [int(p) for p in out.split() if p.strip().isdigit()]


def exec_argv(ns: str, argv: Sequence[str]) -> list[str]:
    """``argv`` prefixed so that it runs inside namespace ``ns``."""
    ip = ip_binary()
    if ip is None:
        raise NetnsError("iproute2 is not installed (apt-get install iproute2)")
    return [ip, "netns", "exec", ns, *argv]


def create_bridge(name: str, address_cidr: str) -> None:
    """Create bridge ``name`` in the root namespace with ``address_cidr`` and bring it up."""
    run_ip("link", "add", name, "type", "bridge")
    run_ip("addr", "add", address_cidr, "dev", name)
    run_ip("link", "set", name, "up")


def add_host(ns: str, veth: str, bridge: str, address_cidr: str) -> None:
    """Create namespace ``ns`` joined to ``bridge`` by a veth pair, with one address.

    The root-side end is called ``veth`` and enslaved to the bridge; the namespace end is
    ``eth0``. Loopback is brought up too (Ray and Redis both use 127.0.0.1 internally).
    """
    if len(veth) > IFNAMSIZ:
        raise NetnsError(f"interface name {veth!r} is longer than {IFNAMSIZ} characters")
    run_ip("netns", "add", ns)
    run_ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
    run_ip("link", "set", veth, "master", bridge, "up")
    run_ip("-n", ns, "addr", "add", address_cidr, "dev", "eth0")
    run_ip("-n", ns, "link", "set", "lo", "up")
    run_ip("-n", ns, "link", "set", "eth0", "up")


def set_link(veth: str, up: bool) -> None:
    """Bring the root-side end of a host's veth up or down (a cable pulled or plugged)."""
    run_ip("link", "set", veth, "up" if up else "down")


def kill_pids(pids: Iterable[int], sig: int = signal.SIGKILL) -> int:
    """Send ``sig`` to each PID that still exists; returns how many were signalled."""
    n = 0
    for pid in pids:
        try:
            os.kill(pid, sig)
            n += 1
        except ProcessLookupError:
            pass
    return n


def kill_namespace(ns: str, timeout_s: float = 10.0) -> int:
    """SIGKILL every process in ``ns`` until none is left; returns how many were killed.

    Repeats because a process may fork between listing and killing (a raylet starting a
    worker); raises :class:`NetnsError` if the namespace still has processes at the end.
    """
    killed = 0
    deadline = time.monotonic() + timeout_s
    while True:
        pids = [p for p in ns_pids(ns) if p != os.getpid()]
        if not pids:
            return killed
        killed += kill_pids(pids)
        if time.monotonic() > deadline:
            raise NetnsError(f"processes survive in {ns}: {pids}")
        time.sleep(0.05)


def _netns_id(pid: int | str) -> str | None:
    """Identity of a process's network namespace (``net:[inode]``), ``None`` if gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def _proc_owned_by(pid: int, root: Path) -> bool:
    """Whether process ``pid`` runs from ``root`` or is a Ray process with its temp dir there."""
    proc = Path("/proc") / str(pid)
    marker = str(root) + "/"
    try:
        if (os.readlink(proc / "cwd") + "/").startswith(marker):
            return True
        cmdline = (proc / "cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    flags = (f"--temp-dir={marker}".encode(), f"--temp_dir={marker}".encode())
    return any(arg.startswith(flags) for arg in cmdline)


def stray_pids(root: Path) -> list[int]:
    """PIDs that belong to the harness's run folder ``root`` but not to the root namespace.

    Every process the harness starts runs with its working directory under ``root`` (Ray's
    also carry ``--temp-dir=<root>/...``) inside one of its namespaces: this finds them
    even after their namespace was deleted (a crash half-way through a teardown). A process
    in this process's own network namespace, e.g. a shell whose working directory happens
    to be under ``root``, is never counted.
    """
    me = os.getpid()
    home_ns = _netns_id("self")
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        pid = int(entry.name)
        if _proc_owned_by(pid, root) and _netns_id(pid) not in (None, home_ns):
            out.append(pid)
    return out


def leftovers(prefix: str, root: Path) -> dict[str, list[str]]:
    """Everything with ``prefix`` that exists now: namespaces, links, processes, the folder."""
    mark = prefix + "-"
    namespaces = [n for n in list_namespaces() if n.startswith(mark)]
    links = [str(link["ifname"]) for link in list_links() if str(link["ifname"]).startswith(mark)]
    pids = {p for ns in namespaces for p in ns_pids(ns)} | set(stray_pids(root))
    return {
        "namespaces": sorted(namespaces),
        "links": sorted(links),
        "processes": [str(p) for p in sorted(pids)],
        "dirs": [str(root)] if root.exists() else [],
    }


def purge(prefix: str, root: Path, keep_root: bool = False) -> dict[str, list[str]]:
    """Remove everything with ``prefix``: processes, veths, the bridge, namespaces, ``root``.

    Safe to call on a half-built or crashed cluster, and a no-op when nothing is left.

    Returns:
        What was found (the :func:`leftovers` report taken before removal).
    """
    found = leftovers(prefix, root)
    for ns in found["namespaces"]:
        kill_namespace(ns)
    # processes whose namespace was already deleted (or that escaped it): found by folder
    for _ in range(20):
        pids = stray_pids(root)
        if not pids:
            break
        kill_pids(pids)
        time.sleep(0.05)
    # delete the root-side veth ends first: deleting one end removes its peer at once,
    # whereas a veth inside a deleted namespace disappears only when the kernel gets to it
    for link in found["links"]:
        if not link.endswith("-br"):
            run_ip("link", "del", link, check=False)
    for link in found["links"]:
        if link.endswith("-br"):
            run_ip("link", "del", link, check=False)
    for ns in found["namespaces"]:
        run_ip("netns", "del", ns, check=False)
    if not keep_root and root.exists():
        shutil.rmtree(root, ignore_errors=True)
    return found
