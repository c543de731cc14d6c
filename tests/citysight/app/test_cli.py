"""The citysight command line (run as a real subprocess where the exit code matters)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from citysight.app.cli import main


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "citysight", *args], capture_output=True, text=True, timeout=120
    )


def test_config_check_ok(tmp_path: Path) -> None:
    f = tmp_path / "ok.yaml"
    f.write_text(
        "cameras:\n  - {id: c1, url: 'rtsp://127.0.0.1/x', latitude: 20, longitude: 110}\n"
    )
    res = _run("config", "check", str(f))
    assert res.returncode == 0, res.stderr
    assert "ok (1 cameras" in res.stdout


def test_config_check_reports_every_problem_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(
        "cameras:\n"
        "  - {id: c1, url: 'rtsp://127.0.0.1/x', latitude: 200, longitude: 110}\n"
        "  - id: c2\n"
        "    url: 'rtsp://127.0.0.1/y'\n"
        "    latitude: 20\n"
        "    longitude: 110\n"
        "    zones: [{id: z, type: no_vending, polygon: [[0, 0], [1, 1]]}]\n"
        "servics: {}\n"
    )
    res = _run("config", "check", str(f))
    assert res.returncode == 1
    assert "cameras[0].latitude" in res.stderr
    assert "cameras[1].zones[0].polygon: needs at least 3 points" in res.stderr
    assert "servics: unknown key (typo?)" in res.stderr
    assert "3 problem(s)" in res.stderr


def test_config_check_missing_file(tmp_path: Path) -> None:
    res = _run("config", "check", str(tmp_path / "nope.yaml"))
    assert res.returncode == 1 and "cannot read" in res.stderr


def test_schema_json_and_markdown(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["config", "schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["title"] == "citysight configuration"
    out = tmp_path / "ref.md"
    assert main(["config", "schema", "--markdown", "--out", str(out)]) == 0
    assert "| `analytics_fps` |" in out.read_text()


def test_unknown_command_is_an_error() -> None:
    res = _run("frobnicate")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_plan_is_wired(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("benchmarks.planner.cli")
    rc = main(
        [
            "plan",
            "--cameras",
            "7500",
            "--resolution",
            "1080p",
            "--camera-fps",
            "25",
            "--gpu",
            "H200",
            "--planning-factor",
            "1.0",
            "--json",
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    (h200,) = out["gpus"]
    assert h200["gpu"] == "H200" and h200["decode_gpus"]["value"] == 35


def test_config_check_rejects_an_unknown_time_zone_with_its_path(tmp_path: Path) -> None:
    f = tmp_path / "tz.yaml"
    f.write_text("site: {timezone: Asia/Shangai}\n")
    res = _run("config", "check", str(f))
    assert res.returncode == 1
    assert f"{f}: site.timezone: unknown time zone 'Asia/Shangai'" in res.stderr
    assert "IANA" in res.stderr


def test_example_config_is_valid() -> None:
    root = Path(__file__).resolve().parents[3]
    res = _run("config", "check", str(root / "infra/local/citysight.example.yaml"))
    assert res.returncode == 0, res.stderr


# ---- every wired target exists (a sub-command pointing at a missing module shipped once:
# `citysight bench map` -> benchmarks.map.cli)


def _targets() -> list[tuple[str, str]]:
    from citysight.app.cli import DELEGATED, GROUPS

    out = [(cmd, target) for cmd, target in DELEGATED.items()]
    out += [(f"{g} {name}", t) for g, subs in GROUPS.items() for name, t in subs.items()]
    return out


def _console_scripts() -> dict[str, str]:
    import tomllib

    root = Path(__file__).resolve().parents[3]
    return dict(tomllib.loads((root / "pyproject.toml").read_text())["project"]["scripts"])


@pytest.mark.parametrize(("command", "target"), [*_targets(), *_console_scripts().items()])
def test_every_command_target_imports_and_takes_argv(command: str, target: str) -> None:
    """Each `citysight <command>` target and console script is a function taking argv."""
    import importlib
    import inspect

    module, _, func = target.partition(":")
    fn = getattr(importlib.import_module(module), func)
    assert callable(fn), target
    if command != "citysight":  # the console script reads sys.argv itself
        inspect.signature(fn).bind(["--help"])


def test_bench_map_runs_through_the_cli() -> None:
    """`citysight bench map --help` reaches the map benchmark (it named a missing module)."""
    res = _run("bench", "map", "--help")
    assert res.returncode == 0, res.stderr
    assert "citysight bench map" in res.stdout and "--cameras" in res.stdout


def test_console_script_is_installed_and_runs() -> None:
    """The installed `citysight` console script starts (what the README tells users to run)."""
    exe = Path(sys.executable).parent / "citysight"
    if not exe.exists():
        pytest.skip("package not installed into this interpreter's environment")
    res = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "bench" in res.stdout and "demo" in res.stdout


_EXTRA_ONLY = ("locust", "websocket", "matplotlib", "torch", "playwright")


@pytest.mark.parametrize("command", [c for c, _ in _targets()])
def test_every_command_runs_without_the_extras_or_names_the_one_to_install(
    command: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """After the README's first command (no extra installed) `citysight <command> --help`
    works, or says in one line which extra to install (`bench city` ended with
    `No module named 'websocket'`)."""
    from citysight.app.cli import main

    for name in list(sys.modules):
        if name.split(".")[0] in _EXTRA_ONLY:
            monkeypatch.delitem(sys.modules, name)
    for name in _EXTRA_ONLY:
        monkeypatch.setitem(sys.modules, name, None)  # import raises ModuleNotFoundError
    # targets already imported with an extra present must import again without it
    for name in list(sys.modules):
        if name.startswith("benchmarks.") or name == "benchmarks":
            monkeypatch.delitem(sys.modules, name)
    try:
        rc = main([*command.split(), "--help"])
    except SystemExit as exc:  # argparse's --help
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    if rc == 0:
        return
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert rc == 2 and len(lines) == 1, err
    assert "needs the '" in lines[0] and "pip install -e '.[" in lines[0], lines[0]
