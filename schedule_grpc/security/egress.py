"""Egress policy: which addresses the service may connect to on a task's behalf.

A task's handler names a host; the policy judges the address that host resolved to, on every
connection (redirects and DNS answers included), so a name cannot slip a denied address past it.
By default the service may reach public addresses only: loopback, private, link-local (with the
cloud metadata endpoints), shared, multicast and reserved ranges are denied. The operator widens the
policy with allowed networks (``allow`` wins over the default denials) and narrows it with denied
networks and endpoints (these win over everything, so the service's own listeners stay unreachable).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Denied unless the operator allows them (each with the reason a refused attempt reports).
DEFAULT_DENIED: tuple[tuple[str, str], ...] = (
    ("169.254.169.254/32", "a cloud metadata endpoint"),
    ("fd00:ec2::254/128", "a cloud metadata endpoint"),
    ("100.100.100.200/32", "a cloud metadata endpoint"),
    ("127.0.0.0/8", "loopback"),
    ("::1/128", "loopback"),
    ("0.0.0.0/8", "an unspecified address"),
    ("::/128", "an unspecified address"),
    ("10.0.0.0/8", "a private network"),
    ("172.16.0.0/12", "a private network"),
    ("192.168.0.0/16", "a private network"),
    ("fc00::/7", "a private network"),
    ("100.64.0.0/10", "a shared address space"),
    ("169.254.0.0/16", "link-local"),
    ("fe80::/10", "link-local"),
    ("224.0.0.0/4", "multicast"),
    ("ff00::/8", "multicast"),
    ("240.0.0.0/4", "a reserved range"),
)


class EgressDenied(Exception):
    """A connection the policy refuses; the message says which address and why (no path, no query)."""


def _network(text: str) -> IPNetwork:
    return ipaddress.ip_network(text.strip(), strict=False)


@dataclass(frozen=True)
class EgressPolicy:
    """Allowed and denied networks, and denied (address, port) endpoints such as the service's own ports."""

    allow: tuple[IPNetwork, ...] = ()
    deny: tuple[IPNetwork, ...] = ()
    denied_endpoints: frozenset[tuple[IPAddress, int]] = field(default_factory=frozenset)
    defaults: tuple[tuple[IPNetwork, str], ...] = tuple((_network(n), why) for n, why in DEFAULT_DENIED)

    @classmethod
    def parse(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> EgressPolicy:
        """From CIDR strings (``"127.0.0.0/8"``, ``"::1"``); raises ValueError naming a bad entry."""
        try:
            return cls(
                allow=tuple(_network(a) for a in allow if a.strip()), deny=tuple(_network(d) for d in deny if d.strip())
            )
        except ValueError as error:
            raise ValueError(f"not a network: {error}") from None

    @classmethod
    def open(cls) -> EgressPolicy:
        """Allows every address (tests of handlers that do not exercise the policy; never a default)."""
        return cls(defaults=())

    def with_denied_endpoints(self, endpoints: Iterable[tuple[str, int]]) -> EgressPolicy:
        """The same policy that also refuses these (address, port) pairs; ``0.0.0.0``/``::`` mean every address."""
        pairs = {(ipaddress.ip_address(host), port) for host, port in endpoints}
        return EgressPolicy(self.allow, self.deny, self.denied_endpoints | frozenset(pairs), self.defaults)

    def check(self, ip: str, port: int) -> None:
        """Returns when a connection to ``ip``:``port`` is allowed; raises EgressDenied saying why otherwise."""
        try:
            address = ipaddress.ip_address(ip.split("%", 1)[0])
        except ValueError:
            raise EgressDenied(f"egress denied: {ip[:64]!r} is not an IP address") from None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if self._own_endpoint(address, port):
            raise EgressDenied(f"egress denied: {address} port {port} is one of this service's own listeners")
        for network in self.deny:
            if address in network:
                raise EgressDenied(f"egress denied: {address} is in the denied network {network}")
        if any(address in network for network in self.allow):
            return
        for network, why in self.defaults:
            if address in network:
                raise EgressDenied(f"egress denied: {address} is {why} (allow it with SCHEDULE_EGRESS_ALLOW)")

    def _own_endpoint(self, address: IPAddress, port: int) -> bool:
        for own, own_port in self.denied_endpoints:
            if own_port != port:
                continue
            if own == address or (own.is_unspecified and (address.is_loopback or address.version == own.version)):
                return True
        return False
