"""Ray nodes across network namespaces: ``ray start`` command lines and their environment.

What Ray 2.60 needs to work across namespaces (found by trying, see docs/cluster.md):

* ``--node-ip-address`` on every ``ray start``: a namespace has no default route, and Ray's
  own guess (the source address towards 8.8.8.8) fails there.
* Token authentication configured the same way on every node and driver. Ray 2.60 turns
  token auth on for ``ray start --head`` whenever ``~/.ray/auth_token`` exists (a plain
  ``ray.init()`` anywhere on the machine creates it), but ``ray start --address`` on a
  worker does not read it, so workers are rejected (``InvalidAuthToken``). The harness sets
  ``RAY_AUTH_MODE=token`` and a private ``RAY_AUTH_TOKEN_PATH`` for every process.
* Drivers pass their own namespace's address (``ray.init(address=gcs,
  _node_ip_address=ip)``): Ray finds "local" raylets by scanning the process table, which
  namespaces do not hide, and without it a driver attaches to the head's raylet from
  whichever namespace it runs in. A driver needs a raylet in its own namespace: from a
  namespace without one (``client``) ``ray.init`` fails.
* A short ``--temp-dir`` per node (Unix socket paths must stay under 108 bytes).
* No fixed ports: each namespace has its own port space, so Ray's random node-manager,
  object-manager and worker ports cannot collide, and nothing filters traffic on the bridge.
* Never ``ray stop``: it kills every Ray process on the machine, other clusters' included.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from benchmarks.cluster.spec import RAY_HEAD, ClusterSpec, Host

REPO_ROOT = Path(__file__).resolve().parents[2]


def ray_binary() -> str:
    """The ``ray`` CLI of this interpreter's environment."""
    cand = Path(sys.executable).parent / "ray"
    if not cand.exists():
        raise FileNotFoundError(f"{cand} not found: install ray[serve] into this environment")
    return str(cand)


def token_path(spec: ClusterSpec) -> Path:
    """The cluster's private Ray authentication token file."""
    return spec.root / "ray_token"


def ray_env(spec: ClusterSpec, *, driver: bool = False) -> dict[str, str]:
    """Environment for Ray processes of this cluster (nodes, or drivers with ``driver``).

    Args:
        spec: The cluster.
        driver: Also set ``RAY_ADDRESS`` (``ray start`` itself must not see one).
    """
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    t = spec.timings
    env.update(
        {
            "RAY_USAGE_STATS_ENABLED": "0",
            "ORT_DISABLE_TELEMETRY": "1",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(token_path(spec)),
            # read by the GCS on the head: how fast a dead node is declared dead
            "RAY_health_check_period_ms": str(t.ray_health_check_period_ms),
            "RAY_health_check_timeout_ms": str(t.ray_health_check_timeout_ms),
            "RAY_health_check_failure_threshold": str(t.ray_health_check_failure_threshold),
            # idle workers prestarted on every node cost CPU that 2 shared cores lack
            "RAY_enable_worker_prestart": "0",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
        }
    )
    if driver:
        env["RAY_ADDRESS"] = spec.gcs_address
    return env


def node_dir(spec: ClusterSpec, host: Host) -> Path:
    """The node's folder (its Ray ``--temp-dir`` and its working directory)."""
    return spec.root / host.name


def start_argv(spec: ClusterSpec, host: Host) -> list[str]:
    """``ray start`` arguments that make ``host`` a head or a worker node of ``spec``."""
    argv = [
        ray_binary(),
        "start",
        f"--node-ip-address={host.ip}",
        f"--num-cpus={spec.num_cpus}",
        "--num-gpus=0",
        f"--resources={json.dumps(host.resources, sort_keys=True)}",
        f"--temp-dir={node_dir(spec, host)}",
        f"--object-store-memory={spec.object_store_mb * 1024 * 1024}",
        "--disable-usage-stats",
    ]
    if host.kind == RAY_HEAD:
        argv += ["--head", f"--port={spec.gcs_port}", "--include-dashboard=false"]
    else:
        argv += [f"--address={spec.gcs_address}"]
    return argv


def driver_init_kwargs(spec: ClusterSpec, host: Host) -> dict[str, str]:
    """``ray.init`` keyword arguments for a driver running inside ``host``'s namespace."""
    return {"address": spec.gcs_address, "_node_ip_address": host.ip}
