"""WebSocket subscribers: a process holding several ``/ws`` connections (one thread each).

Every ``alert`` message is recorded with its receipt time; latency is receipt minus the
alert's ``detected_at`` (the ``published_at`` of the triggering frame in the simulation).
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import websocket


def _one(
    url: str,
    token: str,
    dept: str,
    sub_idx: int,
    connected: Any,
    stop: Any,
    live: Any,
    out: dict[str, Any],
) -> None:
    rec: list[tuple[str, str, float, float, float]] = []
    out.update({"sub": sub_idx, "department": dept, "alerts": rec, "error": None, "close": None})
    try:
        ws = websocket.create_connection(url, header=[f"Authorization: Bearer {token}"], timeout=10)
    except Exception as exc:
        out["error"] = f"connect: {exc!r}"
        return
    with connected.get_lock():
        connected.value += 1
    ws.settimeout(0.5)
    batch: list[tuple[float, float]] = []
    last_flush = time.monotonic()
    try:
        while not stop.is_set():
            try:
                raw = ws.recv()
            except websocket.WebSocketTimeoutException:
                raw = None
            except websocket.WebSocketConnectionClosedException:
                out["close"] = "closed by server"
                break
            now = time.time()
            if raw:
                msg = json.loads(raw)
                if msg.get("type") == "alert":
                    a = msg["alert"]
                    det = float(a.get("detected_at") or 0.0)
                    rec.append(
                        (a["id"], msg.get("id", ""), now, det, float(a.get("raised_at") or 0))
                    )
                    if det:
                        batch.append((now, (now - det) * 1000.0))
            if batch and time.monotonic() - last_flush > 0.5:
                live.put(batch)
                batch = []
                last_flush = time.monotonic()
    except Exception as exc:
        out["error"] = repr(exc)
    finally:
        if batch:
            live.put(batch)
        if ws.status is None or ws.connected:
            ws.close()


def run_subscribers(
    url: str,
    assignments: list[tuple[int, str, str]],
    connected: Any,
    stop: Any,
    live: Any,
    results: Any,
) -> None:
    """Process body: hold one connection per ``(index, department, token)`` until ``stop``.

    Args:
        url: ``ws://127.0.0.1:PORT/ws``.
        assignments: Subscriber index, department and bearer token of each connection.
        connected: ``multiprocessing.Value`` incremented per open connection.
        stop: ``multiprocessing.Event``.
        live: Queue receiving ``[(receipt time, latency ms), ...]`` batches.
        results: Queue receiving one record dict per subscriber at the end.
    """
    outs: list[dict[str, Any]] = [{} for _ in assignments]
    threads = [
        threading.Thread(
            target=_one,
            args=(url, tok, dept, idx, connected, stop, live, outs[k]),
            daemon=True,
            name=f"ws-sub-{idx}",
        )
        for k, (idx, dept, tok) in enumerate(assignments)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in outs:
        results.put(o)
