"""Calling another generic handler's RPC in-process, inside the current call's context.

The version services and the Operations bridge answer by running the v2 handlers'
own behaviours: whatever those handlers serve (today or after a change) is reached
by name, with their own (de)serializers, and their aborts end the outer call.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, TypeAlias

import grpc

from emulator.errors import ApiError

Generic: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"


class _Details(NamedTuple):
    method: str
    invocation_metadata: Any


async def call(
    handlers: Sequence[Generic],
    path: str,
    request: Any,
    response: Any,
    context: grpc.aio.ServicerContext[Any, Any],
) -> Any:
    """Run the handler serving ``path`` on ``request``; its answer parsed as ``response``."""
    details = _Details(path, context.invocation_metadata())
    for generic in handlers:
        handler = generic.service(details)  # type: ignore[arg-type]
        if handler is not None and handler.unary_unary is not None:
            break
    else:
        name = path.rsplit("/", 1)[-1]
        raise ApiError(grpc.StatusCode.UNIMPLEMENTED, f"{name} is not implemented.")
    raw = request.SerializeToString()
    arg = handler.request_deserializer(raw) if handler.request_deserializer else raw
    behavior: Callable[..., Any] = handler.unary_unary
    result = behavior(arg, context)
    if inspect.isawaitable(result):
        result = await result
    data = handler.response_serializer(result) if handler.response_serializer else result
    return response.FromString(data)
