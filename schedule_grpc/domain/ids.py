"""Identifiers that sort by creation time (UUIDv7 layout), so "newest first" is an index scan."""

from __future__ import annotations

import os
import threading
import time

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_id(prefix: str) -> str:
    """A new id such as ``exec-0192f3c4a1b27f3e8c1d2e3f4a5b6c7d``.

    The first 48 bits are the Unix time in milliseconds and the next 12 a counter
    within the millisecond, so ids made by one process sort in creation order and
    ids of different processes sort to the millisecond.
    """
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            _counter += 1
            if _counter > 0xFFF:
                ms += 1
                _counter = 0
        else:
            _counter = 0
        _last_ms = ms
        counter = _counter
    rand = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | rand
    return f"{prefix}-{value:032x}"
