"""One idiom for every backend choice: each registry maps exactly the names the config
accepts (listed once, in ``citysight.config``), and each target resolves to what it names."""

from __future__ import annotations

import importlib

import pytest

from citysight.choices import CLIP_STORES
from citysight.config import DECODERS, DETECTOR_TIERS, INFERENCE_BACKENDS, RuleType
from citysight.registry import Registry

#: Modules a target may need that CI does not install (GPU nodes only).
OPTIONAL = {"PyNvVideoCodec", "cupy", "pyds", "torch", "tritonclient"}


def _registries() -> list[tuple[str, Registry[object], tuple[str, ...]]]:
    from citysight.clips import STORES
    from inference.client import BACKENDS as INFER
    from inference.detectors.base import TIERS
    from streams.decoders import BACKENDS as DECODE

    out: list[tuple[str, Registry[object], tuple[str, ...]]] = [
        ("inference", INFER, INFERENCE_BACKENDS),  # type: ignore[list-item]
        ("decoder", DECODE, DECODERS),  # type: ignore[list-item]
        ("clip store", STORES, CLIP_STORES),
    ]
    out += [(f"tiers:{d}", TIERS[d], n) for d, n in DETECTOR_TIERS.items()]  # type: ignore[misc]
    return out


@pytest.mark.parametrize(("what", "reg", "names"), _registries(), ids=lambda v: str(v)[:20])
def test_registry_names_are_the_configs_and_every_target_resolves(
    what: str, reg: Registry[object], names: tuple[str, ...]
) -> None:
    assert reg.names() == list(names), what
    for name in reg:
        target = reg.target(name)
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            try:
                mod = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if (exc.name or "").split(".")[0] in OPTIONAL:
                    continue
                raise
            assert callable(getattr(mod, attr)), target


def test_a_registry_that_differs_from_the_config_fails_when_built() -> None:
    with pytest.raises(ValueError, match="missing \\['b'\\]"):
        Registry("thing", {"a": "m:a"}, names=("a", "b"))
    with pytest.raises(ValueError, match="not in config \\['c'\\]"):
        Registry("thing", {"a": "m:a", "c": "m:c"}, names=("a",))
    with pytest.raises(ValueError, match="module:attribute"):
        Registry("thing", {"a": "no-colon"}, names=("a",))
    reg: Registry[int] = Registry("thing", {"a": 1}, names=("a",))
    with pytest.raises(ValueError, match="unknown thing 'z'"):
        reg.get("z")


def test_every_rule_type_has_one_evaluator() -> None:
    from serve_app.rules.engine import EVALUATORS

    assert set(EVALUATORS) == set(RuleType)


def test_config_rejects_an_unknown_tier_with_the_known_ones() -> None:
    from citysight.config import ConfigError, parse_config

    with pytest.raises(ConfigError, match="unknown plate tiers \\['y9'\\]"):
        parse_config({"services": {"inference": {"tiers": {"plate": ["y9"]}}}}, "t")
