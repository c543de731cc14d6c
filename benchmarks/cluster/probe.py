"""A Ray driver that runs inside one of the cluster's namespaces and answers JSON lines.

Started by the harness as ``ip netns exec <prefix>-head python -m benchmarks.cluster.probe
serve``; it connects once (``RAY_ADDRESS`` plus its own node IP) and then answers one JSON
request per stdin line with one JSON reply per stdout line:

* ``{"op": "nodes"}`` → ``{"ok": true, "nodes": [{"node_id", "ip", "alive", "resources"}]}``
* ``{"op": "place", "count": 2, "resource": "stream_node", "amount": 0.01}`` → places
  ``count`` probe actors that need ``{resource: amount}`` (spread over nodes) and returns
  where each landed: ``{"ok": true, "placed": [{"actor", "ip", "node_id", "pid"}]}``.
* ``{"op": "check"}`` → asks every placed actor where it is; a dead one reports
  ``"alive": false`` with where it was placed.
* ``{"op": "wait_dead", "ip": "10.213.0.11", "timeout_s": 30}`` → returns when the GCS
  reports no live node with that IP: ``{"ok": true, "dead_at": <epoch s>}``.
* ``{"op": "quit"}``.

``python -m benchmarks.cluster.probe nodes`` prints the ``nodes`` reply once and exits
(used by ``status``).
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import ray


@ray.remote(num_cpus=0, max_restarts=0)
class ProbeActor:
    """Reports where it runs."""

    def where(self) -> dict[str, Any]:
        """This actor's node IP, node id and PID."""
        return {
            "ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
            "node_id": ray.get_runtime_context().get_node_id(),
            "pid": os.getpid(),
        }


def nodes() -> list[dict[str, Any]]:
    """Every node the GCS knows, dead ones included."""
    out = []
    for n in ray.nodes():  # type: ignore[no-untyped-call]
        res = {k: v for k, v in n.get("Resources", {}).items() if not k.startswith("node:")}
        out.append(
            {
                "node_id": n["NodeID"],
                "ip": n["NodeManagerAddress"],
                "alive": bool(n["Alive"]),
                "resources": res,
            }
        )
    return out


class Driver:
    """State of one probe session: the actors it placed."""

    def __init__(self) -> None:
        self.actors: list[tuple[str, Any]] = []
        self.placed_at: dict[str, dict[str, Any]] = {}

    def handle(self, req: dict[str, Any]) -> dict[str, Any]:
        """Answer one request (see the module docstring)."""
        op = req.get("op")
        if op == "nodes":
            return {"ok": True, "nodes": nodes()}
        if op == "place":
            return self.place(req)
        if op == "check":
            return {"ok": True, "actors": self.check(float(req.get("timeout_s", 5)))}
        if op == "wait_dead":
            return self.wait_dead(str(req["ip"]), float(req.get("timeout_s", 60)))
        if op == "release":
            for _, a in self.actors:
                ray.kill(a)
            self.actors.clear()
            self.placed_at.clear()
            return {"ok": True}
        return {"ok": False, "error": f"unknown op {op!r}"}

    def place(self, req: dict[str, Any]) -> dict[str, Any]:
        count = int(req.get("count", 1))
        resource = str(req.get("resource", "stream_node"))
        amount = float(req.get("amount", 0.01))
        timeout_s = float(req.get("timeout_s", 60))
        new = []
        for _ in range(count):
            name = f"probe-{len(self.actors)}"
            actor = ProbeActor.options(  # type: ignore[attr-defined]
                resources={resource: amount}, scheduling_strategy="SPREAD"
            ).remote()
            self.actors.append((name, actor))
            new.append((name, actor))
        placed = []
        for name, actor in new:
            where = ray.get(actor.where.remote(), timeout=timeout_s)
            self.placed_at[name] = where
            placed.append({"actor": name, **where})
        return {"ok": True, "placed": placed}

    def check(self, timeout_s: float) -> list[dict[str, Any]]:
        out = []
        for name, actor in self.actors:
            try:
                where = ray.get(actor.where.remote(), timeout=timeout_s)
                out.append({"actor": name, "alive": True, **where})
            except Exception as exc:  # RayActorError, GetTimeoutError...: not alive
                last = self.placed_at.get(name, {})
                out.append({"actor": name, "alive": False, "error": type(exc).__name__, **last})
        return out

    def wait_dead(self, ip: str, timeout_s: float) -> dict[str, Any]:
        t_end = time.monotonic() + timeout_s
        while time.monotonic() < t_end:
            if not any(n["alive"] and n["ip"] == ip for n in nodes()):
                return {"ok": True, "dead_at": time.time()}
            time.sleep(0.1)
        return {"ok": False, "error": f"node {ip} still alive after {timeout_s:.0f} s"}


def connect() -> None:
    """Join the cluster from this namespace (``RAY_ADDRESS`` + ``CITYSIGHT_NODE_IP``)."""
    ray.init(
        address=os.environ["RAY_ADDRESS"],
        _node_ip_address=os.environ["CITYSIGHT_NODE_IP"],
        log_to_driver=False,
        configure_logging=False,
        namespace="citysight-cluster-probe",
    )


def main(argv: list[str]) -> int:
    """Entry point: ``serve`` (JSON lines on stdin/stdout) or ``nodes`` (one shot)."""
    mode = argv[0] if argv else "serve"
    connect()
    if mode == "nodes":
        print(json.dumps({"ok": True, "nodes": nodes()}), flush=True)
        return 0
    drv = Driver()
    print(json.dumps({"ok": True, "ready": True}), flush=True)
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        if req.get("op") == "quit":
            break
        try:
            reply = drv.handle(req)
        except Exception as exc:  # report, keep serving: the harness decides what it means
            reply = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        print(json.dumps(reply), flush=True)
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
