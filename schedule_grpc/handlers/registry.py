"""The handler registry: which handler names a task may use.

``default_registry(settings)`` is the one place that builds it: the built-in handlers, configured from
the settings through their constructors (plain attributes only, so a handler pickles into a worker
process), then the handlers of installed plugins.

Plugins: a package declares an entry point in the group ``schedule_grpc.handlers``; the object it
names is called with the Settings and returns a handler or a list of handlers (a handler class whose
constructor takes the settings fits). A plugin that fails to load, or reuses a name, stops start-up
with a message naming it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from importlib.metadata import entry_points

from schedule_grpc.handlers.base import Handler
from schedule_grpc.handlers.maintenance import HistoryCleanupHandler, HistoryPurge
from schedule_grpc.security.egress import EgressPolicy
from schedule_grpc.settings import Settings, SettingsError

ENTRY_POINT_GROUP = "schedule_grpc.handlers"


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


def builtin_handlers(settings: Settings, purge: HistoryPurge) -> list[Handler]:
    """The ``http`` and ``grpc`` handlers, the seed's 13 and the retention task's, configured from ``settings``."""
    from schedule_grpc.handlers.analytics import BackupDatabaseHandler, UpdateAnalyticsHandler
    from schedule_grpc.handlers.cleanup import cleanup_handlers
    from schedule_grpc.handlers.data import PLATFORM_TABLES
    from schedule_grpc.handlers.embeddings import embeddings_handlers
    from schedule_grpc.handlers.grpc import GrpcHandler
    from schedule_grpc.handlers.http import HttpHandler
    from schedule_grpc.handlers.monitoring import HealthCheckHandler, RateLimitHandler, parse_targets
    from schedule_grpc.handlers.tables import allowed_tables, parse_handler_tables
    from schedule_grpc.handlers.verification import VerifyImportedDataHandler

    service_db = settings.database_url
    platform_db = settings.platform_database_url or settings.database_url
    try:
        targets = parse_targets(settings.health_check_targets)
    except ValueError as error:
        raise SettingsError(f"SCHEDULE_HEALTH_CHECK_TARGETS={settings.health_check_targets!r}: {error}") from None
    allowed = parse_handler_tables(settings.handler_tables)
    egress = egress_policy(settings)
    return [
        HttpHandler(egress=egress, connections=settings.executor_remote_concurrency),
        GrpcHandler(egress=egress),
        *cleanup_handlers(platform_db, allowed),
        *embeddings_handlers(
            platform_db,
            allowed=allowed,
            egress=egress,
            url=settings.embeddings_url,
            model=settings.embeddings_model,
            api_key=settings.embeddings_api_key,
            batch_size=settings.embeddings_batch_size,
            timeout_s=settings.handler_http_timeout_s,
        ),
        UpdateAnalyticsHandler(
            service_database_url=service_db,
            platform_database_url=platform_db,
            allowed_tables=allowed_tables("update-analytics", PLATFORM_TABLES, allowed),
        ),
        BackupDatabaseHandler(
            service_database_url=service_db,
            platform_database_url=platform_db,
            directory=settings.backup_dir,
            retention=settings.backup_retention,
        ),
        HealthCheckHandler(database_url=platform_db, targets=targets, egress=egress),
        RateLimitHandler(
            database_url=platform_db,
            threshold=settings.rate_limit_threshold,
            allowed_tables=allowed_tables("check-rate-limits", ["rate_limit_usage"], allowed),
        ),
        *import_handlers(settings, platform_db, egress),
        VerifyImportedDataHandler(database_url=platform_db),
        HistoryCleanupHandler(purge),
    ]


def import_handlers(settings: Settings, database_url: str, egress: EgressPolicy) -> list[Handler]:
    """The importers of MCP servers and public APIs, and the one that runs both."""
    from schedule_grpc.handlers.imports import ImportAllSourcesHandler, ImportMcpServersHandler, ImportPublicApisHandler

    timeout = settings.handler_http_timeout_s
    mcp = ImportMcpServersHandler(
        database_url=database_url, registry_url=settings.mcp_registry_url, timeout_s=timeout, egress=egress
    )
    apis = ImportPublicApisHandler(
        database_url=database_url, url=settings.public_apis_url, timeout_s=timeout, egress=egress
    )
    return [mcp, apis, ImportAllSourcesHandler(importers={"mcpServers": mcp, "publicApis": apis})]


def egress_policy(settings: Settings) -> EgressPolicy:
    """The egress policy of every outbound call made for a task: the defaults, the operator's allowed and
    denied networks, and the service's own listening ports (gRPC, HTTP shim, metrics, health) denied."""
    try:
        policy = EgressPolicy.parse(settings.egress_allow.split(","), settings.egress_deny.split(","))
    except ValueError as error:
        raise SettingsError(f"SCHEDULE_EGRESS_ALLOW/DENY: {error}") from None
    addresses = (settings.grpc_address, settings.http_address, settings.metrics_address, settings.health_address)
    return policy.with_denied_endpoints(own for address in addresses if address for own in endpoints(address))


def endpoints(address: str, bound_port: int | None = None) -> list[tuple[str, int]]:
    """(ip, port) pairs a listen address covers (``bound_port``: the port it took, for port 0); a host
    name stands for every address."""
    host, _, port_text = address.rpartition(":")
    host = host.strip("[]")
    port = bound_port or (int(port_text) if port_text.isdigit() else 0)
    if not port:
        return []  # an ephemeral port is known once the server has bound it (deny_own_endpoints)
    if host == "localhost":
        return [("127.0.0.1", port), ("::1", port)]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = ipaddress.ip_address("::")
    if ip.is_unspecified:  # [::] listens on IPv4 too (dual stack)
        return [("0.0.0.0", port), ("::", port)]
    return [(host, port)]


def deny_own_endpoints(registry: HandlerRegistry, own: Iterable[tuple[str, int]]) -> None:
    """Adds the service's listeners, as bound, to the egress policy of every handler that has one.

    Called once the servers have bound their ports (port 0 takes one from the system), before any task
    runs; handlers are sent to worker processes per execution, so the policy travels with them.
    """
    pairs = list(own)
    for handler in registry.all():
        policy = getattr(handler, "egress", None)
        if isinstance(policy, EgressPolicy):
            setattr(handler, "egress", policy.with_denied_endpoints(pairs))  # noqa: B010 - Handler declares no egress


def plugin_handlers(settings: Settings, group: str = ENTRY_POINT_GROUP) -> list[Handler]:
    """The handlers of installed packages declaring an entry point in ``group``."""
    found: list[Handler] = []
    for point in sorted(entry_points(group=group), key=lambda p: p.name):
        try:
            made = point.load()(settings)
        except Exception as error:
            raise RuntimeError(f"handler plugin {point.name!r} ({point.value}) failed to load: {error}") from error
        for handler in made if isinstance(made, list | tuple) else [made]:
            for attribute in ("name", "description", "category", "validate", "run"):
                if not hasattr(handler, attribute):
                    raise RuntimeError(f"handler plugin {point.name!r} gave an object without {attribute!r}")
            found.append(handler)
    return found


def default_registry(settings: Settings, *, purge: HistoryPurge) -> HandlerRegistry:
    """The handlers that ship with the service, and those of installed plugins. ``purge`` is the retention
    run the history cleanup handler performs (the use case, given by the composition root)."""
    registry = HandlerRegistry(builtin_handlers(settings, purge))
    for handler in plugin_handlers(settings):
        try:
            registry.register(handler)
        except ValueError as error:
            raise RuntimeError(f"handler plugin: {error}") from None
    return registry
