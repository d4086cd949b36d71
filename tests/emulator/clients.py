"""Real google-cloud-tasks clients of every version and transport, pointed at an emulator."""

from __future__ import annotations

import importlib
from typing import Any

import grpc
from google.auth.credentials import AnonymousCredentials

from tests.emulator.conftest import Emulator

TRANSPORTS = ("grpc", "rest")


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
