"""The dispatcher: per-queue loops that send due tasks within the queue's limits.

One asyncio task per queue pumps its heap; each attempt is its own asyncio task, so a
slow handler holds only its own concurrency slot, never the queue or other queues.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time

from emulator.httpclient import HttpClient, HttpClientError
from emulator.oidc import Signer
from emulator.pbutil import dur_get, ts_set
from emulator.retry import parse_retry_after
from emulator.state import QueueState, Store, TaskRecord
from emulator.target import Routes, RoutingError, build
from emulator.tasklog import task_log_context

logger = logging.getLogger(__name__)

# Dispatch at most this many tasks before yielding to the gRPC server and the answers.
_BATCH = 64
# google.rpc.Code for an HTTP status, as Google's APIs map them.
_HTTP_TO_RPC = {400: 3, 401: 16, 403: 7, 404: 5, 409: 10, 429: 8, 499: 1, 501: 12, 503: 14, 504: 4}


def rpc_code(status: int) -> int:
    """The google.rpc.Code reported in ``last_attempt.response_status`` for an HTTP status."""
    if 200 <= status < 300:
        return 0
    if status in _HTTP_TO_RPC:
        return _HTTP_TO_RPC[status]
    if 400 <= status < 500:
        return 9  # FAILED_PRECONDITION
    if status >= 500:
        return 13  # INTERNAL
    return 2  # UNKNOWN


class Dispatcher:
    """Runs the queues of a Store; call :meth:`wake` when a queue may have work."""

    def __init__(self, store: Store, *, routes: Routes, signer: Signer) -> None:
        self.store = store
        self.routes = routes
        self.signer = signer
        self.client = HttpClient()
        self._loops: set[asyncio.Task[None]] = set()
        self._inflight: set[asyncio.Task[None]] = set()
        self._closing = False
        store.on_ready = self.wake
        store.on_run_now = self.run_now

    # -- queue loops ---------------------------------------------------------------

    def wake(self, q: QueueState) -> None:
        """Make the queue's loop look at its heap again (starting the loop if needed)."""
        if self._closing:
            return
        event = q.wakeup
        if event is None or q.loop_task is None or q.loop_task.done():
            if q.deleted:
                return
            event = q.wakeup = asyncio.Event()
            q.loop_task = asyncio.get_running_loop().create_task(self._run_queue(q, event))
            self._loops.add(q.loop_task)
            q.loop_task.add_done_callback(self._loops.discard)
        event.set()

    async def _run_queue(self, q: QueueState, event: asyncio.Event) -> None:
        while not q.deleted and not self._closing:
            event.clear()
            delay = self._pump(q)
            if delay is None:
                await event.wait()
            elif delay > 0:
                try:
                    async with asyncio.timeout(delay):
                        await event.wait()
                except TimeoutError:
                    pass
            else:
                await asyncio.sleep(0)

    def _pump(self, q: QueueState) -> float | None:
        """Start every attempt allowed now; return seconds until the next may be (None: wait)."""
        now = time.time()
        heap = q.heap
        limit = q.pb.rate_limits.max_concurrent_dispatches
        for _ in range(_BATCH):
            if q.paused or q.running >= limit:
                return None
            if now < q.throttle_until:
                return q.throttle_until - now
            while heap and (heap[0][3].gone or heap[0][3].gen != heap[0][2] or heap[0][3].running):
                heapq.heappop(heap)  # deleted, run by RunTask, or rescheduled since
            if not heap:
                return None
            if heap[0][0] > now:
                return heap[0][0] - now
            wait = q.bucket.take(now)
            if wait > 0:
                return wait
            self._start(q, heapq.heappop(heap)[3])
        return 0.0

    def run_now(self, q: QueueState, rec: TaskRecord) -> None:
        """RunTask: start an attempt at once."""
        now = time.time()
        ts_set(rec.pb.schedule_time, now)
        rec.eta = now
        self._start(q, rec)

    def _start(self, q: QueueState, rec: TaskRecord) -> None:
        rec.running = True
        q.running += 1
        task = asyncio.get_running_loop().create_task(self._attempt(q, rec))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    # -- one attempt -----------------------------------------------------------------

    async def _attempt(self, q: QueueState, rec: TaskRecord) -> None:
        pb = rec.pb
        dispatched = time.time()
        if not rec.first_attempt_at:
            rec.first_attempt_at = dispatched
            ts_set(pb.first_attempt.dispatch_time, dispatched)
        retry_count = pb.dispatch_count
        pb.dispatch_count += 1
        is_http = pb.HasField("http_request")
        status: int | None = None
        headers: dict[str, str] = {}
        failure = ""
        start = time.monotonic()
        try:
            out = build(
                pb,
                queue=q.pb,
                queue_id=q.queue_id,
                task_id=rec.task_id,
                retry_count=retry_count,
                exec_count=rec.exec_count,
                eta=rec.eta,
                prev_status=rec.prev_status,
                prev_reason=rec.prev_reason,
                routes=self.routes,
                signer=self.signer,
            )
            async with asyncio.timeout(dur_get(pb.dispatch_deadline)):
                resp = await self.client.request(out.method, out.target, out.headers, out.body)
            status, headers = resp.status, resp.headers
        except TimeoutError:
            failure = "deadline_exceeded"
        except (HttpClientError, RoutingError) as e:
            failure = "unreachable"
            logger.info("task %s: %s", rec.task_id, e)
        except Exception:
            # A bug here must not strand the task: count the attempt as failed and retry.
            failure = "unreachable"
            logger.exception("task %s: unexpected error while dispatching", rec.task_id)
        finally:
            rec.running = False
            q.running -= 1
            self.wake(q)
        latency_ms = (time.monotonic() - start) * 1000.0
        self._log(q, rec, retry_count + 1, status, failure, latency_ms)
        self._finish(q, rec, status, headers, failure, is_http, dispatched)

    def _finish(
        self,
        q: QueueState,
        rec: TaskRecord,
        status: int | None,
        headers: dict[str, str],
        failure: str,
        is_http: bool,
        dispatched: float,
    ) -> None:
        pb = rec.pb
        now = time.time()
        last = pb.last_attempt
        last.Clear()
        ts_set(last.schedule_time, rec.eta)
        ts_set(last.dispatch_time, dispatched)
        if status is not None:
            pb.response_count += 1
            # HTTP targets do not count 5xx answers as executions; App Engine counts all.
            if not is_http or status < 500:
                rec.exec_count += 1
            ts_set(last.response_time, now)
            last.response_status.code = rpc_code(status)
            last.response_status.message = f"HTTP status code {status}"
        elif failure == "deadline_exceeded":
            last.response_status.code = 4
            last.response_status.message = "The dispatch deadline was exceeded."
        else:
            last.response_status.code = 14
            last.response_status.message = "The target could not be reached."
        if rec.gone:
            return  # deleted or purged while in flight: the answer no longer matters
        # Written within 20 ms (db.OUTCOME_COMMIT_SECONDS); a kill before that only
        # makes the task run again, which at-least-once delivery allows.
        self.store.journal.commit_soon()
        if status is not None and 200 <= status < 300:
            q.bury(rec, now)
            return
        if is_http:
            rec.prev_status = (
                status if status is not None else (504 if failure == "deadline_exceeded" else 503)
            )
            rec.prev_reason = ""
        else:
            rec.prev_status = status if status is not None else 0
            rec.prev_reason = "App Error" if status is not None else "Instance Unavailable"
        if rec.policy.exhausted(pb.dispatch_count, rec.first_attempt_at, now):
            logger.warning(
                "task %s failed for good after %d attempts",
                pb.name,
                pb.dispatch_count,
                extra={"labels": {"queue": q.queue_id, "task": rec.task_id}},
            )
            q.bury(rec, now)
            return
        delay = rec.policy.backoff(pb.dispatch_count - 1)
        if status is not None and (status == 503 or (is_http and status == 429)):
            retry_after = parse_retry_after(headers.get("retry-after"), now)
            if retry_after is not None:
                delay = max(delay, retry_after)
            # The target asked for less traffic: hold the whole queue back, not just this task.
            pause = retry_after if retry_after is not None else q.policy.min_backoff
            q.throttle_until = max(q.throttle_until, now + pause)
        eta = now + delay
        ts_set(pb.schedule_time, eta)
        q.schedule(rec, eta)
        q.save_task(rec)
        self.wake(q)

    def _log(
        self,
        q: QueueState,
        rec: TaskRecord,
        attempt: int,
        status: int | None,
        failure: str,
        latency_ms: float,
    ) -> None:
        if not logger.isEnabledFor(logging.INFO):
            return
        shown = str(status) if status is not None else failure
        with task_log_context(rec.pb, task=rec.task_id, attempt=attempt):
            logger.info(
                "dispatch %s/%s attempt %d -> %s in %.1f ms",
                q.queue_id,
                rec.task_id,
                attempt,
                shown,
                latency_ms,
                extra={
                    "labels": {
                        "queue": q.queue_id,
                        "status": shown,
                        "latency": f"{latency_ms / 1000.0:.6f}s",
                    }
                },
            )

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Start a loop for every queue."""
        for q in list(self.store.queues.values()):
            self.wake(q)

    async def close(self, grace: float) -> None:
        """Stop dispatching; wait up to ``grace`` seconds for attempts in flight, then cancel."""
        self._closing = True
        for q in self.store.queues.values():
            if q.wakeup is not None:
                q.wakeup.set()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=grace)
        for task in list(self._inflight) + list(self._loops):
            task.cancel()
        await asyncio.gather(*self._inflight, *self._loops, return_exceptions=True)
        self.client.close()
