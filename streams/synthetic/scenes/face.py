"""placeholder"""
from streams.synthetic.scenes.base import Scene
class FaceScene(Scene):
    def draw(self, index):
        raise NotImplementedError
