"""Which async HTTP client the remote lane uses: CPU of one process posting N webhooks at once.

A loopback receiver (aiohttp.web, answering 204) runs in a child process so that only the client's CPU
is counted. For each client, N POSTs are started at once over a pool of --connections connections;
the client's CPU (user + system, this process) and wall time are printed, with the ratio to the best.
Bounded: each round has a 120 s deadline; loopback only.

    python scripts/bench_http_clients.py [--posts 1000] [--connections 100] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx
from aiohttp import web

BODY = {"task": "bench", "attempt": 1}


def _serve(port_queue: multiprocessing.Queue[int]) -> None:
    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(status=204)

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0, backlog=2048)
        await site.start()
        port_queue.put(int(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


async def with_aiohttp(url: str, posts: int, connections: int) -> None:
    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one() -> None:
            async with session.post(url, json=BODY) as response:
                await response.read()
                assert response.status == 204

        await asyncio.gather(*(one() for _ in range(posts)))


async def with_httpx(url: str, posts: int, connections: int) -> None:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:

        async def one() -> None:
            response = await client.post(url, json=BODY)
            assert response.status_code == 204

        await asyncio.gather(*(one() for _ in range(posts)))


def measure(
    run: Callable[[str, int, int], Awaitable[None]], url: str, posts: int, connections: int
) -> tuple[float, float]:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    asyncio.run(asyncio.wait_for(run(url, posts, connections), 120))
    return time.process_time() - cpu0, time.perf_counter() - wall0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()
    posts, connections = min(max(options.posts, 1), 20000), min(max(options.connections, 1), 1000)
    ports: multiprocessing.Queue[int] = multiprocessing.Queue()
    receiver = multiprocessing.Process(target=_serve, args=(ports,), daemon=True)
    receiver.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=30)}/hook"
        clients = {"aiohttp ClientSession": with_aiohttp, "httpx AsyncClient": with_httpx}
        best: dict[str, tuple[float, float]] = {}
        for _ in range(max(1, min(options.rounds, 10))):
            for name, run in clients.items():
                cpu, wall = measure(run, url, posts, connections)
                if name not in best or cpu < best[name][0]:
                    best[name] = (cpu, wall)
        floor = min(cpu for cpu, _ in best.values())
        print(f"{posts} POSTs at once, {connections} connections, best of {options.rounds} rounds (client CPU):")
        for name, (cpu, wall) in best.items():
            print(f"  {name:22} CPU {cpu:6.2f} s  wall {wall:6.2f} s  CPU x{cpu / floor:.1f} of the best")
    finally:
        receiver.terminate()
        receiver.join(5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
