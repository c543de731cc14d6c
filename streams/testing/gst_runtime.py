"""Runs DeepStream's runtime add/remove pattern for real on CPU (system ``python3-gi``).

``python3 -m streams.testing.gst_runtime A.mp4 B.mp4`` plays an empty pipeline
(``funnel`` standing in for ``nvstreammux``, ``appsink``), adds A then B at run time,
removes A, keeps running, and prints one JSON object: per-source buffer counts at each
step, buffers reaching the sink, the final pipeline state and any bus errors.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path
from typing import Any

from streams.deepstream.runtime import RuntimeSources, cpu_runtime_pipeline, cpu_source_bin


def main(argv: list[str]) -> int:
    """Run the scenario; returns 0 when it ran (the caller checks the numbers)."""
    import gi

    gi.require_version("Gst", "1.0")
    from gi.repository import Gst

    Gst.init(None)
    uris = [Path(a).resolve().as_uri() for a in argv[:2]]
    pipeline, mux, sink = cpu_runtime_pipeline(Gst)
    sunk = [0]
    lock = threading.Lock()

    def on_sample(s: Any) -> Any:
        s.emit("pull-sample")
        with lock:
            sunk[0] += 1
        return Gst.FlowReturn.OK

    sink.connect("new-sample", on_sample)
    rt = RuntimeSources(Gst, pipeline, mux, lambda i, u: cpu_source_bin(Gst, i, u))
    pipeline.set_state(Gst.State.PLAYING)
    snaps: list[dict[str, Any]] = []

    def snap(label: str) -> None:
        snaps.append({"at": label, "buffers": rt.buffers(), "sink": sunk[0], "ids": rt.sources()})

    time.sleep(0.3)
    rt.add(0, uris[0])
    time.sleep(0.5)
    rt.add(1, uris[1])
    time.sleep(1.2)
    snap("both")
    rt.remove(0)
    time.sleep(0.3)
    snap("removed")
    time.sleep(1.2)
    snap("after")
    _, state, _ = pipeline.get_state(Gst.SECOND)
    errors = []
    bus = pipeline.get_bus()
    while True:
        msg = bus.pop_filtered(Gst.MessageType.ERROR | Gst.MessageType.EOS)
        if msg is None:
            break
        if msg.type == Gst.MessageType.ERROR:
            errors.append(str(msg.parse_error()[0].message))
        else:
            errors.append("eos")
    pipeline.set_state(Gst.State.NULL)
    out = {"snaps": snaps, "state": state.value_nick, "errors": errors}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
