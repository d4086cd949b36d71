"""IAM policies kept per queue, and the CMEK config kept per location.

The emulator checks no permissions (every caller may do everything), but tools that read
and write policies (``gcloud tasks queues add-iam-policy-binding``'s calls, Terraform)
see what they wrote, with etags that refuse a concurrent change as IAM does.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import grpc
from google.iam.v1 import iam_policy_pb2, policy_pb2

from emulator import errors, names
from emulator.errors import ApiError, invalid
from emulator.state import Store

# An empty policy's etag, as Google's IAM answers it for a resource without a policy.
EMPTY_ETAG = b"\x00\x20\x01"
# Permissions of Cloud Tasks' queues (roles/cloudtasks.*); TestIamPermissions grants them all.
QUEUE_PERMISSIONS = frozenset(
    {
        "cloudtasks.queues.get",
        "cloudtasks.queues.update",
        "cloudtasks.queues.delete",
        "cloudtasks.queues.pause",
        "cloudtasks.queues.resume",
        "cloudtasks.queues.purge",
        "cloudtasks.queues.getIamPolicy",
        "cloudtasks.queues.setIamPolicy",
        "cloudtasks.tasks.create",
        "cloudtasks.tasks.delete",
        "cloudtasks.tasks.fullView",
        "cloudtasks.tasks.get",
        "cloudtasks.tasks.list",
        "cloudtasks.tasks.run",
    }
)
_KMS_KEY = re.compile(r"^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$")
_CMEK_NAME = re.compile(r"^(projects/[^/]+/locations/[^/]+)/cmekConfig$")


def _policy_of(store: Store, resource: str) -> Any:
    q = store.queues.get(resource)
    if q is None:
        names.split_queue(resource)
        raise ApiError(grpc.StatusCode.NOT_FOUND, errors.QUEUE_NOT_FOUND)
    policy = policy_pb2.Policy()
    if q.iam is None:
        policy.etag = EMPTY_ETAG
    else:
        policy.ParseFromString(q.iam)
    return policy


def get_iam_policy(store: Store, request: Any) -> Any:
    """GetIamPolicy: the queue's policy, empty (etag only) when none was set."""
    return _policy_of(store, request.resource)


def set_iam_policy(store: Store, request: Any) -> Any:
    """SetIamPolicy: replace the policy (or the masked fields); a stale etag is ABORTED."""
    current = _policy_of(store, request.resource)
    new = request.policy
    if new.etag and new.etag != current.etag:
        raise ApiError(
            grpc.StatusCode.ABORTED,
            "There were concurrent policy changes. Please retry the whole read-modify-write "
            "with exponential backoff.",
        )
    paths = list(request.update_mask.paths) or ["bindings", "etag"]
    out = policy_pb2.Policy()
    out.CopyFrom(current)
    for path in paths:
        if path == "etag":
            continue
        if path not in ("bindings", "audit_configs", "version"):
            raise invalid(f"Invalid update mask path: {path}.")
        out.ClearField(path)
        if path == "version":
            out.version = new.version
        else:
            getattr(out, path).extend(getattr(new, path))
    conditional = any(b.HasField("condition") for b in out.bindings)
    version = max(new.version, 3 if conditional else 1)
    if conditional and new.version and new.version < 3:
        raise invalid("Policies with conditions must be of version 3.")
    out.version = version
    out.ClearField("etag")
    out.etag = hashlib.sha256(out.SerializeToString() + current.etag).digest()[:8]
    q = store.queues[request.resource]
    q.iam = out.SerializeToString()
    with store.transaction():
        q.save()
    return out


def test_iam_permissions(store: Store, request: Any) -> Any:
    """TestIamPermissions: the emulator checks no permissions, so every queue one is held."""
    _policy_of(store, request.resource)
    out = iam_policy_pb2.TestIamPermissionsResponse()
    out.permissions.extend(p for p in request.permissions if p in QUEUE_PERMISSIONS)
    return out


def _location_of(name: str) -> str:
    m = _CMEK_NAME.match(name)
    if not m:
        raise invalid(
            'CmekConfig name must be formatted: "projects/<PROJECT_ID>/locations/'
            '<LOCATION_ID>/cmekConfig"'
        )
    return names.check_location(m.group(1))


def get_cmek_config(store: Store, name: str, config_type: Any) -> Any:
    """GetCmekConfig: the location's key (empty: CMEK off, the default)."""
    _location_of(name)
    return config_type(name=name, kms_key=store.cmek.get(name, ""))


def update_cmek_config(store: Store, config: Any, paths: list[str], config_type: Any) -> Any:
    """UpdateCmekConfig: set (or, with an empty key, clear) the location's KMS key."""
    location = _location_of(config.name)
    for path in paths:
        if path not in ("kms_key", "kmsKey"):
            raise invalid(f"Invalid update mask path: {path}.")
    key = config.kms_key
    if key and not _KMS_KEY.match(key):
        raise invalid(
            'CmekConfig.kms_key must be formatted: "projects/<PROJECT_ID>/locations/'
            '<LOCATION_ID>/keyRings/<KEY_RING_ID>/cryptoKeys/<KEY_ID>"'
        )
    if key and key.split("/")[3] != location.split("/")[3]:
        raise invalid("CmekConfig.kms_key must be in the same location as the config.")
    store.cmek[config.name] = key
    with store.transaction():
        store.journal.put_meta("cmek:" + config.name, key.encode())
    return config_type(name=config.name, kms_key=key)
