"""`citysight models install`: copy from a directory or download from a URL, verify sha256."""

from __future__ import annotations

import functools
import hashlib
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from inference.triton import models_install as mi

FILES = {"a.onnx": b"alpha model bytes", "b.onnx": b"bravo model bytes!"}


def _manifest(tmp: Path, files: dict[str, bytes], extra: list[dict] | None = None) -> Path:
    entries = [
        {
            "file": name,
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "licence": "Apache-2.0",
            "source": "test",
            "detector": "face",
            "tier": name[0],
            "fallback": "haar",
            "required": True,
        }
        for name, data in files.items()
    ]
    path = tmp / "manifest.yaml"
    path.write_text(yaml.safe_dump({"schema_version": 1, "files": entries + (extra or [])}))
    return path


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name, data in FILES.items():
        (src / name).write_bytes(data)
    return src


@pytest.fixture
def file_server(source: Path) -> Iterator[str]:
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(source))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize("via", ["dir", "url"])
def test_install_copies_and_verifies(
    via: str, tmp_path: Path, source: Path, file_server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest, dest = _manifest(tmp_path, FILES), tmp_path / "dest"
    src = str(source) if via == "dir" else file_server
    assert mi.main(["--from", src, "--dest", str(dest), "--manifest", str(manifest)]) == 0
    for name, data in FILES.items():
        assert (dest / name).read_bytes() == data
    assert "2 of 2 model files usable" in capsys.readouterr().out
    # A second run finds them in place.
    results = mi.install(src, dest, manifest)
    assert [r.status for r in results] == ["present", "present"]
    assert mi.verify(dest, manifest) == {"a.onnx": "ok", "b.onnx": "ok"}


@pytest.mark.parametrize(
    ("damage", "status", "words"),
    [
        ("delete", "missing", "not found in source"),
        ("flip", "corrupt", "sha256"),
        ("truncate", "corrupt", "bytes, expected"),
    ],
)
@pytest.mark.parametrize("via", ["dir", "url"])
def test_missing_or_corrupt_file_names_file_and_fallback(
    via: str,
    damage: str,
    status: str,
    words: str,
    tmp_path: Path,
    source: Path,
    file_server: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest, dest = _manifest(tmp_path, FILES), tmp_path / "dest"
    bad = source / "b.onnx"
    if damage == "delete":
        bad.unlink()
    elif damage == "flip":
        bad.write_bytes(b"X" + FILES["b.onnx"][1:])
    else:
        bad.write_bytes(FILES["b.onnx"][:5])
    src = str(source) if via == "dir" else file_server
    # One usable file is enough: exit 0, but the bad one is named with its fallback tier.
    assert mi.main(["--from", src, "--dest", str(dest), "--manifest", str(manifest)]) == 0
    err = capsys.readouterr().err
    assert f"{status}" in err and "b.onnx" in err and words in err
    assert "face falls back to: haar" in err
    assert not (dest / "b.onnx").exists()
    assert not [p for p in dest.iterdir() if p.name.startswith(".")], "temp file left behind"


def test_nothing_usable_is_a_failure(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest, empty = _manifest(tmp_path, FILES), tmp_path / "empty"
    empty.mkdir()
    code = mi.main(
        ["--from", str(empty), "--dest", str(tmp_path / "d"), "--manifest", str(manifest)]
    )
    assert code == 1
    assert "0 of 2 model files usable" in capsys.readouterr().out


def test_unreachable_url_reports_download_failure(tmp_path: Path) -> None:
    manifest = _manifest(tmp_path, FILES)
    results = mi.install("http://127.0.0.1:9/", tmp_path / "d", manifest, timeout_s=2)
    assert {r.status for r in results} == {"corrupt"}
    assert all("download failed" in r.message for r in results)


def test_operator_supplied_file_is_skipped_with_fallback(tmp_path: Path, source: Path) -> None:
    extra = [
        {
            "file": "fire_smoke.onnx",
            "sha256": None,
            "bytes": None,
            "detector": "fire_smoke",
            "tier": "yolo",
            "fallback": "classical",
            "licence": "operator",
            "source": "op",
        }
    ]
    results = mi.install(str(source), tmp_path / "d", _manifest(tmp_path, FILES, extra))
    assert results[-1].status == "skipped" and "classical" in results[-1].message


@pytest.mark.parametrize(
    ("argv", "code"),
    [(["--from", "/no/such/dir"], 2), (["--from", "ftp://x/"], 2)],
)
def test_bad_arguments(argv: list[str], code: int, tmp_path: Path) -> None:
    assert mi.main([*argv, "--dest", str(tmp_path / "d")]) == code


def test_bad_manifest_entry_is_rejected() -> None:
    with pytest.raises(ValueError, match="plain name"):
        mi.ManifestEntry.from_dict({"file": "../etc/passwd", "sha256": None})


def test_real_manifest_installs_shared_models(models_dir: Path, tmp_path: Path) -> None:
    results = mi.install(str(models_dir), tmp_path / "files")
    by_file = {r.entry.file: r.status for r in results}
    assert all(
        by_file[f] == "installed"
        for f in ("yunet_s_640_640.onnx", "y5fu_320x_sim.onnx", "yolox_nano.onnx")
    ), by_file
    assert by_file["fire_smoke.onnx"] == "skipped"
