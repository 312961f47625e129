"""Structured logs: one JSON object per line, for the service and the libraries under it.

Code that works on behalf of a task or an execution binds their ids for the duration
(``with logs.bind(task_id=..., execution_id=...)``); every record logged meanwhile, by the
service or by a library (gRPC, APScheduler, SQLAlchemy, httpx), carries them as fields.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

# Attributes every LogRecord has; anything else was passed with `extra=` and is logged as a field.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

_bound: ContextVar[dict[str, Any]] = ContextVar("schedule_log_fields", default={})  # noqa: B039

# Libraries whose records go through the same handler; the chatty ones are held at WARNING unless DEBUG.
LIBRARIES = ("grpc", "apscheduler", "sqlalchemy", "alembic", "httpx", "httpcore", "aiohttp", "psycopg")
_CHATTY = ("sqlalchemy", "alembic", "httpcore")


class _Binding:
    """``bind``'s context manager: a plain class, not a generator (the remote lane enters one per execution)."""

    __slots__ = ("_fields", "_token")

    def __init__(self, fields: dict[str, Any]) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _bound.set({**_bound.get(), **{k: v for k, v in self._fields.items() if v is not None}})

    def __exit__(self, *exc: object) -> None:
        _bound.reset(self._token)


def bind(**fields: Any) -> contextlib.AbstractContextManager[None]:
    """Adds ``fields`` (None values are left out) to every record logged in this context."""
    return _Binding(fields)


def bound() -> dict[str, Any]:
    """The fields bound in this context."""
    return dict(_bound.get())


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record (without overriding an explicit ``extra``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _bound.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


def install_redaction() -> None:
    """Makes every log record, of any logger and handler, carry its message with credentials replaced
    (URL user-info, ``?api_key=``, bearer tokens): libraries log request URLs as they were given."""
    from schedule_grpc.security.secrets import scrub_text

    factory = logging.getLogRecordFactory()
    if getattr(factory, "redacting", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        message = record.getMessage()
        scrubbed = scrub_text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        return record

    make.redacting = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)


class RedactingFilter(logging.Filter):
    """Replaces credentials recognisable by their shape (URL user-info, ``?api_key=``, bearer tokens) in a
    record's message and string fields: libraries log request URLs (httpx at INFO) as they were given."""

    def filter(self, record: logging.LogRecord) -> bool:
        from schedule_grpc.security.secrets import scrub_text

        message = record.getMessage()
        scrubbed = scrub_text(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, None
        for key, value in vars(record).items():
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, scrub_text(value))
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line with its `extra` fields."""

    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exception"] = self.formatException(record.exc_info)
        return json.dumps(event, default=str)


def configure(level: str, fmt: str) -> None:
    """Routes every logger (ours and the LIBRARIES') to stderr in ``fmt``, with the bound fields."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    install_redaction()
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    numeric = logging.getLevelName(level)
    for name in LIBRARIES:
        library = logging.getLogger(name)
        library.handlers[:] = []  # no library-installed handlers: one line per event, in one format
        library.propagate = True
        library.setLevel(numeric if name not in _CHATTY or numeric <= logging.DEBUG else max(numeric, logging.WARNING))
    # At DEBUG, SQLAlchemy would log every result row, and rows carry task metadata (secrets included): its
    # statements are logged from DEBUG on, their parameters hidden (store.db.make_engine), never the rows.
    sql = logging.INFO if numeric <= logging.DEBUG else max(numeric, logging.WARNING)
    logging.getLogger("sqlalchemy.engine").setLevel(sql)
    logging.captureWarnings(True)  # warnings.warn from any library becomes a structured record too
