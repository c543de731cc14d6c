"""The demo's roles: one token per department, duty included (issue 11)."""

from __future__ import annotations

from pathlib import Path

import pytest

from citysight.app.demo import DEMO_DEPARTMENTS, DEMO_ROLES, demo_config_dict, demo_tokens
from citysight.app.runtime import _print_banner
from citysight.config import parse_config


def test_every_department_has_a_demo_token_duty_included(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for role in DEMO_ROLES:
        monkeypatch.delenv(f"CITYSIGHT_DEMO_TOKEN_{role}", raising=False)
    monkeypatch.setenv("CITYSIGHT_DEMO_TOKEN_DUTY", "duty-token-chosen-by-the-user-0001")
    toks = demo_tokens()
    assert toks["duty"] == "duty-token-chosen-by-the-user-0001"
    assert len(set(toks.values())) == len(DEMO_ROLES)  # generated ones are distinct
    cfg = parse_config(demo_config_dict(tmp_path), "<demo>")
    by_dept = {t.department: t for t in cfg.tokens}
    # Every department (the supervisors' duty too) can be signed in as and can dispatch.
    assert set(by_dept) == {"*"} | {d["id"] for d in DEMO_DEPARTMENTS}
    duty = by_dept["duty"]
    assert duty.token_env == "CITYSIGHT_DEMO_TOKEN_DUTY"
    assert {"alerts:read", "alerts:dispatch"} <= {s.value for s in duty.scopes}
    # duty receives camera_offline alerts and the escalations of the other departments.
    assert cfg.route("camera_offline", "meilan") == "duty"
    assert {d.supervisor for d in cfg.departments if d.id != "duty"} == {"duty"}
    _print_banner(cfg, demo=True)
    out = capsys.readouterr().out
    assert "token duty" in out and "duty-token-chosen-by-the-user-0001" in out


def test_demo_city_has_townships_grids_and_a_township_token(tmp_path: Path) -> None:
    """Issue 16: synthetic areas around the demo cameras, which are placed by position."""
    from citysight.app.demo import DEMO_TOWNSHIP

    cfg = parse_config(demo_config_dict(tmp_path), "<demo>")
    assert cfg.tree().levels() == ["city", "township", "grid"]
    assert "synthetic" in cfg.jurisdictions.source
    assert all("synthetic" in a.name or a.level == "city" for a in cfg.tree().areas.values())
    placed = {c.id: cfg.jurisdiction_path(c.jurisdiction) for c in cfg.cameras}
    assert placed == {
        "cam-plate-01": ["haikou", "longhua", "longhua-g1"],
        "cam-face-01": ["haikou", "longhua", "longhua-g2"],
        "cam-fire-01": ["haikou", "meilan", "meilan-g2"],
        "cam-smoke-01": ["haikou", "xiuying"],
        "cam-vending-01": ["haikou", "meilan", "meilan-g1"],
    }
    (town,) = [t for t in cfg.tokens if t.jurisdiction != "*"]
    assert town.name == "township" and town.jurisdiction == DEMO_TOWNSHIP == "meilan"
    assert town.token_env == "CITYSIGHT_DEMO_TOKEN_TOWNSHIP" and town.department == "*"


def test_the_demo_map_reads_in_chinese(tmp_path: Path) -> None:
    """``citysight demo``: the page starts in zh-CN, departments have Chinese names."""
    from serve_app.http import STATIC_DIR, map_page_html

    cfg = parse_config(demo_config_dict(tmp_path), "<demo>")
    assert cfg.ui.language == "zh-CN"
    assert cfg.site.timezone == "Asia/Shanghai"
    assert all(d.names.get("zh-CN") for d in cfg.departments)
    page = map_page_html((STATIC_DIR / "index.html").read_text(encoding="utf-8"), cfg)
    assert '<html lang="zh-CN" data-default-language="zh-CN">' in page
