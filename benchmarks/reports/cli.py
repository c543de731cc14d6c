"""``citysight bench reports``: what a field report costs the API, per upload.

Sends real multipart requests over HTTP (uvicorn on 127.0.0.1, the production FastAPI app,
a real Redis) and times each from the first byte sent to the answer, in the same run:

* ``baseline``: ``GET /api/reports/config`` (authentication and routing only; the ratio's
  denominator);
* ``report_<n>x<size>``: ``POST /api/reports`` with ``n`` phone-sized JPEG photos (decode,
  EXIF orientation, re-encode without metadata, store, raise or join an alert);
* ``feedback_1x<size>``: ``POST /api/alerts/{id}/feedback`` with one photo.

Photos are textured (noise over gradients, like a phone photo's entropy) at several sizes.
Reported per mode: ``mean``/``p50``/``p90`` ms and ``ratio`` = mean over the baseline mean.
Reports are spread 1 km apart so each raises its own alert (no joining). Results: JSON plus
a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import redis
from PIL import Image

from benchmarks.common.results import emit
from benchmarks.common.stats import latency_summary
from benchmarks.fanout.world import ServerThread, seed_principals, token_of
from citysight.config import CitysightConfig

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEFAULT_OUT = RESULTS / "reports.json"
SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "12mp": (4000, 3000)}


def photo(size: str, seed: int = 0) -> bytes:
    """A phone-like JPEG (quality 90) of ``size``."""
    w, h = SIZES[size]
    rng = np.random.default_rng(seed)
    gx = np.linspace(0, 200, w, dtype=np.float32)[None, :, None]
    gy = np.linspace(0, 55, h, dtype=np.float32)[:, None, None]
    arr = np.clip(gx + gy + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(arr).save(out, format="JPEG", quality=90)
    return out.getvalue()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every mode ``args.repeats`` times; the result document."""
    from citysight.app.services.redis_server import EmbeddedRedis, free_port
    from serve_app.http import create_api

    embedded = None
    url = args.redis_url
    if url is None:
        embedded = EmbeddedRedis(
            free_port(), Path(tempfile.mkdtemp(prefix="bench-reports-")), appendonly=False
        )
        embedded.start()
        url = embedded.url
    r = redis.Redis.from_url(url)
    roles = {
        "grid": {"department": "enforcement", "scopes": ["reports:write"]},
        "enforcement": {"department": "enforcement", "scopes": ["alerts:read", "alerts:dispatch"]},
    }
    seed_principals(r, roles)
    cfg = CitysightConfig.model_validate(
        {
            "departments": [{"id": "enforcement"}],
            "routing": [{"kind": "*", "department": "enforcement"}],
            "reports": {"max_photo_bytes": 20_000_000, "max_pixels": 20_000_000},
        }
    )
    port = free_port()
    server = ServerThread(create_api(cfg, url), port).start()
    rows: list[dict[str, Any]] = []
    try:
        base = f"http://127.0.0.1:{port}"
        grid, desk = (
            httpx.Client(
                base_url=base, timeout=60, headers={"Authorization": f"Bearer {token_of(role)}"}
            )
            for role in ("grid", "enforcement")
        )
        modes: list[tuple[str, Any]] = [("baseline", None)]
        for size in args.sizes:
            for n in args.photos:
                modes.append((f"report_{n}x{size}", (n, size)))
            modes.append((f"feedback_1x{size}", (1, size)))
        k = 0
        alert_id = ""
        for mode, spec in modes:
            files = [photo(spec[1], i) for i in range(spec[0])] if spec else []
            times: list[float] = []
            for _ in range(args.repeats + 1):  # the first request of a mode warms it up
                k += 1
                t0 = time.perf_counter()
                if spec is None:
                    res = grid.get("/api/reports/config")
                elif mode.startswith("feedback"):
                    res = desk.post(
                        f"/api/alerts/{alert_id}/feedback",
                        files=[("photos", ("after.jpg", files[0], "image/jpeg"))],
                    )
                else:
                    res = grid.post(
                        "/api/reports",
                        data={"latitude": f"{(k % 80) * 0.01:.2f}", "longitude": "110",
                              "kind": "other"},
                        files=[("photos", (f"p{i}.jpg", b, "image/jpeg"))
                               for i, b in enumerate(files)],
                    )  # fmt: skip
                    alert_id = res.json().get("alert_id", alert_id)
                ms = (time.perf_counter() - t0) * 1000
                if res.status_code not in (200, 201):
                    raise RuntimeError(f"{mode}: {res.status_code} {res.text[:200]}")
                times.append(ms)
            s = latency_summary(times[1:])
            rows.append({
                "mode": mode, "photo_kib": round(len(files[0]) / 1024) if files else 0,
                "mean": s["mean"], "p50": s["p50"], "p90": s["p90"], "n": s["count"],
            })  # fmt: skip
        grid.close()
        desk.close()
    finally:
        server.stop()
        r.flushall()
        r.close()
        if embedded is not None:
            embedded.stop()
    base_mean = float(rows[0]["mean"] or 0) or 1.0
    for row in rows:
        row["ratio"] = round(float(row["mean"] or 0) / base_mean, 1)
    return {"benchmark": "reports", "repeats": args.repeats, "rows": rows}


def table(res: dict[str, Any]) -> str:
    """Markdown table of a result."""
    lines = [
        "# Field reports: API cost per upload",
        "",
        "`citysight bench reports` (uvicorn on 127.0.0.1, real Redis; request sent to answer "
        "received); ratio = mean / `baseline` mean (GET /api/reports/config) of the same run; "
        f"{res['repeats']} requests per row.",
        "",
        "| mode | photo KiB | mean ms | p50 ms | p90 ms | ratio |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in res["rows"]:
        lines.append(
            f"| {row['mode']} | {row['photo_kib']} | {row['mean']} | {row['p50']} | "
            f"{row['p90']} | {row['ratio']} |"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="citysight bench reports", description=__doc__.split("\n")[0])
    p.add_argument("--sizes", nargs="+", default=["720p", "12mp"], choices=list(SIZES))
    p.add_argument("--photos", nargs="+", type=int, default=[1, 3], help="photos per report")
    p.add_argument("--repeats", type=int, default=10, help="requests per row")
    p.add_argument("--redis-url", default=None, help="external Redis (default: embedded)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result file (JSON; .md beside)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    if args.repeats < 1 or any(n < 1 or n > 4 for n in args.photos):
        print("--repeats must be at least 1 and --photos between 1 and 4", file=sys.stderr)
        return 2
    res = run(args)
    emit(res, args.out, as_json=args.json, table=table, markdown=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
