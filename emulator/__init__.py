"""A local Cloud Tasks emulator: the ``google.cloud.tasks.v2.CloudTasks`` gRPC service.

Runs as its own process (``python -m emulator``); nothing in ``web/`` or ``worker/``
imports it. See ``emulator/README.md`` for usage and the deliberate differences from
real Cloud Tasks.
"""
