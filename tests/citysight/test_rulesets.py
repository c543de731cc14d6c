"""One demo rule set: the demo, the example config and the city simulation share it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from citysight.config import RuleConfig
from citysight.rulesets import RULES, default_rules, demo_rules

ROOT = Path(__file__).resolve().parents[2]


def _parsed(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [RuleConfig.model_validate(d).model_dump(mode="json") for d in docs]


def test_the_example_config_runs_the_demo_rules_with_the_production_dwell() -> None:
    doc = yaml.safe_load((ROOT / "infra/local/citysight.example.yaml").read_text())
    assert _parsed(doc["rules"]) == _parsed(demo_rules(vending_dwell_s=300))


def test_the_demo_and_the_city_simulation_use_the_demo_rules() -> None:
    from benchmarks.city.scenario import city_config_dict
    from citysight.app.demo import demo_config_dict

    assert demo_config_dict(Path("/clips"))["rules"] == demo_rules()
    assert city_config_dict(10, http_port=8123)["rules"] == demo_rules(vending_dwell_s=3)


def test_the_demo_values_are_what_the_demo_ran_with() -> None:
    """The unified set keeps the demo's values (the city simulation's 60 s cooldowns and the
    defaults' underscore ids had drifted from them)."""
    by_id = {r["id"]: r for r in demo_rules()}
    assert list(by_id) == ["fire", "smoke", "vending", "face-restricted", "plate-hotlist"]
    assert {r["cooldown_s"] for r in by_id.values()} == {120, 300}
    assert by_id["vending"]["dwell_s"] == 8 and by_id["vending"]["cooldown_s"] == 300
    assert by_id["face-restricted"]["persistence"] == {
        "on_frames": 2, "window_frames": 3, "off_frames": 6,
    }  # fmt: skip


def test_the_defaults_are_the_same_rules_with_production_timings() -> None:
    defaults = {r.id: r for r in default_rules()}
    assert list(defaults) == list(RULES)
    for rid, definition in RULES.items():
        dumped = defaults[rid].model_dump(mode="json")
        assert {k: dumped[k] for k in definition} == definition, rid
    assert defaults["fire"].cooldown_s == 300 and defaults["vending"].dwell_s == 300
    assert defaults["face-restricted"].schedule[0].start == "22:00"


def test_fire_and_smoke_rules_do_not_recut_the_detector_tier() -> None:
    """The rules take every fire/smoke box the shipped det tier reports (its thresholds
    decide); a rule threshold above them dropped true flame boxes."""
    import onnxruntime as ort

    from citysight.config.cameras import FIRE_SMOKE_PRESETS
    from inference.detectors.fire_smoke_net import BUNDLED_MODEL, NetMeta

    sess = ort.InferenceSession(str(BUNDLED_MODEL), providers=["CPUExecutionProvider"])
    meta = NetMeta.from_props(sess.get_modelmeta().custom_metadata_map)
    shift = min(p["threshold_shift"] for p in FIRE_SMOKE_PRESETS.values())
    tier = min(meta.thresholds) + shift  # the most sensitive preset's lowest threshold
    assert tier > 0.3
    for rules in (default_rules(), [RuleConfig.model_validate(d) for d in demo_rules()]):
        for r in rules:
            if r.id in ("fire", "smoke"):
                assert r.min_score < tier, r.id
