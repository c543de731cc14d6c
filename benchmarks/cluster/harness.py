"""A real multi-host cluster on one machine: Ray head + workers, Redis HA, in namespaces.

::

    with Cluster(ClusterSpec(prefix="cscl")) as c:      # up() ... down()
        c.status()                                       # JSON-able dict
        with c.driver() as d:                            # a Ray driver in the head namespace
            d.place(2, "stream_node")
        t = c.kill_node("stream1")                       # SIGKILL every process there
        c.restore_node("stream1")

One harness owns one prefix at a time: ``up`` takes an exclusive lock
(``/tmp/citysight-cluster-<prefix>.lock``) for as long as the cluster is up. A library user
holds it in its own process; the CLI's ``up`` hands it to a small keeper process so the
cluster outlives the command. Whatever a crashed owner left behind (namespaces, veths, the
bridge, processes, the run folder) is removed by the next ``up`` or ``down`` with that
prefix, and nothing without the prefix is ever touched.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from benchmarks.cluster import netns, ray_nodes, redis_ha
from benchmarks.cluster.spec import (
    CLIENT,
    MASTER_NAME,
    RAY_HEAD,
    RAY_WORKER,
    REDIS,
    SENTINEL,
    ClusterSpec,
    Host,
)
from citysight import keys

logger = logging.getLogger(__name__)

LOCK_DIR = Path("/tmp")
STATE_FILE = "state.json"


class ClusterError(RuntimeError):
    """The cluster could not be built, reached or changed; the message says why."""


class ClusterBusy(ClusterError):
    """The prefix is owned by a live process, or the subnet is already in use here."""


def lock_path(prefix: str) -> Path:
    """The lock file that marks a prefix as owned."""
    return LOCK_DIR / f"citysight-cluster-{prefix}.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def _comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


class Cluster:
    """Builds, inspects, breaks and tears down one namespace cluster.

    Args:
        spec: The layout; ``Cluster.attach(prefix)`` reads it back from a running cluster.
    """

    def __init__(self, spec: ClusterSpec) -> None:
        self.spec = spec
        self._lock_fd: int | None = None
        self.timings: dict[str, float] = {}
        self._retry_lock = threading.Lock()

    # -- ownership -------------------------------------------------------------------------

    @classmethod
    def attach(cls, prefix: str) -> Cluster:
        """The cluster that ``up`` built with ``prefix`` (from its ``state.json``)."""
        root = ClusterSpec(prefix=prefix).root
        state = root / STATE_FILE
        if not state.exists():
            raise ClusterError(f"no cluster with prefix {prefix!r} is up ({state} missing)")
        data = json.loads(state.read_text())
        return cls(ClusterSpec.from_json(data["spec"]))

    def _state(self) -> dict[str, Any]:
        path = self.spec.root / STATE_FILE
        return json.loads(path.read_text()) if path.exists() else {}

    def _write_state(self, **extra: Any) -> None:
        state = self._state()
        state.update({"spec": self.spec.to_json(), **extra})
        path = self.spec.root / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(path)

    def _acquire(self) -> None:
        path = lock_path(self.spec.prefix)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise ClusterBusy(
                f"cluster {self.spec.prefix!r} is up and owned by pid {owner}: run "
                f"`python -m benchmarks.cluster.cli down --prefix {self.spec.prefix}` "
                "or choose another --prefix and --subnet"
            ) from None
        self._mark_owner(fd, os.getpid())
        self._lock_fd = fd

    @staticmethod
    def _mark_owner(fd: int, pid: int) -> None:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{pid}\n".encode(), 0)

    def _release(self) -> None:
        if self._lock_fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._lock_fd, 0)
            os.close(self._lock_fd)
            self._lock_fd = None

    def detach(self) -> int:
        """Hand the lock to a keeper process so the cluster outlives this one (CLI ``up``).

        Returns:
            The keeper's PID (recorded in ``state.json``; ``down`` ends it).
        """
        if self._lock_fd is None:
            raise ClusterError("detach() needs a cluster this process brought up")
        # the keeper inherits the open lock file description, and with it the flock
        keeper = subprocess.Popen(
            ["sleep", "infinity"],
            pass_fds=(self._lock_fd,),
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._mark_owner(self._lock_fd, keeper.pid)
        self._write_state(keeper_pid=keeper.pid)
        os.close(self._lock_fd)
        self._lock_fd = None
        return keeper.pid

    def _end_keeper(self) -> None:
        pid = self._state().get("keeper_pid")
        if isinstance(pid, int) and _cmdline(pid) == ["sleep", "infinity"]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            for _ in range(100):
                if not _pid_alive(pid):
                    break
                time.sleep(0.02)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)

    # -- bring-up and teardown ---------------------------------------------------------------

    def __enter__(self) -> Cluster:
        self.up()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.down()

    def up(self, timeout_s: float = 240.0) -> dict[str, float]:
        """Build the whole cluster and wait until Ray and Sentinel report it healthy.

        Leftovers of an earlier cluster with this prefix are removed first. On any failure
        everything built so far is torn down before the error propagates.

        Returns:
            Seconds per phase (``netns_s``, ``redis_s``, ``ray_head_s``, ``ray_workers_s``,
            ``ready_s``) and ``total_s``.
        """
        reason = netns.unavailable_reason()
        if reason:
            raise ClusterError(reason)
        self._acquire()
        t0 = time.monotonic()
        try:
            found = netns.purge(self.spec.prefix, self.spec.root)
            if any(found.values()):
                logger.warning("removed leftovers of an earlier cluster: %s", found)
            self._check_subnet_free()
            self._build(timeout_s)
        except BaseException:
            self.down()
            raise
        self.timings["total_s"] = time.monotonic() - t0
        self._write_state(timings=self.timings, up_at=time.time())
        return dict(self.timings)

    def _check_subnet_free(self) -> None:
        net = self.spec.network
        for link in netns.list_links():
            for addr in link.get("addr_info", []):  # type: ignore[attr-defined]
                if addr.get("family") != "inet":
                    continue
                iface = ipaddress.IPv4Interface(f"{addr['local']}/{addr['prefixlen']}")
                if iface.network.overlaps(net):
                    raise ClusterBusy(
                        f"subnet {net} overlaps {iface} on interface {link['ifname']}: "
                        "choose another --subnet"
                    )

    def _build(self, timeout_s: float) -> None:
        spec = self.spec
        t = time.monotonic()
        spec.root.mkdir(parents=True, exist_ok=True)
        os.chmod(spec.root, 0o700)
        tok = ray_nodes.token_path(spec)
        tok.write_text(secrets.token_hex(32))
        os.chmod(tok, 0o600)
        self._write_state()
        plen = spec.network.prefixlen
        netns.create_bridge(spec.bridge, f"{spec.bridge_ip}/{plen}")
        for h in spec.hosts:
            netns.add_host(spec.ns(h.name), spec.ns(h.name), spec.bridge, f"{h.ip}/{plen}")
            (spec.root / h.name).mkdir(exist_ok=True)
        self.timings["netns_s"] = time.monotonic() - t

        # Redis and the Ray head start side by side; the workers need the head's GCS
        errors: list[BaseException] = []

        def redis_side() -> None:
            try:
                t1 = time.monotonic()
                self._start_redis_all()
                self.timings["redis_s"] = time.monotonic() - t1
            except BaseException as exc:
                errors.append(exc)

        th = threading.Thread(target=redis_side, name="redis-up")
        th.start()
        t = time.monotonic()
        try:
            self._start_ray(spec.host("head"))
        finally:
            th.join()
        self.timings["ray_head_s"] = time.monotonic() - t
        if errors:
            raise errors[0]
        t = time.monotonic()
        self._parallel([h for h in spec.hosts if h.kind == RAY_WORKER], self._start_ray)
        self.timings["ray_workers_s"] = time.monotonic() - t
        t = time.monotonic()
        self.wait_ray_nodes(timeout_s=min(60.0, timeout_s))
        redis_ha.wait_ready(spec, timeout_s=min(60.0, timeout_s))
        self.timings["ready_s"] = time.monotonic() - t

    @staticmethod
    def _parallel(hosts: list[Host], fn: Callable[[Host], object]) -> None:
        errors: list[BaseException] = []

        def run(h: Host) -> None:
            try:
                fn(h)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(h,), name=f"up-{h.name}") for h in hosts]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if errors:
            raise errors[0]

    def down(self, force: bool = False) -> dict[str, Any]:
        """Tear everything with this prefix down, also the leftovers of a crashed run.

        Args:
            force: Tear down even if another live process (not a keeper) owns the cluster.

        Returns:
            ``{"removed": <what was found>, "teardown_s": seconds}``.
        """
        t0 = time.monotonic()
        if self._lock_fd is None:
            self._end_keeper()
            try:
                self._acquire()
            except ClusterBusy:
                if not force:
                    raise
        found = netns.purge(self.spec.prefix, self.spec.root)
        self._release()
        return {"removed": found, "teardown_s": time.monotonic() - t0}

    def leftovers(self) -> dict[str, list[str]]:
        """What exists now with this prefix (empty lists when the cluster is fully gone)."""
        return netns.leftovers(self.spec.prefix, self.spec.root)

    # -- running things inside -------------------------------------------------------------

    def argv_in(self, name: str, argv: list[str]) -> list[str]:
        """``argv`` wrapped to run inside host ``name``'s namespace."""
        self.spec.host(name)
        return netns.exec_argv(self.spec.ns(name), argv)

    def env_for(self, name: str, *, driver: bool = True) -> dict[str, str]:
        """Environment for a process in host ``name``: Ray's settings and ``CITYSIGHT_*``.

        ``CITYSIGHT_NODE_IP`` is the host's address, ``CITYSIGHT_REDIS_SENTINELS`` the
        Sentinels as ``ip:port,...`` and ``CITYSIGHT_REDIS_MASTER`` the master name.
        """
        h = self.spec.host(name)
        env = ray_nodes.ray_env(self.spec, driver=driver)
        env["CITYSIGHT_NODE_IP"] = h.ip
        env["CITYSIGHT_REDIS_SENTINELS"] = ",".join(
            f"{ip}:{port}" for ip, port in self.spec.sentinel_addresses
        )
        env["CITYSIGHT_REDIS_MASTER"] = MASTER_NAME
        return env

    def popen(self, name: str, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside host ``name`` (cwd: its folder; env: :meth:`env_for`)."""
        kwargs.setdefault("env", self.env_for(name))
        kwargs.setdefault("cwd", str(self.spec.root / name))
        return subprocess.Popen(self.argv_in(name, argv), **kwargs)

    def run(
        self, name: str, argv: list[str], timeout_s: float = 120.0, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside host ``name`` to completion, capturing text output."""
        kwargs.setdefault("env", self.env_for(name))
        kwargs.setdefault("cwd", str(self.spec.root / name))
        return subprocess.run(
            self.argv_in(name, argv), capture_output=True, text=True, timeout=timeout_s, **kwargs
        )

    @contextlib.contextmanager
    def driver(self, name: str = "head", timeout_s: float = 90.0) -> Iterator[RayDriver]:
        """A long-lived Ray driver (:mod:`benchmarks.cluster.probe`) inside host ``name``."""
        h = self.spec.host(name)
        if not h.is_ray:
            raise ClusterError(f"{name} runs no raylet: a Ray driver needs one in its namespace")
        drv = RayDriver(self, name, timeout_s)
        try:
            yield drv
        finally:
            drv.close()

    # -- Ray -------------------------------------------------------------------------------

    def _start_ray(self, h: Host, attempts: int = 4) -> None:
        for attempt in range(1, attempts + 1):
            try:
                if attempt == 1:
                    self._start_ray_once(h)
                else:
                    # one node at a time: nodes registering side by side are what a loaded
                    # machine could not fit in the window
                    with self._retry_lock:
                        self._start_ray_once(h)
                return
            except ClusterError as exc:
                # `ray start` gives a raylet a fixed 30 s to register with the GCS; a machine
                # loaded by other work misses that now and then. The raylet it started keeps
                # trying: when it registers late the node is up; else start it afresh.
                if "timed out during startup" not in str(exc):
                    raise
                if h.kind == RAY_WORKER and self._registers_late(h, 60.0):
                    logger.warning("ray start on %s timed out, its raylet registered late", h.name)
                    return
                if attempt == attempts:
                    raise
                logger.warning("ray start on %s timed out (attempt %d); again", h.name, attempt)
                netns.kill_namespace(self.spec.ns(h.name))

    def _registers_late(self, h: Host, timeout_s: float) -> bool:
        """Whether ``h``'s raylet, still running, becomes a live node within ``timeout_s``."""
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if not any(_comm(p) == "raylet" for p in netns.ns_pids(self.spec.ns(h.name))):
                return False
            try:
                nodes = self.ray_nodes(timeout_s=max(5.0, t_end - time.monotonic()))
            except (ClusterError, subprocess.TimeoutExpired):
                continue
            if any(n["alive"] and n["ip"] == h.ip for n in nodes):
                return True
            time.sleep(1.0)
        return False

    def _start_ray_once(self, h: Host) -> None:
        folder = self.spec.root / h.name
        folder.mkdir(exist_ok=True)
        with open(folder / "ray-start.log", "ab") as log:
            # stdout to a file, never a pipe: the daemons ray start leaves behind inherit
            # it, and a pipe would keep this call waiting for them
            res = subprocess.run(
                self.argv_in(h.name, ray_nodes.start_argv(self.spec, h)),
                env=ray_nodes.ray_env(self.spec),
                cwd=str(folder),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=180,
                start_new_session=True,
            )
        if res.returncode != 0:
            tail = (folder / "ray-start.log").read_text(errors="replace")[-1500:]
            raise ClusterError(f"ray start on {h.name} failed ({res.returncode}):\n{tail}")

    def ray_nodes(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Every node the GCS knows (one-shot driver in the head namespace)."""
        res = self.run(
            "head", [sys.executable, "-m", "benchmarks.cluster.probe", "nodes"], timeout_s
        )
        for line in reversed(res.stdout.splitlines()):
            if line.startswith("{"):
                return list(json.loads(line)["nodes"])
        raise ClusterError(f"probe failed ({res.returncode}): {res.stderr[-1500:]}")

    def wait_ray_nodes(self, timeout_s: float = 60.0) -> list[dict[str, Any]]:
        """Wait until every Ray host is a live node with its role resources."""
        want = {h.ip: h for h in self.spec.hosts if h.is_ray}
        t_end = time.monotonic() + timeout_s
        while True:
            nodes = self.ray_nodes(timeout_s)
            alive = {n["ip"]: n for n in nodes if n["alive"]}
            missing = [
                h.name
                for ip, h in want.items()
                if ip not in alive
                or any(alive[ip]["resources"].get(k) != v for k, v in h.resources.items())
            ]
            if not missing:
                return nodes
            if time.monotonic() > t_end:
                raise ClusterError(f"Ray nodes not up after {timeout_s:.0f} s: {missing}")
            time.sleep(0.5)

    # -- Redis -----------------------------------------------------------------------------

    def _redis_dir(self, h: Host) -> Path:
        return self.spec.root / h.name

    def _start_redis(self, h: Host, replicaof: str | None) -> None:
        conf = redis_ha.redis_conf(self.spec, h, self._redis_dir(h))
        argv = [redis_ha.redis_binary(), str(conf)]
        if replicaof:
            ip, port = replicaof.rsplit(":", 1)
            argv += ["--replicaof", ip, port]
        self._daemon(h, argv)
        self._wait_ping(h.ip, self.spec.redis_port, h.name)

    def _start_sentinel(self, h: Host, primary: Host) -> None:
        conf = redis_ha.sentinel_conf(self.spec, h, self._redis_dir(h), primary)
        self._daemon(h, redis_ha.sentinel_argv(conf))
        self._wait_ping(h.ip, self.spec.sentinel_port, h.name)

    def _daemon(self, h: Host, argv: list[str]) -> None:
        res = subprocess.run(
            self.argv_in(h.name, argv),
            cwd=str(self._redis_dir(h)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=30,
            start_new_session=True,
        )
        if res.returncode != 0:
            raise ClusterError(f"{argv[0]} on {h.name} failed: {(res.stderr or res.stdout)[-800:]}")

    def _wait_ping(self, ip: str, port: int, name: str, timeout_s: float = 20.0) -> None:
        t_end = time.monotonic() + timeout_s
        while not redis_ha.ping(ip, port):
            if time.monotonic() > t_end:
                log = next(self._redis_dir(self.spec.host(name)).glob("*.log"), None)
                tail = log.read_text()[-800:] if log else ""
                raise ClusterError(f"{name} ({ip}:{port}) does not answer PING:\n{tail}")
            time.sleep(0.05)

    def _start_redis_all(self) -> None:
        r1, r2 = self.spec.host("redis1"), self.spec.host("redis2")
        self._start_redis(r1, None)
        self._start_redis(r2, f"{r1.ip}:{self.spec.redis_port}")
        for h in self.spec.hosts:
            if h.kind == SENTINEL:
                self._start_sentinel(h, r1)

    def redis_primary(self) -> Host:
        """The Redis host the Sentinels currently name as primary."""
        view = redis_ha.sentinel_view(self.spec)
        if not view["primary"]:
            raise ClusterError(f"Sentinels do not agree on a primary: {view['sentinels']}")
        ip = view["primary"].rsplit(":", 1)[0]
        for h in self.spec.hosts:
            if h.kind == REDIS and h.ip == ip:
                return h
        raise ClusterError(f"primary {view['primary']} is not one of the cluster's hosts")

    # -- faults ----------------------------------------------------------------------------

    def kill_node(self, name: str) -> float:
        """SIGKILL every process in host ``name`` (a machine that lost power).

        Returns:
            Wall-clock time (``time.time()``) right after the last process was signalled.
        """
        self.spec.host(name)
        netns.kill_namespace(self.spec.ns(name))
        return time.time()

    def kill_redis_primary(self) -> tuple[Host, float]:
        """Kill the host the Sentinels name as primary; returns it and the kill time."""
        h = self.redis_primary()
        return h, self.kill_node(h.name)

    def restore_node(self, name: str) -> None:
        """Start host ``name``'s processes again after a kill.

        A Ray worker rejoins the cluster (a new node id); a Redis server comes back as a
        replica of whichever server the Sentinels now name as primary; a Sentinel rejoins.
        Restoring the head restarts it and then every Ray worker (without GCS fault
        tolerance a new head is a new cluster).
        """
        h = self.spec.host(name)
        netns.kill_namespace(self.spec.ns(name))  # whatever survived a partial kill
        if h.kind == RAY_WORKER:
            self._start_ray(h)
        elif h.kind == RAY_HEAD:
            # workers first: their raylets still name the old GCS address on their command
            # lines, and `ray start --head` scans the machine's processes for that address
            # and refuses to start ("already running")
            workers = [w for w in self.spec.hosts if w.kind == RAY_WORKER]
            for w in workers:
                netns.kill_namespace(self.spec.ns(w.name))
            self._start_ray(h)
            self._parallel(workers, self._start_ray)
            self.wait_ray_nodes()
        elif h.kind == REDIS:
            primary = self.redis_primary()
            if primary.name == name:
                # the Sentinels never saw it fail (killed and restored within
                # down-after-milliseconds): it is still the primary
                self._start_redis(h, None)
            else:
                self._start_redis(h, f"{primary.ip}:{self.spec.redis_port}")
        elif h.kind == SENTINEL:
            self._daemon(h, redis_ha.sentinel_argv(self._redis_dir(h) / "sentinel.conf"))
            self._wait_ping(h.ip, self.spec.sentinel_port, h.name)

    def measure_redis_failover(self, timeout_s: float = 30.0) -> dict[str, Any]:
        """Kill the Redis primary and time Sentinel's failover as a client sees it.

        Returns:
            ``killed`` and ``promoted`` host names; seconds from the kill to Sentinel's
            ``+sdown``, ``+odown`` and ``+switch-master`` events and to the first write that
            succeeds through a Sentinel-discovered client (``writes_resumed_s``), and how
            many writes failed in between.
        """
        key = keys.CLUSTER_FAILOVER_PROBE
        redis_ha.write_until_ok(self.spec, key, 5.0)
        with redis_ha.SentinelEvents(self.spec) as events:
            old, t_kill = self.kill_redis_primary()
            t_ok, failures = redis_ha.write_until_ok(self.spec, key, timeout_s)
            # the success can beat the event into this thread by a few ms
            t_wait = time.monotonic() + 2.0
            while "+switch-master" not in events.seen and time.monotonic() < t_wait:
                time.sleep(0.02)
        new = self.redis_primary()
        out: dict[str, Any] = {
            "killed": old.name,
            "promoted": new.name,
            "writes_resumed_s": round(t_ok - t_kill, 3),
            "failed_writes": failures,
        }
        for ev in ("+sdown", "+odown", "+switch-master"):
            if ev in events.seen:
                out[ev.lstrip("+").replace("-", "_") + "_s"] = round(events.seen[ev] - t_kill, 3)
        return out

    # -- status ----------------------------------------------------------------------------

    def _host_alive(self, h: Host, ns_exists: bool) -> bool:
        if not ns_exists:
            return False
        if h.is_ray:
            comms = {_comm(p) for p in netns.ns_pids(self.spec.ns(h.name))}
            need = {"raylet", "gcs_server"} if h.kind == RAY_HEAD else {"raylet"}
            return need <= comms
        if h.kind == REDIS:
            return redis_ha.ping(h.ip, self.spec.redis_port)
        if h.kind == SENTINEL:
            return redis_ha.ping(h.ip, self.spec.sentinel_port)
        return h.kind == CLIENT

    def status(self, ray: bool = True) -> dict[str, Any]:
        """The cluster as it is now (JSON-able).

        Args:
            ray: Also ask the GCS for its view of the nodes (starts a short driver).

        Returns:
            ``{"prefix", "subnet", "gcs_address", "sentinels", "up", "nodes": [{"name",
            "namespace", "ip", "role", "alive", "ray": {...}}], "redis": {...}}``. A Ray
            host is alive when its raylet (and on the head the GCS) runs; ``ray`` holds what
            the GCS says of it (node id, alive, resources).
        """
        spec = self.spec
        existing = set(netns.list_namespaces())
        nodes: list[dict[str, Any]] = []
        for h in spec.hosts:
            alive = self._host_alive(h, spec.ns(h.name) in existing)
            role = ",".join(sorted(h.resources)) if h.is_ray else h.kind
            nodes.append(
                {
                    "name": h.name,
                    "namespace": spec.ns(h.name),
                    "ip": h.ip,
                    "kind": h.kind,
                    "role": role,
                    "alive": alive,
                }
            )
        head_alive = next(n["alive"] for n in nodes if n["name"] == "head")
        ray_error = None
        if ray and head_alive:
            try:
                gcs = self.ray_nodes(timeout_s=60)
            except (ClusterError, subprocess.TimeoutExpired) as exc:
                gcs, ray_error = [], str(exc)[-300:]
            for n in nodes:
                if n["kind"] not in (RAY_HEAD, RAY_WORKER):
                    continue
                seen = [g for g in gcs if g["ip"] == n["ip"]]
                live = [g for g in seen if g["alive"]]
                pick: dict[str, Any] | None = (live or seen)[-1] if (live or seen) else None
                n["ray"] = (
                    {
                        "node_id": pick["node_id"],
                        "alive": pick["alive"],
                        "resources": pick["resources"],
                        "dead_incarnations": len(seen) - len(live),
                    }
                    if pick
                    else {"alive": False, "node_id": None}
                )
        redis_view = redis_ha.sentinel_view(spec)
        up = all(n["alive"] for n in nodes) and redis_view["agree"]
        if ray:
            up = (
                up
                and head_alive
                and all(n.get("ray", {}).get("alive") for n in nodes if "ray" in n)
            )
        out: dict[str, Any] = {
            "prefix": spec.prefix,
            "subnet": spec.subnet,
            "gcs_address": spec.gcs_address,
            "ray_address": spec.gcs_address,
            "sentinels": [f"{ip}:{port}" for ip, port in spec.sentinel_addresses],
            "up": up,
            "nodes": nodes,
            "redis": redis_view,
        }
        if ray_error:
            out["ray_error"] = ray_error
        return out


def up_first_free(specs: Iterable[ClusterSpec], timeout_s: float = 240.0) -> Cluster:
    """Bring up the first of ``specs`` whose prefix and subnet are free here.

    Lets several users of the harness (two test runs, a developer's cluster) share a
    machine: each gets its own prefix and subnet, and none waits for or disturbs another.
    """
    tried = []
    for spec in specs:
        c = Cluster(spec)
        try:
            c.up(timeout_s)
        except ClusterBusy as exc:
            tried.append(f"{spec.prefix}: {exc}")
            continue
        return c
    raise ClusterBusy("no free cluster slot: " + "; ".join(tried))


class RayDriver:
    """Client side of :mod:`benchmarks.cluster.probe`: a Ray driver in a cluster namespace.

    Args:
        cluster: The cluster.
        name: Host to run in (needs a raylet: ``head`` or a Ray worker).
        timeout_s: How long one request may take.
    """

    def __init__(self, cluster: Cluster, name: str, timeout_s: float = 90.0) -> None:
        self.timeout_s = timeout_s
        self._log = open(cluster.spec.root / name / "probe.log", "ab")  # noqa: SIM115
        self.proc = cluster.popen(
            name,
            [sys.executable, "-m", "benchmarks.cluster.probe", "serve"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        hello = self._read(timeout_s)
        if not hello.get("ready"):
            raise ClusterError(f"probe driver did not start: {hello}")

    def _read(self, timeout_s: float) -> dict[str, Any]:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        result: list[str] = []

        def reader() -> None:
            # skip whatever Ray prints to stdout before the JSON line
            while True:
                line = out.readline()
                if not line or line.startswith("{"):
                    result.append(line)
                    return

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        th.join(timeout_s)
        if th.is_alive():
            self.close()
            raise ClusterError(f"probe driver did not answer within {timeout_s:.0f} s")
        if not result or not result[0]:
            raise ClusterError(f"probe driver exited ({self.proc.poll()}); see probe.log")
        return dict(json.loads(result[0]))

    def request(self, op: str, wait_s: float | None = None, **args: Any) -> dict[str, Any]:
        """Send one request and return the reply; raises on ``ok: false``."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        reply = self._read(wait_s or self.timeout_s)
        if not reply.get("ok"):
            raise ClusterError(f"probe {op}: {reply.get('error')}")
        return reply

    def nodes(self) -> list[dict[str, Any]]:
        """The GCS's node table."""
        return list(self.request("nodes")["nodes"])

    def place(self, count: int, resource: str, amount: float = 0.01) -> list[dict[str, Any]]:
        """Place ``count`` probe actors needing ``{resource: amount}``; where they landed."""
        return list(self.request("place", count=count, resource=resource, amount=amount)["placed"])

    def check(self, timeout_s: float = 5.0) -> list[dict[str, Any]]:
        """Ask every placed actor where it is (``alive: false`` for a dead one)."""
        return list(self.request("check", timeout_s * 4, timeout_s=timeout_s)["actors"])

    def wait_dead(self, ip: str, timeout_s: float = 60.0) -> float:
        """Block until the GCS reports the node at ``ip`` dead; returns that wall time."""
        return float(
            self.request("wait_dead", timeout_s + 10, ip=ip, timeout_s=timeout_s)["dead_at"]
        )

    def close(self) -> None:
        """Stop the driver process."""
        if self.proc.poll() is None:
            with contextlib.suppress(OSError, ValueError):
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError, ValueError):
                if f is not None:
                    f.close()
        self._log.close()
