"""Who may call: bearer tokens (kept as SHA-256 hashes), client certificates, and which methods need which role."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from schedule_grpc.domain.caller import Caller, Role
from schedule_grpc.domain.errors import Unauthenticated
from schedule_grpc.settings import Settings, SettingsError

log = logging.getLogger(__name__)

SCHEDULE_SERVICE = "schedule.v1.ScheduleService"
# Probes must reach health without a credential; everything else needs one once any is configured.
OPEN_SERVICES = frozenset({"grpc.health.v1.Health"})

# Methods of ScheduleService only an admin may call. Exact names, plus every method whose name starts
# with one of the prefixes (the dead-letter queue's redrive and discard RPCs, whatever their suffix).
ADMIN_ONLY_METHODS = frozenset({"InitializeDefaultTasks", "ListAuditEntries"})
ADMIN_ONLY_PREFIXES = ("Redrive", "Discard")
# Methods that tie up a worker or write many rows; they draw from the stricter rate limit.
EXPENSIVE_METHODS = frozenset({"RunTaskNow", "InitializeDefaultTasks"})
EXPENSIVE_PREFIXES = ("Redrive",)


def split_method(full_method: str) -> tuple[str, str]:
    """'/pkg.Service/Method' -> ('pkg.Service', 'Method')."""
    service, _, method = full_method.lstrip("/").partition("/")
    return service, method


def required_role(full_method: str) -> Role | None:
    """The role a method needs; None for methods open to anyone (health)."""
    service, method = split_method(full_method)
    if service in OPEN_SERVICES:
        return None
    if service == SCHEDULE_SERVICE and (method in ADMIN_ONLY_METHODS or method.startswith(ADMIN_ONLY_PREFIXES)):
        return Role.ADMIN
    return Role.SERVICE


def is_expensive(full_method: str) -> bool:
    service, method = split_method(full_method)
    return service == SCHEDULE_SERVICE and (method in EXPENSIVE_METHODS or method.startswith(EXPENSIVE_PREFIXES))


def hash_token(token: str) -> str:
    """The form a token is configured in: ``printf %s "$TOKEN" | sha256sum``."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    caller: Caller


class TokenTable:
    """Configured bearer tokens. Only their SHA-256 digests are held; a presented token is hashed and
    compared against every entry in constant time, so neither timing nor early exit reveals a match."""

    def __init__(self, entries: Sequence[tuple[str, Role, str]]) -> None:
        self._entries = [_Entry(bytes.fromhex(digest), Caller(name, role)) for name, role, digest in entries]

    @classmethod
    def parse(cls, spec: str) -> TokenTable:
        """``caller:role:sha256hex,...`` as validated by Settings."""
        entries = []
        for item in filter(None, spec.split(",")):
            name, role, digest = item.rsplit(":", 2)
            entries.append((name, Role(role), digest))
        return cls(entries)

    def __len__(self) -> int:
        return len(self._entries)

    def caller_for(self, token: str) -> Caller | None:
        digest = hashlib.sha256(token.encode()).digest()
        found: Caller | None = None
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest):
                found = entry.caller
        return found


def is_loopback(address: str) -> bool:
    """Whether a host:port listens on loopback only."""
    host = address.rpartition(":")[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Security:
    """How calls are authenticated. ``open`` when no credential of any kind is configured."""

    tokens: TokenTable
    client_certificates: bool
    admin_certificate_names: frozenset[str]
    server_credentials: grpc.ServerCredentials | None

    @property
    def open(self) -> bool:
        return len(self.tokens) == 0 and not self.client_certificates

    @classmethod
    def from_settings(cls, settings: Settings) -> Security:
        """Reads the credentials; SettingsError for an incomplete TLS setup or an open non-loopback address."""
        credentials = _server_credentials(settings)
        security = cls(
            tokens=TokenTable.parse(settings.auth_tokens),
            client_certificates=bool(settings.grpc_tls_client_ca_file),
            admin_certificate_names=frozenset(filter(None, settings.tls_admin_names.split(","))),
            server_credentials=credentials,
        )
        if security.open:
            exposed = [a for a in (settings.grpc_address, settings.http_address) if a and not is_loopback(a)]
            if exposed and not settings.allow_open:
                raise SettingsError(
                    f"refusing to serve without credentials on non-loopback {', '.join(exposed)}: configure "
                    "SCHEDULE_AUTH_TOKENS or SCHEDULE_GRPC_TLS_CLIENT_CA_FILE, listen on loopback, "
                    "or set SCHEDULE_ALLOW_OPEN=true to run open on purpose"
                )
            log.warning(
                "running open: no credentials are configured, every caller is trusted and no per-caller limits apply",
                extra={"grpc_address": settings.grpc_address, "http_address": settings.http_address},
            )
        else:
            log.info(
                "authentication on",
                extra={"tokens": len(security.tokens), "client_certificates": security.client_certificates},
            )
        return security

    def authenticate(self, metadata: Mapping[str, str], auth_context: Mapping[str, Any]) -> Caller | None:
        """The caller of a call; None when open. Raises Unauthenticated when no valid credential came.

        A bearer token, when sent, decides; otherwise the client certificate's name does.
        """
        if self.open:
            return None
        header = metadata.get("authorization")
        if header is not None:
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthenticated("authorization must be 'Bearer <token>'", reason="MALFORMED_CREDENTIAL")
            caller = self.tokens.caller_for(token.strip())
            if caller is None:
                raise Unauthenticated("the bearer token is not valid", reason="INVALID_TOKEN")
            return caller
        if self.client_certificates:
            names = auth_context.get("x509_common_name") or auth_context.get("x509_subject_alternative_name")
            if names:
                name = names[0].decode()
                role = Role.ADMIN if name in self.admin_certificate_names else Role.SERVICE
                return Caller(name, role)
        raise Unauthenticated("a credential is required: authorization: Bearer <token>", reason="NO_CREDENTIAL")


def _server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    cert, key, ca = settings.grpc_tls_cert_file, settings.grpc_tls_key_file, settings.grpc_tls_client_ca_file
    if not (cert or key or ca):
        return None
    if not (cert and key):
        raise SettingsError("SCHEDULE_GRPC_TLS_CERT_FILE and SCHEDULE_GRPC_TLS_KEY_FILE go together")
    try:
        pair = (Path(key).read_bytes(), Path(cert).read_bytes())
        roots = Path(ca).read_bytes() if ca else None
    except OSError as error:
        raise SettingsError(f"cannot read a TLS file: {error}") from None
    return grpc.ssl_server_credentials([pair], root_certificates=roots, require_client_auth=roots is not None)
