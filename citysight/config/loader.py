"""Loading a config file: every problem reported with its path in the file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from citysight.config.root import CitysightConfig


class ConfigError(Exception):
    """The configuration is invalid; ``problems`` lists ``path: message`` strings."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__(f"{source}: {len(problems)} problem(s): " + "; ".join(problems))


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part in {"tagged-union", "literal"}:
            continue
        else:
            out += ("." if out else "") + part
    return out or "(top level)"


def format_validation_error(err: ValidationError) -> list[str]:
    """Turn a pydantic error into ``path: message`` lines."""
    lines = []
    for e in err.errors():
        msg = str(e["msg"]).removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        lines.append(f"{_loc(tuple(e['loc']))}: {msg}")
    return lines


def parse_config(data: Any, source: str = "<config>") -> CitysightConfig:
    """Validate an already-parsed YAML/JSON document."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, ["(top level): must be a mapping"])
    try:
        return CitysightConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(source, format_validation_error(err)) from None


def load_config(path: str | os.PathLike[str]) -> CitysightConfig:
    """Load and validate a YAML config file.

    Raises:
        ConfigError: the file is missing, not YAML, or invalid (all problems listed).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(p), [f"(file): cannot read: {exc.strerror or exc}"]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(file)"
        raise ConfigError(
            str(p), [f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}"]
        ) from None
    return parse_config(data, str(p))
