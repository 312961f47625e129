"""The handlers a replica runs, with the history cleanup handler's work: the Retention use case on stores of
its own, in a worker process."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schedule_grpc.handlers.registry import HandlerRegistry, default_registry
from schedule_grpc.settings import Settings
from schedule_grpc.store import platform
from schedule_grpc.store.events import EventStore
from schedule_grpc.store.retention import RetentionStore
from schedule_grpc.usecases.retention import Retention, RetentionPolicy, RetentionReport


@dataclass(frozen=True)
class _At:
    """The clock of one run: "now" is the occurrence's scheduled instant, so a retry deletes the same rows."""

    instant: datetime

    def now(self) -> datetime:
        return self.instant


@dataclass(frozen=True)
class PurgeHistory:
    """The cleanup handler's work (``handlers.maintenance.HistoryPurge``): one run on ``database_url``
    with a small connection pool of its own, since it runs in a worker process."""

    database_url: str
    policy: RetentionPolicy

    def __call__(self, now: datetime) -> RetentionReport:
        with platform.connect(self.database_url) as database:
            return Retention(RetentionStore(database), EventStore(database), self.policy, _At(now)).run()


def handler_registry(settings: Settings) -> HandlerRegistry:
    """Every handler a replica runs: the built-in ones with the retention run their cleanup task performs,
    and installed plugins."""
    return default_registry(
        settings, purge=PurgeHistory(settings.database_url, RetentionPolicy.from_settings(settings))
    )
