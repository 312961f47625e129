"""Pure pieces: settings, ids, page tokens, validation limits, error mapping, categories, logs."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import grpc
import pytest

from schedule_grpc.api.status import ERROR_CODES, codes_for, to_status
from schedule_grpc.app.handlers import handler_registry
from schedule_grpc.domain import errors, tokens, validation
from schedule_grpc.domain.ids import new_id
from schedule_grpc.domain.models import ErrorCategory
from schedule_grpc.execution.runner import categorize
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.handlers.registry import HandlerRegistry
from schedule_grpc.observability.logs import JsonFormatter
from schedule_grpc.settings import Settings, SettingsError


def test_settings_defaults_match_the_readme() -> None:
    settings = Settings.from_env({})
    assert settings.grpc_address == "[::]:50051"
    assert settings.database_url == "sqlite:///schedule.db"
    assert settings.migrate_on_start is True


def test_settings_parse_and_normalise() -> None:
    settings = Settings.from_env(
        {
            "SCHEDULE_DATABASE_URL": "postgresql://u@h/db",
            "SCHEDULE_MIGRATE_ON_START": "off",
            "SCHEDULE_GRPC_MAX_WORKERS": "4",
            "SCHEDULE_LOG_FORMAT": "text",
        }
    )
    assert settings.database_url == "postgresql+psycopg://u@h/db"
    assert settings.migrate_on_start is False and settings.grpc_max_workers == 4


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SCHEDULE_DATABASE_URL", "mysql://x"),
        ("SCHEDULE_MIGRATE_ON_START", "maybe"),
        ("SCHEDULE_GRPC_MAX_WORKERS", "0"),
        ("SCHEDULE_HEALTH_INTERVAL_S", "soon"),
        ("SCHEDULE_LOG_LEVEL", "LOUD"),
        ("SCHEDULE_FIRE_LEAD_S", "-1"),
        ("SCHEDULE_FIRE_LEAD_S", "11"),
    ],
)
def test_bad_settings_name_the_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        Settings.from_env({variable: value})


def test_the_fire_lead_used_stays_within_a_third_of_the_executor_lease() -> None:
    assert Settings.from_env({}).fire_lead_used_s == 1.0
    assert Settings.from_env({"SCHEDULE_FIRE_LEAD_S": "0"}).fire_lead_used_s == 0.0
    short = Settings.from_env({"SCHEDULE_FIRE_LEAD_S": "5", "SCHEDULE_EXECUTOR_LEASE_S": "6"})
    assert short.fire_lead_used_s == 2.0


def test_every_setting_is_documented() -> None:
    assert all(doc for _, _, doc in Settings.describe())


def test_ids_sort_in_creation_order() -> None:
    ids = [new_id("exec") for _ in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(i.startswith("exec-") and len(i) == 37 for i in ids)


def test_page_tokens_round_trip_and_reject_foreign_ones() -> None:
    token = tokens.encode("tasks", "b/c")
    assert tokens.decode(token, "tasks") == "b/c"
    assert tokens.decode("", "tasks") is None
    for bad in ["%%%", tokens.encode("recent", "x"), "eyJ4IjoxfQ"]:
        with pytest.raises(errors.InvalidArgument) as caught:
            tokens.decode(bad, "tasks")
        assert caught.value.field == "page_token"


@pytest.mark.parametrize(("value", "expected"), [(0, 50), (1, 1), (1000, 1000)])
def test_limit_defaults_and_bounds(value: int, expected: int) -> None:
    assert validation.limit(value, "limit", default=50) == expected


@pytest.mark.parametrize("value", [-1, 1001])
def test_limit_out_of_range(value: int) -> None:
    with pytest.raises(errors.InvalidArgument, match="between 1 and 1000"):
        validation.limit(value, "limit", default=50)


def test_retry_policy_defaults_are_the_seeds_schedule() -> None:
    policy = validation.retry_policy(validation.RetryPolicyInput())
    delays = [policy.initial_delay * policy.multiplier**n for n in range(policy.max_retries)]
    assert delays == [timedelta(seconds=s) for s in (1, 2, 4, 8, 16)]


def test_every_error_class_has_one_grpc_and_http_code() -> None:
    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.ScheduleError)]
    assert set(classes) == set(ERROR_CODES)
    assert codes_for(errors.NotFound("x")) == (grpc.StatusCode.NOT_FOUND, 404)
    assert codes_for(errors.InvalidArgument("f", "bad")) == (grpc.StatusCode.INVALID_ARGUMENT, 400)
    status = to_status(errors.ResourceExhausted("slow down", retry_after_s=1.5))
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED and status.details == "slow down"


@pytest.mark.parametrize(
    ("error", "category"),
    [
        (HandlerFailed("x", ErrorCategory.NETWORK), ErrorCategory.NETWORK),
        (TimeoutError(), ErrorCategory.TIMEOUT),
        (ConnectionRefusedError(), ErrorCategory.NETWORK),
        (MemoryError(), ErrorCategory.RESOURCE),
        (KeyError("k"), ErrorCategory.LOGIC),
    ],
)
def test_error_categories(error: BaseException, category: ErrorCategory) -> None:
    assert categorize(error) is category


def test_registry_refuses_a_name_twice() -> None:
    registry = handler_registry(Settings())
    with pytest.raises(ValueError, match="twice"):
        registry.register(registry.all()[0])
    assert HandlerRegistry().get("http") is None


def test_json_log_lines_carry_extra_fields() -> None:
    record = logging.LogRecord("schedule_grpc", logging.INFO, __file__, 1, "fired %s", ("x",), None)
    record.task_id = "task-1"
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "fired x" and line["task_id"] == "task-1" and line["level"] == "info"


def test_readme_lists_every_setting() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for variable, _, _ in Settings.describe():
        assert f"| `{variable}` |" in readme, f"{variable} is missing from the README's settings table"
