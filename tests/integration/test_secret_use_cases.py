"""RunTaskNow's in-thread path (use cases without an executor) resolves secret references and records an
outcome scrubbed of the task's secrets, like the executor does."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy import Engine

from schedule_grpc.domain.models import JSON, ErrorCategory, ExecutionStatus
from schedule_grpc.domain.validation import NewTask
from schedule_grpc.handlers.base import HandlerContext
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.store import db
from schedule_grpc.store.executions import ExecutionStore
from schedule_grpc.store.tasks import TaskStore
from schedule_grpc.usecases.tasks import Tasks
from schedule_grpc.usecases.tenancy import Limits
from tests.support import FakeClock


class Echo:
    """Returns the metadata it was given, as a careless handler might put a request in its result."""

    name = "echo"
    description = "echoes its metadata"
    category = "test"

    def validate(self, metadata: Mapping[str, JSON]) -> None:
        assert isinstance(metadata["headers"]["Authorization"], str)

    def run(self, context: HandlerContext) -> JSON:
        return {"sent": dict(context.metadata)}


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    made = db.make_engine(database_url)
    yield made
    made.dispose()


def test_references_resolve_and_the_recorded_result_holds_no_secret(
    engine: Engine, clock: FakeClock, tmp_path: Path
) -> None:
    (tmp_path / "token").write_text("tok-abcdef-991\n")
    service = Tasks(
        TaskStore(engine),
        ExecutionStore(engine),
        HandlerRegistry([Echo()]),
        clock,
        limits=Limits(secrets_dir=str(tmp_path)),
    )
    ref = {"headers": {"Authorization": {"secretRef": "token", "prefix": "Bearer "}}}
    service.register(None, NewTask(name="echo", schedule="@daily", handler="echo", metadata=ref))
    done = service.run_now(None, "echo")
    assert done.status is ExecutionStatus.SUCCESS
    assert done.result == {"sent": {"headers": {"Authorization": "Bearer <redacted>"}}}
    (tmp_path / "token").unlink()
    failed = service.run_now(None, "echo")
    assert failed.status is ExecutionStatus.FAILED and failed.error_category is ErrorCategory.POLICY
    assert failed.error == "secret 'token' does not exist in SCHEDULE_SECRETS_DIR"
