"""A local stand-in of Cloud Logging's gRPC ``ListLogEntries``, for the real client library.

It serves ``google.logging.v2.LoggingServiceV2/ListLogEntries`` on a loopback port,
records every request it receives, evaluates the small filter language ``offload logs``
writes (``labels.K="V"`` and ``timestamp>="T"`` terms joined by AND, in parentheses)
and pages its answers with ``next_page_token``. Nothing here talks to Google.
"""

from __future__ import annotations

import datetime as dt
import re
from concurrent import futures
from typing import Any

import grpc
from google.auth.credentials import AnonymousCredentials
from google.cloud import logging as cloud_logging
from google.cloud.logging_v2._gapic import _LoggingAPI
from google.cloud.logging_v2.services.logging_service_v2 import LoggingServiceV2Client
from google.cloud.logging_v2.services.logging_service_v2.transports import (
    LoggingServiceV2GrpcTransport,
)
from google.cloud.logging_v2.types import (
    ListLogEntriesRequest,
    ListLogEntriesResponse,
    LogEntry,
)
from google.protobuf import struct_pb2

_TERM = re.compile(r'\(?\s*(labels\.[A-Za-z0-9_]+|timestamp)\s*(=|>=)\s*"((?:[^"\\]|\\.)*)"\s*\)?')


def make_entry(
    *,
    when: dt.datetime,
    message: str,
    labels: dict[str, str],
    severity: str = "INFO",
    trace: str = "",
    insert_id: str = "",
) -> LogEntry:
    """A log entry as Cloud Logging stores a structured stdout line."""
    payload = struct_pb2.Struct()
    payload.update({"message": message})
    entry = LogEntry(
        log_name="projects/p/logs/stdout",
        labels=labels,
        severity=severity,
        trace=trace,
        insert_id=insert_id or f"{when.timestamp():.6f}",
        json_payload=payload,
    )
    entry.timestamp = when
    return entry


def _matches(entry: LogEntry, filter_: str) -> bool:
    """Whether ``entry`` passes an AND of ``labels.K="V"`` / ``timestamp>="T"`` terms."""
    terms = [t.strip() for t in filter_.split(" AND ")]
    for term in terms:
        # "(a OR b)": any of its label comparisons
        choices = [
            c.strip() for c in term.strip().removeprefix("(").removesuffix(")").split(" OR ")
        ]
        if not any(_matches_one(entry, c if len(choices) > 1 else term) for c in choices):
            return False
    return True


def _matches_one(entry: LogEntry, term: str) -> bool:
    match = _TERM.fullmatch(term)
    if match is None:
        raise ValueError(f"stand-in cannot evaluate filter term {term!r}")
    field, op, value = match.group(1), match.group(2), match.group(3)
    if field == "timestamp":
        return op == ">=" and entry.timestamp >= dt.datetime.fromisoformat(value)
    return bool(entry.labels.get(field.removeprefix("labels.")) == value.replace('\\"', '"'))


class LoggingStandIn:
    """The gRPC server, the entries it holds and the requests it received."""

    def __init__(self, entries: list[LogEntry], *, page_size: int = 2) -> None:
        self.entries = entries
        self.page_size = page_size
        self.requests: list[ListLogEntriesRequest] = []
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.unary_unary_rpc_method_handler(
            self._list,
            request_deserializer=ListLogEntriesRequest.deserialize,
            response_serializer=ListLogEntriesResponse.serialize,
        )
        self._server.add_generic_rpc_handlers(
            [
                grpc.method_handlers_generic_handler(
                    "google.logging.v2.LoggingServiceV2", {"ListLogEntries": handler}
                )
            ]
        )
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        self._channels: list[grpc.Channel] = []

    def _list(self, request: ListLogEntriesRequest, _context: Any) -> ListLogEntriesResponse:
        self.requests.append(request)
        found = [e for e in self.entries if _matches(e, request.filter)]
        if request.order_by == "timestamp asc":
            found.sort(key=lambda e: e.timestamp)
        start = int(request.page_token or 0)
        size = min(request.page_size or self.page_size, self.page_size)
        page = found[start : start + size]
        more = start + size < len(found)
        return ListLogEntriesResponse(
            entries=page, next_page_token=str(start + size) if more else ""
        )

    def start(self) -> LoggingStandIn:
        """Serve until :meth:`stop`."""
        self._server.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the clients' channels."""
        for channel in self._channels:
            channel.close()
        self._server.stop(None)

    def client(self, project: str) -> Any:
        """A real ``google.cloud.logging.Client`` whose gRPC calls come here.

        The client's own channel would be TLS with Google credentials, so its Logging
        API object is built on an insecure loopback channel instead.
        """
        credentials = AnonymousCredentials()  # type: ignore[no-untyped-call]
        client = cloud_logging.Client(  # type: ignore[no-untyped-call]
            project=project, credentials=credentials, _use_grpc=True
        )
        channel = grpc.insecure_channel(f"127.0.0.1:{self.port}")
        self._channels.append(channel)
        transport = LoggingServiceV2GrpcTransport(channel=channel)
        gapic = LoggingServiceV2Client(transport=transport)
        client._logging_api = _LoggingAPI(gapic, client)  # type: ignore[no-untyped-call]
        return client
