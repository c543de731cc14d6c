"""``citysight bench redaction``: what face detection at serving time adds per evidence image.

Serves the same stored JPEG evidence through :meth:`EvidenceStore.get` (Redis GET, decode,
face detection, blur, JPEG encode), in the same run and process, in these modes:

* ``unredacted``: the stored bytes (no decode);
* ``recorded_only``: the old redacted path, recorded face boxes blurred, no detection
  (the baseline of the ratio);
* ``detect_<tier>``: every face the tier finds blurred too, first view of an image (the
  detection pass runs);
* ``detect_<tier>_cached``: a later view of the same image (the kept rendering is served).

Images are real street frames (``../shared/data/videos/street-720p.mp4``; a synthetic
textured frame without it) at several sizes, each with a real face pasted in. Reported per
mode and size: ``mean``/``p50``/``p90`` ms per served image and ``ratio`` = mean over the
``recorded_only`` mean of the same size. Results: JSON plus a Markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import redis

from benchmarks.common.results import emit
from benchmarks.common.stats import latency_summary
from citysight import keys
from citysight.config import CitysightConfig, InferenceService
from citysight.contracts import Alert, AlertKind, EvidenceRef, Location, Severity
from citysight.redaction import FaceRedactor
from serve_app.store.evidence import EvidenceStore

RESULTS = Path(__file__).resolve().parents[1] / "results"
DEFAULT_OUT = RESULTS / "redaction.json"
REPO = Path(__file__).resolve().parents[2]
STREET = REPO.parent / "shared" / "data" / "videos" / "street-720p.mp4"
SIZES = {"360p": (640, 360), "720p": (1280, 720), "1080p": (1920, 1080)}


def _no_detection(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """The baseline finder: no detection pass (what the store did before issue 13)."""
    return np.zeros((0, 4), np.float32)


def _forget_renderings(r: redis.Redis, alert_id: str) -> None:
    """Drop the kept redacted renderings of an alert (the next view detects again)."""
    stale = list(r.scan_iter(match=keys.redacted_evidence_key(alert_id, "*")))
    if stale:
        r.delete(*stale)


def _frame(size: tuple[int, int]) -> npt.NDArray[np.uint8]:
    """A street frame of ``size`` with a real face (skimage's astronaut) pasted in."""
    from skimage import data

    base: Any = None
    if STREET.is_file():
        cap = cv2.VideoCapture(str(STREET))
        ok, got = cap.read()
        cap.release()
        base = got if ok else None
    if base is None:
        rng = np.random.default_rng(0)
        base = rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    img = cv2.resize(base, size, interpolation=cv2.INTER_AREA)
    photo = data.astronaut()  # type: ignore[no-untyped-call]
    face = cv2.cvtColor(photo, cv2.COLOR_RGB2BGR)[43:196, 158:288]
    scale = size[1] / 720
    face = cv2.resize(face, (max(24, int(130 * scale)), max(24, int(153 * scale))))
    y, x = size[1] // 4, size[0] // 3
    img[y : y + face.shape[0], x : x + face.shape[1]] = face
    return np.asarray(img, np.uint8)


def _alert(aid: str) -> Alert:
    return Alert(
        id=aid,
        kind=AlertKind.VENDING,
        severity=Severity.LOW,
        camera_id="bench",
        location=Location(lat=0.0, lon=0.0),
        department="d",
        started_at=datetime.now(UTC),
        evidence=[EvidenceRef(key=keys.evidence_key(aid), boxes=[], class_ids=[])],
    )


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the benchmark and return the result dict."""
    embedded = None
    url = args.redis_url
    if url is None:
        from citysight.app.services.redis_server import EmbeddedRedis, free_port

        embedded = EmbeddedRedis(
            free_port(), Path(tempfile.mkdtemp(prefix="bench-redaction-")), appendonly=False
        )
        embedded.start()
        url = embedded.url
    r = redis.Redis.from_url(url)
    cfg = CitysightConfig()
    modes: dict[str, FaceRedactor | None] = {
        "unredacted": None,
        "recorded_only": FaceRedactor(_no_detection, "none"),
    }
    for tier in args.tiers:
        red = FaceRedactor.from_config(
            InferenceService(models_dir=str(args.models_dir), tiers={"face": [tier]})
        )
        if not red.available:
            print(f"tier {tier} unavailable: {red.reason}", file=sys.stderr)
            continue
        modes[f"detect_{tier}"] = red
    # A second view of the same evidence: the kept rendering (GET + hash, no detection).
    cached = {f"{m}_cached": red for m, red in modes.items() if m.startswith("detect_")}
    rows: list[dict[str, Any]] = []
    try:
        for size_name in args.sizes:
            img = _frame(SIZES[size_name])
            jpeg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
            alert = _alert(f"al_bench_{size_name}")
            r.set(keys.evidence_key(alert.id), jpeg, ex=600)
            base_mean: float | None = None
            views: list[tuple[str, FaceRedactor | None]] = [*modes.items(), *cached.items()]
            for mode, view in views:
                store = EvidenceStore(r, cfg, redactor=view or FaceRedactor(_no_detection))
                unredacted = view is None
                keep = mode.endswith("_cached")
                store.get(alert, unredacted=unredacted)  # warm-up (model, caches)
                ms: list[float] = []
                for _ in range(args.repeats):
                    if not keep:  # every view of this row is a first view: detect again
                        _forget_renderings(r, alert.id)
                    t0 = time.perf_counter()
                    out = store.get(alert, unredacted=unredacted)
                    ms.append((time.perf_counter() - t0) * 1000)
                    assert out
                _forget_renderings(r, alert.id)
                s = latency_summary(ms)
                row = {"size": size_name, "mode": mode, "bytes": len(jpeg), **s}
                if mode == "recorded_only":
                    base_mean = float(s["mean"] or 0)
                rows.append(row)
            for row in rows:
                if row["size"] == size_name and base_mean:
                    row["ratio"] = round(float(row["mean"]) / base_mean, 2)
    finally:
        r.delete(*[keys.evidence_key(f"al_bench_{s}") for s in args.sizes])
        r.close()
        if embedded is not None:
            embedded.stop()
    return {
        "benchmark": "redaction",
        "repeats": args.repeats,
        "cv2_threads": cv2.getNumThreads(),
        "image": "street-720p.mp4 frame" if STREET.is_file() else "synthetic texture",
        "rows": rows,
    }


def table(res: dict[str, Any]) -> str:
    """Markdown table of a result."""
    lines = [
        "# Evidence redaction: cost per served image",
        "",
        "`citysight bench redaction` (EvidenceStore.get: Redis GET, decode, face detection, "
        "blur, JPEG encode); ratio = mean / `recorded_only` mean of the same size (the path "
        f"before issue 13), measured in the same run; {res['repeats']} images per row.",
        "",
        "| size | mode | JPEG KiB | mean ms | p50 ms | p90 ms | ratio |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for row in res["rows"]:
        lines.append(
            f"| {row['size']} | {row['mode']} | {row['bytes'] / 1024:.0f} | {row['mean']} | "
            f"{row['p50']} | {row['p90']} | {row.get('ratio', '')} |"
        )
    return "\n".join(lines) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="citysight bench redaction", description=__doc__.split("\n")[0]
    )
    p.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--tiers", nargs="+", default=["yunet", "yunet_n"])
    p.add_argument("--repeats", type=int, default=20, help="served images per row")
    p.add_argument(
        "--models-dir", type=Path, default=REPO.parent / "shared" / "models", help="model files"
    )
    p.add_argument("--redis-url", default=None, help="external Redis (default: embedded)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="result file (JSON; .md beside)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = _parser().parse_args(argv)
    if args.repeats < 1:
        print("--repeats must be at least 1", file=sys.stderr)
        return 2
    res = run(args)
    emit(res, args.out, as_json=args.json, table=table, markdown=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
