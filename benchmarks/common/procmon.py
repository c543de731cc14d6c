"""CPU and memory sampling per component (a component is a set of processes)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil

PidSource = Callable[[], list[int]]


@dataclass
class _Series:
    t: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    nice: set[int] = field(default_factory=set)


def children_of(pid: int, *, include_self: bool = True) -> list[int]:
    """``pid`` and all its descendants (those alive now)."""
    try:
        p = psutil.Process(pid)
        kids = [c.pid for c in p.children(recursive=True)]
    except psutil.Error:
        return []
    return ([pid] if include_self else []) + kids


def pids_by_name(substring: str, *, root: int | None = None) -> list[int]:
    """Descendants of ``root`` (default: this process) whose command line contains ``substring``.

    Only our own process tree is searched, so other engineers' processes are never counted.
    """
    out = []
    for pid in children_of(root or psutil.Process().pid, include_self=False):
        try:
            cmd = " ".join(psutil.Process(pid).cmdline())
        except psutil.Error:
            continue
        if substring in cmd:
            out.append(pid)
    return out


class ProcessSampler:
    """Samples CPU % (of one core) and RSS of each component in a background thread.

    Args:
        components: Component name → callable returning the component's pids now
            (re-evaluated every sample, so workers that start later are counted).
        interval_s: Sampling interval.
    """

    def __init__(self, components: dict[str, PidSource], interval_s: float = 1.0) -> None:
        self.components = components
        self.interval_s = interval_s
        self.series: dict[str, _Series] = {name: _Series() for name in components}
        self._procs: dict[int, psutil.Process] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = time.monotonic()

    def _proc(self, pid: int) -> psutil.Process | None:
        p = self._procs.get(pid)
        if p is None:
            try:
                p = psutil.Process(pid)
                p.cpu_percent(None)  # first call primes the counter
            except psutil.Error:
                return None
            self._procs[pid] = p
        return p

    def sample(self) -> None:
        """Take one sample of every component."""
        now = time.monotonic() - self._t0
        for name, source in self.components.items():
            cpu = rss = 0.0
            nice: set[int] = set()
            try:
                pids = source()
            except Exception:  # a component that went away reads as zero
                pids = []
            for pid in pids:
                p = self._proc(pid)
                if p is None:
                    continue
                try:
                    cpu += p.cpu_percent(None)
                    rss += p.memory_info().rss / 2**20
                    nice.add(p.nice())
                except psutil.Error:
                    self._procs.pop(pid, None)
            s = self.series[name]
            s.nice |= nice
            s.t.append(now)
            s.cpu.append(cpu)
            s.rss_mb.append(rss)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def start(self) -> ProcessSampler:
        """Start sampling in a daemon thread."""
        self._t0 = time.monotonic()
        self.sample()
        self._thread = threading.Thread(target=self._run, name="procmon", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def summary(self, since_s: float = 0.0) -> dict[str, dict[str, Any]]:
        """Mean/max CPU % and max RSS (MiB) per component, from samples after ``since_s``.

        The first sample of each process reads 0 % CPU (psutil primes its counter), so the
        mean is taken over samples after the first.
        """
        out: dict[str, dict[str, Any]] = {}
        for name, s in self.series.items():
            idx = [i for i, t in enumerate(s.t) if t >= since_s][1:] or list(range(len(s.t)))
            cpu = [s.cpu[i] for i in idx]
            rss = [s.rss_mb[i] for i in idx]
            out[name] = {
                "cpu_pct_mean": round(sum(cpu) / len(cpu), 1) if cpu else None,
                "cpu_pct_max": round(max(cpu), 1) if cpu else None,
                "rss_mb_max": round(max(rss), 1) if rss else None,
                "samples": len(idx),
                # Scheduling priority matters on a shared machine: Ray runs workers niced.
                "nice": sorted(s.nice),
            }
        return out
