"""The ``v2beta3`` and ``v2beta2`` CloudTasks services over the v2 service's handlers.

Each call is converted to v2 (``convert.py``), answered by whatever v2 handler serves
that RPC name (so an RPC added to the v2 service appears here too), and converted back.
What v2 has no field for is kept beside the store (``QueueExtras``) or refused:
``task_ttl`` and ``tombstone_ttl`` (the latter is the queue's real de-duplication
window), ``type`` (push only), ``stats`` (computed on read), pull queues (refused).
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError

from emulator import delegate, opsbridge
from emulator.convert import Converter
from emulator.errors import ApiError, invalid
from emulator.pbutil import dur_get, dur_set, ts_set
from emulator.rpcs import Rpc, cloud_tasks_rpcs
from emulator.state import QueueState, Store

_Handler: TypeAlias = "grpc.RpcMethodHandler[Any, Any]"
_Generic: TypeAlias = "grpc.GenericRpcHandler[Any, Any]"

DAY = 24 * 3600.0
TASK_TTL_DEFAULT = 31 * DAY
TASK_TTL_RANGE = (10 * DAY, 3650 * DAY)
TOMBSTONE_TTL_RANGE = (3600.0, 9 * DAY)
QUEUE_PULL, QUEUE_PUSH = 1, 2  # Queue.Type
# Update mask paths that name a v2 field differently (longest prefix first).
_MASK = {
    "v2beta3": {
        "app_engine_http_queue.app_engine_routing_override": "app_engine_routing_override",
        "app_engine_http_queue": "app_engine_routing_override",
    },
    "v2beta2": {
        "app_engine_http_target.app_engine_routing_override": "app_engine_routing_override",
        "app_engine_http_target": "app_engine_routing_override",
        "rate_limits.max_tasks_dispatched_per_second": "rate_limits.max_dispatches_per_second",
        "rate_limits.max_concurrent_tasks": "rate_limits.max_concurrent_dispatches",
        "retry_config.unlimited_attempts": "retry_config.max_attempts",
    },
}
_EXTRA_PATHS = ("task_ttl", "tombstone_ttl", "type", "stats")
PULL_REFUSED = "Pull queues and pull tasks are not served by the emulator."
_PULL_RPCS = frozenset({"LeaseTasks", "RenewLease", "CancelLease", "AcknowledgeTask"})


@dataclass
class _Call:
    """One call on its way through: the request as sent, and what the hooks noted."""

    request: Any
    ttls: dict[str, float]
    read_mask: list[str]


class QueueExtras:
    """The v2beta fields of queues that v2 does not have, kept in the data file's meta table."""

    PREFIX = "queue-extras:"

    def __init__(self, store: Store) -> None:
        self.store = store
        # By queue object, so a queue deleted and made again starts from the defaults.
        self.task_ttl: weakref.WeakKeyDictionary[QueueState, float] = weakref.WeakKeyDictionary()
        saved = getattr(store.journal, "meta_prefixed", None)
        for name, blob in (saved(self.PREFIX) if saved is not None else {}).items():
            q = store.queues.get(name)
            if q is not None:
                self._set(q, json.loads(blob))

    def _set(self, q: QueueState, ttls: dict[str, float]) -> None:
        if "task_ttl" in ttls:
            self.task_ttl[q] = ttls["task_ttl"]
        if "tombstone_ttl" in ttls:
            q.tombstone_seconds = ttls["tombstone_ttl"]

    def apply(self, name: str, ttls: dict[str, float]) -> None:
        """Store a queue's ``task_ttl`` and make ``tombstone_ttl`` its de-duplication window."""
        q = self.store.queues.get(name)
        if q is None:
            return
        self._set(q, ttls)
        both = {"tombstone_ttl": q.tombstone_seconds}
        if q in self.task_ttl:
            both["task_ttl"] = self.task_ttl[q]
        with self.store.transaction():
            self.store.journal.put_meta(self.PREFIX + name, json.dumps(both).encode())

    def decorate(self, dst: Any, src: Any) -> None:
        """Fill a converted Queue's extra fields from the store."""
        q = self.store.queues.get(src.name)
        if q is None:
            return
        default_ttl = TASK_TTL_RANGE[1] if q.origin == "yaml" else TASK_TTL_DEFAULT
        dur_set(dst.task_ttl, self.task_ttl.get(q, default_ttl))
        dur_set(dst.tombstone_ttl, q.tombstone_seconds)
        if "type_" in dst.DESCRIPTOR.fields_by_name:
            dst.type_ = QUEUE_PUSH

    def stats(self, dst: Any) -> None:
        """Fill ``Queue.stats`` from the queue's live state."""
        q: QueueState | None = self.store.queues.get(dst.name)
        if q is None:
            return
        st = dst.stats
        st.tasks_count = len(q.tasks)
        if q.tasks:
            ts_set(st.oldest_estimated_arrival_time, min(r.eta for r in q.tasks.values()))
        st.concurrent_dispatches_count = q.running
        st.effective_execution_rate = (
            0.0 if q.paused else q.pb.rate_limits.max_dispatches_per_second
        )


def _ttls(queue: Any, paths: Sequence[str] | None) -> dict[str, float]:
    """The TTLs a request sets (all present ones without a mask), validated."""
    out = {}
    for field, (low, high) in (
        ("task_ttl", TASK_TTL_RANGE),
        ("tombstone_ttl", TOMBSTONE_TTL_RANGE),
    ):
        if field not in queue.DESCRIPTOR.fields_by_name:
            continue
        wanted = field in paths if paths else queue.HasField(field)
        if not wanted:
            continue
        value = dur_get(getattr(queue, field))
        if not low <= value <= high:
            raise invalid(f"Queue.{field} must be between {low:g}s and {high:g}s.")
        out[field] = value
    return out


def _check_push(queue: Any) -> None:
    if getattr(queue, "type_", QUEUE_PUSH) == QUEUE_PULL or (
        "pull_target" in queue.DESCRIPTOR.fields_by_name and queue.HasField("pull_target")
    ):
        raise ApiError(grpc.StatusCode.UNIMPLEMENTED, PULL_REFUSED)


def v2_mask(version: str, paths: Sequence[str]) -> list[str]:
    """An update mask in this version's names as v2 names, without the extra fields."""
    renames = _MASK.get(version, {})
    out = []
    for path in paths:
        if path.split(".")[0] in _EXTRA_PATHS:
            continue
        for old in sorted(renames, key=len, reverse=True):
            if path == old or path.startswith(old + "."):
                path = renames[old] + path[len(old) :]
                break
        out.append(path)
    return out


def _project(queue: Any, paths: list[str]) -> None:
    """Keep only the read mask's top-level fields (and the name)."""
    keep = {p.split(".")[0] for p in paths} | {"name"}
    if "type" in keep:
        keep.add("type_")
    for fd, _ in queue.ListFields():
        if fd.name not in keep:
            queue.ClearField(fd.name)


class VersionService:
    """One beta version's CloudTasks service, answered by the v2 handlers."""

    def __init__(
        self,
        version: str,
        v2: Sequence[_Generic],
        store: Store,
        extras: QueueExtras,
        ops: opsbridge.OperationVersions,
    ) -> None:
        self.version = version
        self.ops = ops
        self.v2 = list(v2)
        self.store = store
        self.extras = extras
        self.conv = Converter(version, {"Queue": self.extras.decorate})
        self.v2_rpcs = cloud_tasks_rpcs("v2")
        self.rpcs = cloud_tasks_rpcs(version)

    def handler(self) -> _Generic:
        """The generic handler serving every RPC of this version."""
        methods = {name: self._method(rpc) for name, rpc in self.rpcs.items()}
        return grpc.method_handlers_generic_handler(
            f"google.cloud.tasks.{self.version}.CloudTasks", methods
        )

    def _method(self, rpc: Rpc) -> _Handler:
        async def behavior(raw: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            try:
                return await self._answer(rpc, raw, context)
            except DecodeError:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "Malformed request.")
                raise
            except ApiError as e:
                await context.abort(e.code, e.message)
                raise  # not reached: abort raises

        return grpc.unary_unary_rpc_method_handler(behavior)

    async def _answer(
        self, rpc: Rpc, raw: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        v2 = self.v2_rpcs.get(rpc.name)
        if v2 is None:
            why = PULL_REFUSED if rpc.name in _PULL_RPCS else "it has no v2 counterpart."
            raise ApiError(
                grpc.StatusCode.UNIMPLEMENTED, f"{rpc.name} is not served by the emulator: {why}"
            )
        call = _Call(rpc.request.FromString(raw), {}, [])
        self._before(rpc.name, call)
        v2_request = self.conv.to_v2(call.request)
        if rpc.name == "UpdateQueue":
            paths = list(call.request.update_mask.paths)
            v2_request.update_mask.paths[:] = v2_mask(self.version, paths)
            if (
                paths
                and not v2_request.update_mask.paths
                and v2_request.queue.name in self.store.queues
            ):
                # Only extra fields change: v2 would read an empty mask as "everything".
                self.extras.apply(call.request.queue.name, call.ttls)
                queue = self.store.get_queue(v2_request.queue.name)
                return self._finish(call, self.conv.from_v2(queue))
        v2_answer = await delegate.call(self.v2, v2.path, v2_request, v2.response, context)
        if call.ttls:  # before converting back, which reads them
            self.extras.apply(call.request.queue.name, call.ttls)
        return self._finish(call, self.conv.from_v2(v2_answer))

    def _before(self, name: str, call: _Call) -> None:
        req = call.request
        if name in ("CreateQueue", "UpdateQueue"):
            _check_push(req.queue)
            paths = list(req.update_mask.paths) if name == "UpdateQueue" else None
            call.ttls = _ttls(req.queue, paths)
        elif name == "CreateTask" and req.task.WhichOneof("payload_type") == "pull_message":
            raise ApiError(grpc.StatusCode.UNIMPLEMENTED, PULL_REFUSED)
        elif name in ("GetQueue", "ListQueues") and req.HasField("read_mask"):
            call.read_mask = list(req.read_mask.paths)

    def _finish(self, call: _Call, answer: Any) -> bytes:
        if answer.DESCRIPTOR.full_name == "google.longrunning.Operation":
            self.ops.remember(answer.name, self.version, self.conv)
        if call.read_mask:
            queues = answer.queues if hasattr(answer, "queues") else [answer]
            for queue in queues:
                if "stats" in call.read_mask:
                    self.extras.stats(queue)
                _project(queue, call.read_mask)
        data: bytes = answer.SerializeToString()
        return data


def build_handlers(v2: Sequence[_Generic], store: Store) -> list[_Generic]:
    """The v2beta3 and v2beta2 services over the given v2 handlers, and the Operations
    bridge that must come before those handlers (it is first in the list)."""
    extras = QueueExtras(store)  # shared: both versions show the same queues
    ops = opsbridge.OperationVersions()
    services = [VersionService(v, v2, store, extras, ops) for v in ("v2beta3", "v2beta2")]
    return [opsbridge.build_handler(v2, ops), *(service.handler() for service in services)]
