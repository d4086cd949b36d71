"""Building a service for gunicorn: a refused configuration is one clear line, not tracebacks."""

from __future__ import annotations

import sys
from collections.abc import Callable

from flask import Flask

from offload.errors import OffloadError

__all__ = ["build"]

# gunicorn's arbiter stops (instead of restarting the worker forever) on this exit code.
_APP_LOAD_ERROR = 4


def build(service: str, factory: Callable[[], Flask]) -> Flask:
    """``factory()``; on a configuration or store error, say why on stderr and exit."""
    try:
        return factory()
    except OffloadError as e:
        print(f"offload {service}: cannot start: {e}", file=sys.stderr, flush=True)
        raise SystemExit(_APP_LOAD_ERROR) from None
