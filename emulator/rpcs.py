"""The RPCs of each Cloud Tasks version, read from the pinned client library itself.

No service descriptors ship with google-cloud-tasks, so the method list, the gRPC
paths and the message classes come from the client's own gRPC transport (its stubs are
built against a recording channel) and its REST transport's ``_get_http_options()``.
Whatever RPC a client upgrade adds therefore appears here without a table to keep.
"""

from __future__ import annotations

import functools
import importlib
import json
from dataclasses import dataclass
from typing import Any

import grpc
from google.cloud.location import locations_pb2
from google.iam.v1 import iam_policy_pb2
from google.longrunning import operations_pb2

VERSIONS = ("v2", "v2beta3", "v2beta2")
# Calls every transport serves beside CloudTasks (REST routes to them too).
MIXINS = ("get_operation", "list_locations", "get_location")
_PB2_MODULES = (iam_policy_pb2, operations_pb2, locations_pb2)


@dataclass(frozen=True, slots=True)
class Rpc:
    """One unary RPC: its gRPC path and raw protobuf request and response classes."""

    path: str
    name: str
    request: Any
    response: Any

    @property
    def service(self) -> str:
        """The service's full name, e.g. ``google.cloud.tasks.v2.CloudTasks``."""
        return self.path.split("/")[1]


class _Recorder(grpc.Channel):
    """A channel that only records the stubs a transport builds."""

    def __init__(self) -> None:
        self.calls: dict[str, tuple[Any, Any]] = {}

    def unary_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
        _registered_method: bool = False,
    ) -> Any:  # fmt: skip
        self.calls[method] = (request_serializer, response_deserializer)
        return None

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def subscribe(self, *args: Any, **kwargs: Any) -> None:
        pass

    def unsubscribe(self, *args: Any, **kwargs: Any) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self) -> _Recorder:
        return self

    def __exit__(self, *args: Any) -> None:
        pass


def _package(version: str) -> str:
    return f"google.cloud.tasks_{version}"


def _pb_class(serializer: Any, name: str, version: str) -> Any:
    """The raw message class behind a stub's (de)serializer."""
    owner = getattr(serializer, "__self__", None)
    if owner is not None and hasattr(owner, "pb"):
        return owner.pb()  # a proto-plus class
    if isinstance(owner, type):
        return owner
    # Plain protobuf serializers are unbound (SerializeToString): find the class by name.
    types = importlib.import_module(f"{_package(version)}.types")
    for module in (types, *_PB2_MODULES):
        cls = getattr(module, f"{name}Request", None)
        if cls is not None:
            return cls.pb() if hasattr(cls, "pb") else cls
    raise LookupError(f"no request class for {name}")


@functools.cache
def rpc_table(version: str) -> dict[str, Rpc]:
    """Every unary RPC the ``version`` client calls, by gRPC path."""
    transports = importlib.import_module(f"{_package(version)}.services.cloud_tasks.transports")
    recorder = _Recorder()
    transport = transports.CloudTasksGrpcTransport(channel=recorder)
    transport._logged_channel = recorder
    transport._stubs = {}
    for method in [*snake_names(version).values(), *MIXINS]:
        if hasattr(type(transport), method):  # v2beta2's transport has no get_operation
            getattr(transport, method)
    table = {}
    for path, (ser, deser) in recorder.calls.items():
        name = path.rsplit("/", 1)[1]
        response = deser.__self__
        response = response.pb() if hasattr(response, "pb") else response
        table[path] = Rpc(path, name, _pb_class(ser, name, version), response)
    return table


@functools.cache
def snake_names(version: str) -> dict[str, str]:
    """RPC name -> the client method's name, from the library's gapic_metadata.json."""
    package = importlib.import_module(_package(version))
    with open(f"{package.__path__[0]}/gapic_metadata.json", encoding="utf-8") as f:
        meta = json.load(f)
    rpcs = meta["services"]["CloudTasks"]["clients"]["grpc"]["rpcs"]
    return {name: entry["methods"][0] for name, entry in rpcs.items()}


def cloud_tasks_rpcs(version: str) -> dict[str, Rpc]:
    """The CloudTasks service's RPCs of ``version``, by RPC name."""
    service = f"google.cloud.tasks.{version}.CloudTasks"
    return {r.name: r for r in rpc_table(version).values() if r.service == service}


@dataclass(frozen=True, slots=True)
class HttpRule:
    """One REST binding: ``GET /v2/{name=projects/*/locations/*/queues/*}``, body field."""

    method: str
    uri: str
    body: str
    rpc: Rpc


def http_rules(version: str) -> list[HttpRule]:
    """The REST bindings the ``version`` client's REST transport uses."""
    rest_base = importlib.import_module(
        f"{_package(version)}.services.cloud_tasks.transports.rest_base"
    )
    base = rest_base._BaseCloudTasksRestTransport
    rules = []
    for rpc in rpc_table(version).values():
        holder: Any = getattr(base, f"_Base{rpc.name}", None)
        if not hasattr(holder, "_get_http_options"):
            continue  # not served over REST by this client (v2beta2 UploadQueueYaml)
        for option in holder._get_http_options():
            rules.append(
                HttpRule(option["method"].upper(), option["uri"], option.get("body", ""), rpc)
            )
    return rules
