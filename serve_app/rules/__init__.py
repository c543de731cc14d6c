"""Rules: turn batches of detections into alerts (zones, lines, dwell, persistence...)."""

from citysight.rulesets import default_rules
from serve_app.rules.engine import EngineOutput, RulesEngine
from serve_app.rules.hotlist import Hotlist, canonical

__all__ = ["EngineOutput", "Hotlist", "RulesEngine", "canonical", "default_rules"]
