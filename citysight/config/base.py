"""Base of every config model: strict about unknown keys, every field titled."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


def _f(title: str, description: str, **kw: Any) -> Any:
    return Field(title=title, description=description, **kw)
