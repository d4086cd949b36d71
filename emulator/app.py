"""Wires the emulator together and runs it until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import resource
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc

from emulator import locations, queueyaml, versions
from emulator.admin import AdminServer
from emulator.datafile import open_data_file
from emulator.dispatch import Dispatcher
from emulator.lro import Operations
from emulator.oidc import Signer
from emulator.pbutil import QUEUE_DISABLED, QUEUE_RUNNING, Queue
from emulator.rest import RestGateway
from emulator.server import build_handlers
from emulator.state import API_TOMBSTONE_SECONDS, YAML_TOMBSTONE_SECONDS, Store
from emulator.target import Routes
from emulator.validate import Limits

logger = logging.getLogger(__name__)
T = TypeVar("T")

SWEEP_EVERY_SECONDS = 10.0


@dataclass
class Settings:
    """Everything the command line sets."""

    host: str = "127.0.0.1"
    port: int = 8123
    http_port: int = 8124
    project: str = "offload-local"
    location: str = "us-central1"
    queue_yaml: str | None = None
    services: dict[str, list[str]] = field(default_factory=dict)
    http_aliases: dict[str, list[str]] = field(default_factory=dict)
    default_service_url: str | None = None
    data_file: str | None = None
    data_sync: str = "normal"
    tombstone_seconds: float | None = None
    queue_tombstone_seconds: float = 7 * 24 * 3600.0
    min_dispatch_deadline: float = 15.0
    max_task_bytes: int = 100 * 1024
    shutdown_grace: float = 2.0

    @property
    def location_name(self) -> str:
        """``projects/P/locations/L``."""
        return f"projects/{self.project}/locations/{self.location}"


def _raise_fd_limit() -> None:
    # Many concurrent dispatches need many sockets; the soft limit is often 1024.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


def apply_queue_yaml(store: Store, queues: list[Any]) -> None:
    """Create or update queue.yaml's queues; disable yaml queues it no longer lists."""
    with store.transaction():
        _apply_queue_yaml(store, queues)


def _apply_queue_yaml(store: Store, queues: list[Any]) -> None:
    now = time.time()
    listed = set()
    for pb in queues:
        listed.add(pb.name)
        q = store.queues.get(pb.name)
        if q is None:
            store.add_queue(pb, "yaml", now).save()
            continue
        state = q.pb.state
        new = Queue()
        new.CopyFrom(pb)
        new.state = QUEUE_RUNNING if state == QUEUE_DISABLED else state
        if q.pb.HasField("purge_time"):
            new.purge_time.CopyFrom(q.pb.purge_time)
        q.pb = new
        q.origin = "yaml"
        q.tombstone_seconds = store.yaml_tombstone_seconds
        q.reconfigure()
        q.save()
    for q in store.queues.values():
        if q.origin == "yaml" and q.name not in listed:
            # Uploading a queue.yaml disables the queues it omits.
            q.pb.state = QUEUE_DISABLED
            q.save()
            logger.warning("queue %s is not in queue.yaml any more: disabled", q.queue_id)


class Emulator:
    """The running emulator: store, dispatcher, gRPC server, admin HTTP server."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        api_window = (
            settings.tombstone_seconds
            if settings.tombstone_seconds is not None
            else API_TOMBSTONE_SECONDS
        )
        yaml_window = (
            settings.tombstone_seconds
            if settings.tombstone_seconds is not None
            else YAML_TOMBSTONE_SECONDS
        )
        self.store = Store(
            limits=Limits(settings.min_dispatch_deadline, settings.max_task_bytes),
            api_tombstone_seconds=api_window,
            yaml_tombstone_seconds=yaml_window,
            queue_tombstone_seconds=settings.queue_tombstone_seconds,
        )
        self.operations = Operations(self.store)
        key_pem: bytes | None = None
        if settings.data_file:
            key_pem = open_data_file(
                self.store, self.operations, settings.data_file, sync=settings.data_sync
            )
            logger.info("restored %d queues from %s", len(self.store.queues), settings.data_file)
        if settings.queue_yaml:
            apply_queue_yaml(
                self.store, queueyaml.load(settings.queue_yaml, location=settings.location_name)
            )
        self.signer = Signer(key_pem)
        if key_pem is None:
            with self.store.transaction():
                self.store.journal.put_meta("oidc_key_pem", self.signer.private_pem())
        self.dispatcher = Dispatcher(
            self.store,
            routes=Routes(
                dict(settings.services), settings.default_service_url, dict(settings.http_aliases)
            ),
            signer=self.signer,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()

    def _in_loop(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the event loop (which owns the store) and wait for its result."""
        assert self._loop is not None
        done: concurrent.futures.Future[T] = concurrent.futures.Future()

        def call() -> None:
            try:
                done.set_result(fn())
            except BaseException as e:  # handed to the waiting thread
                done.set_exception(e)

        self._loop.call_soon_threadsafe(call)
        return done.result(timeout=10)

    def _queue_stats(self) -> list[dict[str, Any]]:
        def collect() -> list[dict[str, Any]]:
            return [
                {
                    "name": q.name,
                    "state": int(q.pb.state),
                    "tasks": len(q.tasks),
                    "running": q.running,
                    "tombstones": len(q.tombstones),
                    "tombstone_seconds": q.tombstone_seconds,
                }
                for q in self.store.queues.values()
            ]

        return self._in_loop(collect)

    async def _housekeeping(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY_SECONDS)
            self.store.sweep()

    def request_stop(self) -> None:
        """Begin a clean shutdown (signal handlers call this)."""
        self._stop.set()

    async def run(self, ready: Callable[[], None] | None = None) -> None:
        """Serve until :meth:`request_stop`."""
        _raise_fd_limit()
        self._loop = asyncio.get_running_loop()
        s = self.settings
        server = grpc.aio.server(
            options=[
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", 8 * 1024 * 1024),
            ]
        )
        handlers = list(build_handlers(self.store, self.operations))
        # The beta versions answer through the v2 handlers, whatever RPCs those serve; the
        # first of theirs converts beta-made operations, so it goes before the v2 ones.
        handlers = [*versions.build_handlers(handlers, self.store), *handlers]
        handlers.append(locations.build_handler(s.location))
        server.add_generic_rpc_handlers(handlers)
        address = f"{s.host}:{s.port}" if ":" not in s.host else f"[{s.host}]:{s.port}"
        if server.add_insecure_port(address) == 0:
            raise OSError(f"cannot listen on {address}")
        await server.start()
        # REST calls are transcoded to gRPC calls on our own port: one behaviour for both.
        rest = RestGateway(f"127.0.0.1:{s.port}" if s.host in ("0.0.0.0", "::") else address)
        admin = AdminServer(
            s.host,
            s.http_port,
            certs=self.signer.certs_json(),
            release_names=lambda queue: self._in_loop(lambda: self.store.release_names(queue)),
            queue_stats=self._queue_stats,
            rest=rest,
        )
        admin.start()
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self.request_stop)
        self.dispatcher.start()
        housekeeping = asyncio.create_task(self._housekeeping())
        logger.info(
            "emulator listening on %s (http %s:%d, project %s, location %s)",
            address,
            s.host,
            s.http_port,
            s.project,
            s.location,
        )
        if ready is not None:
            ready()
        try:
            await self._stop.wait()
        finally:
            logger.info("emulator stopping")
            housekeeping.cancel()
            await server.stop(grace=0.5)
            await self.dispatcher.close(grace=s.shutdown_grace)
            admin.stop()
            rest.close()
            self.store.journal.close()
            logger.info("emulator stopped")
