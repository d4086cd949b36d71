"""The REST transport: Google's JSON/HTTP mapping of every gRPC call the emulator serves.

Each REST binding of the pinned client's REST transports (``rpcs.http_rules``: the same
URL patterns, methods and body fields) is transcoded to its gRPC call on the emulator's
own gRPC port, so REST answers exactly what gRPC answers, errors included, for every
version and every RPC gRPC serves, with no handler per call. JSON goes through
``google.protobuf.json_format`` (the client sends lowerCamelCase names; both are read).
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import grpc
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor

from emulator.rpcs import VERSIONS, HttpRule, http_rules

logger = logging.getLogger(__name__)

# google.rpc.Code -> HTTP status, as Google's REST front ends map them.
HTTP_STATUS = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.FAILED_PRECONDITION: 400,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DATA_LOSS: 500,
    grpc.StatusCode.UNAUTHENTICATED: 401,
}
_VAR = re.compile(r"\{([a-z_.]+)(?:=([^}]*))?\}")
_INTS = {
    FieldDescriptor.TYPE_INT32, FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_SINT32, FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32, FieldDescriptor.TYPE_FIXED64, FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
}  # fmt: skip
_FLOATS = {FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE}


class RestError(Exception):
    """A call refused before (or by) gRPC: its status code and message."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def error_body(code: grpc.StatusCode, message: str) -> tuple[int, bytes]:
    """Google's JSON error shape for a gRPC status."""
    status = HTTP_STATUS.get(code, 500)
    body = {"error": {"code": status, "message": message, "status": code.name}}
    return status, json.dumps(body).encode()


@dataclass(frozen=True, slots=True)
class Route:
    """A compiled REST binding."""

    rule: HttpRule
    pattern: re.Pattern[str]
    fields: tuple[str, ...]


def compile_rule(rule: HttpRule) -> Route:
    """``/v2/{name=projects/*/locations/*}`` -> a regex with one group per variable."""
    out, fields, pos = [], [], 0
    for m in _VAR.finditer(rule.uri):
        out.append(re.escape(rule.uri[pos : m.start()]))
        segments = (m.group(2) or "*").split("/")
        parts = ["[^/]+" if s == "*" else ".+" if s == "**" else re.escape(s) for s in segments]
        out.append(f"({'/'.join(parts)})")
        fields.append(m.group(1))
        pos = m.end()
    out.append(re.escape(rule.uri[pos:]))
    return Route(rule, re.compile("^" + "".join(out) + "$"), tuple(fields))


def _field(msg: Any, name: str) -> Any:
    desc = msg.DESCRIPTOR
    fd = desc.fields_by_name.get(name)
    if fd is None:
        fd = next((f for f in desc.fields if f.json_name == name), None)
    return fd


def _holder(msg: Any, dotted: str, what: str) -> tuple[Any, Any]:
    """The message holding a dotted field and that field's descriptor."""
    *heads, last = dotted.split(".")
    for head in heads:
        fd = _field(msg, head)
        if fd is None or fd.message_type is None:
            raise RestError(grpc.StatusCode.INVALID_ARGUMENT, _unknown(dotted, what))
        msg = getattr(msg, fd.name)
    fd = _field(msg, last)
    if fd is None:
        raise RestError(grpc.StatusCode.INVALID_ARGUMENT, _unknown(dotted, what))
    return msg, fd


def _unknown(name: str, what: str) -> str:
    return (
        f'Invalid JSON payload received. Unknown name "{name}": Cannot bind {what}. '
        f"Field '{name}' could not be found in request message."
    )


def _scalar(fd: Any, value: str) -> Any:
    if fd.type == FieldDescriptor.TYPE_BOOL:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"not a boolean: {value!r}")
        return value.lower() in ("true", "1")
    if fd.type in _INTS:
        return int(value)
    if fd.type in _FLOATS:
        return float(value)
    if fd.type == FieldDescriptor.TYPE_ENUM:
        if value.lstrip("-").isdigit():
            return int(value)
        return fd.enum_type.values_by_name[value].number
    if fd.type == FieldDescriptor.TYPE_BYTES:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    return value


def _set_query(request: Any, key: str, values: list[str]) -> None:
    holder, fd = _holder(request, key, "query parameter")
    try:
        if fd.message_type is not None:
            # Well-known types (FieldMask, Duration, Timestamp) have a string JSON form.
            json_format.Parse(json.dumps(values[-1]), getattr(holder, fd.name))
        elif fd.is_repeated:
            getattr(holder, fd.name).extend(_scalar(fd, v) for v in values)
        else:
            setattr(holder, fd.name, _scalar(fd, values[-1]))
    except (ValueError, KeyError, json_format.ParseError) as e:
        raise RestError(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"Invalid value at '{key}': \"{values[-1]}\" ({e})",
        ) from e


class RestGateway:
    """Transcodes REST calls to gRPC calls on the emulator's own port."""

    def __init__(self, grpc_address: str, *, timeout: float = 30.0) -> None:
        self.address = grpc_address
        self.timeout = timeout
        self.routes = [compile_rule(r) for v in VERSIONS for r in http_rules(v)]
        self._channel: grpc.Channel | None = None
        self._lock = threading.Lock()

    def channel(self) -> grpc.Channel:
        """The loopback channel, opened at first use."""
        with self._lock:
            if self._channel is None:
                self._channel = grpc.insecure_channel(
                    self.address, options=[("grpc.max_receive_message_length", 8 << 20)]
                )
            return self._channel

    def close(self) -> None:
        """Close the loopback channel."""
        with self._lock:
            if self._channel is not None:
                self._channel.close()
                self._channel = None

    def matches(self, path: str) -> bool:
        """True for a path under one of the API versions (``/v2/...``)."""
        return path.split("/", 2)[1] in VERSIONS if path.count("/") >= 2 else False

    def handle(self, method: str, target: str, body: bytes) -> tuple[int, bytes]:
        """Answer one REST request: HTTP status and JSON body."""
        try:
            return 200, self._call(method, target, body)
        except RestError as e:
            return error_body(e.code, e.message)
        except grpc.RpcError as e:
            return error_body(e.code(), e.details() or "")
        except Exception:
            # A bug must still answer in the API's shape, and leave a trace in the log.
            logger.exception("REST %s %s failed", method, target.split("?", 1)[0])
            return error_body(grpc.StatusCode.INTERNAL, "Internal error.")

    def _route(self, method: str, path: str) -> tuple[Route, tuple[str, ...]]:
        for route in self.routes:
            if route.rule.method == method:
                m = route.pattern.match(path)
                if m is not None:
                    return route, m.groups()
        raise RestError(grpc.StatusCode.NOT_FOUND, f"No REST method {method} {path}.")

    def _call(self, method: str, target: str, body: bytes) -> bytes:
        parts = urlsplit(target)
        route, values = self._route(method, parts.path)
        rpc = route.rule.rpc
        request = rpc.request()
        if route.rule.body:
            text = body.decode("utf-8", "replace").strip() or "{}"
            into = request
            if route.rule.body != "*":
                into = getattr(request, _holder(request, route.rule.body, "body")[1].name)
            try:
                json_format.Parse(text, into)
            except json_format.ParseError as e:
                raise RestError(
                    grpc.StatusCode.INVALID_ARGUMENT, f"Invalid JSON payload received. {e}"
                ) from e
        for name, value in zip(route.fields, values, strict=True):
            holder, fd = _holder(request, name, "path parameter")
            setattr(holder, fd.name, unquote(value))
        query: dict[str, list[str]] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if not key.startswith("$"):  # system parameters ($alt=json;enum-encoding=int)
                query.setdefault(key, []).append(value)
        for key, items in query.items():
            _set_query(request, key, items)
        call = self.channel().unary_unary(
            rpc.path,
            request_serializer=type(request).SerializeToString,
            response_deserializer=rpc.response.FromString,
        )
        answer = call(request, timeout=self.timeout)
        out: str = json_format.MessageToJson(answer)
        return out.encode()
