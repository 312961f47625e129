"""verify-imported-data: integrity checks on what the importers stored (the imports family).

Checks: required fields present, URLs well-formed, no duplicates (names equal but for case, or two
APIs with the same OpenAPI document), at least one recorded import per source, and no sudden drop in
count (the latest import, or the table now, below ``1 - maxDrop`` of the previous import). When any
check fails the execution fails with the report. Metadata: ``maxDrop`` (0-1, default 0.25).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers import common
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed

# table -> (import source, required fields, URL fields, a field that must be unique besides the name)
CHECKS: dict[str, tuple[str, tuple[str, ...], tuple[str, ...], str | None]] = {
    "mcp_servers": ("mcp-registry", ("name", "description", "version"), ("repository_url", "website_url"), None),
    "public_apis": ("apis-guru", ("name", "title", "version", "openapi_url"), ("openapi_url",), "openapi_url"),
}
# Problems listed per check in the report; the counts cover all of them.
MAX_EXAMPLES = 5


def _problems(
    rows: list[dict[str, Any]], required: tuple[str, ...], urls: tuple[str, ...], unique: str | None
) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}

    def flag(check: str, name: str) -> None:
        found.setdefault(check, []).append(name)

    for row in rows:
        for field in required:
            if not (isinstance(row[field], str) and row[field].strip()):
                flag(f"missing {field}", row["name"])
        for field in urls:
            if row[field] is not None and not common.is_http_url(row[field]):
                flag(f"malformed {field}", row["name"])
    key: Callable[[dict[str, Any]], str] = lambda r: str(r["name"]).lower()  # noqa: E731
    for lowered, n in Counter(map(key, rows)).items():
        if n > 1:
            flag("names equal but for case", lowered)
    if unique:
        for value, n in Counter(r[unique] for r in rows if r[unique]).items():
            if n > 1:
                flag(f"duplicate {unique}", str(value))
    return found


class VerifyImportedDataHandler:
    name = "verify-imported-data"
    category = "imports"
    description = (
        "Checks the imported data (required fields, well-formed URLs, duplicates, sudden drops in count) and "
        "fails with a report when a check does not hold. Metadata: maxDrop (0-1, default 0.25)."
    )

    def __init__(self, *, database_url: str) -> None:
        self.database_url = database_url

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        common.number(metadata, "maxDrop", 0.25, minimum=0, maximum=1)

    def run(self, context: HandlerContext) -> JSON:
        max_drop = common.number(context.metadata, "maxDrop", 0.25, minimum=0, maximum=1)
        report: dict[str, JSON] = {}
        failing = 0
        with context.data.open(self.database_url) as database:
            for table, (source, required, urls, unique) in CHECKS.items():
                rows = database.all_rows(table)
                found = _problems(rows, required, urls, unique)
                runs = database.recent_runs(source)
                if not runs:
                    found["no import recorded"] = [source]
                else:
                    floor = (1 - max_drop) * (runs[1] if len(runs) > 1 else runs[0])
                    if len(runs) > 1 and runs[0] < floor:
                        found["count dropped"] = [f"latest import {runs[0]} rows, previous {runs[1]}"]
                    if len(rows) < (1 - max_drop) * runs[0]:
                        found.setdefault("count dropped", []).append(f"{len(rows)} rows now, last import {runs[0]}")
                failing += sum(len(v) for v in found.values())
                report[table] = {
                    "rows": len(rows),
                    "problems": {check: {"count": len(v), "examples": v[:MAX_EXAMPLES]} for check, v in found.items()},
                }
        if failing:
            summary = "; ".join(
                f"{table}: {check} ({p['count']}: {', '.join(p['examples'])})"
                for table, part in report.items()
                for check, p in part["problems"].items()
            )
            raise HandlerFailed(f"imported data failed {failing} check(s): {summary}", ErrorCategory.LOGIC)
        return {"ok": True, "tables": report}
