"""The embedding handlers embed rows without vectors through a real OpenAI-compatible endpoint."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, select

from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain.models import ErrorCategory
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.settings import Settings
from schedule_grpc.store.platform_tables import document_chunks, entities
from tests.handler_support import EmbeddingsEndpoint, JsonServer, context, vector_of

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _handler(database_url: str, server: JsonServer, name: str, batch: int = 3):  # type: ignore[no-untyped-def]
    settings = Settings(
        database_url=database_url,
        embeddings_url=f"{server.base}/v1/embeddings",
        embeddings_model="test-embed-1",
        embeddings_api_key="sk-test",
        embeddings_batch_size=batch,
        egress_allow="127.0.0.0/8",  # the provider is a loopback server
    )
    return handler_registry(settings).get(name)


def test_missing_embeddings_are_generated_in_batches_and_existing_ones_kept(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    provider = EmbeddingsEndpoint()
    json_server.routes["/v1/embeddings"] = provider
    with engine.begin() as conn:
        conn.execute(
            insert(entities),
            [
                *({"id": f"e{i:02}", "type": "doc", "name": f"n{i}", "content": f"text {i}"} for i in range(7)),
                {"id": "e90", "type": "doc", "name": "empty", "content": None},
            ],
        )
        conn.execute(insert(entities).values(id="e91", type="doc", name="done", content="x", embedding=[1.0]))
    result = _handler(database_url, json_server, "generate-missing-embeddings").run(context("x", at=NOW))
    assert result["embedded"] == 7 and result["failedCount"] == 0 and result["model"] == "test-embed-1"
    assert [len(r["input"]) for r in provider.requests] == [3, 3, 1]
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(select(entities))}
    assert rows["e03"].embedding == vector_of("text 3")  # the vector of its own text, whatever the order
    assert rows["e03"].embedding_model == "test-embed-1" and rows["e03"].embedded_at == NOW
    assert rows["e90"].embedding is None and rows["e91"].embedding == [1.0]


def test_rows_the_provider_refuses_are_reported_and_retried_next_run(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    provider = EmbeddingsEndpoint()
    json_server.routes["/v1/embeddings"] = provider
    with engine.begin() as conn:
        conn.execute(
            insert(document_chunks),
            [
                {"id": f"c{i}", "document_id": "d1", "chunk_index": i, "content": "POISON" if i == 1 else f"chunk {i}"}
                for i in range(4)
            ],
        )
    handler = _handler(database_url, json_server, "generate-missing-chunk-embeddings", batch=4)
    result = handler.run(context("x", at=NOW))
    assert result["embedded"] == 3 and result["failedCount"] == 1
    assert result["failed"][0]["id"] == "c1" and "400" in result["failed"][0]["error"]
    with engine.connect() as conn:
        missing = conn.execute(select(document_chunks.c.id).where(document_chunks.c.embedding.is_(None))).scalars()
        assert list(missing) == ["c1"]
    # the refused row is not lost: the next run tries it again (and only it)
    provider.requests.clear()
    with pytest.raises(HandlerFailed):
        handler.run(context("x", at=NOW))
    assert provider.requests == [{"model": "test-embed-1", "input": ["POISON"]}]


def test_a_provider_that_is_down_fails_the_run_as_a_network_error(
    database_url: str, engine: Engine, json_server: JsonServer
) -> None:
    json_server.routes["/v1/embeddings"] = EmbeddingsEndpoint(status=503)
    with engine.begin() as conn:
        conn.execute(insert(entities), [{"id": f"e{i}", "type": "t", "name": "n", "content": "c"} for i in range(5)])
    handler = _handler(database_url, json_server, "generate-missing-embeddings")
    with pytest.raises(HandlerFailed) as caught:
        handler.run(context("x", at=NOW))
    assert caught.value.category is ErrorCategory.NETWORK
    assert len(json_server.routes["/v1/embeddings"].requests) == 2  # type: ignore[attr-defined]  # no row-by-row storm


def test_without_a_provider_the_run_fails_saying_what_to_set(database_url: str) -> None:
    handler = handler_registry(Settings(database_url=database_url)).get("generate-missing-embeddings")
    assert handler is not None
    with pytest.raises(HandlerFailed, match="SCHEDULE_EMBEDDINGS_URL"):
        handler.run(context("x", at=NOW))
