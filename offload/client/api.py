"""The HTTP client of the Offload API: typed jobs, typed errors, safe retries."""

from __future__ import annotations

import builtins
import random
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import httpx

from offload.client.errors import (
    ConflictError,
    OffloadAPIError,
    ServiceUnreachableError,
    error_from_problem,
    error_from_response,
)
from offload.client.models import Job

__all__ = ["DEFAULT_URL", "Client"]

DEFAULT_URL = "http://127.0.0.1:8080"  # where `make run` serves web
_MAX_RETRY_AFTER_SECONDS = 30.0
BATCH_MAX = 100  # submissions per POST /jobs/batch


class Client:
    """A client of one Offload service (``Client("https://jobs.example.com", api_key=...)``).

    Requests that cannot make a second job (reads, cancel, and submit, which always
    carries an Idempotency-Key) are retried on connection errors and 503 answers, with
    exponential backoff, ``retries`` times; resubmit is retried only when the request
    provably never left (connection refused) or was answered 503.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff_seconds: float = 0.25,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = "offload-client/0.1",
    ) -> None:
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.retries = retries
        self.backoff_seconds = backoff_seconds
        self.http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        """Close the connections."""
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport ------------------------------------------------------------------

    def backoff(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based), with jitter."""
        if retry_after is not None:
            return min(retry_after, _MAX_RETRY_AFTER_SECONDS)
        return float(min(8.0, self.backoff_seconds * 2**attempt) * random.uniform(0.5, 1.0))

    def request(
        self,
        method: str,
        path: str,
        *,
        repeatable: bool = True,
        **kwargs: Any,
    ) -> httpx.Response:
        """Send a request, retrying what may be retried; a typed error for any error answer.

        ``repeatable`` says whether sending it twice is harmless; if not, only a request
        that never reached the service (connection refused) is sent again.
        """
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.UnsupportedProtocol as e:
                raise ServiceUnreachableError(f"cannot reach {self.base_url}: {e}") from e
            except httpx.TransportError as e:
                unsent = isinstance(e, httpx.ConnectError | httpx.ConnectTimeout)
                if last or not (unsent or repeatable):
                    raise ServiceUnreachableError(
                        f"no answer from {self.base_url} to {method} {path}: "
                        f"{type(e).__name__}: {e}"
                    ) from e
                time.sleep(self.backoff(attempt))
                continue
            if response.status_code == 503 and not last:
                time.sleep(self.backoff(attempt, error_from_response(response).retry_after))
                continue
            if response.is_error:
                raise error_from_response(response)
            return response
        raise AssertionError("unreachable")  # the loop returns or raises

    def _job(self, response: httpx.Response) -> Job:
        data = response.json()
        if not isinstance(data, dict):
            raise ServiceUnreachableError(f"{self.base_url} answered something not a job")
        return Job.from_dict(data)

    # -- the API ----------------------------------------------------------------------

    def submit(
        self,
        type: str,
        payload: dict[str, Any] | None = None,
        *,
        delay_seconds: float | None = None,
        deadline_seconds: float | None = None,
        idempotency_key: str | None = None,
        notify: dict[str, Any] | str | None = None,
    ) -> Job:
        """Submit a job; retried safely, as the request always carries an Idempotency-Key."""
        body: dict[str, Any] = {"type": type, "payload": payload or {}}
        if delay_seconds is not None:
            body["delay_seconds"] = delay_seconds
        if deadline_seconds is not None:
            body["deadline_seconds"] = deadline_seconds
        if notify is not None:
            body["notify"] = {"url": notify} if isinstance(notify, str) else notify
        # A key of our own when the caller gives none: a retry after a lost answer then
        # returns the job the first try made instead of making a second one.
        key = idempotency_key or "offload-client-" + secrets.token_hex(16)
        return self._job(self.request("POST", "/jobs", json=body, headers={"Idempotency-Key": key}))

    def submit_batch(self, submissions: Sequence[dict[str, Any]]) -> list[Job | OffloadAPIError]:
        """Submit many jobs with ``POST /jobs/batch`` (100 per request); one entry each.

        Each submission is a ``POST /jobs`` body (``type``, ``payload``, ...), with an
        optional ``idempotency_key``; the entry is the job, or the error of that item
        alone. Items without a key get one, so a retried request makes no job twice.
        """
        entries: list[Job | OffloadAPIError] = []
        for start in range(0, len(submissions), BATCH_MAX):
            chunk = [
                {"idempotency_key": "offload-client-" + secrets.token_hex(16), **item}
                for item in submissions[start : start + BATCH_MAX]
            ]
            response = self.request("POST", "/jobs/batch", json={"jobs": chunk})
            request_id = response.headers.get("X-Request-ID")
            answered = response.json().get("jobs") if isinstance(response.json(), dict) else None
            if not isinstance(answered, list) or len(answered) != len(chunk):
                raise ServiceUnreachableError(f"{self.base_url} answered something not a batch")
            for entry in answered:
                if isinstance(entry, dict) and isinstance(entry.get("job"), dict):
                    entries.append(Job.from_dict(entry["job"]))
                else:
                    entry = entry if isinstance(entry, dict) else {}
                    status = entry.get("status")
                    code = status if isinstance(status, int) else 500
                    entries.append(error_from_problem(code, entry.get("problem"), request_id))
        return entries

    def get(self, job_id: str) -> Job:
        """The job's current state."""
        return self._job(self.request("GET", f"/jobs/{job_id}"))

    def cancel(self, job_id: str) -> Job:
        """Cancel a job; the answer is the job after the request (``cancel_requested`` if running).

        Raises :class:`ConflictError` when the job had already finished otherwise.
        """
        try:
            response = self.request("DELETE", f"/jobs/{job_id}")
        except ConflictError:
            # A retry after a lost answer finds the job cancelled by the first try.
            job = self.get(job_id)
            if job.status == "cancelled":
                return job
            raise
        return self._job(response) if response.status_code == 202 else self.get(job_id)

    def resubmit(self, job_id: str) -> Job:
        """Submit a failed or cancelled job again, as a new job; the answer is the new job."""
        return self._job(self.request("POST", f"/jobs/{job_id}/resubmit", repeatable=False))

    def wait(
        self,
        job_id: str,
        timeout: float | None = None,
        on_progress: Callable[[Job], None] | None = None,
    ) -> Job:
        """Block until the job finishes and return it; ``on_progress`` sees every change.

        Follows the job's event stream, falling back to long-polling (and to polling at
        the service's ``Retry-After`` pace where long-polls are not held). Raises
        :class:`WaitTimeoutError` after ``timeout`` seconds; the job keeps running.
        """
        from offload.client.waiting import wait_for

        return wait_for(self, job_id, timeout=timeout, on_progress=on_progress)

    def list(
        self,
        *,
        status: str | None = None,
        type: str | None = None,
        page_size: int | None = None,
    ) -> Iterator[Job]:
        """Every job visible to these credentials, newest first, reading page after page."""
        cursor: str | None = None
        while True:
            params: dict[str, str | int] = {}
            for name, value in (
                ("status", status),
                ("type", type),
                ("limit", page_size),
                ("cursor", cursor),
            ):
                if value is not None:
                    params[name] = value
            page = self.request("GET", "/jobs", params=params).json()
            items: builtins.list[Any] = page.get("jobs") or []
            for item in items:
                if isinstance(item, dict):
                    yield Job.from_dict(item)
            cursor = page.get("next_cursor")
            if not cursor:
                return
