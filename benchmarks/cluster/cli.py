"""``citysight cluster up|down|status|kill|restore|failover|exec`` (as root).

Also ``python -m benchmarks.cluster.cli ...``.

``up`` builds the cluster and leaves it running (a keeper process holds its lock);
``down`` removes it, and whatever a crashed earlier run left with the same prefix.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

from benchmarks.cluster.harness import Cluster, ClusterError
from benchmarks.cluster.spec import DEFAULT_PREFIX, DEFAULT_SUBNET, ClusterSpec


def _print(obj: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(obj, indent=1, sort_keys=True))
        return
    if "nodes" in obj:
        print(f"cluster {obj['prefix']} on {obj['subnet']}: {'UP' if obj['up'] else 'DEGRADED'}")
        print(f"  RAY_ADDRESS={obj['gcs_address']}  sentinels={','.join(obj['sentinels'])}")
        print(f"  {'host':<9} {'ip':<15} {'role':<22} {'alive':<6} ray")
        for n in obj["nodes"]:
            ray = n.get("ray")
            ray_s = ""
            if ray is not None:
                ray_s = f"{'alive' if ray.get('alive') else 'DEAD'} {str(ray.get('node_id'))[:8]}"
            alive = "yes" if n["alive"] else "NO"
            print(f"  {n['name']:<9} {n['ip']:<15} {n['role']:<22} {alive:<6} {ray_s}")
        r = obj["redis"]
        reps = ", ".join(f"{x['address']} ({x['flags']}, link {x['link']})" for x in r["replicas"])
        print(f"  redis primary {r['primary']}  replicas {reps or '-'}")
        print(
            f"  sentinels agree: {r['agree']} (quorum {r['quorum']}, know {r['known_sentinels']})"
        )
        return
    print(json.dumps(obj, indent=1, sort_keys=True))


def _cluster(args: argparse.Namespace) -> Cluster:
    try:
        return Cluster.attach(args.prefix)
    except ClusterError:
        if args.cmd == "down":
            return Cluster(ClusterSpec(prefix=args.prefix))
        raise


def main(argv: list[str] | None = None, prog: str = "citysight cluster") -> int:
    """Entry point; returns the process exit code."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefix", default=DEFAULT_PREFIX, help="names every namespace and link")
    common.add_argument("--json", action="store_true", help="print JSON")
    common.add_argument("-v", "--verbose", action="store_true", help="log progress")
    ap = argparse.ArgumentParser(prog=prog, description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def add(name: str, help_: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_, parents=[common])

    up = add("up", "build the cluster and leave it running")
    up.add_argument("--subnet", default=DEFAULT_SUBNET)
    up.add_argument("--stream-nodes", type=int, default=2)
    up.add_argument(
        "--serve-nodes", type=int, default=0, help="serve_node workers besides the head"
    )
    up.add_argument("--sentinels", type=int, default=3)
    up.add_argument("--num-cpus", type=int, default=2, help="logical CPUs per Ray node")
    down = add("down", "remove the cluster (and a crashed run's leftovers)")
    down.add_argument("--force", action="store_true", help="even if a live process owns it")
    st = add("status", "nodes, Ray's view of them, Redis as Sentinel sees it")
    st.add_argument("--no-ray", action="store_true", help="skip asking the GCS (faster)")
    k = add("kill", "SIGKILL every process of a host")
    k.add_argument("host")
    r = add("restore", "start a killed host again")
    r.add_argument("host")
    add("failover", "kill the Redis primary and time the Sentinel failover")
    ex = add("exec", "run a command inside a host (env: RAY_ADDRESS...)")
    ex.add_argument("host")
    ex.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)

    try:
        if args.cmd == "up":
            spec = ClusterSpec(
                prefix=args.prefix,
                subnet=args.subnet,
                stream_nodes=args.stream_nodes,
                serve_nodes=args.serve_nodes,
                sentinels=args.sentinels,
                num_cpus=args.num_cpus,
            )
            c = Cluster(spec)
            timings = c.up()
            c.detach()
            out = c.status()
            out["timings"] = {k: round(v, 2) for k, v in timings.items()}
            _print(out, args.json)
            if not args.json:
                print(f"  up in {timings['total_s']:.1f} s; `... cli down` removes it")
            return 0
        c = _cluster(args)
        if args.cmd == "down":
            res = c.down(force=args.force)
            _print(res, True)
            return 0
        if args.cmd == "status":
            out = c.status(ray=not args.no_ray)
            _print(out, args.json)
            return 0 if out["up"] else 1
        if args.cmd == "kill":
            _print({"killed": args.host, "at": c.kill_node(args.host)}, True)
            return 0
        if args.cmd == "restore":
            c.restore_node(args.host)
            _print({"restored": args.host}, True)
            return 0
        if args.cmd == "failover":
            _print(c.measure_redis_failover(), True)
            return 0
        if args.cmd == "exec":
            cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
            if not cmd:
                ap.error("exec needs a command")
            argv_in = c.argv_in(args.host, cmd)
            os.execvpe(argv_in[0], argv_in, c.env_for(args.host))
    except (ClusterError, KeyError, ValueError, TimeoutError) as exc:
        print(f"cluster: {exc}", file=sys.stderr)
        return 2
    return 0


# `citysight cluster <name>` targets (citysight/app/cli.py GROUPS): each takes what follows
def up_main(argv: list[str]) -> int:
    """``citysight cluster up``: build the cluster and leave it running."""
    return main(["up", *argv])


def down_main(argv: list[str]) -> int:
    """``citysight cluster down``: remove the cluster and a crashed run's leftovers."""
    return main(["down", *argv])


def status_main(argv: list[str]) -> int:
    """``citysight cluster status``: nodes, Ray's view, Redis as Sentinel sees it."""
    return main(["status", *argv])


def kill_main(argv: list[str]) -> int:
    """``citysight cluster kill HOST``: SIGKILL every process of a host."""
    return main(["kill", *argv])


def restore_main(argv: list[str]) -> int:
    """``citysight cluster restore HOST``: start a killed host again."""
    return main(["restore", *argv])


def failover_main(argv: list[str]) -> int:
    """``citysight cluster failover``: kill the Redis primary and time the failover."""
    return main(["failover", *argv])


def exec_main(argv: list[str]) -> int:
    """``citysight cluster exec HOST -- CMD``: run a command inside a host."""
    return main(["exec", *argv])


if __name__ == "__main__":
    sys.exit(main(prog="python -m benchmarks.cluster.cli"))
