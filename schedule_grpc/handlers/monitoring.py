"""health-check-services and check-rate-limits.

health-check-services probes each configured service, by the gRPC health protocol (``grpc://`` or
``grpcs://host:port[/service.Name]``) or by HTTP GET (``http(s)://...``, up on 2xx), with a deadline,
and reports each status and latency. It runs on the executor's remote lane: the probes run at once on
its event loop (aiohttp, grpc.aio), each connection passing the egress policy (a refused target fails
the attempt, category POLICY); the read and upsert of one ``service_health`` row per service run in a
thread beside the loop. (In a worker process, under the address-space limit, gRPC cannot start its
threads: the probes there crashed the worker.) The last known status of each service is kept in the
platform table ``service_health``, so an alert is returned once per change: when a service goes down,
and when it comes back. Metadata: ``targets`` (object name -> URL; default
SCHEDULE_HEALTH_CHECK_TARGETS), ``timeoutSeconds`` (default 5).

check-rate-limits reads the current windows of the platform usage table and returns an alert listing
every key whose usage is above the threshold. Metadata: ``threshold`` (0-1, default
SCHEDULE_RATE_LIMIT_THRESHOLD), ``table`` (default rate_limit_usage).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from schedule_grpc.domain.errors import InvalidArgument
from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers import common, tables
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed, Lane
from schedule_grpc.handlers.data import HandlerData
from schedule_grpc.handlers.grpc import probe_health
from schedule_grpc.handlers.outbound import OnSessions, Sessions, denial_in, read_bounded, safe_url
from schedule_grpc.security.egress import EgressDenied, EgressPolicy

SCHEMES = ("grpc", "grpcs", "http", "https")
DEFAULT_PROBE_TIMEOUT_S = 5.0


def parse_targets(value: str) -> dict[str, str]:
    """``name=url,name=url`` into {name: url}; raises ValueError saying what is wrong."""
    targets: dict[str, str] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        name, sep, url = entry.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not name:
            raise ValueError(f"{entry!r} is not name=url")
        problem = target_problem(url)
        if problem:
            raise ValueError(f"{name}: {problem}")
        if name in targets:
            raise ValueError(f"{name} is listed twice")
        targets[name] = url
    return targets


def target_problem(url: Any) -> str | None:
    """Why ``url`` cannot be probed, or None."""
    if not isinstance(url, str):
        return "must be a URL string"
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES or not parts.hostname:
        return f"{url!r} must be a {', '.join(s + '://' for s in SCHEMES)} URL"
    if parts.scheme.startswith("grpc") and not parts.port:
        return f"{url!r} needs a port"
    return None


async def probe(url: str, timeout_s: float, egress: EgressPolicy, sessions: Sessions) -> tuple[str, float, str]:
    """(up|down, latency ms, detail) of one service; raises EgressDenied when the policy refuses it."""
    parts = urlsplit(url)
    start = time.perf_counter()
    try:
        if parts.scheme.startswith("grpc"):
            service = parts.path.strip("/")
            status = await probe_health(
                parts.netloc, service, tls=parts.scheme == "grpcs", timeout_s=timeout_s, egress=egress
            )
            up, detail = status == "SERVING", status
        else:
            timeout = aiohttp.ClientTimeout(total=timeout_s)
            async with sessions.get().get(url, allow_redirects=False, timeout=timeout) as response:
                await read_bounded(response, 1024)
                up, detail = 200 <= response.status < 300, f"HTTP {response.status}"
    except HandlerFailed as error:
        if error.category is ErrorCategory.POLICY:
            raise EgressDenied(str(error)) from None
        up, detail = False, str(error)
    except TimeoutError:
        up, detail = False, f"no answer within {timeout_s:g}s"
    except (aiohttp.ClientError, OSError) as error:
        denied = denial_in(error)
        if denied is not None:
            raise denied from None
        up, detail = False, f"{type(error).__name__}: {str(error).replace(url, safe_url(url))}"[:300]
    latency = round((time.perf_counter() - start) * 1000, 1)
    return ("up" if up else "down"), latency, detail


async def probe_all(
    targets: Mapping[str, str], timeout_s: float, egress: EgressPolicy, sessions: Sessions
) -> dict[str, tuple[str, float, str]]:
    """Every target probed at once, on the running loop; EgressDenied if the policy refuses one."""
    names = sorted(targets)
    results = await asyncio.gather(*(probe(targets[n], timeout_s, egress, sessions) for n in names))
    return dict(zip(names, results, strict=True))


class HealthCheckHandler(OnSessions):
    name = "health-check-services"
    category = "monitoring"
    description = (
        "Probes services by the gRPC health protocol (grpc://, grpcs://host:port[/service]) or HTTP GET, with a "
        "deadline; reports status and latency; alerts once per change of state. Metadata: targets (name -> URL; "
        "default SCHEDULE_HEALTH_CHECK_TARGETS), timeoutSeconds (default 5)."
    )

    lane: Lane = "remote"

    def __init__(self, *, database_url: str, targets: Mapping[str, str], egress: EgressPolicy | None = None) -> None:
        self.database_url = database_url
        self.targets = dict(targets)
        self.sessions = Sessions(egress if egress is not None else EgressPolicy(), limit=64)

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        self._options(metadata)

    def _options(self, metadata: Mapping[str, JSON]) -> tuple[dict[str, str], float]:
        targets = metadata.get("targets", self.targets)
        if not isinstance(targets, dict):
            raise InvalidArgument("metadata.targets", "must be an object of service name to URL")
        for name, url in targets.items():
            problem = target_problem(url)
            if problem:
                raise InvalidArgument(f"metadata.targets.{name}", problem)
        timeout = common.number(metadata, "timeoutSeconds", DEFAULT_PROBE_TIMEOUT_S, minimum=0, maximum=300)
        return {str(k): str(v) for k, v in targets.items()}, timeout

    async def run_async(self, context: HandlerContext) -> JSON:
        targets, timeout = self._options(context.metadata)
        timeout = min(timeout, context.timeout.total_seconds())
        try:
            probed = await probe_all(targets, timeout, self.egress, self.sessions)
        except EgressDenied as denied:
            raise HandlerFailed(str(denied), ErrorCategory.POLICY) from None
        # A read and an upsert of one row per service: off the loop, in the default thread pool.
        return await asyncio.to_thread(self._record, context.data, targets, probed, context.scheduled_for)

    def _record(
        self,
        data: HandlerData,
        targets: Mapping[str, str],
        probed: Mapping[str, tuple[str, float, str]],
        now: datetime,
    ) -> JSON:
        """Stores each service's status and returns the report, with an alert per change of state."""
        services: list[dict[str, JSON]] = []
        rows: list[dict[str, Any]] = []
        for name, url in sorted(targets.items()):
            status, latency, detail = probed[name]
            url = safe_url(url) if url.startswith("http") else url
            services.append({"name": name, "url": url, "status": status, "latencyMs": latency, "detail": detail})
            rows.append(
                {
                    "name": name,
                    "target": url,
                    "status": status,
                    "latency_ms": latency,
                    "detail": detail,
                    "checked_at": now,
                    "changed_at": now,
                }
            )
        alerts: list[dict[str, str]] = []
        with data.open(self.database_url) as database:
            before = database.previous_health()
            for service in services:
                previous, current = before.get(str(service["name"])), service["status"]
                if current == "down" and previous != "down":
                    alerts.append(
                        {
                            "subject": f"[schedule] {service['name']} is DOWN",
                            "body": f"{service['name']} ({service['url']}) failed its health check: "
                            f"{service['detail']} (after {service['latencyMs']} ms).",
                        }
                    )
                elif current == "up" and previous == "down":
                    alerts.append(
                        {
                            "subject": f"[schedule] {service['name']} is back UP",
                            "body": f"{service['name']} ({service['url']}) answers again: {service['detail']}.",
                        }
                    )
            database.record_health(rows)
        down = sum(1 for s in services if s["status"] == "down")
        return {"services": services, "up": len(services) - down, "down": down, "alerts": alerts}


class RateLimitHandler:
    name = "check-rate-limits"
    category = "monitoring"
    description = (
        "Reads current rate-limit usage from the platform usage table and alerts about keys above the "
        "threshold. Metadata: threshold (0-1, default SCHEDULE_RATE_LIMIT_THRESHOLD), table (default "
        "rate_limit_usage)."
    )

    def __init__(self, *, database_url: str, threshold: float, allowed_tables: frozenset[str] | None = None) -> None:
        self.database_url = database_url
        self.threshold = threshold
        self.allowed_tables = allowed_tables if allowed_tables is not None else frozenset({"rate_limit_usage"})

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        self._options(metadata)

    def _options(self, metadata: Mapping[str, JSON]) -> tuple[float, str]:
        threshold = common.number(metadata, "threshold", self.threshold, minimum=0, maximum=1)
        return threshold, tables.table(metadata, "table", "rate_limit_usage", self.allowed_tables)

    def run(self, context: HandlerContext) -> JSON:
        threshold, table = tables.at_execution(lambda: self._options(context.metadata))
        with context.data.open(self.database_url) as database:
            usage = database.current_usage(table, context.scheduled_for)
        over = []
        for row in usage:
            ratio = row["used"] / row["limit"] if row["limit"] > 0 else 1.0
            if ratio >= threshold:
                over.append({**row, "ratio": round(ratio, 4)})
        alerts = []
        if over:
            lines = "\n".join(f"{r['key']}: {r['used']}/{r['limit']} ({r['ratio']:.0%})" for r in over)
            alerts.append(
                {
                    "subject": f"[schedule] {len(over)} rate limit(s) above {threshold:.0%}",
                    "body": f"Usage at or above {threshold:.0%} of the limit in the current window:\n{lines}",
                }
            )
        return {"checked": len(usage), "threshold": threshold, "overThreshold": over, "alerts": alerts}
