"""Jurisdiction hierarchy: validation of the GeoJSON, point lookup, paths, routing, placement."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from citysight.config import ConfigError, load_config, parse_config
from citysight.jurisdictions import Hierarchy, JurisdictionError


def box(lon0: float, lat0: float, lon1: float, lat1: float) -> dict[str, Any]:
    ring = [[lon0, lat0], [lon1, lat0], [lon1, lat1], [lon0, lat1], [lon0, lat0]]
    return {"type": "Polygon", "coordinates": [ring]}


# city 0..10 x 0..10; townships west (0..5) and east (5..10); east has two grids and a
# lake (a hole) in grid e1; a grouping area without geometry holds an island.
AREAS: list[dict[str, Any]] = [
    {
        "id": "city",
        "level": "city",
        "geometry": {
            "type": "MultiPolygon",
            "coordinates": [
                box(0, 0, 10, 10)["coordinates"],
                box(19, 19, 32, 32)["coordinates"],
            ],
        },
    },
    {"id": "west", "level": "township", "parent": "city", "geometry": box(0, 0, 5, 10)},
    {"id": "east", "level": "township", "parent": "city", "geometry": box(5, 0, 10, 10)},
    {
        "id": "e1",
        "level": "grid",
        "parent": "east",
        "geometry": {
            "type": "Polygon",
            "coordinates": [
                box(5, 0, 10, 5)["coordinates"][0],
                [[7, 2], [8, 2], [8, 3], [7, 3], [7, 2]],  # the lake
            ],
        },
    },
    {"id": "e2", "level": "grid", "parent": "east", "geometry": box(5, 5, 10, 10)},
    {"id": "islands", "level": "township", "parent": "city"},
    {
        "id": "isle",
        "level": "grid",
        "parent": "islands",
        "geometry": {
            "type": "MultiPolygon",
            "coordinates": [box(20, 20, 21, 21)["coordinates"], box(30, 30, 31, 31)["coordinates"]],
        },
    },
]


@pytest.fixture(scope="module")
def tree() -> Hierarchy:
    return Hierarchy(AREAS)


@pytest.mark.parametrize(
    ("lat", "lon", "want"),
    [
        (5, 2, "west"),  # a township without grids
        (1, 6, "e1"),
        (2.5, 7.5, "east"),  # in the lake: the township, not the grid
        (8, 8, "e2"),
        (5, 7, "e1"),  # on the e1/e2 boundary: boundaries count as inside, first sibling wins
        (30.5, 30.5, "isle"),  # second part of a MultiPolygon, under a grouping area
        (20.5, 20.5, "isle"),
        (25, 25, "city"),  # in the city, in no township
        (50, 50, None),  # outside everything
        (float("nan"), 1, None),
    ],
)
def test_locate_finds_the_deepest_area(tree: Hierarchy, lat: float, lon: float, want: str) -> None:
    assert tree.locate(lat, lon) == want


def test_paths_levels_and_subtrees(tree: Hierarchy) -> None:
    assert tree.path("e1") == ["city", "east", "e1"]
    assert tree.path("city") == ["city"]
    assert tree.path("elsewhere") == ["elsewhere"]  # outside the tree: itself
    assert tree.path("") == []
    assert tree.levels() == ["city", "township", "grid"]
    assert tree.subtree("east") == ["east", "e1", "e2"]
    assert tree.at_level(["city", "east", "e1"], "township") == "east"
    assert tree.at_level(["city"], "grid") is None


UNCLOSED = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}
BOWTIE = {"type": "Polygon", "coordinates": [[[0, 0], [2, 2], [2, 0], [0, 2], [0, 0]]]}


@pytest.mark.parametrize(
    ("areas", "message"),
    [
        ([{"id": "a", "geometry": UNCLOSED}], "ring is not closed"),
        (
            [
                {
                    "id": "a",
                    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]},
                }
            ],
            "at least 4 positions",
        ),
        (
            [
                {
                    "id": "a",
                    "geometry": {
                        "type": "Polygon",
                        "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0.5]]],
                    },
                }
            ],
            "ring is not closed",
        ),
        ([{"id": "a", "geometry": BOWTIE}], "invalid polygon: Self-intersection"),
        ([{"id": "a", "geometry": {"type": "Point", "coordinates": [0, 0]}}], "not an area"),
        ([{"id": "a", "geometry": {"type": "Polygon", "coordinates": "x"}}], "outer ring"),
        (
            [{"id": "a", "geometry": {"type": "Polygon", "coordinates": [[["a", 0]] * 4]}}],
            "not [longitude",
        ),
        ([{"id": "a", "geometry": box(0, 0, 200, 1)}], "outside longitude"),
        ([{"id": "a", "geometry": "POLYGON((0 0, 1 0, 1 1, 0 0))"}], "must be a GeoJSON object"),
        ([{"id": "a"}, {"id": "b", "parent": "nowhere"}], "unknown parent 'nowhere'"),
        ([{"id": "a", "parent": "b"}, {"id": "b", "parent": "a"}], "parent chain loops"),
        ([{"id": "a"}, {"id": "a"}], "id repeats"),
    ],
)
def test_bad_hierarchies_are_refused_with_the_reason(
    areas: list[dict[str, Any]], message: str
) -> None:
    with pytest.raises(JurisdictionError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Hierarchy(areas)


def _cam(cid: str, lat: float, lon: float, **kw: Any) -> dict[str, Any]:
    return {"id": cid, "url": f"rtsp://10.0.0.1/{cid}", "latitude": lat, "longitude": lon, **kw}


def _doc(**kw: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "jurisdictions": {"areas": AREAS},
        "departments": [{"id": "fire"}, {"id": "east-fire"}, {"id": "grid-team"}],
        "routing": [
            {"kind": "fire", "jurisdiction": "e2", "department": "grid-team"},
            {"kind": "fire", "jurisdiction": "east", "department": "east-fire"},
            {"kind": "*", "department": "fire"},
        ],
    }
    doc.update(kw)
    return doc


def test_cameras_are_placed_by_position_and_routes_match_any_level() -> None:
    cfg = parse_config(
        _doc(
            cameras=[
                _cam("c-w", 5, 2),
                _cam("c-e1", 1, 6),
                _cam("c-e2", 8, 8),
                _cam("c-far", 50, 50),
                _cam("c-named", 1, 6, jurisdiction="west"),  # given: kept, not looked up
            ]
        )
    )
    got = {c.id: c.jurisdiction for c in cfg.cameras}
    assert got == {"c-w": "west", "c-e1": "e1", "c-e2": "e2", "c-far": "default", "c-named": "west"}
    assert cfg.route("fire", "e2") == "grid-team"  # the grid's own route
    assert cfg.route("fire", "e1") == "east-fire"  # the township's route covers its grids
    assert cfg.route("fire", "west") == "fire"
    assert cfg.route("smoke", "e2") == "fire"


def test_routing_without_a_hierarchy_is_unchanged() -> None:
    cfg = parse_config(
        {
            "departments": [{"id": "fire"}, {"id": "x"}],
            "routing": [
                {"kind": "fire", "jurisdiction": "long*", "department": "x"},
                {"kind": "*", "department": "fire"},
            ],
        }
    )
    assert cfg.route("fire", "longhua") == "x"
    assert cfg.route("fire", "meilan") == "fire"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"cameras": [_cam("c", 1, 1, jurisdiction="atlantis")]},
            "cameras[0].jurisdiction: unknown",
        ),
        (
            {
                "tokens": [
                    {
                        "name": "t",
                        "role": "r",
                        "department": "*",
                        "jurisdiction": "atlantis",
                        "token_env": "T",
                    }
                ]
            },
            "tokens[0].jurisdiction: unknown jurisdiction 'atlantis'",
        ),
        (
            {
                "tokens": [
                    {
                        "name": "t",
                        "role": "r",
                        "department": "*",
                        "jurisdiction": "east",
                        "scopes": ["alerts:read", "audit:read"],
                        "token_env": "T",
                    }
                ]
            },
            "cannot hold audit:read",
        ),
        (
            {"jurisdictions": {"areas": [{"id": "a", "geometry": BOWTIE}]}},
            "jurisdictions: Value error, jurisdiction 'a': invalid polygon",
        ),
        ({"jurisdictions": {"areas": [{"id": "a", "parent": "zz"}]}}, "unknown parent 'zz'"),
        ({"jurisdictions": {"areas": [{"id": "bad id!"}]}}, "jurisdictions.areas[0].id"),
    ],
)
def test_config_errors_name_the_problem(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as ei:
        parse_config(_doc(**change))
    text = "; ".join(ei.value.problems)
    assert message.removeprefix("jurisdictions: Value error, ") in text, text


def test_a_token_scope_needs_a_hierarchy() -> None:
    with pytest.raises(ConfigError, match="no jurisdictions are configured"):
        parse_config(
            {
                "tokens": [
                    {
                        "name": "t",
                        "role": "r",
                        "department": "*",
                        "jurisdiction": "east",
                        "token_env": "T",
                    }
                ]
            }
        )


def _fc(areas: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {k: a.get(k) for k in ("id", "name", "level", "parent")},
                "geometry": a.get("geometry"),
            }
            for a in areas
        ],
    }


def test_hierarchy_from_a_geojson_file(tmp_path: Path) -> None:
    (tmp_path / "areas.geojson").write_text(json.dumps(_fc(AREAS[:5])))
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(
        f"jurisdictions:\n  file: {tmp_path / 'areas.geojson'}\n"
        "  areas:\n    - {id: e3, parent: east, level: grid}\n"
    )
    cfg = load_config(cfg_file)
    assert cfg.jurisdiction_path("e3") == ["city", "east", "e3"]
    assert cfg.tree().locate(1, 6) == "e1"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not valid JSON"),
        (json.dumps({"type": "Feature"}), "expected a GeoJSON FeatureCollection"),
        (
            json.dumps({"type": "FeatureCollection", "features": [{"type": "Feature"}]}),
            "no string id",
        ),
        (json.dumps(_fc([{"id": "a", "geometry": UNCLOSED}])), "ring is not closed"),
    ],
)
def test_bad_geojson_files_are_config_errors(
    tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "areas.geojson"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as ei:
        parse_config({"jurisdictions": {"file": str(path)}})
    assert any(p.startswith("jurisdictions:") and message in p for p in ei.value.problems), (
        ei.value.problems
    )
