"""False alarms of the fire/smoke detector on ordinary street video (no fire, no smoke)."""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from benchmarks.eval.scoring import poisson_upper95
from citysight.contracts import ObjectClass
from inference.detectors.base import DetectorBackend

ANALYTICS_FPS = 5.0
PERSIST_N, PERSIST_M = 3, 5  # an alarm needs the class in 3 of the last 5 sampled frames


def video_alarms(
    det: DetectorBackend, path: Path, fps: float = ANALYTICS_FPS, max_seconds: float | None = None
) -> dict[str, Any]:
    """Sample ``path`` at ``fps`` through ``det`` and count alarms per class.

    An alarm is a rising edge of N-of-M persistence (the rules layer's default shape), so
    a flickering false positive counts once per episode, not once per frame.
    """
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise FileNotFoundError(f"cannot open video {path}")
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    step = max(1, round(src_fps / fps))
    hist: dict[ObjectClass, deque[bool]] = {
        c: deque(maxlen=PERSIST_M) for c in (ObjectClass.FIRE, ObjectClass.SMOKE)
    }
    active = dict.fromkeys(hist, False)
    alarms = dict.fromkeys(hist, 0)
    frames_pos = dict.fromkeys(hist, 0)
    n = sampled = 0
    cam = f"fa-{path.stem}"
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        n += 1
        if (n - 1) % step:
            continue
        if max_seconds is not None and n / src_fps > max_seconds:
            break
        sampled += 1
        bgr = cast(npt.NDArray[np.uint8], frame)  # VideoCapture decodes to 8-bit BGR
        out = det.detect([bgr], [cam])[0]
        for c, h in hist.items():
            hit = bool((out.class_ids == int(c)).any())
            frames_pos[c] += hit
            h.append(hit)
            on = sum(h) >= PERSIST_N
            alarms[c] += on and not active[c]
            active[c] = on
    cap.release()
    seconds = n / src_fps
    return {
        "video": path.name,
        "seconds": round(seconds, 1),
        "sampled_frames": sampled,
        "fire_alarms": alarms[ObjectClass.FIRE],
        "smoke_alarms": alarms[ObjectClass.SMOKE],
        "fire_frame_rate": round(frames_pos[ObjectClass.FIRE] / max(1, sampled), 4),
        "smoke_frame_rate": round(frames_pos[ObjectClass.SMOKE] / max(1, sampled), 4),
    }


def street_false_alarms(det: DetectorBackend, videos: list[Path]) -> dict[str, Any]:
    """Alarms per hour of ordinary street video, summed over ``videos``."""
    per = [video_alarms(det, v) for v in videos]
    hours = sum(p["seconds"] for p in per) / 3600
    fire = sum(p["fire_alarms"] for p in per)
    smoke = sum(p["smoke_alarms"] for p in per)
    return {
        "tier": det.tier,
        "hours": round(hours, 4),
        "fire_alarms_per_hour": round(fire / hours, 1) if hours else 0.0,
        "smoke_alarms_per_hour": round(smoke / hours, 1) if hours else 0.0,
        # Few minutes of video: zero events only bound the rate (rule of three, 95 %).
        "zero_events_upper95_per_hour": round(3 / hours, 1) if hours else None,
        # Fire and smoke alarms together, with the exact 95 % Poisson upper bound.
        "fire_smoke_alarms": fire + smoke,
        "fire_smoke_alarms_upper95_per_hour": (
            round(poisson_upper95(fire + smoke) / hours, 1) if hours else None
        ),
        "persistence": f"{PERSIST_N} of {PERSIST_M} frames at {ANALYTICS_FPS:g} fps",
        "videos": per,
    }
