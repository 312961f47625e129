"""Failover drill: 3 replicas on Postgres, 200 tasks every minute, kill -9 the leader, restart Postgres.

Bounded: --minutes fire instants (default 3, at most 10), then the replicas are stopped and the
drill database dropped. Talks only to the local Postgres. Prints occurrences expected / fired
(rows) / doubled / missed, the takeover time after the kill and the recovery after the restart.

    python scripts/drill_replicas.py [--minutes 3] [--admin-url postgresql://postgres@127.0.0.1:5432/postgres]

The Postgres restart runs ``pg_ctlcluster --skip-systemctl-redirect 15 main restart`` (--pg-restart).
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drill_common import (
    drop_database,
    fresh_database,
    insert_tasks,
    next_minute,
    sleep_until,
    start_replica,
    stop,
)

DB = "schedule_drill"
TASKS = 200


def current_epoch(conninfo: str) -> tuple[int, str, datetime] | None:
    try:
        with psycopg.connect(conninfo, connect_timeout=1) as conn:
            row = conn.execute(
                "SELECT epoch, replica_id, acquired_at FROM leader_epochs ORDER BY epoch DESC LIMIT 1"
            ).fetchone()
    except psycopg.Error:
        return None
    return (int(row[0]), str(row[1]), row[2]) if row else None


def wait_new_epoch(conninfo: str, after: int, timeout_s: float) -> tuple[int, str, datetime] | None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        epoch = current_epoch(conninfo)
        if epoch is not None and epoch[0] > after:
            return epoch
        time.sleep(0.05)
    return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--minutes", type=int, default=3, help="fire instants to drill (2-10)")
    parser.add_argument("--pg-restart", default="pg_ctlcluster --skip-systemctl-redirect 15 main restart")
    parser.add_argument("--logs", default="/tmp/drill_replicas")
    options = parser.parse_args()
    minutes = min(max(options.minutes, 2), 10)

    conninfo = fresh_database(options.admin_url, DB)
    first = next_minute(datetime.now(UTC) + timedelta(seconds=15))
    instants = [first + timedelta(minutes=i) for i in range(minutes)]
    with psycopg.connect(conninfo) as conn:
        insert_tasks(conn, "drill", TASKS, "* * * * *", first)
    Path(options.logs).mkdir(parents=True, exist_ok=True)
    logs = {f"r{i}": open(Path(options.logs) / f"r{i}.log", "wb") for i in range(3)}  # noqa: SIM115
    replicas = {name: start_replica(conninfo, name, log) for name, log in logs.items()}
    print(f"{TASKS} tasks '* * * * *', {minutes} instants from {first:%H:%M}, 3 replicas; logs in {options.logs}")
    takeover_s = restart_s = None
    try:
        # kill -9 the leader half-way through the first minute
        sleep_until(first + timedelta(seconds=30))
        epoch = current_epoch(conninfo)
        assert epoch is not None, "no leader was elected"
        leader = epoch[1]
        killed_at = datetime.now(UTC)
        os.kill(replicas[leader].pid, signal.SIGKILL)
        replicas[leader].wait()
        new = wait_new_epoch(conninfo, epoch[0], timeout_s=20)
        if new is not None:
            takeover_s = (new[2] - killed_at).total_seconds()
        print(f"killed leader {leader} (epoch {epoch[0]}); new leader {new[1] if new else '-'}: takeover {takeover_s}s")

        # restart Postgres half-way through the second minute
        sleep_until(first + timedelta(minutes=1, seconds=30))
        before = current_epoch(conninfo)
        restarted_at = datetime.now(UTC)
        subprocess.run(shlex.split(options.pg_restart), check=True)
        back = wait_new_epoch(conninfo, before[0] if before else 0, timeout_s=60)
        if back is not None:
            restart_s = (back[2] - restarted_at).total_seconds()
        print(f"restarted Postgres; leader again ({back[1] if back else '-'}) {restart_s}s after the restart began")

        sleep_until(instants[-1] + timedelta(seconds=10))
    finally:
        for process in replicas.values():
            stop(process)
        for log in logs.values():
            log.close()

    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            "SELECT task_id, scheduled_for, status FROM task_executions WHERE trigger = 'schedule'"
        ).fetchall()
        epochs = conn.execute("SELECT count(*) FROM leader_epochs").fetchone()
    expected = TASKS * minutes
    wanted = set(instants)
    keys = [(r[0], r[1]) for r in rows if r[1] in wanted]
    distinct = set(keys)
    statuses: dict[str, int] = {}
    for r in rows:
        statuses[r[2]] = statuses.get(r[2], 0) + 1
    lateness = [r[1] for r in rows if r[1] not in wanted]
    print(
        f"expected {expected}  fired(rows) {len(keys)}  doubled {len(keys) - len(distinct)}  "
        f"missed {expected - len(distinct)}  rows outside the instants {len(lateness)}"
    )
    print(f"row statuses {statuses}  leader epochs {epochs[0] if epochs else 0}")
    print(f"takeover after kill -9: {takeover_s:.2f}s" if takeover_s is not None else "takeover: none")
    print(f"leader after Postgres restart: {restart_s:.2f}s" if restart_s is not None else "restart: no leader")
    drop_database(options.admin_url, DB)
    return 0 if len(keys) == len(distinct) == expected else 1


if __name__ == "__main__":
    sys.exit(main())
