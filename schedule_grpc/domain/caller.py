"""Who is calling: set by the API's interceptor for the length of one call, read by the use cases.

Transport-free on purpose: the use cases see a name and a role, never a token or a certificate.
``None`` means the service runs open (no credentials configured): every call is allowed.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

from schedule_grpc.domain.errors import PermissionDenied


class Role(StrEnum):
    """What a caller may do. ``admin`` may do everything ``service`` may, and more."""

    SERVICE = "service"
    ADMIN = "admin"


@dataclass(frozen=True)
class Caller:
    """An authenticated caller: a bearer token's configured name, or a client certificate's name."""

    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN


_current: contextvars.ContextVar[Caller | None] = contextvars.ContextVar("schedule_caller", default=None)
# Set by the access log around a call, so that it learns who the call ran as (see ``observed``).
_seen: contextvars.ContextVar[list[Caller | None] | None] = contextvars.ContextVar("schedule_seen", default=None)


def current() -> Caller | None:
    """The caller of the call being served; None when the service runs open."""
    return _current.get()


@contextlib.contextmanager
def acting_as(caller: Caller | None) -> Iterator[None]:
    """Makes ``caller`` the current caller inside the block."""
    seen = _seen.get()
    if seen is not None:
        seen.append(caller)
    token = _current.set(caller)
    try:
        yield
    finally:
        _current.reset(token)


@contextlib.contextmanager
def observed() -> Iterator[list[Caller | None]]:
    """A list that receives the caller every ``acting_as`` inside the block runs as."""
    seen: list[Caller | None] = []
    token = _seen.set(seen)
    try:
        yield seen
    finally:
        _seen.reset(token)


def owner_name() -> str | None:
    """The name new resources are owned by: the current caller's, or None when open."""
    caller = current()
    return caller.name if caller else None


def require_owner(owner: str | None, what: str) -> None:
    """PermissionDenied unless the current caller may change a resource owned by ``owner``.

    Admins may change anything; a service only what it owns. Resources without an owner (made
    while the service ran open) are admin-only once credentials are configured.
    """
    caller = current()
    if caller is None or caller.is_admin or (owner is not None and owner == caller.name):
        return
    raise PermissionDenied(
        f"{what} belongs to {owner or 'no caller'}; only its owner or an admin may change it",
        reason="NOT_OWNER",
    )


def may_see_details(owner: str | None) -> bool:
    """Whether the current caller may read the metadata, results, errors and tracebacks of a resource
    owned by ``owner``: its owner and admins (and everyone while the service runs open)."""
    caller = current()
    return caller is None or caller.is_admin or (owner is not None and owner == caller.name)


def is_service() -> bool:
    """Whether the current caller is an authenticated ``service`` (not an admin, not an open service)."""
    caller = current()
    return caller is not None and not caller.is_admin
