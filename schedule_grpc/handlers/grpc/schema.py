"""A method's request and response classes, read from the callee's server reflection (no code of ours)."""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from schedule_grpc.domain.models import ErrorCategory
from schedule_grpc.handlers.base import HandlerFailed
from schedule_grpc.handlers.grpc.channel import failure

# Files a reflection walk may fetch: a service's descriptors and their imports, bounded.
_MAX_FILES = 200


async def _reflect(
    stub: reflection_pb2_grpc.ServerReflectionStub, request: reflection_pb2.ServerReflectionRequest, timeout: float
) -> list[descriptor_pb2.FileDescriptorProto] | None:
    """The files one reflection request answers; None when the server says it has no such thing."""
    try:
        async for reply in stub.ServerReflectionInfo(iter([request]), timeout=timeout):
            if reply.HasField("error_response"):
                return None
            return [
                descriptor_pb2.FileDescriptorProto.FromString(data)
                for data in reply.file_descriptor_response.file_descriptor_proto
            ]
    except grpc.RpcError as error:
        raise failure(error, "server reflection") from error
    return None


async def message_classes(
    channel: grpc.aio.Channel, service_name: str, method_name: str, remaining: Any
) -> tuple[Any, Any]:
    """The request and response classes of a method, read from the server's reflection."""
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    first = await _reflect(
        stub, reflection_pb2.ServerReflectionRequest(file_containing_symbol=service_name), remaining()
    )
    if not first:
        raise HandlerFailed(f"the server does not offer {service_name} (by its reflection)", ErrorCategory.LOGIC)
    files = {f.name: f for f in first}
    missing = [d for f in first for d in f.dependency if d not in files]
    while missing and len(files) < _MAX_FILES:
        name = missing.pop()
        if name in files:
            continue
        found = await _reflect(stub, reflection_pb2.ServerReflectionRequest(file_by_filename=name), remaining())
        for file in found or [_well_known(name)]:
            files.setdefault(file.name, file)
            missing.extend(d for d in file.dependency if d not in files)
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str) -> None:
        if name in added or name not in files:
            return
        added.add(name)
        for dependency in files[name].dependency:
            add(dependency)
        pool.Add(files[name])

    for name in files:
        add(name)
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError as error:
        raise HandlerFailed(
            f"the server does not offer {service_name} (by its reflection)", ErrorCategory.LOGIC
        ) from error
    method = service.methods_by_name.get(method_name)
    if method is None:
        raise HandlerFailed(f"{service_name} has no method {method_name}", ErrorCategory.LOGIC)
    if method.client_streaming or method.server_streaming:
        raise HandlerFailed(
            f"{service_name}/{method_name} is a streaming method; only unary calls are made", ErrorCategory.LOGIC
        )
    return message_factory.GetMessageClass(method.input_type), message_factory.GetMessageClass(method.output_type)


def _well_known(name: str) -> descriptor_pb2.FileDescriptorProto:
    """A file the server did not send, from the protobuf runtime's own (google/protobuf/*.proto)."""
    proto = descriptor_pb2.FileDescriptorProto()
    try:
        descriptor_pool.Default().FindFileByName(name).CopyToProto(proto)
    except KeyError:
        raise HandlerFailed(f"the server's reflection does not give {name}", ErrorCategory.LOGIC) from None
    return proto
