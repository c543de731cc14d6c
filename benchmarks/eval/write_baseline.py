"""Write ``benchmarks/baselines/eval_baseline.json`` from a full ``--all-tiers`` eval JSON.

Usage: ``python -m benchmarks.eval.write_baseline benchmarks/results/eval.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from benchmarks.eval.baseline import make_baseline
from benchmarks.eval.gate import FULL_BASELINE


def main(argv: list[str] | None = None) -> int:
    """Read the results file named in ``argv`` and write the full-set floors."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    result = json.loads(Path(args[0]).read_text(encoding="utf-8"))
    FULL_BASELINE.parent.mkdir(parents=True, exist_ok=True)
    FULL_BASELINE.write_text(json.dumps(make_baseline(result), indent=2) + "\n")
    print(f"wrote {FULL_BASELINE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
