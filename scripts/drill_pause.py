"""Pause drill: the leader is frozen (SIGSTOP) past the lease's grace, then resumed; then a follower.

Two or three replica processes on a fresh Postgres database, --tasks webhook tasks '* * * * *' calling
a receiver on loopback. Half-way through the first minute the leader (read from the lease) and its
worker processes are stopped with SIGSTOP for --pause-s seconds, as a stuck process, a long GC
pause or a frozen VM would be, then resumed with SIGCONT; --gap-s later a follower is stopped for
--follower-pause-s seconds and resumed. The drill runs until one more instant has fired, then
counts, per (task, instant): expected, received, doubled and missed, and how late the first
receipt of each occurrence came, for the instants due while the leader was paused and for all.

    python scripts/drill_pause.py [--replicas 2] [--pause-s 150] [--follower-pause-s 60]
        [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

Talks only to loopback (the replicas may call 127.0.0.0/8: SCHEDULE_EGRESS_ALLOW); bounded by the
durations given (about 2 + (pause + gap + follower pause) / 60 + 1 minutes); resumes, stops and
kills every process it starts, and drops its database. Exit status 0 when nothing was missed or
doubled and every occurrence due during the leader's pause arrived within --max-late-s.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drill_common import (
    Processes,
    Receiver,
    drop_database,
    fresh_database,
    insert_tasks,
    next_minute,
    percentiles,
    sleep_until,
    start_replica,
)

DB = "schedule_drill_pause"


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the replica's fork server and workers), from /proc."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo.extend(int(c) for c in (task / "children").read_text().split())
    return found


def signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)


def leader(conninfo: str) -> tuple[int, str] | None:
    """The current lease's (epoch, replica)."""
    with psycopg.connect(conninfo, connect_timeout=2) as conn:
        row = conn.execute("SELECT epoch, replica_id FROM leader_lease").fetchone()
    return (int(row[0]), str(row[1])) if row else None


def wait_epoch_after(conninfo: str, epoch: int, timeout_s: float) -> tuple[int, str, datetime] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with psycopg.connect(conninfo, connect_timeout=2) as conn:
            row = conn.execute(
                "SELECT epoch, replica_id, acquired_at FROM leader_epochs WHERE epoch > %s ORDER BY epoch LIMIT 1",
                (epoch,),
            ).fetchone()
        if row:
            return int(row[0]), str(row[1]), row[2]
        time.sleep(0.05)
    return None


def pause(pid: int, seconds: float, what: str) -> tuple[datetime, datetime]:
    pids = descendants(pid)
    began = datetime.now(UTC)
    signal_all(pids, signal.SIGSTOP)
    print(f"{began:%H:%M:%S} SIGSTOP {what} (pid {pid} and {len(pids) - 1} children) for {seconds:g}s", flush=True)
    try:
        time.sleep(seconds)
    finally:
        signal_all(pids, signal.SIGCONT)
    ended = datetime.now(UTC)
    print(f"{ended:%H:%M:%S} SIGCONT {what}", flush=True)
    return began, ended


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--replicas", type=int, default=2, choices=(2, 3))
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--pause-s", type=float, default=150.0, help="how long the leader is stopped (max 600)")
    parser.add_argument(
        "--gap-s", type=float, default=20.0, help="between the leader's resume and the follower's pause"
    )
    parser.add_argument("--follower-pause-s", type=float, default=60.0, help="0: no follower pause (max 600)")
    parser.add_argument("--grace-s", type=float, default=3.0, help="SCHEDULE_LEADER_GRACE_S of the replicas")
    parser.add_argument("--max-late-s", type=float, default=15.0)
    parser.add_argument("--logs", default="/tmp/drill_pause")
    options = parser.parse_args()
    pause_s = min(max(options.pause_s, 1.0), 600.0)
    follower_pause_s = min(max(options.follower_pause_s, 0.0), 600.0)

    conninfo = fresh_database(options.admin_url, DB)
    first = next_minute(datetime.now(UTC) + timedelta(seconds=20))
    Path(options.logs).mkdir(parents=True, exist_ok=True)
    env = {
        "SCHEDULE_EGRESS_ALLOW": "127.0.0.0/8",  # the receiver is on loopback
        "SCHEDULE_LEADER_GRACE_S": str(options.grace_s),
        "SCHEDULE_HTTP_ADDRESS": "off",
        "SCHEDULE_HEALTH_ADDRESS": "off",
    }
    names = [f"r{i}" for i in range(options.replicas)]
    print(
        f"{options.tasks} webhook tasks '* * * * *' from {first:%H:%M}, {options.replicas} replicas,"
        f" grace {options.grace_s:g}s; logs in {options.logs}",
        flush=True,
    )
    leader_pause: tuple[datetime, datetime] | None = None
    takeover: tuple[int, str, datetime] | None = None
    old: tuple[int, str] | None = None
    try:
        with Receiver() as receiver, Processes() as procs:
            with psycopg.connect(conninfo) as conn:
                insert_tasks(conn, "pause", options.tasks, "* * * * *", first)
                conn.execute("UPDATE scheduled_tasks SET metadata = %s::jsonb", (f'{{"url": "{receiver.url}"}}',))
            logs = {n: open(Path(options.logs) / f"{n}.log", "wb") for n in names}  # noqa: SIM115
            replicas = {n: procs.add(start_replica(conninfo, n, logs[n], **env)) for n in names}
            try:
                sleep_until(first + timedelta(seconds=30))
                old = leader(conninfo)
                assert old is not None, "no leader was elected"
                leader_pause = pause(replicas[old[1]].pid, pause_s, f"leader {old[1]} (epoch {old[0]})")
                takeover = wait_epoch_after(conninfo, old[0], timeout_s=1)
                time.sleep(options.gap_s)
                if follower_pause_s:
                    current = leader(conninfo)
                    followers = [n for n in names if current is None or n != current[1]]
                    follower = next((n for n in followers if n != old[1]), followers[0])  # one not yet paused
                    pause(replicas[follower].pid, follower_pause_s, f"follower {follower}")
                last = next_minute(datetime.now(UTC))
                sleep_until(last + timedelta(seconds=options.max_late_s + 5))
            finally:
                for log in logs.values():
                    log.close()
            received = list(receiver.received)
        with psycopg.connect(conninfo) as conn:
            epochs = conn.execute(
                "SELECT epoch, replica_id, acquired_at, reason FROM leader_epochs ORDER BY epoch"
            ).fetchall()
    finally:
        drop_database(options.admin_url, DB)
    return report(options, first, last, leader_pause, takeover, old, received, epochs)


def report(
    options: argparse.Namespace,
    first: datetime,
    last: datetime,
    leader_pause: tuple[datetime, datetime] | None,
    takeover: tuple[int, str, datetime] | None,
    old: tuple[int, str] | None,
    received: list[tuple[float, dict[str, str]]],
    epochs: list[Any],
) -> int:
    instants = [first + timedelta(minutes=i) for i in range(int((last - first).total_seconds() // 60) + 1)]
    wanted = {t.timestamp() for t in instants}
    arrivals: dict[tuple[str, float], list[float]] = {}
    for at, headers in received:
        instant = datetime.fromisoformat(headers["X-Schedule-Scheduled-For"]).timestamp()
        arrivals.setdefault((headers["X-Schedule-Task"], instant), []).append(at)
    expected = options.tasks * len(instants)
    got = {k: v for k, v in arrivals.items() if k[1] in wanted}
    doubled = sum(1 for v in got.values() if len(v) > 1)
    missed = expected - len(got)
    late = {k: min(v) - k[1] for k, v in got.items()}
    assert leader_pause is not None
    paused_from, paused_to = (t.timestamp() for t in leader_pause)
    during = [s for (_, instant), s in late.items() if paused_from <= instant < paused_to]
    due_during = sum(1 for t in wanted if paused_from <= t < paused_to) * options.tasks
    print(
        f"instants {instants[0]:%H:%M}..{instants[-1]:%H:%M}: expected {expected}  received {len(got)}"
        f"  doubled {doubled}  missed {missed}  receipts outside the instants {len(arrivals) - len(got)}"
    )
    if takeover and old:
        seconds = (takeover[2] - leader_pause[0]).total_seconds()
        print(
            f"leader {old[1]} paused at {leader_pause[0]:%H:%M:%S}; {takeover[1]} led (epoch {takeover[0]})"
            f" {seconds:.1f}s later"
        )
    else:
        print("no takeover during the leader's pause")
    for epoch in epochs:
        print(f"  epoch {epoch[0]} {epoch[1]} at {epoch[2]:%H:%M:%S.%f}: {epoch[3]}")
    over = sum(1 for s in during if s > options.max_late_s)
    if during:
        p50, p95, _, worst = percentiles(during)
        print(
            f"due during the leader's pause: {due_during}, received {len(during)}; lateness p50 {p50:.1f}s"
            f" p95 {p95:.1f}s max {worst:.1f}s; later than {options.max_late_s:g}s: {over}"
        )
    if late:
        p50, p95, _, worst = percentiles(list(late.values()))
        print(f"all occurrences: lateness p50 {p50:.2f}s p95 {p95:.2f}s max {worst:.1f}s")
    per_instant = Counter(k[1] for k in got)
    print(
        "received per instant: "
        + ", ".join(f"{datetime.fromtimestamp(t, UTC):%H:%M} {per_instant.get(t, 0)}" for t in sorted(wanted))
    )
    ok = missed == 0 and doubled == 0 and len(during) == due_during and over == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
