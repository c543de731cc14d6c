"""The caller's own principal."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from serve_app.auth import Authenticated

router = APIRouter(prefix="/api/me", tags=["auth"])


@router.get("", summary="Who am I: name, role, department, scopes")
def me(principal: Authenticated) -> dict[str, Any]:
    """The principal of the bearer token."""
    return principal.to_dict()
