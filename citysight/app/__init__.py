"""The composition root: the command line, the runtime, the demo and the Serve config.

The only place (with ``benchmarks/``) that imports every layer; the layers (``streams``,
``inference``, ``serve_app``) meet here and at the ground floor (``citysight/*``), never
directly (``tests/test_layers.py``).
"""
