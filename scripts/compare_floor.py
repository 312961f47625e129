"""The floor of scripts/compare.py: a bare asyncio client (aiohttp) posting N webhooks at once at an instant.

Run as a process of its own by compare.py: it sleeps until ``--due``, then starts every POST at once over
a pool of ``--connections`` connections, with the same headers the service sends. Whatever lateness the
receiver sees here is the cost of the POSTs themselves on this machine; no scheduler can do better.

    python scripts/compare_floor.py --url URL --due ISO --tasks N --prefix P [--connections 100]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from datetime import UTC, datetime

import aiohttp


async def burst(url: str, due: datetime, tasks: int, prefix: str, connections: int) -> int:
    scheduled = due.isoformat().replace("+00:00", "Z")
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:

        async def one(i: int) -> bool:
            headers = {
                "X-Schedule-Scheduled-For": scheduled,
                "X-Schedule-Task": f"{prefix}-{i}",
                "Idempotency-Key": f"{prefix}-{i}:{scheduled}",
            }
            async with session.post(url, json={}, headers=headers) as response:
                await response.read()
                return response.status < 300

        delay = due.timestamp() - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        results = await asyncio.gather(*(one(i) for i in range(1, tasks + 1)), return_exceptions=True)
    return sum(1 for r in results if r is True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--due", required=True)
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--prefix", default="floor")
    parser.add_argument("--connections", type=int, default=100)
    options = parser.parse_args()
    due = datetime.fromisoformat(options.due).astimezone(UTC)
    tasks, connections = min(max(options.tasks, 1), 20000), min(max(options.connections, 1), 2000)
    ok = asyncio.run(burst(options.url, due, tasks, options.prefix, connections))
    return 0 if ok == tasks else 1


if __name__ == "__main__":
    sys.exit(main())
