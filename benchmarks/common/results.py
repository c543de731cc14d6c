"""Writing a benchmark's results: JSON under benchmarks/results/, and a table or the JSON."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def emit(
    res: dict[str, Any],
    out: Path,
    *,
    as_json: bool,
    table: Callable[[dict[str, Any]], str],
    markdown: bool = False,
) -> None:
    """Write ``res`` to ``out`` (and its table beside it as ``.md`` when ``markdown``), then
    print the JSON (``as_json``) or the table."""
    out.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(res, indent=2)
    out.write_text(text + "\n")
    if markdown:
        out.with_suffix(".md").write_text(table(res))
    print(text if as_json else table(res))
