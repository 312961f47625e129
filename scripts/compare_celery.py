"""The Celery side of scripts/compare.py: an app whose beat fires COMPARE_TASKS entries at one minute.

Configured from the environment by compare.py (loopback Redis broker, a queue of its own, the
receiver's URL, the task names' prefix, the due minute); each task POSTs to the receiver, as the
service's http handler does.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from celery import Celery
from celery.schedules import crontab
from webhook_receiver import post

app = Celery("compare", broker=os.environ.get("COMPARE_BROKER", "redis://127.0.0.1:6379/11"))
_queue = os.environ.get("COMPARE_QUEUE", "compare")
app.conf.update(
    task_default_queue=_queue,
    timezone="UTC",
    enable_utc=True,
    worker_hijack_root_logger=False,
    broker_connection_retry_on_startup=True,
)


@app.task(name="compare.fire")  # type: ignore[untyped-decorator]
def fire(index: int, scheduled_for: str) -> None:
    """POSTs its scheduled instant to the receiver (its receipt time is the measurement)."""
    post(os.environ["COMPARE_URL"], scheduled_for, f"{os.environ.get('COMPARE_PREFIX', 'celery')}-{index}")


if "COMPARE_DUE" in os.environ:
    _due = datetime.fromisoformat(os.environ["COMPARE_DUE"]).astimezone(UTC)
    app.conf.beat_schedule = {
        f"task-{i}": {
            "task": "compare.fire",
            "schedule": crontab(minute=str(_due.minute), hour=str(_due.hour)),
            "args": (i, _due.isoformat()),
        }
        for i in range(int(os.environ.get("COMPARE_TASKS", "1000")))
    }
