"""The five demo scenes, one module each, registered by name in ``SCENES``."""

from __future__ import annotations

from streams.synthetic.scenes.base import Scene
from streams.synthetic.scenes.face import FaceScene
from streams.synthetic.scenes.fire import FireScene
from streams.synthetic.scenes.plate import PlateScene
from streams.synthetic.scenes.smoke import SmokeScene
from streams.synthetic.scenes.vending import VendingScene

SCENES: dict[str, type[Scene]] = {
    "plate": PlateScene,
    "face": FaceScene,
    "fire": FireScene,
    "smoke": SmokeScene,
    "vending": VendingScene,
}

__all__ = ["SCENES", "Scene"]
