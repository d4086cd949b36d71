"""Message conversion between the Cloud Tasks API versions (v2 <-> v2beta3, v2beta2).

The versions do not share a wire shape (the same field has different numbers, e.g.
``Task.dispatch_deadline`` is 6 in v2 and 12 in v2beta3), so serialize/parse cannot be
used; messages are copied field by field by *name*, recursively, with the few renames
and moves of each version in ``_PATHS``. Fields one side lacks are dropped here; the
version surface (``versions.py``) deals with the ones that mean something.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pool, message_factory

V2 = "v2"
_PREFIX = "google.cloud.tasks."
# Message -> {v2 field name: dotted path of the same value in that version}.
_PATHS: dict[str, dict[str, dict[str, str]]] = {
    "v2beta3": {
        "Queue": {
            "app_engine_routing_override": "app_engine_http_queue.app_engine_routing_override"
        },
    },
    "v2beta2": {
        "Queue": {
            "app_engine_routing_override": "app_engine_http_target.app_engine_routing_override"
        },
        "RateLimits": {
            "max_dispatches_per_second": "max_tasks_dispatched_per_second",
            "max_concurrent_dispatches": "max_concurrent_tasks",
        },
        "AppEngineHttpRequest": {"relative_uri": "relative_url", "body": "payload"},
        "Task": {
            "dispatch_count": "status.attempt_dispatch_count",
            "response_count": "status.attempt_response_count",
            "first_attempt": "status.first_attempt_status",
            "last_attempt": "status.last_attempt_status",
        },
    },
}
# Messages renamed in a version: v2 name -> that version's name.
_RENAMED: dict[str, dict[str, str]] = {"v2beta2": {"Attempt": "AttemptStatus"}}
_ANY = "google.protobuf.Any"
_SAME = ("google.protobuf.", "google.rpc.", "google.type.", "google.iam.")

Decorate = Callable[[Any, Any], None]


def version_of(full_name: str) -> str | None:
    """``v2beta3`` for ``google.cloud.tasks.v2beta3.Queue``; None outside Cloud Tasks."""
    if not full_name.startswith(_PREFIX):
        return None
    return full_name[len(_PREFIX) :].split(".", 1)[0]


def _short(full_name: str) -> str:
    return full_name[len(_PREFIX) :].split(".", 1)[1]


def counterpart(full_name: str, version: str) -> str:
    """The name of the same message in ``version``."""
    src = version_of(full_name)
    assert src is not None
    short = _short(full_name)
    if src != V2:
        short = {v: k for k, v in _RENAMED.get(src, {}).items()}.get(short, short)
    if version != V2:
        short = _RENAMED.get(version, {}).get(short, short)
    return f"{_PREFIX}{version}.{short}"


def message_class(full_name: str) -> Any:
    """The registered message class of a full name."""
    return message_factory.GetMessageClass(
        descriptor_pool.Default().FindMessageTypeByName(full_name)
    )


class Converter:
    """Copies messages of one version into another; ``decorate`` hooks add what v2 lacks."""

    def __init__(self, version: str, decorate: dict[str, Decorate] | None = None) -> None:
        self.version = version
        self.paths = _PATHS.get(version, {})
        self.inverse = {m: {p: n for n, p in f.items()} for m, f in self.paths.items()}
        # Hooks by v2 short name, called with (converted message, v2 source) after v2 -> X.
        self.decorate = decorate or {}

    def to_v2(self, msg: Any) -> Any:
        """A v2 copy of a message of this version."""
        return self._convert(msg, V2)

    def from_v2(self, msg: Any) -> Any:
        """This version's copy of a v2 message."""
        return self._convert(msg, self.version)

    def _convert(self, msg: Any, target: str) -> Any:
        full = msg.DESCRIPTOR.full_name
        if version_of(full) is None:
            if full == _ANY or _has_any(msg.DESCRIPTOR):
                return self._copy_same(msg, target)
            return msg
        out = message_class(counterpart(full, target))()
        self._fill(msg, out, target)
        return out

    def _copy_same(self, msg: Any, target: str) -> Any:
        """A message of a shared type (Operation, Status): only its Any payloads change."""
        if msg.DESCRIPTOR.full_name == _ANY:
            return self._convert_any(msg, target)
        out = type(msg)()
        for fd, value in msg.ListFields():
            self._put(out, fd.name, fd, value, target)
        return out

    def _convert_any(self, msg: Any, target: str) -> Any:
        type_name = msg.type_url.rsplit("/", 1)[-1]
        if version_of(type_name) is None:
            return msg
        inner = message_class(type_name).FromString(msg.value)
        converted = self._convert(inner, target)
        out = type(msg)()
        out.Pack(converted)
        return out

    def _fill(self, src: Any, dst: Any, target: str) -> None:
        short = _short(src.DESCRIPTOR.full_name) if target != V2 else None
        if target == V2:
            v2_short = _short(dst.DESCRIPTOR.full_name)
            inverse = self.inverse.get(v2_short, {})
            wrappers = {p.split(".")[0] for p in inverse if "." in p}
            for fd, value in src.ListFields():
                if fd.name in wrappers:  # e.g. Task.status: its fields move up in v2
                    for sub_fd, sub_value in value.ListFields():
                        name = inverse.get(f"{fd.name}.{sub_fd.name}")
                        if name is not None:
                            self._put(dst, name, sub_fd, sub_value, target)
                    continue
                self._put(dst, inverse.get(fd.name, fd.name), fd, value, target)
            _fix_to_v2(self.version, v2_short, src, dst)
            return
        assert short is not None
        paths = self.paths.get(short, {})
        for fd, value in src.ListFields():
            holder = dst
            *heads, last = paths.get(fd.name, fd.name).split(".")
            for head in heads:
                holder = getattr(holder, head)
            if last in holder.DESCRIPTOR.fields_by_name:
                self._put(holder, last, fd, value, target)
        _fix_from_v2(self.version, short, src, dst)
        hook = self.decorate.get(short)
        if hook is not None:
            hook(dst, src)

    def _put(self, dst: Any, name: str, fd: Any, value: Any, target: str) -> None:
        """Set ``dst.name`` from a source field's value (converting messages and enums)."""
        dfd = dst.DESCRIPTOR.fields_by_name.get(name)
        if dfd is None:
            return  # a field the other version does not have
        if fd.message_type is not None and fd.message_type.GetOptions().map_entry:
            vfd = fd.message_type.fields_by_name["value"]
            if vfd.message_type is None:
                getattr(dst, name).update(value)
            else:
                for k, v in value.items():
                    getattr(dst, name)[k].CopyFrom(self._message(v, target))
            return
        if fd.is_repeated:
            field = getattr(dst, name)
            if fd.message_type is not None:
                field.extend(self._message(v, target) for v in value)
            elif fd.enum_type is not None:
                field.extend(_enum(v, fd, dfd) for v in value)
            else:
                field.extend(value)
            return
        if fd.message_type is not None:
            getattr(dst, name).CopyFrom(self._message(value, target))
        elif fd.enum_type is not None:
            setattr(dst, name, _enum(value, fd, dfd))
        else:
            setattr(dst, name, value)

    def _message(self, value: Any, target: str) -> Any:
        full = value.DESCRIPTOR.full_name
        if full == _ANY:
            return self._convert_any(value, target)
        if version_of(full) is None and full.startswith(_SAME) and not _has_any(value.DESCRIPTOR):
            return value
        return self._convert(value, target)


def _enum(value: int, src_fd: Any, dst_fd: Any) -> int:
    # By name: the versions' enums agree today, but numbers are not promised to.
    name = src_fd.enum_type.values_by_number[value].name
    found = dst_fd.enum_type.values_by_name.get(name)
    return found.number if found is not None else 0


_ANY_CACHE: dict[str, bool] = {}


def _has_any(desc: Any) -> bool:
    """True when a message type can hold a ``google.protobuf.Any`` (Operation, Status)."""
    found = _ANY_CACHE.get(desc.full_name)
    if found is None:
        found = _ANY_CACHE[desc.full_name] = _reaches_any(desc, set())
    return found


def _reaches_any(desc: Any, seen: set[str]) -> bool:
    if desc.full_name in seen:
        return False
    seen.add(desc.full_name)
    for fd in desc.fields:
        if fd.message_type is not None:
            if fd.message_type.full_name == _ANY:
                return True
            if _reaches_any(fd.message_type, seen):
                return True
    return False


def _fix_to_v2(version: str, short: str, src: Any, dst: Any) -> None:
    if version == "v2beta2" and short == "RetryConfig" and src.unlimited_attempts:
        dst.max_attempts = -1


def _fix_from_v2(version: str, short: str, src: Any, dst: Any) -> None:
    if version == "v2beta2" and short == "RetryConfig" and src.max_attempts == -1:
        dst.unlimited_attempts = True
