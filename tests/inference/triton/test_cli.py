"""`citysight triton canary` against the session Triton and on a fresh one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from inference.triton import cli
from inference.triton.server import LocalTriton


def test_canary_against_running_server(
    triton: LocalTriton, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["canary", "--http-url", triton.http_url]) == 0
    assert json.loads(capsys.readouterr().out)["canary"] is True


def test_canary_against_nothing_fails(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["canary", "--http-url", "127.0.0.1:9"]) == 1
    assert json.loads(capsys.readouterr().out) == {
        "http": "127.0.0.1:9",
        "canary": False,
    }


def test_canary_starts_and_stops_its_own_server(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["canary", "--models-dir", str(models_dir), "--models", "canary"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"canary": True}
