"""The application's job handlers. The examples in :mod:`jobs.demo` ship with Offload."""

from __future__ import annotations

from jobs import demo

__all__ = ["demo"]
