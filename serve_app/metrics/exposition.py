"""Prometheus text exposition format 0.0.4, written family by family (no registry)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

Labels = Mapping[str, str]


def escape_label(value: str) -> str:
    """A label value as the text format wants it (backslash, quote, newline escaped)."""
    if "\\" not in value and '"' not in value and "\n" not in value:
        return value  # the common case, and a scrape renders ~15 label values per camera
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def format_value(value: float) -> str:
    """A sample value: integers without a fraction, ``NaN``/``+Inf``/``-Inf`` spelled out."""
    if type(value) is int:
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels(labels: Labels | None) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items()) + "}"


class Exposition:
    """Collects metric families and renders them; each family name appears once."""

    def __init__(self) -> None:
        """Start empty."""
        self._lines: list[str] = []
        self._families: dict[str, str] = {}
        self._current: str | None = None

    @property
    def families(self) -> dict[str, str]:
        """Family name → type, in the order written."""
        return dict(self._families)

    def family(self, name: str, kind: str, help_text: str) -> None:
        """Start a family (``counter``, ``gauge`` or ``histogram``); samples follow.

        Raises:
            ValueError: the family was written already (the format forbids repeats).
        """
        if name in self._families:
            raise ValueError(f"metric family {name} written twice")
        if kind == "counter" and not name.endswith("_total"):
            raise ValueError(f"counter {name} must end in _total")
        self._families[name] = kind
        self._current = name
        self._lines.append(f"# HELP {name} {help_text}")
        self._lines.append(f"# TYPE {name} {kind}")

    def sample(self, value: float, labels: Labels | None = None, *, suffix: str = "") -> None:
        """One sample of the current family (``suffix`` e.g. ``_bucket`` for histograms)."""
        if self._current is None:
            raise ValueError("sample() before family()")
        self._lines.append(f"{self._current}{suffix}{_labels(labels)} {format_value(value)}")

    def raw(self, labels_text: str, value: float) -> None:
        """One sample of the current family with labels rendered already (``{k="v",...}``,
        values escaped with :func:`escape_label`): the per-camera fast path."""
        self._lines.append(f"{self._current}{labels_text} {format_value(value)}")

    def gauge(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """A gauge family with its samples."""
        self.family(name, "gauge", help_text)
        for labels, value in samples:
            self.sample(value, labels)

    def counter(self, name: str, help_text: str, samples: Iterable[tuple[Labels, float]]) -> None:
        """A counter family with its samples."""
        self.family(name, "counter", help_text)
        for labels, value in samples:
            self.sample(value, labels)

    def histogram_samples(
        self,
        labels: Labels,
        bounds: Sequence[float],
        counts: Sequence[int],
        total: float,
    ) -> None:
        """Samples of one histogram series from per-bucket counts (the last one is +Inf)."""
        cum = 0
        for bound, c in zip(bounds, counts, strict=False):
            cum += c
            self.sample(cum, {**labels, "le": f"{bound:g}"}, suffix="_bucket")
        n = sum(counts)
        self.sample(n, {**labels, "le": "+Inf"}, suffix="_bucket")
        self.sample(round(total, 3), labels, suffix="_sum")
        self.sample(n, labels, suffix="_count")

    def text(self) -> str:
        """The whole exposition."""
        return "\n".join(self._lines) + "\n"
