"""The job function APScheduler stores for each task, as an importable reference."""

from __future__ import annotations

# What the job table stores as each job's function ("module:function", never a pickled callable).
FIRE_REF = "schedule_grpc.scheduling.jobs:fire"


def fire(task_id: str) -> None:
    """Stands for "record the task's occurrence"; never run as such.

    APScheduler passes a job function no scheduled instant, and the fence needs it, so the engine's
    executor (``OccurrenceExecutor``) records the occurrences of a due job itself. Reaching this
    function means another executor ran the job: refuse, so nothing fires unfenced.
    """
    raise RuntimeError(f"task {task_id!r} was fired outside the scheduling engine's executor")
