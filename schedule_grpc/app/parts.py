"""What the replica starts and stops: a part, a listener, and the null part that stands for one turned off."""

from __future__ import annotations

from typing import Protocol


class Part(Protocol):
    """A running piece of a replica: ``start`` once, ``stop`` once (and ``stop`` without ``start`` is harmless)."""

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Listening(Part, Protocol):
    """A part that listens on a port: the one it bound (port 0 picks one), None while it does not listen."""

    @property
    def port(self) -> int | None: ...


class Off:
    """A part the settings turned off (no SMTP server, no shim, no engine on this replica...): does nothing."""

    port: int | None = None

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass
