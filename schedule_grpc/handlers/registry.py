"""The handler registry: which handler names a task may use."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from schedule_grpc.handlers.base import Handler


class HandlerRegistry:
    """Handlers by name."""

    def __init__(self, handlers: Iterable[Handler] = ()) -> None:
        self._handlers: dict[str, Handler] = {}
        for handler in handlers:
            self.register(handler)

    def register(self, handler: Handler) -> None:
        if handler.name in self._handlers:
            raise ValueError(f"handler {handler.name!r} registered twice")
        self._handlers[handler.name] = handler

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def all(self) -> Sequence[Handler]:
        """Every handler, sorted by name."""
        return [self._handlers[name] for name in sorted(self._handlers)]


def default_registry() -> HandlerRegistry:
    """The handlers that ship with the service."""
    from schedule_grpc.handlers.http import HttpHandler

    return HandlerRegistry([HttpHandler()])
