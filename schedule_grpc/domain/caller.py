"""Who is calling, and what that caller may do with a resource it may or may not own.

The API's interceptor sets the current caller for the length of one call (``acting_as``); the API reads it
(``current``) and passes it to the use cases, which apply the rules below to the caller they were given.
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


def owner_name(caller: Caller | None) -> str | None:
    """The name new resources of ``caller`` are owned by: its name, or None when open."""
    return caller.name if caller else None


def require_owner(caller: Caller | None, owner: str | None, what: str) -> None:
    """PermissionDenied unless ``caller`` may change a resource owned by ``owner``.

    Admins may change anything; a service only what it owns. Resources without an owner (made
    while the service ran open) are admin-only once credentials are configured.
    """
    if may_see_details(caller, owner):
        return
    raise PermissionDenied(
        f"{what} belongs to {owner or 'no caller'}; only its owner or an admin may change it",
        reason="NOT_OWNER",
    )


def may_see_details(caller: Caller | None, owner: str | None) -> bool:
    """Whether ``caller`` may read the metadata, results, errors and tracebacks of a resource owned by
    ``owner``: its owner and admins (and everyone while the service runs open). The same callers may change it."""
    return caller is None or caller.is_admin or (owner is not None and owner == caller.name)


def is_service(caller: Caller | None) -> bool:
    """Whether ``caller`` is an authenticated ``service`` (not an admin, not an open service)."""
    return caller is not None and not caller.is_admin
