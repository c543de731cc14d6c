"""Lua scripts run many times in one pipelined round trip."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import NoScriptError


def evalsha_pipelined(r: redis.Redis, script: Any, calls: Sequence[Sequence[Any]]) -> list[Any]:
    """``EVALSHA`` ``script`` once per call (``[numkeys, *keys, *args]``) in one pipeline.

    A pipeline given a registered script asks ``SCRIPT EXISTS`` first, a second round trip
    for every batch; this loads the script only when Redis answers ``NOSCRIPT`` (a restarted
    or flushed Redis) and re-runs just those calls.

    Args:
        r: Redis client.
        script: A script from ``r.register_script`` (its ``sha`` and ``script`` are used).
        calls: Arguments of each call.

    Returns:
        One reply per call, in order; a call that failed gives its exception object.
    """
    replies: list[Any] = [None] * len(calls)
    todo = list(range(len(calls)))
    for _ in range(2):
        pipe = r.pipeline(transaction=False)
        for i in todo:
            pipe.evalsha(script.sha, *calls[i])
        for i, reply in zip(todo, pipe.execute(raise_on_error=False), strict=True):
            replies[i] = reply
        todo = [i for i in todo if isinstance(replies[i], NoScriptError)]
        if not todo:
            break
        r.script_load(script.script)
    return replies
