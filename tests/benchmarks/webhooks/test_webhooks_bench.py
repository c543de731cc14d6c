"""``citysight bench webhooks`` in a small form: it runs, checks itself and writes its JSON."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.webhooks.cli import main, table


def test_small_run_writes_results(tmp_path: Path) -> None:
    out = tmp_path / "webhooks.json"
    argv = ["--live-events", "10", "--rate", "50", "--outage-events", "30"]
    assert main([*argv, "--baseline-posts", "10", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["live"]["delivered"] == 10 and res["live"]["complete"]
    o = res["outage"]
    assert o["complete"] and o["in_order"] and o["queued_while_down"]
    assert o["catch_up_events_per_s"] > 0 and o["ratio_to_baseline"] > 0
    assert "catch-up events/s" in table(res)
