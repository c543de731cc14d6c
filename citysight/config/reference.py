"""The config's JSON schema and its Markdown reference, generated from the models."""

from __future__ import annotations

import enum
import json
import re
from typing import Any

from pydantic import BaseModel

from citysight.config.root import CitysightConfig

_MODULE_PATH = re.compile(r"\bcitysight\.(?:config|contracts)(?:\.\w+)*?\.(?=[A-Z])")


def json_schema() -> dict[str, Any]:
    """The JSON schema of the config file."""
    schema = CitysightConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "citysight configuration"
    return schema


def schema_reference_markdown() -> str:
    """A Markdown reference of every config section and field, generated from the models."""
    out: list[str] = []
    seen: set[type[BaseModel]] = set()

    def walk(model: type[BaseModel], path: str) -> None:
        if model in seen:
            return
        seen.add(model)
        out.append(f"\n#### `{path or '(top level)'}` — {model.__doc__ or ''}".rstrip())
        out.append("\n| key | type | default | description |\n|---|---|---|---|")
        nested: list[tuple[type[BaseModel], str]] = []
        for name, f in model.model_fields.items():
            ann = f.annotation
            tname = _type_name(ann)
            default = "required" if f.is_required() else _default_repr(f)
            bounds = ", ".join(
                f"{k} {getattr(m, k)}"
                for m in f.metadata
                for k in ("ge", "gt", "le", "lt")
                if getattr(m, k, None) is not None
            )
            desc = (f.description or "") + (f" ({bounds})" if bounds else "")
            out.append(f"| `{name}` | {tname} | {default} | {desc} |")
            for sub in _models_in(ann):
                nested.append((sub, f"{path}.{name}" if path else name))
        for sub, p in nested:
            walk(sub, p)

    walk(CitysightConfig, "")
    return "\n".join(out).strip() + "\n"


def _models_in(ann: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        found.append(ann)
    for a in getattr(ann, "__args__", ()) or ():
        found.extend(_models_in(a))
    return found


def _type_name(ann: Any) -> str:
    if isinstance(ann, type) and issubclass(ann, enum.Enum):
        return " \\| ".join(f"`{m.value}`" for m in ann)
    if isinstance(ann, type):
        return ann.__name__
    # Drop module paths (``citysight.config.cameras.ZoneConfig`` -> ``ZoneConfig``).
    text = _MODULE_PATH.sub("", str(ann).replace("typing.", ""))
    return text.replace("|", "\\|")


def _default_repr(f: Any) -> str:
    if f.default_factory is not None:
        try:
            v = f.default_factory()
        except TypeError:
            return "(computed)"
        if isinstance(v, BaseModel):
            return "(section)"
        return f"`{json.dumps(v, default=str)}`" if v != [] else "`[]`"
    v = f.default
    if isinstance(v, enum.Enum):
        v = v.value
    return f"`{json.dumps(v)}`"
