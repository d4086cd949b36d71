"""A Python client of the Offload API, without Flask or Google Cloud libraries.

from offload.client import Client

with Client("http://127.0.0.1:8080", api_key=None) as offload:
    job = offload.submit("demo.sleep", {"seconds": 3})
    done = offload.wait(job.id, timeout=60, on_progress=lambda j: print(j.progress))
    print(done.status, done.result)
"""

from __future__ import annotations

from offload.client.api import DEFAULT_URL, Client
from offload.client.errors import (
    AuthenticationError,
    ClientError,
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    OffloadAPIError,
    PermissionDeniedError,
    RequestError,
    ServerError,
    ServiceUnavailableError,
    ServiceUnreachableError,
    WaitTimeoutError,
)
from offload.client.models import FINISHED, Attempt, Job, JobFailure, Progress

__all__ = [
    "DEFAULT_URL",
    "FINISHED",
    "Attempt",
    "AuthenticationError",
    "Client",
    "ClientError",
    "ConflictError",
    "InvalidRequestError",
    "Job",
    "JobFailure",
    "NotFoundError",
    "OffloadAPIError",
    "PermissionDeniedError",
    "Progress",
    "RequestError",
    "ServerError",
    "ServiceUnavailableError",
    "ServiceUnreachableError",
    "WaitTimeoutError",
]
