"""``citysight models install``: copy or download model files listed in the manifest.

Air-gapped sites install from a directory (``--from ../shared/models``); sites with internet
from a URL prefix (``--from https://host/models/``; each file name is appended). Every file is
checked against the manifest's byte count and sha256 and moved into place atomically. A
missing or corrupt file is reported with the fallback tier its detector will use instead; the
exit code is non-zero only when nothing usable could be installed.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MANIFEST = PROJECT_ROOT / "model_repo" / "manifest.yaml"
DEFAULT_DEST = PROJECT_ROOT / "model_repo" / "files"
CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One model file of ``model_repo/manifest.yaml``."""

    file: str
    sha256: str | None
    bytes: int | None
    detector: str
    tier: str
    fallback: str
    licence: str
    source: str
    required: bool

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ManifestEntry:
        """Build from one manifest mapping (raises ``KeyError``/``ValueError`` when bad)."""
        name = str(d["file"])
        if "/" in name or "\\" in name or name in {"", ".", ".."}:
            raise ValueError(f"manifest file name must be a plain name: {name!r}")
        return cls(
            file=name,
            sha256=str(d["sha256"]).lower() if d.get("sha256") else None,
            bytes=int(d["bytes"]) if d.get("bytes") is not None else None,
            detector=str(d.get("detector", "")),
            tier=str(d.get("tier", "")),
            fallback=str(d.get("fallback", "")),
            licence=str(d.get("licence", "")),
            source=str(d.get("source", "")),
            required=bool(d.get("required", False)),
        )


@dataclass(slots=True)
class InstallResult:
    """Outcome for one file: ``status`` is installed, present, missing, corrupt or skipped."""

    entry: ManifestEntry
    status: str
    message: str

    @property
    def usable(self) -> bool:
        """The file is in place and verified."""
        return self.status in {"installed", "present"}


def load_manifest(path: Path = DEFAULT_MANIFEST) -> list[ManifestEntry]:
    """Entries of the model manifest."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, dict) or not isinstance(data.get("files"), list):
        raise ValueError(f"{path}: expected a mapping with a 'files' list")
    return [ManifestEntry.from_dict(d) for d in data["files"]]


def sha256_of(path: Path) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def check_file(entry: ManifestEntry, path: Path) -> str | None:
    """Why ``path`` does not match ``entry``, or ``None`` when it does."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if entry.bytes is not None and size != entry.bytes:
        return f"corrupt: {size} bytes, expected {entry.bytes}"
    if entry.sha256 is not None:
        digest = sha256_of(path)
        if digest != entry.sha256:
            return f"corrupt: sha256 {digest[:12]}…, expected {entry.sha256[:12]}…"
    return None


def _is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in {"http", "https"}


def _fetch(source: str, name: str, tmp: Path, timeout_s: float) -> str | None:
    """Copy or download ``name`` from ``source`` into ``tmp``; the reason on failure."""
    if _is_url(source):
        url = source.rstrip("/") + "/" + urllib.parse.quote(name)
        try:
            with urllib.request.urlopen(url, timeout=timeout_s) as resp, tmp.open("wb") as out:
                shutil.copyfileobj(resp, out, CHUNK)
        except urllib.error.HTTPError as exc:
            return "missing" if exc.code == 404 else f"download failed: HTTP {exc.code}"
        except (OSError, urllib.error.URLError) as exc:
            return f"download failed: {exc}"
        return None
    src = Path(source) / name
    if not src.is_file():
        return "missing"
    shutil.copyfile(src, tmp)
    return None


def _fallback_note(entry: ManifestEntry) -> str:
    return f"{entry.detector} falls back to: {entry.fallback}" if entry.fallback else ""


def install_one(
    entry: ManifestEntry, source: str, dest: Path, timeout_s: float = 60.0
) -> InstallResult:
    """Install one file into ``dest`` (verified, atomic); never raises for bad input."""
    target = dest / entry.file
    if entry.sha256 is None:
        if target.is_file():
            return InstallResult(entry, "present", "operator-supplied, present (not verified)")
        return InstallResult(
            entry, "skipped", f"operator-supplied, not installed; {_fallback_note(entry)}"
        )
    if check_file(entry, target) is None:
        return InstallResult(entry, "present", "already installed, sha256 ok")
    fd, tmp_name = tempfile.mkstemp(prefix=f".{entry.file}.", dir=dest)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        problem = _fetch(source, entry.file, tmp, timeout_s) or check_file(entry, tmp)
        if problem is None:
            os.replace(tmp, target)
            return InstallResult(entry, "installed", "installed, sha256 ok")
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    status = "missing" if problem == "missing" else "corrupt"
    where = "not found in source" if status == "missing" else problem
    return InstallResult(entry, status, f"{where}; {_fallback_note(entry)}")


def install(
    source: str,
    dest: Path = DEFAULT_DEST,
    manifest: Path = DEFAULT_MANIFEST,
    timeout_s: float = 60.0,
) -> list[InstallResult]:
    """Install every manifest file from ``source`` (directory or URL prefix) into ``dest``."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    return [install_one(e, source, dest, timeout_s) for e in load_manifest(manifest)]


def verify(dest: Path = DEFAULT_DEST, manifest: Path = DEFAULT_MANIFEST) -> dict[str, str]:
    """``file → "ok" | reason`` for the files already in ``dest`` (for health reports)."""
    return {
        e.file: check_file(e, Path(dest) / e.file) or "ok"
        for e in load_manifest(manifest)
        if e.sha256 is not None
    }


def main(argv: list[str] | None = None) -> int:
    """CLI entry point (``citysight models install``).

    Returns:
        0 when at least one verified file is in place, 1 when nothing usable could be
        installed, 2 on a bad manifest or arguments.
    """
    parser = argparse.ArgumentParser(
        prog="citysight models install", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        help="directory or http(s) URL prefix holding the model files",
    )
    parser.add_argument(
        "--dest",
        type=Path,
        default=DEFAULT_DEST,
        help="models dir to install into (default: model_repo/files)",
    )
    parser.add_argument("--manifest", type=Path, default=DEFAULT_MANIFEST)
    parser.add_argument("--timeout-s", type=float, default=60.0, help="per-download timeout")
    args = parser.parse_args(argv)
    if not _is_url(args.source) and not Path(args.source).is_dir():
        print(f"error: --from {args.source}: not a directory or http(s) URL", file=sys.stderr)
        return 2
    try:
        results = install(args.source, args.dest, args.manifest, args.timeout_s)
    except (OSError, ValueError, KeyError, yaml.YAMLError) as exc:
        print(f"error: cannot read manifest {args.manifest}: {exc}", file=sys.stderr)
        return 2
    for r in results:
        stream = sys.stdout if r.usable or r.status == "skipped" else sys.stderr
        print(f"{r.status:9} {r.entry.file}: {r.message}", file=stream)
    usable = sum(r.usable for r in results)
    print(f"{usable} of {len(results)} model files usable in {args.dest}")
    return 0 if usable else 1


if __name__ == "__main__":
    sys.exit(main())
