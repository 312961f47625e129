"""Which tables a data handler may touch: the operator's allow-list per handler, never the service's own.

A task's metadata may name a table (``table``, ``tables``). The name is accepted only when it is in
the handler's allowed tables: its documented default tables unless SCHEDULE_HANDLER_TABLES says
otherwise (``handler=table|schema.table,...``). Names compare case-insensitively (SQLite ignores case
even in quoted names), and a name given with a schema must be allowed with that schema, so system
catalogs and other schemas stay out unless the operator lists them. The service's own tables are
refused in any schema, whatever the configuration says. Checked when a task is registered and again
when it runs (the configuration may have changed in between).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.handlers.common import is_identifier

T = TypeVar("T")

# The service's own tables (migrations, the scheduling engine's job store, Alembic's version table).
SERVICE_TABLES = frozenset(
    {
        "scheduled_tasks",
        "task_executions",
        "dead_letters",
        "apscheduler_jobs",
        "leader_epochs",
        "execution_events",
        "alembic_version",
    }
)


def service_table_problem(name: str) -> str | None:
    """Why ``name`` can never be touched by a handler, or None."""
    bare = name.rpartition(".")[2].lower()
    if bare in SERVICE_TABLES or bare.startswith("execution_events"):
        return f"{name} is one of the scheduling service's own tables; no handler may touch them"
    return None


def parse_handler_tables(value: str) -> dict[str, frozenset[str]]:
    """``handler=table|schema.table,...`` into {handler: tables}; raises ValueError saying what is wrong."""
    result: dict[str, frozenset[str]] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        handler, sep, tables = entry.partition("=")
        handler = handler.strip()
        names = [t.strip() for t in tables.split("|") if t.strip()]
        if not sep or not handler or not names:
            raise ValueError(f"{entry!r} is not handler=table|schema.table")
        for name in names:
            if not is_identifier(name, qualified=True):
                raise ValueError(f"{handler}: {name!r} is not a table name (letters, digits, _; schema.table)")
            problem = service_table_problem(name)
            if problem:
                raise ValueError(f"{handler}: {problem}")
        if handler in result:
            raise ValueError(f"{handler} is listed twice")
        result[handler] = frozenset(n.lower() for n in names)
    return result


def allowed_tables(handler: str, defaults: Iterable[str], configured: Mapping[str, frozenset[str]]) -> frozenset[str]:
    """The tables ``handler`` may touch: the operator's list for it, else its defaults."""
    return configured.get(handler, frozenset(d.lower() for d in defaults))


def table(metadata: Mapping[str, JSON], key: str, default: str, allowed: frozenset[str]) -> str:
    """The table named by ``metadata[key]`` (or ``default``); InvalidArgument unless it may be touched."""
    value = metadata.get(key, default)
    if not isinstance(value, str) or not is_identifier(value, qualified=True):
        raise InvalidArgument(
            f"metadata.{key}", "must be a table name (optionally schema.table) of letters, digits and underscores"
        )
    check(value, f"metadata.{key}", allowed)
    return value


def check(name: str, field: str, allowed: frozenset[str]) -> None:
    """InvalidArgument naming ``field`` unless table ``name`` is allowed (and not the service's own)."""
    problem = service_table_problem(name)
    if problem:
        raise InvalidArgument(field, problem)
    if name.lower() not in allowed:
        shown = ", ".join(sorted(allowed)) or "none"
        raise InvalidArgument(
            field, f"table {name} is not one this handler may touch (allowed: {shown}; see SCHEDULE_HANDLER_TABLES)"
        )


def at_execution(read: Callable[[], T]) -> T:
    """Reads a task's options again when it runs: what registration accepted may be refused now
    (the operator narrowed the allowed tables); the attempt then fails with the POLICY category."""
    try:
        return read()
    except InvalidArgument as error:
        raise HandlerFailed(f"refused at execution: {error}", ErrorCategory.POLICY) from None
