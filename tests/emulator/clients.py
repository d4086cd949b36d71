"""Real google-cloud-tasks clients of every version and transport, pointed at an emulator."""

from __future__ import annotations

import importlib
from typing import Any

import grpc
import pytest
from google.api_core import exceptions
from google.auth.credentials import AnonymousCredentials

from tests.emulator.conftest import Emulator

TRANSPORTS = ("grpc", "rest")
# Every surface of the API a client reaches: (version, transport).
SURFACES = [(v, t) for v in ("v2", "v2beta3") for t in TRANSPORTS]


def module(version: str) -> Any:
    """``google.cloud.tasks_v2beta3`` for ``v2beta3``."""
    return importlib.import_module(f"google.cloud.tasks_{version}")


def client(emulator: Emulator, version: str, transport: str) -> Any:
    """A CloudTasksClient of ``version`` over ``transport`` (``grpc`` or ``rest``)."""
    mod = module(version)
    if transport == "rest":
        return mod.CloudTasksClient(
            transport="rest",
            client_options={"api_endpoint": emulator.http},
            credentials=AnonymousCredentials(),
        )
    transports = importlib.import_module(
        f"google.cloud.tasks_{version}.services.cloud_tasks.transports"
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{emulator.port}")
    return mod.CloudTasksClient(transport=transports.CloudTasksGrpcTransport(channel=channel))


def surface_fixture(surfaces: list[tuple[str, str]]) -> Any:
    """A ``surface`` fixture, one parameter per (version, transport): (version, its client).

    A module that tests calls on these surfaces assigns it: ``surface = surface_fixture(...)``.
    """

    @pytest.fixture(params=surfaces, ids=[f"{v}-{t}" for v, t in surfaces])
    def surface(request: pytest.FixtureRequest, emulator: Emulator) -> tuple[str, Any]:
        version, transport = request.param
        return version, client(emulator, version, transport)

    return surface


def status(error: exceptions.GoogleAPICallError) -> tuple[str, str]:
    """An API error's google.rpc code name and the emulator's own message, from either transport.

    Over REST the client prefixes the message with the request's method and URL, and maps
    the HTTP status alone to a class (400 is BadRequest); the JSON body has both as sent.
    """
    if hasattr(error.response, "json"):  # a requests.Response: REST
        body = error.response.json()["error"]
        return str(body["status"]), str(body["message"])
    assert error.grpc_status_code is not None
    return error.grpc_status_code.name, error.message
