"""Config tree: typo rejection, every problem reported with its path, schema generation."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from citysight.config import (
    ConfigError,
    json_schema,
    load_config,
    parse_config,
    schema_reference_markdown,
)
from citysight.contracts import AlertKind


def _cam(i: int, **kw: Any) -> dict[str, Any]:
    c: dict[str, Any] = {
        "id": f"cam-{i}",
        "url": f"rtsp://10.0.0.{i}/main",
        "latitude": 20.0,
        "longitude": 110.3,
    }
    c.update(kw)
    return c


def _problems(doc: Any) -> list[str]:
    with pytest.raises(ConfigError) as ei:
        parse_config(doc)
    return ei.value.problems


def test_minimal_config_is_valid() -> None:
    cfg = parse_config({"cameras": [_cam(1)]})
    assert cfg.cameras[0].profile.analytics_fps == 5.0
    assert cfg.services.http.host == "127.0.0.1" and cfg.services.http.port == 8000


@pytest.mark.parametrize(
    ("doc", "expected"),
    [
        (
            {
                "cameras": [
                    _cam(0),
                    _cam(1),
                    _cam(2),
                    _cam(3, zones=[{"id": "z", "type": "no_vending", "polygon": [[0, 0], [1, 1]]}]),
                ]
            },
            "cameras[3].zones[0].polygon: needs at least 3 points",
        ),
        ({"cameras": [_cam(1, lattitude=3)]}, "cameras[0].lattitude: unknown key (typo?)"),
        ({"cameras": [_cam(1, latitude=95)]}, "cameras[0].latitude: Input should be less than"),
        (
            {"cameras": [_cam(1, profile={"analytics_fps": 0})]},
            "cameras[0].profile.analytics_fps: Input should be greater than 0",
        ),
        (
            {"cameras": [_cam(1, url="rtsp://admin:secret@10.0.0.1/x")]},
            "cameras[0].url: the URL holds a password",
        ),
        (
            {
                "cameras": [
                    _cam(
                        1,
                        zones=[{"id": "z", "type": "parking", "polygon": [[0, 0], [1, 0], [1, 1]]}],
                    )
                ]
            },
            "cameras[0].zones[0].type: Input should be",
        ),
        (
            {"rules": [{"id": "r", "type": "presence", "kind": "fire", "classes": ["dragon"]}]},
            "rules[0].classes: unknown classes ['dragon']",
        ),
        (
            {
                "rules": [
                    {
                        "id": "r",
                        "type": "presence",
                        "kind": "fire",
                        "persistence": {"on_frames": 6, "window_frames": 5},
                    }
                ]
            },
            "rules[0].persistence: on_frames cannot exceed window_frames",
        ),
        (
            {
                "departments": [{"id": "fire"}],
                "routing": [{"kind": "fire", "department": "police"}],
            },
            "unknown department 'police'",
        ),
        (
            {
                "tokens": [
                    {"name": "a", "role": "admin", "department": "*", "token_env": "lower-case"}
                ]
            },
            "tokens[0].token_env: String should match",
        ),
        ({"services": {"http": {"port": 70000}}}, "services.http.port: Input should be less"),
        ({"site": {"timezone": "Mars/Olympus"}}, "site.timezone: unknown time zone 'Mars/Olympus'"),
        ({"site": {"timezone": "asia/shanghai"}}, "site.timezone: unknown time zone"),
        ({"site": {"timezone": "../etc/passwd"}}, "site.timezone: unknown time zone"),
        ({"site": {"timezone": "Asia"}}, "site.timezone: unknown time zone 'Asia'"),
        ({"incidents": {"radius_m": 0}}, "incidents.radius_m: Input should be greater than 0"),
        ({"cameras": [_cam(1), _cam(1)]}, "camera ids repeat: cam-1"),
        ([1, 2], "(top level): must be a mapping"),
    ],
)
def test_problems_are_reported_with_their_path(doc: Any, expected: str) -> None:
    problems = _problems(doc)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize("zone", ["Asia/Shanghai", "Europe/Berlin", "UTC", "Etc/GMT-8", None])
def test_site_timezone_accepts_iana_names(zone: str | None) -> None:
    site = parse_config({"site": {"timezone": zone}}).site
    assert site.timezone == zone
    assert (site.zone() is None) if zone is None else (str(site.zone()) == zone)


def test_every_problem_is_reported_not_just_the_first() -> None:
    doc = {"cameras": [_cam(1, latitude=200), _cam(2, longitude=-500), _cam(3, colour="red")]}
    problems = _problems(doc)
    assert len(problems) == 3
    assert [p.split(":")[0] for p in problems] == [
        "cameras[0].latitude",
        "cameras[1].longitude",
        "cameras[2].colour",
    ]


def test_load_config_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cameras:\n  - id: x\n    url: [y\n")
    with pytest.raises(ConfigError, match=r"line \d+, column \d+: not valid YAML"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert load_config(empty).cameras == []


def test_routing_first_match_and_jurisdiction_globs() -> None:
    cfg = parse_config(
        {
            "departments": [{"id": "fire"}, {"id": "police"}, {"id": "meilan-police"}],
            "routing": [
                {"kind": "plate", "jurisdiction": "meilan*", "department": "meilan-police"},
                {"kind": "plate", "department": "police"},
                {"kind": "*", "department": "fire"},
            ],
        }
    )
    assert cfg.route(AlertKind.PLATE, "meilan-north") == "meilan-police"
    assert cfg.route(AlertKind.PLATE, "longhua") == "police"
    assert cfg.route(AlertKind.SMOKE, "longhua") == "fire"


def test_json_schema_and_reference() -> None:
    schema = json_schema()
    json.dumps(schema)
    assert schema["additionalProperties"] is False
    cam = schema["$defs"]["CameraConfig"]
    assert cam["additionalProperties"] is False
    assert cam["properties"]["latitude"]["maximum"] == 90
    assert all("description" in p for p in cam["properties"].values())
    md = schema_reference_markdown()
    assert "`cameras.profile`" in md and "analytics_fps" in md and "no_frame_timeout_s" in md


def test_rules_consumers_split_the_shards() -> None:
    cfg = parse_config({"services": {"streams": {"shards": 5}, "rules": {"consumers": 2}}}, "t")
    assert cfg.services.rules_shard_groups() == [[0, 2, 4], [1, 3]]
    one = parse_config({}, "t")
    assert one.services.rules_shard_groups() == [list(range(one.services.streams.shards))]
    with pytest.raises(ConfigError, match="a consumer would own no shard"):
        parse_config({"services": {"streams": {"shards": 2}, "rules": {"consumers": 3}}}, "t")


def test_ray_temp_dir_too_long_for_unix_sockets() -> None:
    with pytest.raises(ConfigError, match=r"services\.ray\.temp_dir.*too long"):
        parse_config({"services": {"ray": {"temp_dir": "/tmp/" + "x" * 60}}}, "t")
    assert parse_config({"services": {"ray": {"temp_dir": "/tmp/cs"}}}, "t")


@pytest.mark.parametrize(
    ("section", "given", "expected"),
    [
        ("redis", ".citysight/redis", "{cwd}/.citysight/redis"),
        ("redis", "/var/lib/cs", "/var/lib/cs"),
        ("ray", "cs-ray", "/tmp/cs-ray"),  # Ray's 40-character limit: from /tmp
        ("models", "model_repo/files", "{cwd}/model_repo/files"),
        ("models", "../models/./x", "{parent}/models/x"),
        ("models", "~/models", "{home}/models"),
        ("overlay", "geo/wards.geojson", "{cwd}/geo/wards.geojson"),
        ("camera", "clips/a.mp4", "{cwd}/clips/a.mp4"),
        ("camera", "rtsp://10.0.0.1/main", "rtsp://10.0.0.1/main"),
    ],
)
def test_paths_are_made_absolute_at_the_edge(
    section: str, given: str, expected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir("/tmp" if section == "ray" else tmp_path)
    doc: dict[str, Any] = {"cameras": [_cam(1)], "services": {}}
    if section == "redis":
        doc["services"]["redis"] = {"data_dir": given}
    elif section == "ray":
        doc["services"]["ray"] = {"temp_dir": given}
    elif section == "models":
        doc["services"]["inference"] = {"models_dir": given}
    elif section == "overlay":
        doc["map"] = {"overlays": [{"name": "wards", "path": given}]}
    else:
        doc["cameras"] = [_cam(1, url=given)]
    cfg = parse_config(doc, "t")
    out = cfg.with_absolute_paths()
    got = {
        "redis": out.services.redis.data_dir,
        "ray": out.services.ray.temp_dir,
        "models": out.services.inference.models_dir,
        "overlay": out.map.overlays[0].path if out.map.overlays else "",
        "camera": out.cameras[0].url,
    }[section]
    home = str(Path("~").expanduser())
    assert got == expected.format(cwd=tmp_path, parent=tmp_path.parent, home=home)
    # Defaults too, and the original is left alone (a copy is returned).
    assert Path(out.services.redis.data_dir).is_absolute()
    assert Path(out.services.inference.models_dir).is_absolute()
    assert cfg.services.inference.models_dir == (
        given if section == "models" else "model_repo/files"
    )
    # A base other than the current directory.
    assert cfg.with_absolute_paths("/srv/cs").services.inference.models_dir.startswith("/")
