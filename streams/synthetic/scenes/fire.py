"""placeholder"""
from streams.synthetic.scenes.base import Scene
class FireScene(Scene):
    def draw(self, index):
        raise NotImplementedError
