"""The one idiom for choosing an implementation by name.

The names of every choice are listed once, on the ground floor, where the config (or the
command line) accepts them: ``citysight.config`` lists inference backends, decoders,
detectors and their tiers, and rule types. Each layer keeps a :class:`Registry` that maps
exactly those names to its implementations, given as ``"module:attribute"`` targets that are
imported on first use (so an optional backend costs nothing until it is chosen) or as the
objects themselves. A registry whose names differ from the config's fails when it is built,
and ``tests/test_registries.py`` checks every registry against its names.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Iterator, Mapping
from typing import Generic, TypeVar, cast

T = TypeVar("T")


class Registry(Generic[T]):
    """Names → implementations, resolved (and for ``"module:attribute"`` imported) on first use.

    Args:
        what: What is chosen, for messages (``"decoder"``, ``"inference backend"``...).
        targets: Name → ``"module:attribute"`` or the implementation itself.
        names: The names the config accepts, in their order; ``targets`` must have exactly
            these keys.

    Raises:
        ValueError: ``targets`` and ``names`` differ, or a target string is not
            ``"module:attribute"``.
    """

    def __init__(self, what: str, targets: Mapping[str, str | T], *, names: Iterable[str]) -> None:
        self.what = what
        order = [str(n) for n in names]
        missing = [n for n in order if n not in targets]
        unknown = sorted(set(targets) - set(order))
        if missing or unknown:
            raise ValueError(
                f"{what} registry does not match the names in config: "
                f"missing {missing}, not in config {unknown}"
            )
        for name, target in targets.items():
            if isinstance(target, str) and target.count(":") != 1:
                raise ValueError(f"{what} {name!r}: target {target!r} is not 'module:attribute'")
        self._targets: dict[str, str | T] = {n: targets[n] for n in order}
        self._loaded: dict[str, T] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._targets

    def __iter__(self) -> Iterator[str]:
        return iter(self._targets)

    def __len__(self) -> int:
        return len(self._targets)

    def names(self) -> list[str]:
        """The registered names, in the config's order."""
        return list(self._targets)

    def target(self, name: str) -> str | T:
        """What ``name`` maps to (unresolved).

        Raises:
            ValueError: Unknown name.
        """
        try:
            return self._targets[name]
        except KeyError:
            raise ValueError(
                f"unknown {self.what} {name!r}; choose one of {sorted(self._targets)}"
            ) from None

    def get(self, name: str) -> T:
        """The implementation of ``name``, importing its module on first use.

        Raises:
            ValueError: Unknown name.
            ImportError: The implementation's module cannot be imported (a missing optional
                dependency).
        """
        done = self._loaded.get(name)
        if done is not None:
            return done
        target = self.target(name)
        if isinstance(target, str):
            module, _, attr = target.partition(":")
            impl = cast(T, getattr(importlib.import_module(module), attr))
        else:
            impl = target
        self._loaded[name] = impl
        return impl
