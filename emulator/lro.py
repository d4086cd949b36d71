"""Long-running operations (BatchCreateTasks, BatchDeleteTasks) and the Operations calls.

A batch does its work inside the call, in one transaction, and the call answers the
operation as Cloud Tasks does at first (``done`` false, metadata RUNNING); GetOperation
then returns it finished. Clients written against the emulator so handle the pending
case they meet in production. Operations are kept for a day, in the data file too.
"""

from __future__ import annotations

import base64
import time
import uuid
from typing import Any

from google.longrunning import operations_pb2

from emulator import names
from emulator.errors import invalid, not_found
from emulator.state import Store

KEEP_SECONDS = 24 * 3600.0
MAX_PAGE = 1000


class Operations:
    """Every operation of the emulator, by name; de-duplicates a batch's ``request_id``."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.ops: dict[str, Any] = {}
        self.by_request: dict[tuple[str, str], str] = {}  # (method, request id) -> name
        self.expiry: dict[str, float] = {}

    def load(self, rows: list[tuple[str, str, bytes, bytes]], now: float) -> None:
        """Operations read back from the data file."""
        for name, request_id, method, pb in rows:
            self.ops[name] = operations_pb2.Operation.FromString(pb)
            self.expiry[name] = now + KEEP_SECONDS
            if request_id:
                self.by_request[(method.decode(), request_id)] = name

    def existing(self, method: str, request_id: str) -> Any | None:
        """The operation an earlier call with this ``request_id`` started, if any."""
        self._sweep()
        name = self.by_request.get((method, request_id)) if request_id else None
        return self.ops.get(name) if name else None

    def record(self, *, location: str, method: str, request_id: str, op: Any) -> None:
        """Keep a finished operation (written in the caller's transaction)."""
        op.name = f"{location}/operations/{uuid.uuid4().hex}"
        self.ops[op.name] = op
        self.expiry[op.name] = time.time() + KEEP_SECONDS
        if request_id:
            self.by_request[(method, request_id)] = op.name
        self.store.journal.put_operation(
            op.name, request_id, method.encode(), op.SerializeToString(), self.expiry[op.name]
        )

    def _sweep(self) -> None:
        now = time.time()
        for name in [n for n, e in self.expiry.items() if e <= now]:
            self.ops.pop(name, None)
            del self.expiry[name]
        self.by_request = {k: v for k, v in self.by_request.items() if v in self.ops}

    # -- google.longrunning.Operations ---------------------------------------------------

    def get(self, name: str) -> Any:
        """GetOperation."""
        self._sweep()
        op = self.ops.get(name)
        if op is None:
            raise not_found()
        return op

    def list(self, parent: str, page_size: int, page_token: str) -> Any:
        """ListOperations of a location (``parent`` is the location or ``.../operations``)."""
        location = parent.removesuffix("/operations")
        names.check_location(location)
        self._sweep()
        after = ""
        if page_token:
            try:
                after = base64.urlsafe_b64decode(page_token.encode("ascii")).decode()
            except (ValueError, UnicodeError) as e:
                raise invalid("Invalid page token.") from e
            if not after.startswith(location + "/operations/"):
                raise invalid("Invalid page token.")
        size = page_size if 0 < page_size <= MAX_PAGE else MAX_PAGE
        chosen = sorted(
            n for n in self.ops if n.startswith(location + "/operations/") and n > after
        )
        out = operations_pb2.ListOperationsResponse()
        out.operations.extend(self.ops[n] for n in chosen[:size])
        if len(chosen) > size:
            out.next_page_token = base64.urlsafe_b64encode(chosen[size - 1].encode()).decode()
        return out

    def delete(self, name: str) -> None:
        """DeleteOperation: forget it (a finished operation only; all of them are)."""
        self.get(name)
        del self.ops[name]
        self.expiry[name] = 0.0
        with self.store.transaction():
            self.store.journal.put_operation(name, "", b"", b"", 0.0)
