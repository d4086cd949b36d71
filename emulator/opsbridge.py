"""Operations started through v2beta3/v2beta2 read back in that version's types.

``google.longrunning.Operations`` is one service for every version, and a batch
operation holds v2 messages (``BatchCreateTasksResponse``, its metadata) in Any fields.
A beta client polling its operation needs its own version's types, so the operations a
beta surface hands out are remembered (by name) and converted on GetOperation,
WaitOperation and ListOperations; everything else passes to the Operations handler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeAlias

import grpc
from google.longrunning import operations_pb2

from emulator import delegate
from emulator.convert import Converter
from emulator.errors import ApiError

_Generic: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"
SERVICE = "google.longrunning.Operations"
_KEEP = 10_000  # names remembered; polling follows the call within seconds


class OperationVersions:
    """Which version handed out each operation (v2 unless remembered)."""

    def __init__(self) -> None:
        self.by_name: dict[str, str] = {}
        self.converters: dict[str, Converter] = {}

    def remember(self, name: str, version: str, converter: Converter) -> None:
        """Note that ``version`` handed out operation ``name``."""
        if len(self.by_name) >= _KEEP:
            self.by_name.pop(next(iter(self.by_name)))
        self.by_name[name] = version
        self.converters[version] = converter

    def convert(self, op: Any) -> Any:
        """The operation in the types of the version that handed it out."""
        version = self.by_name.get(op.name)
        return op if version is None else self.converters[version].from_v2(op)


def build_handler(inner: Sequence[_Generic], versions: OperationVersions) -> _Generic:
    """A handler for the Operations reads, in front of the ``inner`` handlers."""

    def reader(method: str, request: Any, response: Any) -> Any:
        path = f"/{SERVICE}/{method}"

        async def behavior(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                answer = await delegate.call(
                    inner, path, request.FromString(raw), response, context
                )
            except ApiError as e:
                await context.abort(e.code, e.message)
                raise
            if method == "ListOperations":
                ops = [versions.convert(op) for op in answer.operations]
                del answer.operations[:]
                answer.operations.extend(ops)
            else:
                answer = versions.convert(answer)
            data: bytes = answer.SerializeToString()
            return data

        return grpc.unary_unary_rpc_method_handler(behavior)

    op = operations_pb2
    methods = {
        "GetOperation": reader("GetOperation", op.GetOperationRequest, op.Operation),
        "WaitOperation": reader("WaitOperation", op.WaitOperationRequest, op.Operation),
        "ListOperations": reader(
            "ListOperations", op.ListOperationsRequest, op.ListOperationsResponse
        ),
    }
    return grpc.method_handlers_generic_handler(SERVICE, methods)
