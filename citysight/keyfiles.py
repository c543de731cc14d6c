"""Secrets kept in files of the work dir (mode 0600) or in the environment.

Two secrets of an embedded deployment live here rather than in Redis or the config: the
embedded Redis's generated password and the audit chain's HMAC key. Each is created with a
random value by the first process that needs it (``O_EXCL``, so concurrent starters agree on
one value) and read by every other process of the deployment.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from citysight.config import AuditConfig
from citysight.config.audit import DEFAULT_KEY_FILE

logger = logging.getLogger(__name__)

MIN_KEY_CHARS = 32


class SecretError(RuntimeError):
    """A secret cannot be read or created; the message says which and what to do."""


def read_or_create(path: str | os.PathLike[str], nbytes: int = 32) -> str:
    """The secret in ``path``, created (mode 0600, url-safe random text) when missing.

    Args:
        path: The file (its directory is created with mode 0700).
        nbytes: Random bytes of a new secret.

    Returns:
        The secret, stripped of surrounding whitespace.

    Raises:
        SecretError: the file cannot be created or read, or is empty.
    """
    p = Path(path)
    try:
        p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_urlsafe(nbytes) + "\n")
            logger.info("created secret file %s (mode 0600)", p)
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            # Readable by others: tighten it rather than refuse (we own the file).
            os.chmod(p, 0o600)
            logger.warning("secret file %s had mode %o; set to 0600", p, mode)
        value = p.read_text().strip()
    except OSError as exc:
        raise SecretError(f"secret file {p}: {exc.strerror or exc}") from None
    if not value:
        raise SecretError(f"secret file {p} is empty: delete it to have a new one generated")
    return value


def audit_key(cfg: AuditConfig) -> bytes:
    """The audit chain's HMAC key: ``key_env``'s value, else the content of ``key_file``.

    Raises:
        SecretError: ``key_env`` is set but its variable is unset or shorter than
            :data:`MIN_KEY_CHARS`, or the key file cannot be read or created.
    """
    if cfg.key_env:
        value = os.environ.get(cfg.key_env, "")
        if len(value) < MIN_KEY_CHARS:
            raise SecretError(
                f"audit.key_env: variable {cfg.key_env} is unset or shorter than "
                f"{MIN_KEY_CHARS} characters"
            )
        return value.encode()
    return read_or_create(cfg.key_file or DEFAULT_KEY_FILE).encode()
