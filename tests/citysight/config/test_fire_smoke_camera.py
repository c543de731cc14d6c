"""Per-camera fire/smoke sensitivity (``cameras[].fire_smoke``): presets, overrides, errors."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from citysight.config import CameraConfig, FireSmokeCameraConfig
from citysight.config.cameras import FIRE_SMOKE_PRESETS, FireSmokeSensitivity


def _camera(**fire_smoke: object) -> CameraConfig:
    return CameraConfig.model_validate(
        {"id": "c1", "url": "c1.mp4", "latitude": 0, "longitude": 0, "fire_smoke": fire_smoke}
    )


@pytest.mark.parametrize("level", list(FireSmokeSensitivity))
def test_each_preset_resolves_to_its_values(level: FireSmokeSensitivity) -> None:
    assert FireSmokeCameraConfig(sensitivity=level).resolved() == FIRE_SMOKE_PRESETS[level]


def test_overrides_replace_the_presets_values() -> None:
    v = FireSmokeCameraConfig(sensitivity="high", persist=2, input_long_side=480).resolved()
    assert (v["window"], v["persist"], v["input_long_side"]) == (6, 2, 480)


def test_a_default_camera_sends_no_settings_and_a_tuned_one_sends_json() -> None:
    assert _camera().detector_options() == {}
    opts = _camera(sensitivity="low", fire_flicker=4).detector_options()
    assert json.loads(opts["fire_smoke"]) == {"sensitivity": "low", "fire_flicker": 4.0}
    # The JSON is what the detector reads back.
    assert FireSmokeCameraConfig.model_validate_json(opts["fire_smoke"]).fire_flicker == 4.0


@pytest.mark.parametrize(
    ("doc", "error"),
    [
        ({"sensitivity": "max"}, "'low', 'normal' or 'high'"),
        ({"persist": 9}, "persist 9 exceeds window 8"),
        ({"sensitivity": "high", "persist": 7}, "persist 7 exceeds window 6"),
        ({"window": 1}, "greater than or equal to 2"),
        ({"input_long_side": 330}, "multiple of 32"),
        ({"input_long_side": 96}, "greater than or equal to 160"),
        ({"fire_threshold": 1.0}, "less than 1"),
        ({"smoke_threshold": 0}, "greater than 0"),
        ({"fire_flicker": -1}, "greater than or equal to 0"),
        ({"flicker": 2}, "Extra inputs are not permitted"),
    ],
)
def test_bad_settings_are_refused_with_a_clear_error(doc: dict, error: str) -> None:
    with pytest.raises(ValidationError, match=error) as exc:
        _camera(**doc)
    assert "fire_smoke" in str(exc.value)  # the error names where it is
