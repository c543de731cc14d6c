"""N-of-M persistence with hysteresis for one (camera, rule, subject)."""

from __future__ import annotations

from dataclasses import dataclass, field

from citysight.config import PersistenceConfig


@dataclass(slots=True)
class Persistence:
    """On after ``on_frames`` hits within the last ``window_frames`` frames; off after
    ``off_frames`` consecutive quiet frames.

    Attributes:
        hits: Frame times of the hits still inside the window.
        window: Hit flags of the last ``window_frames`` frames (oldest first).
        on: Whether the condition is on.
        quiet: Consecutive frames without a hit.
        window_start: Time of the first hit of the window that switched the condition on
            (the alert's window start; deterministic for the same frames).
        alerted: Whether the current on-period already raised an alert.
    """

    window: list[bool] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    on: bool = False
    quiet: int = 0
    window_start: float = 0.0
    alerted: bool = False

    def update(self, hit: bool, t: float, cfg: PersistenceConfig) -> bool:
        """Feed one frame; return ``True`` when the condition switches on."""
        self.window.append(hit)
        self.times.append(t)
        if len(self.window) > cfg.window_frames:
            del self.window[0], self.times[0]
        self.quiet = 0 if hit else self.quiet + 1
        if self.on:
            if self.quiet >= cfg.off_frames:
                self.on = False
                self.alerted = False
            return False
        if hit and sum(self.window) >= cfg.on_frames:
            self.on = True
            self.window_start = next(tt for h, tt in zip(self.window, self.times, strict=True) if h)
            return True
        return False

    @property
    def idle(self) -> bool:
        """Nothing to remember (may be dropped)."""
        return not self.on and not any(self.window)
