"""Operator caps per caller: tasks owned and metadata bytes held; a refused registration writes nothing."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc

from tests.api.shim_support import AUTH_TOKENS, bearer, serve
from tests.support import FakeClock

ALPHA = tuple(bearer("alpha-secret").items())
BETA = tuple(bearer("beta-secret").items())


def _register(stub: pb_grpc.ScheduleServiceStub, name: str, caller: tuple[tuple[str, str], ...], pad: int = 0) -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"url": "http://127.0.0.1:9/", "body": "x" * pad})
    stub.RegisterTask(
        pb.RegisterTaskRequest(name=name, schedule="@daily", handler="http", metadata=metadata), metadata=caller
    )


def test_tasks_and_metadata_bytes_are_capped_per_caller(database_url: str, clock: FakeClock) -> None:
    caps = {"max_tasks_per_caller": 3, "max_metadata_bytes_per_caller": 3000}
    with (
        serve(database_url, clock, auth_tokens=AUTH_TOKENS, **caps) as service,
        grpc.insecure_channel(f"127.0.0.1:{service.port}") as channel,
    ):
        stub = pb_grpc.ScheduleServiceStub(channel)
        for i in range(3):
            _register(stub, f"alpha-{i}", ALPHA)
        with pytest.raises(grpc.RpcError) as caught:
            _register(stub, "alpha-3", ALPHA)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "owns 3 tasks" in (caught.value.details() or "")
        # another caller has a quota of its own; its metadata bytes are capped too
        _register(stub, "beta-0", BETA, pad=2000)
        with pytest.raises(grpc.RpcError) as caught:
            _register(stub, "beta-1", BETA, pad=2000)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "bytes of metadata" in (caught.value.details() or "")
        names = [t.name for t in stub.ListTasks(pb.ListTasksRequest(), metadata=ALPHA).tasks]
        assert names == ["alpha-0", "alpha-1", "alpha-2", "beta-0"]  # the refused ones wrote nothing
        # unregistering frees quota
        stub.UnregisterTask(pb.UnregisterTaskRequest(name="alpha-0"), metadata=ALPHA)
        _register(stub, "alpha-3", ALPHA)
