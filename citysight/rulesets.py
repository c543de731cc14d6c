"""The reference rules: one definition of the five alert rules, with two sets of timings.

* :func:`demo_rules` — what ``citysight demo`` runs with. The same set is the example
  config's (``infra/local/citysight.example.yaml``, a test keeps them equal) and the city
  simulation's (``citysight bench city``); each of those changes only the vending dwell,
  through the argument.
* :func:`default_rules` — what a deployment whose config lists no rules runs with: the same
  rules with production timings (longer cooldowns, the 300 s vending dwell, faces in a
  restricted zone only at night).

Each rule is defined once here (id, type, kind, classes, zones, severity); only timings and
thresholds differ between the two sets.
"""

from __future__ import annotations

from typing import Any

from citysight.config import RuleConfig

# What a stall is made of: a vending object staying in a no-vending zone. A person alone is
# not: people stand, wait and talk everywhere, and counting them made 4 of PicoDet-S's 6 and
# 6 of YOLOX-nano's 8 false vending alerts on 0.07 h of street video with no vending in it
# (benchmarks/results/vending_false_alarms.json, rule "person_counted").
VENDING_CLASSES: tuple[str, ...] = (
    "umbrella", "table", "chair", "cart", "stall", "bicycle", "motorcycle",
)  # fmt: skip

# id -> what the rule is (the same in every set).
RULES: dict[str, dict[str, Any]] = {
    "fire": {"type": "presence", "kind": "fire", "classes": ["fire"], "severity": "critical"},
    "smoke": {"type": "presence", "kind": "smoke", "classes": ["smoke"], "severity": "high"},
    "vending": {
        "type": "dwell",
        "kind": "vending",
        "classes": list(VENDING_CLASSES),
        "zone_types": ["no_vending"],
        "severity": "low",
    },
    "face-restricted": {
        "type": "presence",
        "kind": "face",
        "classes": ["face"],
        "zone_types": ["restricted"],
        "anchor": "center",
        "severity": "medium",
    },
    "plate-hotlist": {
        "type": "plate_hotlist",
        "kind": "plate",
        "classes": ["plate"],
        "severity": "high",
    },
}

_QUICK = {"on_frames": 3, "window_frames": 5, "off_frames": 10}
"""Fire and smoke: 3 of 5 frames (a real fire keeps burning, a reflection flickers)."""


def _rules(timings: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"id": rid, **RULES[rid], **timings[rid]} for rid in RULES]


def demo_rules(*, vending_dwell_s: float = 8.0) -> list[dict[str, Any]]:
    """The demo's rules as config documents (``rules:`` entries).

    Args:
        vending_dwell_s: Seconds a vending object must stay in a ``no_vending`` zone. The demo
            stall is tracked ~14 s of each 20 s clip loop, so the demo uses 8 s to stay quick;
            the example config uses the production 300 s and the city simulation 3 s (its
            episodes last 5 s).
    """
    return _rules(
        {
            # Camera re-check: shorter than production so the demo shows it within minutes.
            "fire": {"min_score": 0.3, "persistence": dict(_QUICK), "cooldown_s": 120},
            "smoke": {
                "min_score": 0.3,
                "persistence": dict(_QUICK),
                "cooldown_s": 120,
                "recheck_s": 30,
                "recheck_close": True,
            },
            "vending": {
                "dwell_s": vending_dwell_s,
                "min_score": 0.3,
                "cooldown_s": 300,
                "recheck_s": 60,
                "recheck_close": True,
            },
            "face-restricted": {
                "min_score": 0.5,
                "persistence": {"on_frames": 2, "window_frames": 3, "off_frames": 6},
                "cooldown_s": 120,
            },
            "plate-hotlist": {"min_score": 0.3, "cooldown_s": 120},
        }
    )


def default_rules(
    *,
    vending_dwell_s: float = 300.0,
    restricted_hours: tuple[str, str] = ("22:00", "06:00"),
) -> list[RuleConfig]:
    """The rules of a config that lists none (production timings).

    * fire / smoke: anywhere, 3 of 5 frames, off after 10 quiet frames, 5 min cooldown;
      a resolved smoke alert is re-checked on its camera for 5 min.
    * vending: a vending object tracked inside a ``no_vending`` zone for ``vending_dwell_s``;
      a resolved vending alert is re-checked for 10 min.
    * face: a face in a ``restricted`` zone during ``restricted_hours`` (crosses midnight).
    * plate: hotlist hits only (every read is stored as a plate-read event anyway).

    Args:
        vending_dwell_s: Seconds a vending object must stay in a ``no_vending`` zone.
        restricted_hours: Local ``(start, end)`` of the restricted-zone schedule.
    """
    start, end = restricted_hours
    docs = _rules(
        {
            "fire": {
                "min_score": 0.5, "persistence": dict(_QUICK), "cooldown_s": 300,
                "anchor": "center",
            },
            "smoke": {
                "min_score": 0.5, "persistence": dict(_QUICK), "cooldown_s": 300,
                "anchor": "center", "recheck_s": 300,
            },
            "vending": {"dwell_s": vending_dwell_s, "cooldown_s": 1800, "recheck_s": 600},
            "face-restricted": {
                "persistence": {"on_frames": 2, "window_frames": 3, "off_frames": 10},
                "schedule": [{"start": start, "end": end}],
                "cooldown_s": 600,
            },
            "plate-hotlist": {"min_score": 0.3, "cooldown_s": 600},
        }
    )  # fmt: skip
    return [RuleConfig.model_validate(d) for d in docs]
