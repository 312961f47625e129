"""Embedding handlers: find rows without an embedding, embed their text through an OpenAI-compatible
``/v1/embeddings`` endpoint in batches, and store the vectors (JSON arrays) on the rows.

Metadata (all optional): ``table``, ``idColumn``, ``textColumn``, ``embeddingColumn``, ``modelColumn``,
``embeddedAtColumn``, ``batchSize`` (texts per request; default SCHEDULE_EMBEDDINGS_BATCH_SIZE),
``maxRows`` (rows per run, default 10000). A batch the provider rejects is retried row by row; rows
that still fail are reported in ``failed`` and keep no embedding, so the next run tries them again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import httpx

from schedule_grpc.domain.models import JSON, ErrorCategory
from schedule_grpc.handlers import common, local_http, tables
from schedule_grpc.handlers.base import HandlerContext, HandlerFailed
from schedule_grpc.handlers.data import EmbeddingColumns
from schedule_grpc.security.egress import EgressPolicy

DEFAULT_MAX_ROWS = 10_000
# Failed rows listed in the result; the count covers all of them.
MAX_REPORTED_FAILURES = 50


class ProviderError(Exception):
    """The embeddings provider refused or could not be reached."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def embed(
    url: str,
    model: str,
    api_key: str,
    texts: Sequence[str],
    *,
    timeout_s: float,
    egress: EgressPolicy | None = None,
) -> list[list[float]]:
    """One ``POST /v1/embeddings`` call; the vectors in input order."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with local_http.client(egress, timeout_s=timeout_s) as client:
            response = client.post(url, json={"model": model, "input": list(texts)}, headers=headers)
    except httpx.HTTPError as error:
        raise ProviderError(f"embeddings endpoint unreachable: {error}", transient=True) from error
    if response.status_code != 200:
        raise ProviderError(
            f"embeddings endpoint answered {response.status_code}: {response.text[:200]}",
            transient=response.status_code in (408, 429) or response.status_code >= 500,
        )
    try:
        data = sorted(response.json()["data"], key=lambda item: item["index"])
        vectors = [[float(x) for x in item["embedding"]] for item in data]
    except (ValueError, KeyError, TypeError) as error:
        raise ProviderError(f"embeddings response is not in the OpenAI format: {error}", transient=False) from error
    if len(vectors) != len(texts) or not all(vectors):
        raise ProviderError(f"asked for {len(texts)} embeddings, got {len(vectors)}", transient=False)
    return vectors


class EmbeddingsHandler:
    """Embeds the text of rows that have no embedding yet."""

    category = "ai"

    def __init__(
        self,
        *,
        name: str,
        description: str,
        database_url: str,
        table: str,
        text_column: str,
        url: str,
        model: str,
        api_key: str,
        batch_size: int,
        timeout_s: float,
        allowed_tables: frozenset[str] | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.name = name
        self.allowed_tables = allowed_tables if allowed_tables is not None else frozenset({table})
        self.egress = egress
        self.database_url = database_url
        self.table = table
        self.text_column = text_column
        self.url = url
        self.model = model
        self.api_key = api_key
        self.batch_size = batch_size
        self.timeout_s = timeout_s
        self.description = (
            f"{description} Provider: SCHEDULE_EMBEDDINGS_URL (OpenAI-compatible). Metadata: table (default "
            f"{table}), idColumn, textColumn (default {text_column}), embeddingColumn, modelColumn, "
            "embeddedAtColumn, batchSize, maxRows."
        )

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        self._options(metadata)

    def _options(self, metadata: Mapping[str, JSON]) -> tuple[EmbeddingColumns, int, int]:
        columns = EmbeddingColumns(
            table=tables.table(metadata, "table", self.table, self.allowed_tables),
            id=common.identifier(metadata, "idColumn", "id"),
            text=common.identifier(metadata, "textColumn", self.text_column),
            embedding=common.identifier(metadata, "embeddingColumn", "embedding"),
            model=common.identifier(metadata, "modelColumn", "embedding_model"),
            embedded_at=common.identifier(metadata, "embeddedAtColumn", "embedded_at"),
        )
        batch = common.integer(metadata, "batchSize", self.batch_size, minimum=1, maximum=2048)
        max_rows = common.integer(metadata, "maxRows", DEFAULT_MAX_ROWS, minimum=1, maximum=1_000_000)
        return columns, batch, max_rows

    def run(self, context: HandlerContext) -> JSON:
        if not self.url:
            raise HandlerFailed("SCHEDULE_EMBEDDINGS_URL is not set: no embeddings provider", ErrorCategory.LOGIC)
        columns, batch_size, max_rows = tables.at_execution(lambda: self._options(context.metadata))
        embedded = seen = 0
        failed: list[dict[str, str]] = []
        after: str | None = None
        with context.data.open(self.database_url) as database:
            while seen < max_rows:
                rows = database.rows_missing_embeddings(columns, after_id=after, limit=min(batch_size, max_rows - seen))
                if not rows:
                    break
                seen += len(rows)
                after = rows[-1][0]
                vectors, errors = self._embed_batch(rows)
                failed.extend(errors)
                if vectors:
                    embedded += database.store_embeddings(columns, vectors, model=self.model, now=context.scheduled_for)
        if failed and not embedded:
            raise HandlerFailed(
                f"no embedding could be generated; {len(failed)} rows failed, first: {failed[0]['error']}",
                ErrorCategory.NETWORK,
            )
        return {
            "embedded": embedded,
            "failedCount": len(failed),
            "failed": failed[:MAX_REPORTED_FAILURES],
            "table": columns.table,
            "model": self.model,
        }

    def _embed_batch(self, rows: Sequence[tuple[str, str]]) -> tuple[dict[str, list[float]], list[dict[str, str]]]:
        """Vectors by row id, and the rows that failed with why. A refused batch is retried row by row."""
        try:
            texts = [t for _, t in rows]
            vectors = embed(self.url, self.model, self.api_key, texts, timeout_s=self.timeout_s, egress=self.egress)
            return {row_id: v for (row_id, _), v in zip(rows, vectors, strict=True)}, []
        except ProviderError as error:
            if len(rows) == 1:
                return {}, [{"id": rows[0][0], "error": str(error)}]
            if error.transient:  # the provider is down or overloaded: do not hammer it row by row
                return {}, [{"id": row_id, "error": str(error)} for row_id, _ in rows]
        result: dict[str, list[float]] = {}
        failures: list[dict[str, str]] = []
        for row in rows:
            one, errors = self._embed_batch([row])
            result.update(one)
            failures.extend(errors)
        return result, failures


def embeddings_handlers(
    database_url: str,
    *,
    url: str,
    model: str,
    api_key: str,
    batch_size: int,
    timeout_s: float,
    allowed: Mapping[str, frozenset[str]] | None = None,
    egress: EgressPolicy | None = None,
) -> list[EmbeddingsHandler]:
    """The seed's two embedding handlers; ``allowed`` overrides the tables each may touch (default: its own)."""
    shared = {
        "egress": egress,
        "database_url": database_url,
        "url": url,
        "model": model,
        "api_key": api_key,
        "batch_size": batch_size,
        "timeout_s": timeout_s,
    }
    handlers = [
        EmbeddingsHandler(
            name="generate-missing-embeddings",
            description="Generates embeddings for entities that have none.",
            table="entities",
            text_column="content",
            **shared,  # type: ignore[arg-type]
        ),
        EmbeddingsHandler(
            name="generate-missing-chunk-embeddings",
            description="Generates embeddings for document chunks that have none.",
            table="document_chunks",
            text_column="content",
            **shared,  # type: ignore[arg-type]
        ),
    ]
    for handler in handlers:
        handler.allowed_tables = tables.allowed_tables(handler.name, [handler.table], allowed or {})
    return handlers
