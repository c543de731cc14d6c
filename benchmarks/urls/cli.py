"""``citysight bench urls``: what a hostile camera URL costs the API (issue 13 #4).

For each length, times the whole check a submitted camera goes through
(``CameraConfig`` validation, then :func:`citysight.urls.check_url`) on the URL that blocked
the API (``rtsp://cam?`` followed by ``:`` up to the length), plus :func:`citysight.urls.redact`
on a text of that length, against a baseline measured in the same run: the same checks on an
ordinary camera URL. The pattern the fix removed (``^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]+@``) is
timed too, up to ``--removed-max`` characters (it is quadratic: ~17 s at 30,000 on the shared
2-core machine), to show the difference. Reported per length: median µs, the ratio to the
baseline, and the growth exponent between the shortest and longest length (1 = linear,
2 = quadratic).
"""

from __future__ import annotations

import argparse
import math
import re
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common.results import emit

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "results" / "urls.json"
REMOVED_PATTERN = r"^[a-z][a-z0-9+.-]*://[^/@]*:[^/@]+@"
# A name, like the hostile URL's host (an address would add the allow-list check).
NORMAL_URL = "rtsp://cam17.city.internal:554/Streaming/Channels/101"


def build_parser() -> argparse.ArgumentParser:
    """Command line of the benchmark."""
    p = argparse.ArgumentParser(prog="citysight bench urls", description=__doc__.split("\n")[0])
    p.add_argument(
        "--lengths",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[256, 1024, 3000, 10000, 30000],
        help="comma-separated URL lengths",
    )
    p.add_argument("--repeats", type=int, default=50, help="timed runs per length")
    p.add_argument(
        "--removed-max",
        type=int,
        default=3000,
        help="time the removed pattern up to this length (0: never)",
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def _median_us(fn: Callable[[], Any], repeats: int) -> float:
    out: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1e6)
    return statistics.median(out)


def _submit(url: str) -> bool:
    """The API's check of a submitted camera; whether it was accepted."""
    from pydantic import ValidationError

    from citysight.config import CameraConfig
    from citysight.urls import check_url

    try:
        cam = CameraConfig(id="cam-bench", url=url, latitude=0, longitude=0)
        check_url(cam.url)
    except (ValidationError, ValueError):
        return False
    return True


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Time every length and the baseline (interleaved in one run)."""
    from functools import partial

    from citysight.urls import MAX_URL_LENGTH, redact

    removed = re.compile(REMOVED_PATTERN, re.I)
    rows: list[dict[str, Any]] = []
    _submit(NORMAL_URL)  # warm up (imports, pydantic's first validation)
    base_us = _median_us(lambda: _submit(NORMAL_URL), args.repeats)
    base_redact_us = _median_us(lambda: redact(NORMAL_URL), args.repeats)
    for n in args.lengths:
        hostile = "rtsp://cam?" + ":" * max(0, n - 11)
        text = ("a." * n)[:n]
        row: dict[str, Any] = {
            "length": n,
            "accepted": _submit(hostile),
            "submit_us": round(_median_us(partial(_submit, hostile), args.repeats), 1),
            "redact_us": round(_median_us(partial(redact, text + "@"), args.repeats), 1),
        }
        row["ratio_to_baseline"] = round(row["submit_us"] / base_us, 2) if base_us else None
        if args.removed_max and n <= args.removed_max:
            reps = max(1, min(args.repeats, 3))
            row["removed_pattern_us"] = round(_median_us(partial(removed.match, hostile), reps), 1)
        rows.append(row)

    def growth(key: str) -> float | None:
        pts = [(r["length"], r[key]) for r in rows if r.get(key)]
        if len(pts) < 2 or pts[0][0] == pts[-1][0] or pts[0][1] <= 0:
            return None
        return round(math.log(pts[-1][1] / pts[0][1]) / math.log(pts[-1][0] / pts[0][0]), 2)

    return {
        "benchmark": "urls",
        "repeats": args.repeats,
        "baseline_submit_us": round(base_us, 1),
        "baseline_redact_us": round(base_redact_us, 1),
        "rows": rows,
        "growth_submit": growth("submit_us"),
        "growth_redact": growth("redact_us"),
        "growth_removed_pattern": growth("removed_pattern_us"),
        "max_url_length": MAX_URL_LENGTH,
        "over_cap_refused": all(not r["accepted"] for r in rows if r["length"] > MAX_URL_LENGTH),
    }


def table(res: dict[str, Any]) -> str:
    """A Markdown table of the result."""
    lines = [
        "| length | accepted | submit µs | × baseline | redact µs | removed pattern µs |",
        "|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['length']} | {r['accepted']} | {r['submit_us']} | "
            f"{r['ratio_to_baseline']} | {r['redact_us']} | {r.get('removed_pattern_us', '-')} |"
        )
    lines.append(
        f"\nURLs over {res['max_url_length']} characters refused: {res['over_cap_refused']}; "
        f"baseline (ordinary URL): submit {res['baseline_submit_us']} µs; growth exponent "
        f"submit {res['growth_submit']}, redact {res['growth_redact']}, removed pattern "
        f"{res['growth_removed_pattern']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; write ``--out`` (JSON) and print a table (or the JSON)."""
    args = build_parser().parse_args(argv)
    if args.repeats < 1 or not args.lengths or min(args.lengths) < 12:
        print("citysight bench urls: --repeats must be >= 1 and every length >= 12",
              file=sys.stderr)  # fmt: skip
        return 2
    res = measure(args)
    emit(res, args.out, as_json=args.json, table=table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
