"""The job function APScheduler stores for each task, as an importable reference (part of the adapter)."""

from __future__ import annotations

# What the job table stores as each job's function ("module:function", never a pickled callable).
# Stored rows name it: moving it needs a migration that empties the job table (as 0010 did).
FIRE_REF = "schedule_grpc.scheduling.jobs:fire"


def fire(task_id: str) -> None:
    """Stands for "record the task's occurrence"; never run as such.

    APScheduler passes a job function no scheduled instant, and the fence needs it, so the adapter's
    own firing pass (``TaskScheduler``) hands the due instants on itself and never runs a job's
    function. Reaching this function means something else ran the job: refuse, so nothing fires
    unfenced.
    """
    raise RuntimeError(f"task {task_id!r} was fired outside the scheduling engine's firing pass")
