"""The scheduling engine: on the elected leader, fires every enabled task at its instants.

Only this package imports APScheduler, and only ``scheduling/apscheduler.py`` (the adapter) touches
its internals; the word "job" (APScheduler's) stays inside the adapter and ``jobs.py``.

**Who owns "next run".** A task's next fire instant is kept in two places; one is the truth:

* ``scheduled_tasks.next_run`` (the tasks table) is the truth. It is written (1) by the use cases
  when a task is registered, changed or enabled (the first instant after now; ``None`` when
  disabled), and (2) by the leader, in the same transaction as the occurrences it stores behind
  the fence (``OccurrenceStore.enqueue``), when a firing pass or a reconciliation's catch-up moved
  past an instant. A task beyond the horizon lives only there.
* The adapter's *entry* (APScheduler's job row and its ``next_run_time``) is derived, and only for
  tasks due within the horizon: the reconciler copies it from the tasks table (``next_run``, or the
  first instant after a catch-up), and a firing pass moves it on only after the tasks table has
  taken the same value; a crash between the two replays instants the fence ignores, and the next
  reconciliation copies the truth again.

One computation, one clock: each next instant is computed once, from the previous *scheduled*
instant (``CronSchedule.next_after``), by whoever moves past it (the pass's ``Due.next_run`` or the
reconciler's ``catch_up``) and handed to both places. Every "now" of the engine, the firing pass's
included, is the injected ``Clock``; the monotonic clock only times the lease's silence.
"""
