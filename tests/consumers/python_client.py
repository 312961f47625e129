"""A consumer's own client: stubs generated from proto/ alone into a directory given on the command line.

Run by tests/consumers/test_consumers.py as `python python_client.py STUBS_DIR ADDRESS`; prints one JSON line.
"""

from __future__ import annotations

import json
import sys

sys.path.insert(0, sys.argv[1])

import grpc
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from schedule.v1 import schedule_service_pb2 as pb
from schedule.v1 import schedule_service_pb2_grpc as pb_grpc


def main() -> None:
    metadata = struct_pb2.Struct()
    metadata.update({"url": "http://127.0.0.1:9/hook"})
    with grpc.insecure_channel(sys.argv[2]) as channel:
        stub = pb_grpc.ScheduleServiceStub(channel)
        task = stub.RegisterTask(
            pb.RegisterTaskRequest(name="py-consumer", schedule="@hourly", handler="http", metadata=metadata)
        ).task
        listed = [t.name for t in stub.ListTasks(pb.ListTasksRequest()).tasks]
        reason = ""
        try:
            stub.RegisterTask(pb.RegisterTaskRequest(name="bad", schedule="61 * * * *", handler="http"))
        except grpc.RpcError as error:
            status = rpc_status.from_call(error)  # type: ignore[arg-type]
            for detail in status.details if status else []:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reason = info.reason
    print(json.dumps({"stubs": pb.__file__, "id": task.id, "listed": listed, "reason": reason}))


main()
