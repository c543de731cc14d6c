"""placeholder"""
from streams.synthetic.scenes.base import Scene
class SmokeScene(Scene):
    def draw(self, index):
        raise NotImplementedError
