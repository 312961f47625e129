"""Cost of write-only secrets, each against a floor measured in the same run:

- listings: converting --tasks tasks to their answer with the redaction of their metadata, against the
  same conversion without it. Each task has webhook-like metadata (a URL with a query, headers with an
  Authorization value, a body); a ListTasks page is up to 1000 tasks.
- recording: scrubbing an outcome (a 4 KiB response body, the http handler's cap) of the task's secrets,
  against the JSON encoding the store does of the same outcome anyway.

Prints the best of --rounds for each, the ratios and the microseconds added per task or outcome.

    python scripts/bench_redaction.py [--tasks 1000] [--rounds 15]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from unittest import mock

from schedule_grpc.api import convert
from schedule_grpc.domain.models import ExecutionStatus, Outcome, Task
from schedule_grpc.security import secrets

METADATA = {
    "url": "https://billing.example.com/hooks/tick?page=2&api_key=k-123456",
    "method": "POST",
    "headers": {"X-Trace": "abc", "Authorization": "Bearer abcdefgh12345"},
    "body": {"source": "schedule", "attempt": 1},
}


def best_of(rounds: int, work: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    now = datetime.now(UTC)
    tasks = [
        Task(f"t{i}", f"task-{i}", "*/5 * * * *", "http", True, METADATA, "UTC", now, now) for i in range(args.tasks)
    ]

    def convert_all() -> object:
        return [convert.task_to_pb(t) for t in tasks]

    redacted = best_of(args.rounds, convert_all)
    with mock.patch.object(secrets, "redact", lambda metadata: metadata):
        floor = best_of(args.rounds, convert_all)
    print(f"{args.tasks} tasks to answers: redacted {redacted * 1000:.1f} ms, floor {floor * 1000:.1f} ms")
    print(f"ratio {redacted / floor:.2f}, +{(redacted - floor) / args.tasks * 1e6:.1f} us per task")

    body = "".join(f"line {i}: status ok, id=r{i} at https://example.com/items/{i}\n" for i in range(80))[:4096]
    outcome = Outcome(ExecutionStatus.SUCCESS, now, result={"status": 200, "body": body})
    n = args.tasks
    scrubbed = best_of(args.rounds, lambda: [secrets.scrub_outcome(outcome, METADATA) for _ in range(n)])
    encoded = best_of(args.rounds, lambda: [json.dumps(outcome.result) for _ in range(n)])
    print(f"{n} outcomes (4 KiB body): scrubbed {scrubbed * 1000:.1f} ms, JSON encoding {encoded * 1000:.1f} ms")
    print(f"ratio {scrubbed / encoded:.2f}, {scrubbed / n * 1e6:.1f} us per outcome")


if __name__ == "__main__":
    main()
