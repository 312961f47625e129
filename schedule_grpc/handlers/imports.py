"""Importers: MCP servers from a registry, public APIs from an APIs.guru-style directory, both at once.

Each importer fetches the whole source first (every page), then upserts it by name and records the
run in ONE transaction: a source failing half-way writes nothing, and importing twice changes nothing.

import-mcp-servers pages through ``GET {base}/v0/servers?limit=&cursor=`` (the official registry's
format: ``servers[].server`` with ``_meta``, ``metadata.nextCursor``; the older flat entries and
``next_cursor`` are read too), keeping the latest version of each server. Metadata: ``registryUrl``,
``pageSize`` (default 100), ``maxPages`` (default 1000).
import-public-apis reads a ``list.json`` (name -> {preferred, versions{info, swaggerUrl, ...}}).
Metadata: ``url``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx

from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers import common, local_http
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed
from schedule_grpc.security.egress import EgressPolicy

OFFICIAL = "io.modelcontextprotocol.registry/official"


def _get_json(client: httpx.Client, url: str, params: Mapping[str, Any] | None = None) -> Any:
    try:
        response = client.get(url, params=params)
    except httpx.TimeoutException as error:
        raise HandlerFailed(f"GET {url} timed out", ErrorCategory.TIMEOUT) from error
    except httpx.HTTPError as error:
        raise HandlerFailed(f"GET {url} failed: {error}", ErrorCategory.NETWORK) from error
    if response.status_code != 200:
        category = (
            ErrorCategory.NETWORK if response.status_code >= 500 or response.status_code == 429 else ErrorCategory.LOGIC
        )
        raise HandlerFailed(f"GET {response.url} answered {response.status_code}", category)
    try:
        return response.json()
    except ValueError as error:
        raise HandlerFailed(f"GET {response.url} did not answer JSON", ErrorCategory.LOGIC) from error


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""


def mcp_server_row(item: Mapping[str, Any], now: datetime) -> dict[str, Any] | None:
    """A registry entry as a row, or None when it has no name or is not the latest version."""
    server = item.get("server", item)
    if not isinstance(server, dict):
        return None
    meta = {**(server.get("_meta") or {}), **(item.get("_meta") or {})}
    official = meta.get(OFFICIAL) or {}
    if official.get("isLatest") is False:
        return None
    name = _text(server.get("name"))
    if not name:
        return None
    repository = server.get("repository") or {}
    version = server.get("version") or (server.get("version_detail") or {}).get("version")
    return {
        "name": name,
        "description": _text(server.get("description")),
        "version": _text(version),
        "status": _text(official.get("status") or server.get("status")) or "active",
        "repository_url": repository.get("url") if isinstance(repository, dict) else None,
        "website_url": server.get("websiteUrl"),
        "packages": server.get("packages") or [],
        "remotes": server.get("remotes") or [],
        "published_at": _instant(official.get("publishedAt")),
        "registry_updated_at": _instant(official.get("updatedAt")),
        "imported_at": now,
    }


def fetch_mcp_servers(
    base_url: str,
    *,
    page_size: int,
    max_pages: int,
    timeout_s: float,
    now: datetime,
    egress: EgressPolicy | None = None,
) -> tuple[list[dict[str, Any]], int, int]:
    """Every server of the registry: (rows, pages read, entries skipped)."""
    url = base_url.rstrip("/") + "/v0/servers"
    rows: dict[str, dict[str, Any]] = {}
    cursor: str | None = None
    seen_cursors: set[str] = set()
    pages = skipped = 0
    with local_http.client(egress, timeout_s=timeout_s) as client:
        while True:
            if pages == max_pages:
                raise HandlerFailed(
                    f"the registry has more than {max_pages} pages (metadata.maxPages)", ErrorCategory.LOGIC
                )
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = cursor
            page = _get_json(client, url, params)
            pages += 1
            if not isinstance(page, dict) or not isinstance(page.get("servers"), list):
                raise HandlerFailed(f"page {pages} of {url} has no servers list", ErrorCategory.LOGIC)
            for item in page["servers"]:
                row = mcp_server_row(item, now) if isinstance(item, dict) else None
                if row is None:
                    skipped += 1
                else:
                    rows[row["name"]] = row
            info = page.get("metadata") or {}
            cursor = info.get("nextCursor") or info.get("next_cursor")
            if not cursor:
                return list(rows.values()), pages, skipped
            if cursor in seen_cursors:
                raise HandlerFailed(f"the registry returned cursor {cursor!r} twice", ErrorCategory.LOGIC)
            seen_cursors.add(cursor)


def fetch_public_apis(
    url: str, *, timeout_s: float, now: datetime, egress: EgressPolicy | None = None
) -> tuple[list[dict[str, Any]], int]:
    """Every API of an APIs.guru list.json: (rows, entries skipped)."""
    with local_http.client(egress, timeout_s=timeout_s) as client:
        listing = _get_json(client, url)
    if not isinstance(listing, dict):
        raise HandlerFailed(f"{url} is not an APIs.guru list (an object of APIs)", ErrorCategory.LOGIC)
    rows, skipped = [], 0
    for name, entry in listing.items():
        versions = entry.get("versions") if isinstance(entry, dict) else None
        preferred = entry.get("preferred") if isinstance(entry, dict) else None
        version = versions.get(preferred) if isinstance(versions, dict) else None
        if not name or not isinstance(version, dict):
            skipped += 1
            continue
        info = version.get("info") or {}
        categories = info.get("x-apisguru-categories") or []
        rows.append(
            {
                "name": name,
                "title": _text(info.get("title")) or name,
                "description": _text(info.get("description")),
                "version": _text(preferred),
                "openapi_url": version.get("swaggerUrl"),
                "categories": [c for c in categories if isinstance(c, str)],
                "added_at": _instant(entry.get("added")),
                "source_updated_at": _instant(version.get("updated")),
                "imported_at": now,
            }
        )
    return rows, skipped


class ImportMcpServersHandler:
    name = "import-mcp-servers"
    category = "imports"
    description = (
        "Imports MCP servers from a registry (GET /v0/servers, cursor pagination) into mcp_servers, in one "
        "transaction. Metadata: registryUrl (default SCHEDULE_MCP_REGISTRY_URL), pageSize, maxPages."
    )

    def __init__(
        self, *, database_url: str, registry_url: str, timeout_s: float, egress: EgressPolicy | None = None
    ) -> None:
        self.database_url = database_url
        self.registry_url = registry_url
        self.timeout_s = timeout_s
        self.egress = egress

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        self._options(metadata)

    def _options(self, metadata: Mapping[str, JSON]) -> tuple[str, int, int]:
        return (
            common.http_url(metadata, "registryUrl", self.registry_url),
            common.integer(metadata, "pageSize", 100, minimum=1, maximum=100),
            common.integer(metadata, "maxPages", 1000, minimum=1, maximum=100_000),
        )

    def run(self, context: HandlerContext) -> JSON:
        url, page_size, max_pages = self._options(context.metadata)
        now = context.scheduled_for
        rows, pages, skipped = fetch_mcp_servers(
            url, page_size=page_size, max_pages=max_pages, timeout_s=self.timeout_s, now=now, egress=self.egress
        )
        with context.data.open(self.database_url) as database:
            inserted, updated = database.save_import(source="mcp-registry", table="mcp_servers", rows=rows, now=now)
        return {
            "source": url,
            "pages": pages,
            "fetched": len(rows),
            "inserted": inserted,
            "updated": updated,
            "skipped": skipped,
        }


class ImportPublicApisHandler:
    name = "import-public-apis"
    category = "imports"
    description = (
        "Imports an API directory in the APIs.guru list.json format into public_apis, in one transaction. "
        "Metadata: url (default SCHEDULE_PUBLIC_APIS_URL)."
    )

    def __init__(self, *, database_url: str, url: str, timeout_s: float, egress: EgressPolicy | None = None) -> None:
        self.database_url = database_url
        self.url = url
        self.timeout_s = timeout_s
        self.egress = egress

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        common.http_url(metadata, "url", self.url)

    def run(self, context: HandlerContext) -> JSON:
        url = common.http_url(context.metadata, "url", self.url)
        now = context.scheduled_for
        rows, skipped = fetch_public_apis(url, timeout_s=self.timeout_s, now=now, egress=self.egress)
        with context.data.open(self.database_url) as database:
            inserted, updated = database.save_import(source="apis-guru", table="public_apis", rows=rows, now=now)
        return {"source": url, "fetched": len(rows), "inserted": inserted, "updated": updated, "skipped": skipped}


class ImportAllSourcesHandler:
    name = "import-all-sources"
    category = "imports"
    description = (
        "Runs every importer (MCP servers, public APIs), each in its own transaction, with one result; fails "
        "naming the sources that failed. Metadata: mcpServers and publicApis (each importer's metadata)."
    )

    def __init__(self, *, importers: Mapping[str, ImportMcpServersHandler | ImportPublicApisHandler]) -> None:
        self.importers = dict(importers)

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        from schedule_grpc.domain.errors import InvalidArgument

        for key, importer in self.importers.items():
            sub = metadata.get(key, {})
            if not isinstance(sub, dict):
                raise InvalidArgument(f"metadata.{key}", "must be an object")
            try:
                importer.validate(sub)
            except InvalidArgument as error:
                raise InvalidArgument(
                    error.field.replace("metadata.", f"metadata.{key}.", 1), error.description
                ) from error

    def run(self, context: HandlerContext) -> JSON:
        import dataclasses

        results: dict[str, JSON] = {}
        failures: dict[str, str] = {}
        for key, importer in self.importers.items():
            sub = dataclasses.replace(context, metadata=context.metadata.get(key, {}))
            try:
                results[key] = importer.run(sub)
            except HandlerFailed as error:
                failures[key] = str(error)
        if failures:
            done = ", ".join(f"{k}: {v['fetched']} rows" for k, v in results.items()) or "none"
            problems = "; ".join(f"{k}: {v}" for k, v in failures.items())
            raise HandlerFailed(f"import failed for {problems} (imported: {done})", ErrorCategory.NETWORK)
        return results
