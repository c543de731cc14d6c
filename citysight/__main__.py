"""``python -m citysight``: the ``citysight`` command line."""

from citysight.app.cli import main

raise SystemExit(main())
