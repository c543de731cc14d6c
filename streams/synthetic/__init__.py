"""Synthetic, deterministic demo video for ``citysight demo``.

`streams.synthetic.clips.render_demo_clips` renders one short H.264 clip per demo
scene (``plate``, ``face``, ``fire``, ``smoke``, ``vending``) so the whole pipeline can
run offline without cameras or downloaded footage.
"""
