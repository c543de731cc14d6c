"""Jurisdictions: the city's administrative hierarchy (city → township → village/grid).

Each area is a GeoJSON ``Polygon`` or ``MultiPolygon`` with an id, a level name and a parent.
:class:`Hierarchy` checks the whole tree once (closed rings, no self-intersection, known
parents, no cycles) and answers two questions fast:

* :meth:`Hierarchy.path`: the ids from the root down to an area (what alerts carry and what
  routing and scoping match on);
* :meth:`Hierarchy.locate`: the deepest area containing a WGS84 point (a camera's or a
  report's jurisdiction when none is given).

Point lookup descends the tree: the roots containing the point, then their children, so a
lookup costs O(depth x siblings) prepared-polygon tests, never a scan of every grid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import shapely
from shapely.geometry import Point, shape
from shapely.validation import explain_validity

MAX_VERTICES = 50_000
"""Most vertices one area may have (the validity check is O(n log n); a cap keeps
``config check`` quick and a pasted national boundary file from stalling start-up)."""


class JurisdictionError(ValueError):
    """The jurisdiction hierarchy or one of its polygons is invalid."""


@dataclass(slots=True)
class Area:
    """One jurisdiction.

    Attributes:
        id: Unique id (what alerts, routes and tokens name).
        name: Display name.
        level: Level name, e.g. ``city``, ``township``, ``grid``.
        parent: Parent area id (``None`` for a root).
        geometry: GeoJSON geometry (``Polygon`` or ``MultiPolygon``), lon/lat order.
    """

    id: str
    name: str
    level: str
    parent: str | None
    geometry: dict[str, Any] | None
    children: list[str] = field(default_factory=list)
    _shape: Any = None


def _check_ring(ring: Any, where: str) -> None:
    if not isinstance(ring, list) or len(ring) < 4:
        raise JurisdictionError(f"{where}: a linear ring needs at least 4 positions")
    for pos in ring:
        if (
            not isinstance(pos, list | tuple)
            or len(pos) < 2
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in pos[:2])
        ):
            raise JurisdictionError(f"{where}: position {pos!r} is not [longitude, latitude]")
        lon, lat = float(pos[0]), float(pos[1])
        if not (math.isfinite(lon) and math.isfinite(lat)):
            raise JurisdictionError(f"{where}: position {pos!r} is not finite")
        if not (-180 <= lon <= 180 and -90 <= lat <= 90):
            raise JurisdictionError(
                f"{where}: position {pos!r} is outside longitude -180..180 / latitude -90..90 "
                "(GeoJSON order is [longitude, latitude])"
            )
    if list(ring[0][:2]) != list(ring[-1][:2]):
        raise JurisdictionError(
            f"{where}: ring is not closed (its first position {list(ring[0][:2])} must be "
            f"repeated as its last, got {list(ring[-1][:2])})"
        )


def check_geometry(geometry: Any, where: str) -> Any:
    """Validate a GeoJSON area geometry and return its shapely form.

    Raises:
        JurisdictionError: Not a Polygon/MultiPolygon, malformed coordinates, an unclosed
            ring, too many vertices, or an invalid polygon (self-intersection and the like).
    """
    if not isinstance(geometry, Mapping):
        raise JurisdictionError(f"{where}: geometry must be a GeoJSON object")
    gtype = geometry.get("type")
    coords = geometry.get("coordinates")
    if gtype == "Polygon":
        polygons = [coords]
    elif gtype == "MultiPolygon":
        if not isinstance(coords, list) or not coords:
            raise JurisdictionError(f"{where}: MultiPolygon needs a list of polygons")
        polygons = coords
    else:
        raise JurisdictionError(
            f"{where}: geometry type {gtype!r} is not an area (expected Polygon or MultiPolygon)"
        )
    n = 0
    for pi, poly in enumerate(polygons):
        if not isinstance(poly, list) or not poly:
            raise JurisdictionError(f"{where}: polygon {pi} needs at least an outer ring")
        for ri, ring in enumerate(poly):
            _check_ring(ring, f"{where}: polygon {pi} ring {ri}")
            n += len(ring)
    if n > MAX_VERTICES:
        raise JurisdictionError(f"{where}: {n} vertices, at most {MAX_VERTICES}")
    geom = shape(dict(geometry))
    if not geom.is_valid:
        raise JurisdictionError(f"{where}: invalid polygon: {explain_validity(geom)}")
    if geom.area <= 0:
        raise JurisdictionError(f"{where}: polygon has no area")
    return geom


def areas_from_geojson(doc: Any, source: str) -> list[dict[str, Any]]:
    """Area dicts (``id, name, level, parent, geometry``) from a GeoJSON FeatureCollection.

    Each feature's ``properties`` carry ``id`` (or the feature's ``id``), ``name``,
    ``level`` and ``parent``.

    Raises:
        JurisdictionError: Not a FeatureCollection of features with ids.
    """
    if not isinstance(doc, Mapping) or doc.get("type") != "FeatureCollection":
        raise JurisdictionError(f"{source}: expected a GeoJSON FeatureCollection")
    feats = doc.get("features")
    if not isinstance(feats, list):
        raise JurisdictionError(f"{source}: features must be a list")
    out = []
    for i, f in enumerate(feats):
        if not isinstance(f, Mapping) or f.get("type") != "Feature":
            raise JurisdictionError(f"{source}: features[{i}] is not a GeoJSON Feature")
        props = f.get("properties") or {}
        if not isinstance(props, Mapping):
            raise JurisdictionError(f"{source}: features[{i}].properties must be an object")
        fid = props.get("id", f.get("id"))
        if not isinstance(fid, str) or not fid:
            raise JurisdictionError(f"{source}: features[{i}] has no string id (properties.id)")
        out.append(
            {
                "id": fid,
                "name": str(props.get("name", "")),
                "level": str(props.get("level", "")),
                "parent": props.get("parent"),
                "geometry": f.get("geometry"),
            }
        )
    return out


class Hierarchy:
    """A validated tree of areas (see the module docstring).

    Args:
        areas: ``id, name, level, parent, geometry`` per area (``geometry`` may be ``None``
            for an area that is only a grouping, e.g. a city drawn by its townships).

    Raises:
        JurisdictionError: Repeated ids, unknown parents, cycles or bad geometry (every
            problem in one message).
    """

    def __init__(self, areas: Iterable[Mapping[str, Any]] = ()) -> None:
        self.areas: dict[str, Area] = {}
        problems: list[str] = []
        for i, a in enumerate(areas):
            aid = str(a["id"])
            where = f"jurisdiction {aid!r}"
            if aid in self.areas:
                problems.append(f"{where}: id repeats (areas[{i}])")
                continue
            area = Area(
                id=aid,
                name=str(a.get("name") or aid),
                level=str(a.get("level") or ""),
                parent=(str(a["parent"]) if a.get("parent") not in (None, "") else None),
                geometry=a.get("geometry"),
            )
            if area.geometry is not None:
                try:
                    area._shape = check_geometry(area.geometry, where)
                    shapely.prepare(area._shape)
                except JurisdictionError as exc:
                    problems.append(str(exc))
            self.areas[aid] = area
        for area in self.areas.values():
            if area.parent is None:
                continue
            if area.parent not in self.areas:
                problems.append(f"jurisdiction {area.id!r}: unknown parent {area.parent!r}")
            else:
                self.areas[area.parent].children.append(area.id)
        for area in self.areas.values():
            seen = {area.id}
            cur = area.parent
            while cur is not None and cur in self.areas:
                if cur in seen:
                    problems.append(f"jurisdiction {area.id!r}: parent chain loops through {cur!r}")
                    break
                seen.add(cur)
                cur = self.areas[cur].parent
        if problems:
            raise JurisdictionError("; ".join(problems))
        self._paths: dict[str, list[str]] = {aid: self._walk(aid) for aid in self.areas}

    def _walk(self, aid: str) -> list[str]:
        out: list[str] = []
        cur: str | None = aid
        while cur is not None:
            out.append(cur)
            cur = self.areas[cur].parent
        return out[::-1]

    def __bool__(self) -> bool:
        return bool(self.areas)

    def __contains__(self, aid: object) -> bool:
        return aid in self.areas

    def path(self, aid: str) -> list[str]:
        """Ids from the root down to ``aid`` (``[aid]`` for an id outside the tree; ``[]``
        for an empty id)."""
        if not aid:
            return []
        return list(self._paths.get(aid, [aid]))

    def roots(self) -> list[str]:
        """Areas without a parent."""
        return [a.id for a in self.areas.values() if a.parent is None]

    def _contains(self, aid: str, pt: Any) -> bool | None:
        # None: the area has no polygon (a grouping): decided by its children.
        geom = self.areas[aid]._shape
        return None if geom is None else bool(geom.covers(pt))

    def locate(self, lat: float, lon: float) -> str | None:
        """The deepest area containing the point (boundaries count as inside), or ``None``.

        Siblings are tried in configuration order; the first that contains the point wins
        (overlapping siblings are a data error this does not arbitrate).
        """
        if not (math.isfinite(lat) and math.isfinite(lon)):
            return None
        pt = Point(lon, lat)

        def descend(candidates: Sequence[str]) -> str | None:
            for aid in candidates:
                inside = self._contains(aid, pt)
                if inside is False:
                    continue
                deeper = descend(self.areas[aid].children)
                if deeper is not None:
                    return deeper
                if inside:
                    return aid
            return None

        return descend(self.roots())

    def subtree(self, aid: str) -> list[str]:
        """``aid`` and every area below it (depth first)."""
        if aid not in self.areas:
            return []
        out = [aid]
        for child in self.areas[aid].children:
            out.extend(self.subtree(child))
        return out

    def at_level(self, path: Sequence[str], level: str) -> str | None:
        """The area of ``path`` at ``level`` (e.g. the township of a grid), if any."""
        for aid in path:
            area = self.areas.get(aid)
            if area is not None and area.level == level:
                return aid
        return None

    def levels(self) -> list[str]:
        """Level names from the top down (by depth of first appearance)."""
        out: list[str] = []
        for aid in sorted(self.areas, key=lambda a: len(self._paths[a])):
            lv = self.areas[aid].level
            if lv and lv not in out:
                out.append(lv)
        return out

    def public(self, aid: str) -> dict[str, Any]:
        """API form of an area (no geometry)."""
        a = self.areas[aid]
        return {"id": a.id, "name": a.name, "level": a.level, "parent": a.parent}

    def feature(self, aid: str) -> dict[str, Any]:
        """The area as a GeoJSON Feature (for the map)."""
        a = self.areas[aid]
        return {"type": "Feature", "properties": self.public(aid), "geometry": a.geometry}
