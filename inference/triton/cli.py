"""``citysight triton serve|canary``: run the bundled Triton against ``model_repo/``."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from inference.triton.server import (
    DEFAULT_MODELS_DIR,
    DEFAULT_REPOSITORY,
    LocalTriton,
    TritonStartError,
    run_canary,
)

logger = logging.getLogger(__name__)


def _server(args: argparse.Namespace) -> LocalTriton:
    ports = (args.http_port, args.grpc_port, args.metrics_port) if args.grpc_port else None
    return LocalTriton(
        model_repository=args.repo,
        models_dir=args.models_dir,
        models=args.models.split(",") if args.models else None,
        startup_timeout_s=args.startup_timeout_s,
        ports=ports,
    )


def _describe(server: LocalTriton) -> dict[str, object]:
    return {
        "http": server.http_url,
        "grpc": server.grpc_url,
        "metrics": server.metrics_url,
        "models": {s["name"]: s.get("state") for s in server.model_states() if "state" in s},
        "log": str(server.log_path),
    }


def serve(args: argparse.Namespace) -> int:
    """Start Triton, print its addresses as JSON, run until SIGINT/SIGTERM."""
    server = _server(args)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server.start()
    except TritonStartError as exc:
        print(f"error: {exc}", file=sys.stderr)
        server.close()
        return 1
    print(json.dumps(_describe(server)), flush=True)
    try:
        while not stop.wait(args.check_interval_s):
            if server.proc is None or server.proc.poll() is not None:
                print("error: tritonserver exited", file=sys.stderr)
                return 1
            if not server.canary():
                logger.warning("canary failed; Triton is not serving correctly")
    finally:
        server.close()
    return 0


def canary(args: argparse.Namespace) -> int:
    """Run the canary against ``--http-url`` or a freshly started server; 0 when it passes."""
    if args.http_url:
        ok = run_canary(args.http_url, timeout_s=5.0)
        print(json.dumps({"http": args.http_url, "canary": ok}))
        return 0 if ok else 1
    server = _server(args)
    try:
        server.start()
    except TritonStartError as exc:
        print(json.dumps({"canary": False, "error": str(exc).splitlines()[0]}))
        return 1
    finally:
        ok = server.proc is not None and server.canary()
        server.close()
    print(json.dumps({"canary": ok}))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``citysight triton ...``)."""
    parser = argparse.ArgumentParser(prog="citysight triton")
    sub = parser.add_subparsers(dest="cmd", required=True)
    for name, help_ in (
        ("serve", "run Triton until interrupted"),
        ("canary", "check a Triton with the known-frame canary"),
    ):
        p = sub.add_parser(name, help=help_)
        p.add_argument("--repo", type=Path, default=DEFAULT_REPOSITORY)
        p.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
        p.add_argument("--models", default="", help="comma-separated models (default: all)")
        p.add_argument("--startup-timeout-s", type=float, default=120.0)
        p.add_argument("--http-port", type=int, default=8010)
        p.add_argument(
            "--grpc-port",
            type=int,
            default=0,
            help="fixed gRPC port (with --http-port, --metrics-port); 0: free ports",
        )
        p.add_argument("--metrics-port", type=int, default=8012)
    sub.choices["serve"].add_argument("--check-interval-s", type=float, default=10.0)
    sub.choices["canary"].add_argument(
        "--http-url", default="", help="host:port of a running Triton's HTTP endpoint"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return serve(args) if args.cmd == "serve" else canary(args)


if __name__ == "__main__":
    sys.exit(main())
