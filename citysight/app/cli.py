"""The ``citysight`` command line.

Sub-commands of other layers are wired by name (``module:function`` taking ``argv``) and
imported only when used, so ``citysight config check`` stays fast and light.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from citysight.config import ConfigError, json_schema, load_config, schema_reference_markdown

# command -> "module:function(argv) -> int"
DELEGATED: dict[str, str] = {
    "plan": "benchmarks.planner.cli:main",
    "eval": "benchmarks.eval.cli:main",
    "triton": "inference.triton.cli:main",
}
# command -> {sub-command -> target}; the target parses what follows the sub-command.
GROUPS: dict[str, dict[str, str]] = {
    "models": {
        "install": "inference.triton.models_install:main",
        "train": "citysight.app.training:main",
    },
    "bench": {
        "decode": "benchmarks.decode.cli:main",
        "streams": "benchmarks.streams.cli:main",
        "inference": "benchmarks.inference.cli:main",
        "rules": "benchmarks.rules.cli:main",
        "fanout": "benchmarks.fanout.cli:main",
        "map": "benchmarks.map.run:main",
        "city": "benchmarks.city.cli:main",
        "locust": "benchmarks.locust.run:main",
        "pipeline": "benchmarks.pipeline.cli:main",
        "nvdec": "benchmarks.nvdec.cli:main",
        "metrics": "benchmarks.metrics.cli:main",
        "urls": "benchmarks.urls.cli:main",
        "stats": "benchmarks.stats.cli:main",
        "soak": "benchmarks.soak.run:main",
        "redaction": "benchmarks.redaction.cli:main",
        "vending": "benchmarks.vending.cli:main",
        "reports": "benchmarks.reports.cli:main",
        "cluster": "benchmarks.cluster.bench:main",
        "video": "benchmarks.video.cli:main",
        "webhooks": "benchmarks.webhooks.cli:main",
    },
    # outbound webhooks: delivery status, dead letters (docs/integrations.md)
    "webhooks": {
        name: f"serve_app.webhooks.admin:{name}_main"
        for name in ("status", "dead", "replay", "purge", "receive")
    },
    # a multi-host cluster on this machine, one network namespace per host (as root)
    "cluster": {
        **{
            name: f"benchmarks.cluster.cli:{name}_main"
            for name in ("up", "down", "status", "kill", "restore", "failover", "exec")
        },
        # infra/k8s from the same layout (benchmarks/cluster/manifests.py)
        "manifests": "benchmarks.cluster.manifests:main",
    },
}


# top-level module -> the extra of pyproject.toml that installs it (the README's first
# command installs no extra: a command that needs one says so in one line)
EXTRAS: dict[str, str] = {
    "locust": "bench",
    "websocket": "bench",
    "matplotlib": "bench",
    "torch": "train",
    "playwright": "test",
    "pytest": "test",
}


def _delegate(target: str, argv: list[str], command: str = "") -> int:
    module, func = target.split(":")
    try:
        mod = importlib.import_module(module)
        fn: Callable[[list[str]], int] = getattr(mod, func)
        return int(fn(argv) or 0)
    except ModuleNotFoundError as exc:
        top = (exc.name or "").split(".")[0]
        extra = EXTRAS.get(top)
        what = f"citysight {command}".rstrip()
        if extra is not None:
            print(
                f"{what}: needs the '{extra}' extra (no module named {top!r}); install it "
                f"with: .venv/bin/pip install -e '.[{extra}]'",
                file=sys.stderr,
            )
        else:
            print(f"{what}: not available in this install ({exc})", file=sys.stderr)
        return 2


def _cmd_config(args: argparse.Namespace) -> int:
    if args.action == "check":
        if not args.file:
            print("citysight config check: give the config FILE", file=sys.stderr)
            return 2
        try:
            cfg = load_config(args.file)
        except ConfigError as err:
            for p in err.problems:
                print(f"{err.source}: {p}", file=sys.stderr)
            print(f"{len(err.problems)} problem(s) found", file=sys.stderr)
            return 1
        print(
            f"{args.file}: ok ({len(cfg.cameras)} cameras, {len(cfg.rules)} rules, "
            f"{len(cfg.departments)} departments, time zone "
            f"{cfg.site.timezone or 'of each host: set site.timezone'})"
        )
        return 0
    if args.action == "schema":
        text = (
            schema_reference_markdown()
            if args.markdown
            else json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
        )
        if args.out:
            Path(args.out).write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0
    return 2


def _absolute(path: str) -> Path:
    """A command-line path made absolute against the current directory (``~`` expanded).

    Subprocesses (tritonserver, Ray workers) run with other working directories, so a
    relative path must never travel past the command line.
    """
    return Path(os.path.abspath(Path(path).expanduser()))


def _cmd_demo(args: argparse.Namespace) -> int:
    from citysight.app.demo import demo_config
    from citysight.app.runtime import run_forever
    from citysight.app.services.redis_server import port_in_use

    # Fail fast, before rendering the demo clips.
    for port, what in ((args.port, "--port"), (args.redis_port, "--redis-port")):
        if port_in_use(port):
            print(
                f"citysight: port {port} is already in use: stop what listens there (another "
                f"citysight?) or choose another with {what}",
                file=sys.stderr,
            )
            return 1
    workdir = _absolute(args.workdir)
    cfg = demo_config(workdir, port=args.port, redis_port=args.redis_port)
    if args.inference:
        cfg.services.inference.type = args.inference
    return run_forever(cfg, workdir=workdir, duration_s=args.duration, demo=True)


def _cmd_run(args: argparse.Namespace) -> int:
    from citysight.app.runtime import run_forever

    try:
        cfg = load_config(args.config)
    except ConfigError as err:
        for p in err.problems:
            print(f"citysight: {err.source}: {p}", file=sys.stderr)
        return 1
    return run_forever(
        cfg.with_absolute_paths(),
        workdir=_absolute(args.workdir),
        duration_s=args.duration,
        demo=False,
        serve=not args.no_serve,
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (also used by the docs test)."""
    p = argparse.ArgumentParser(prog="citysight", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="run the embedded demo (synthetic cameras, all five kinds)")
    d.add_argument("--workdir", default=os.environ.get("CITYSIGHT_HOME", ".citysight"))
    d.add_argument("--port", type=int, default=8000, help="HTTP port on 127.0.0.1")
    d.add_argument("--redis-port", type=int, default=6390)
    d.add_argument(
        "--inference",
        choices=["onnxruntime", "triton"],
        default=None,
        help="detector backend (default: the demo config's)",
    )
    d.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stop after this many seconds (default: until Ctrl-C)",
    )
    d.set_defaults(func=_cmd_demo)

    r = sub.add_parser("run", help="run with a config file")
    r.add_argument("--config", required=True)
    r.add_argument("--workdir", default=os.environ.get("CITYSIGHT_HOME", ".citysight"))
    r.add_argument("--duration", type=float, default=None)
    r.add_argument(
        "--no-serve",
        action="store_true",
        help="leave the Serve app (API, WebSocket, rules) to a deployment elsewhere, e.g. the "
        "RayService: only seed Redis and run the stream supervisor (the cluster's control "
        "process)",
    )
    r.set_defaults(func=_cmd_run)

    c = sub.add_parser("config", help="check a config file or print its schema")
    c.add_argument("action", choices=["check", "schema"])
    c.add_argument("file", nargs="?")
    c.add_argument("--markdown", action="store_true", help="schema as a Markdown reference")
    c.add_argument("--out", help="write the schema here")
    c.set_defaults(func=_cmd_config)

    for group, help_ in (
        ("bench", "benchmarks"),
        ("models", "model files"),
        ("webhooks", "webhook delivery status, dead letters and replay"),
        ("cluster", "a multi-host cluster in network namespaces, as root (docs/cluster.md)"),
    ):
        g = sub.add_parser(group, help=f"{help_}: " + ", ".join(GROUPS[group]))
        g.add_argument("name", choices=sorted(GROUPS[group]))
        g.add_argument("rest", nargs=argparse.REMAINDER)
    for name, help_ in (
        ("plan", "capacity planner"),
        ("eval", "detector accuracy on labelled data"),
        ("triton", "the bundled Triton server (serve, canary)"),
    ):
        sp = sub.add_parser(name, help=help_, add_help=False)
        sp.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``citysight`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Delegated commands parse their own flags (including --help).
    if argv and argv[0] in DELEGATED:
        _setup_logging(False)
        return _delegate(DELEGATED[argv[0]], argv[1:], argv[0])
    if len(argv) >= 2 and argv[0] in GROUPS and argv[1] in GROUPS[argv[0]]:
        _setup_logging(False)
        return _delegate(GROUPS[argv[0]][argv[1]], argv[2:], " ".join(argv[:2]))
    args = build_parser().parse_args(argv)
    _setup_logging(args.verbose)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


def _setup_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


if __name__ == "__main__":
    raise SystemExit(main())
