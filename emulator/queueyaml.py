"""queue.yaml -> Queue messages, field by field as Cloud Tasks maps them."""

from __future__ import annotations

import re
from typing import Any

import yaml

from emulator.errors import ApiError
from emulator.pbutil import Queue, dur_set
from emulator.retry import DEFAULT_MAX_BACKOFF, DEFAULT_MAX_DOUBLINGS, DEFAULT_MIN_BACKOFF
from emulator.validate import fill_queue

DEFAULT_RATE = "5/s"
DEFAULT_BUCKET_SIZE = 5
_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*/\s*([smhd])\s*$")
_AGE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([smhd])\s*$")


class QueueYamlError(Exception):
    """queue.yaml could not be read or has a bad value."""


def parse_rate(text: str) -> float:
    """``5/s``, ``1/m``, ``0.5/s``, ``10/h``, ``1/d`` -> dispatches per second."""
    m = _RATE.match(str(text))
    if not m:
        raise QueueYamlError(f"bad rate {text!r} (expected e.g. 5/s, 1/m)")
    return float(m.group(1)) / _UNITS[m.group(2)]


def parse_age(text: str) -> float:
    """``2d``, ``30m``, ``10s`` -> seconds."""
    m = _AGE.match(str(text))
    if not m:
        raise QueueYamlError(f"bad task_age_limit {text!r} (expected e.g. 2d, 30m)")
    return float(m.group(1)) * _UNITS[m.group(2)]


def queue_from_entry(entry: dict[str, Any], *, location: str) -> Any:
    """One queue.yaml entry as a (validated, defaulted) Queue message."""
    name = entry.get("name")
    if not name:
        raise QueueYamlError("a queue without a name")
    q = Queue()
    q.name = f"{location}/queues/{name}"
    rl = q.rate_limits
    rl.max_dispatches_per_second = parse_rate(entry.get("rate", DEFAULT_RATE))
    rl.max_burst_size = int(entry.get("bucket_size", DEFAULT_BUCKET_SIZE))
    rl.max_concurrent_dispatches = int(entry.get("max_concurrent_requests", 0))
    rp = entry.get("retry_parameters") or {}
    rc = q.retry_config
    # App Engine retries forever when task_retry_limit is absent; 0 means "no retry".
    limit = rp.get("task_retry_limit")
    rc.max_attempts = -1 if limit is None else max(1, int(limit))
    if "task_age_limit" in rp:
        dur_set(rc.max_retry_duration, parse_age(rp["task_age_limit"]))
    dur_set(rc.min_backoff, float(rp.get("min_backoff_seconds", DEFAULT_MIN_BACKOFF)))
    dur_set(rc.max_backoff, float(rp.get("max_backoff_seconds", DEFAULT_MAX_BACKOFF)))
    rc.max_doublings = int(rp.get("max_doublings", DEFAULT_MAX_DOUBLINGS))
    target = entry.get("target")
    if target:
        # "version.service" or just "service"
        version, _, service = str(target).rpartition(".")
        q.app_engine_routing_override.service = service
        if version:
            q.app_engine_routing_override.version = version
    fill_queue(q, from_yaml=True)
    return q


def load(path: str, *, location: str) -> list[Any]:
    """Every push queue of a queue.yaml file."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        raise QueueYamlError(f"cannot read {path}: {e}") from e
    out = []
    for entry in doc.get("queue") or []:
        if entry.get("mode", "push") != "push":
            continue  # pull queues are not Cloud Tasks v2 queues
        try:
            out.append(queue_from_entry(entry, location=location))
        except ApiError as e:
            raise QueueYamlError(f"queue {entry.get('name')!r}: {e.message}") from e
        except (ValueError, TypeError) as e:
            raise QueueYamlError(f"queue {entry.get('name')!r}: {e}") from e
    return out
