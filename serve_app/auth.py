"""Bearer-token authentication, scopes and department scoping.

Principals live in the Redis hash ``citysight:principals`` keyed by the sha256 hex digest
of their token (tokens themselves are never stored). Lookups are cached for a few seconds
so a busy API does not hit Redis on every request, while a revoked token stops working
within :data:`CACHE_TTL_S`.

Department scoping is enforced here, on the server: a principal sees an alert only when its
department is ``*`` or one of the alert's departments (the owner, plus any department the
alert was escalated to). Jurisdiction scoping comes on top: a principal limited to a
jurisdiction (a township officer) sees an alert or a camera only when that jurisdiction is on
its ``jurisdiction_path``; anything without a path is outside (fail closed). Client filters
can only narrow that.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import secrets
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, Final

import redis
from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from citysight import keys
from citysight.config import Scope
from citysight.contracts import Alert

logger = logging.getLogger(__name__)

TICKET_TTL_S: Final = 30
CACHE_TTL_S: Final = 5.0
ALL_DEPARTMENTS: Final = "*"
ALL_JURISDICTIONS: Final = "*"

_bearer = HTTPBearer(auto_error=False)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    Attributes:
        name: Principal name (appears in the audit log).
        role: Role name (admin, police...).
        department: Department id, or ``*`` for every department.
        scopes: Rights the principal holds.
        jurisdiction: Jurisdiction id the principal is limited to (with everything below
            it), or ``*`` for the whole city.
        key: sha256 hex of the token it was resolved from (the ``citysight:principals``
            field): what open WebSockets are re-checked and counted by. Not part of equality
            or of :meth:`to_dict`.
    """

    name: str
    role: str
    department: str
    scopes: frozenset[str] = field(default_factory=frozenset)
    jurisdiction: str = ALL_JURISDICTIONS
    key: str = field(default="", compare=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any], key: str = "") -> Principal:
        """Build from the JSON stored in Redis (unknown scopes are kept, never widened)."""
        return cls(
            name=str(d["name"]),
            role=str(d.get("role", "")),
            department=str(d["department"]),
            scopes=frozenset(str(s) for s in d.get("scopes", [])),
            jurisdiction=str(d.get("jurisdiction") or ALL_JURISDICTIONS),
            key=key,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (as stored in Redis and returned by ``GET /api/me``)."""
        return {
            "name": self.name,
            "role": self.role,
            "department": self.department,
            "scopes": sorted(self.scopes),
            "jurisdiction": self.jurisdiction,
        }

    def has(self, scope: Scope | str) -> bool:
        """Whether the principal holds ``scope``."""
        return str(scope) in self.scopes

    def sees(self, department: str) -> bool:
        """Whether alerts of ``department`` are within this principal's scope."""
        return self.department == ALL_DEPARTMENTS or department == self.department

    def sees_any(self, departments: Iterable[str]) -> bool:
        """Whether an alert belonging to ``departments`` (``Alert.departments()``) is in scope."""
        return self.department == ALL_DEPARTMENTS or self.department in departments

    @property
    def city_wide(self) -> bool:
        """Whether the principal is not limited to a jurisdiction."""
        return self.jurisdiction == ALL_JURISDICTIONS

    def sees_place(self, path: Iterable[str]) -> bool:
        """Whether something on jurisdiction ``path`` (city first) is in scope."""
        return self.city_wide or self.jurisdiction in path

    def sees_alert(self, alert: Alert) -> bool:
        """Department and jurisdiction scope of an alert together."""
        return self.sees_any(alert.departments()) and self.sees_place(alert.jurisdiction_path)

    def jurisdiction_filter(self) -> str | None:
        """The jurisdiction a query must stay in (``None``: the whole city)."""
        return None if self.city_wide else self.jurisdiction

    def departments(self, requested: str | None = None) -> set[str] | None:
        """Departments a query may cover: ``None`` means all.

        Args:
            requested: A department the client asked for (narrowing only).

        Returns:
            ``None`` (all) for an all-department principal without a request, otherwise
            the set to query. A request outside scope yields an empty set (nothing visible).
        """
        if requested:
            return {requested} if self.sees(requested) else set()
        if self.department == ALL_DEPARTMENTS:
            return None
        return {self.department}


def hash_token(token: str) -> str:
    """sha256 hex digest under which a token's principal is stored."""
    return hashlib.sha256(token.encode()).hexdigest()


class PrincipalResolver:
    """Resolves bearer tokens and one-time WebSocket tickets to principals."""

    def __init__(self, r: redis.Redis, cache_ttl_s: float = CACHE_TTL_S) -> None:
        """Create a resolver.

        Args:
            r: Synchronous Redis client.
            cache_ttl_s: How long a lookup (hit or miss) is cached.
        """
        self._r = r
        self._ttl = cache_ttl_s
        self._cache: dict[str, tuple[float, Principal | None]] = {}
        self._lock = threading.Lock()

    def resolve(self, token: str) -> Principal | None:
        """The principal of a bearer token, or ``None`` when unknown."""
        if not token or len(token) > 512:
            return None
        key = hash_token(token)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = self.lookup([key])[key]
        with self._lock:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = (now + self._ttl, principal)
        return principal

    def lookup(self, token_keys: list[str]) -> dict[str, Principal | None]:
        """The current principal of each token hash, read from Redis now (no cache).

        What open WebSockets are re-checked with: a revoked token maps to ``None``.

        Raises:
            redis.RedisError: Redis is unreachable.
        """
        if not token_keys:
            return {}
        raws = self._r.hmget(keys.PRINCIPALS, token_keys)
        out: dict[str, Principal | None] = {}
        for key, raw in zip(token_keys, raws, strict=True):
            principal: Principal | None = None
            if raw:
                try:
                    principal = Principal.from_dict(json.loads(raw), key)
                except (ValueError, KeyError, TypeError):
                    logger.warning("malformed principal record %s...", key[:8])
            out[key] = principal
        return out

    def issue_ticket(self, principal: Principal) -> str:
        """Store a one-time WebSocket ticket for ``principal`` (valid :data:`TICKET_TTL_S`).

        The ticket carries the token hash too, so the socket it opens is re-checked against
        the token's principal like a bearer socket.
        """
        ticket = secrets.token_urlsafe(24)
        body = {**principal.to_dict(), "key": principal.key}
        self._r.set(keys.ws_ticket_key(ticket), json.dumps(body), ex=TICKET_TTL_S)
        return ticket

    def consume_ticket(self, ticket: str) -> Principal | None:
        """Redeem a ticket (GETDEL: a second use fails)."""
        if not ticket or len(ticket) > 128:
            return None
        raw = self._r.getdel(keys.ws_ticket_key(ticket))
        if not raw:
            return None
        try:
            d = json.loads(raw)
            return Principal.from_dict(d, str(d.get("key") or ""))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None


def is_loopback(request: Request) -> bool:
    """Whether the caller connects from this host's loopback address.

    uvicorn (also inside Ray Serve's proxy) replaces the peer by ``X-Forwarded-For`` only
    when the peer itself is 127.0.0.1, so a remote caller cannot claim to be local.
    """
    client = request.client
    if client is None:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return False


def monitoring_denial(request: Request) -> HTTPException | None:
    """Why the caller may not read ``/health`` detail and ``/metrics`` (``None``: it may).

    Allowed: a loopback caller while ``services.http.local_monitoring`` is on (the embedded
    default), or a bearer token holding ``monitoring:read``.
    """
    ctx = request.app.state.ctx
    if ctx.cfg.services.http.local_monitoring and is_loopback(request):
        return None
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "monitoring needs a bearer token with monitoring:read (or a local caller)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = _resolver(request).resolve(token.strip())
    if principal is None:
        return HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if not principal.has(Scope.MONITORING_READ):
        return HTTPException(status.HTTP_403_FORBIDDEN, "missing scope: monitoring:read")
    return None


def _resolver(request: Request) -> PrincipalResolver:
    resolver: PrincipalResolver = request.app.state.ctx.resolver
    return resolver


def current_principal(
    request: Request,
    creds: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> Principal:
    """FastAPI dependency: the caller's principal, or 401.

    Raises:
        HTTPException: 401 when the bearer token is missing or unknown.
    """
    if creds is None or creds.scheme.lower() != "bearer":
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "missing bearer token (Authorization: Bearer <token>)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    principal = _resolver(request).resolve(creds.credentials)
    if principal is None:
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED,
            "invalid or revoked token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return principal


def require(*scopes: Scope) -> Any:
    """FastAPI dependency factory: the caller must hold every scope in ``scopes`` (else 403).

    Args:
        scopes: Required scopes.

    Returns:
        A dependency returning the :class:`Principal`.
    """

    def dep(principal: Principal = Depends(current_principal)) -> Principal:  # noqa: B008
        missing = [str(s) for s in scopes if not principal.has(s)]
        if missing:
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"missing scope: {', '.join(missing)}")
        return principal

    return dep


Authenticated = Annotated[Principal, Depends(current_principal)]
"""Any valid token."""
Reader = Annotated[Principal, Depends(require(Scope.ALERTS_READ))]
"""``alerts:read``."""
Dispatcher = Annotated[Principal, Depends(require(Scope.ALERTS_READ, Scope.ALERTS_DISPATCH))]
"""``alerts:read`` and ``alerts:dispatch``."""
CameraWriter = Annotated[Principal, Depends(require(Scope.CAMERAS_WRITE))]
"""``cameras:write``."""
PlateQuerier = Annotated[Principal, Depends(require(Scope.PLATES_QUERY))]
"""``plates:query``."""
AuditReader = Annotated[Principal, Depends(require(Scope.AUDIT_READ))]
"""``audit:read``."""
ReportWriter = Annotated[Principal, Depends(require(Scope.REPORTS_WRITE))]
"""``reports:write`` (field reports)."""
