"""Structured logs: one JSON object per line, with the bound task and execution ids, for libraries too."""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from schedule_grpc.observability import logs
from schedule_grpc.store.db import make_engine


@pytest.fixture
def configured() -> Iterator[None]:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    names = [*logs.LIBRARIES, "sqlalchemy.engine"]
    levels = {name: logging.getLogger(name).level for name in names}
    yield
    root.handlers[:], level = saved
    root.setLevel(level)
    for name, library_level in levels.items():
        logging.getLogger(name).setLevel(library_level)
    logging.captureWarnings(False)


def _lines(err: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in err.splitlines() if line.strip()]


def test_bound_ids_reach_our_records_and_the_libraries(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("INFO", "json")
    with logs.bind(task_id="task-1", task_name="report", execution_id="exec-9", unset=None):
        logging.getLogger("schedule_grpc.execution.executor").info("finished", extra={"status": "success"})
        logging.getLogger("apscheduler.scheduler").warning("job missed")
        logging.getLogger("grpc._server").error("stream broke")
        logging.getLogger("sqlalchemy.pool").warning("connection invalidated")
        logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")  # SQL echo stays off at INFO
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    logging.getLogger("schedule_grpc").info("outside")
    records = _lines(capsys.readouterr().err)
    assert [r["logger"] for r in records] == [
        "schedule_grpc.execution.executor",
        "apscheduler.scheduler",
        "grpc._server",
        "sqlalchemy.pool",
        "py.warnings",
        "schedule_grpc",
    ]
    for record in records[:-1]:
        assert (record["task_id"], record["task_name"], record["execution_id"]) == ("task-1", "report", "exec-9")
        assert "unset" not in record
    assert records[0]["status"] == "success" and records[0]["level"] == "info"
    assert "execution_id" not in records[-1] and logs.bound() == {}


def test_debug_turns_on_sql_and_text_format_is_for_humans(configured: None, capsys: pytest.CaptureFixture[str]) -> None:
    logs.configure("DEBUG", "text")
    logging.getLogger("sqlalchemy.engine.Engine").info("SELECT 1")
    err = capsys.readouterr().err
    assert "INFO sqlalchemy.engine.Engine: SELECT 1" in err


def test_debug_logs_sql_but_neither_its_parameters_nor_its_rows(
    configured: None, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    logs.configure("DEBUG", "text")
    database = make_engine(f"sqlite:///{tmp_path / 'logged.db'}")
    try:
        with database.connect() as conn:
            conn.execute(text("CREATE TABLE t (v TEXT)"))
            conn.execute(text("INSERT INTO t (v) VALUES (:v)"), {"v": "param-s3cret"})
            conn.execute(text("INSERT INTO t (v) VALUES ('row-s3cret')"))
            rows = conn.execute(text("SELECT v FROM t ORDER BY v")).scalars().all()
    finally:
        database.dispose()
    assert rows == ["param-s3cret", "row-s3cret"]
    err = capsys.readouterr().err
    assert "SELECT v FROM t" in err  # SQL is what DEBUG is for
    assert "param-s3cret" not in err
    assert err.count("row-s3cret") == 1  # in the literal INSERT statement only, never as a result row
