"""The map page."""

from __future__ import annotations

from citysight.config.base import Strict, _f


class GeoOverlay(Strict):
    """A GeoJSON overlay for the map page."""

    name: str = _f("Name", "Layer name.")
    path: str = _f("Path", "GeoJSON file.")


class MapConfig(Strict):
    """The map page."""

    tile_url: str | None = _f(
        "Tile URL",
        "XYZ tile server template; empty draws a plain background with a graticule.",
        default=None,
    )
    overlays: list[GeoOverlay] = _f("Overlays", "GeoJSON overlays.", default_factory=list)
