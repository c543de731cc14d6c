"""Jurisdictions: the administrative hierarchy (city → township → village/grid) as GeoJSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import PrivateAttr, model_validator

from citysight.config.base import ID_PATTERN, Strict, _f
from citysight.jurisdictions import Hierarchy, JurisdictionError, areas_from_geojson


class JurisdictionArea(Strict):
    """One area of the hierarchy, written inline."""

    id: str = _f("Area id", "Unique id (alerts, routes and tokens name it).", pattern=ID_PATTERN)
    name: str = _f("Name", "Display name.", default="", max_length=200)
    level: str = _f("Level", "Level name, e.g. city, township, village, grid.", default="")
    parent: str | None = _f("Parent", "Id of the area this one lies in.", default=None)
    geometry: dict[str, Any] | None = _f(
        "Geometry",
        "GeoJSON Polygon or MultiPolygon in [longitude, latitude] order; rings closed and not "
        "self-intersecting. Empty for a grouping area drawn by its children.",
        default=None,
    )


class JurisdictionsConfig(Strict):
    """The jurisdiction hierarchy: a GeoJSON file, inline areas, or both (merged)."""

    file: str | None = _f(
        "GeoJSON file",
        "FeatureCollection of Polygon/MultiPolygon features whose properties carry id, name, "
        "level and parent. Relative paths are taken from the working directory.",
        default=None,
    )
    areas: list[JurisdictionArea] = _f(
        "Areas", "Inline areas (after the file's).", default_factory=list, max_length=100_000
    )
    source: str = _f(
        "Source",
        "Where the boundaries come from (shown with them), e.g. 'synthetic demo polygons'.",
        default="",
        max_length=500,
    )
    _tree: Hierarchy = PrivateAttr(default_factory=Hierarchy)

    @model_validator(mode="after")
    def _build(self) -> JurisdictionsConfig:
        docs: list[dict[str, Any]] = []
        if self.file:
            p = Path(self.file).expanduser()
            try:
                doc = json.loads(p.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ValueError(f"file {self.file}: cannot read: {exc.strerror or exc}") from None
            except ValueError as exc:
                raise ValueError(f"file {self.file}: not valid JSON: {exc}") from None
            try:
                docs.extend(areas_from_geojson(doc, f"file {self.file}"))
            except JurisdictionError as exc:
                raise ValueError(str(exc)) from None
        docs.extend(a.model_dump() for a in self.areas)
        try:
            self._tree = Hierarchy(docs)
        except JurisdictionError as exc:
            raise ValueError(str(exc)) from None
        return self

    def tree(self) -> Hierarchy:
        """The validated hierarchy (empty when none is configured)."""
        return self._tree
