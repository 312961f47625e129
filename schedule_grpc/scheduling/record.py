"""Storing a leader's occurrences behind the fence, counting them, and waking the executor."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

from schedule_grpc.domain.clock import Clock
from schedule_grpc.domain.firing import Occurrence
from schedule_grpc.store.occurrences import EnqueueResult, OccurrenceStore

log = logging.getLogger(__name__)


class Recorder:
    """Stores occurrences with their tasks' next run (one transaction); ``totals`` counts every outcome."""

    def __init__(self, occurrences: OccurrenceStore, clock: Clock, on_enqueued: Callable[[], None]) -> None:
        self._occurrences = occurrences
        self._clock = clock
        self._on_enqueued = on_enqueued
        self.totals = EnqueueResult()

    def record(self, occurrences: Sequence[Occurrence], next_runs: Mapping[str, datetime]) -> None:
        result = self._occurrences.enqueue(occurrences, next_runs, self._clock.now())
        self.totals = EnqueueResult(*(a + b for a, b in zip(_fields(self.totals), _fields(result), strict=True)))
        if result.missed or result.skipped or result.dropped:
            log.info(
                "occurrences not run",
                extra={"missed": result.missed, "skipped": result.skipped, "dropped": result.dropped},
            )
        if result.pending:
            try:
                self._on_enqueued()
            except Exception:
                log.exception("the executor's wake-up failed")


def _fields(result: EnqueueResult) -> tuple[int, ...]:
    return (result.pending, result.missed, result.skipped, result.duplicates, result.dropped)
