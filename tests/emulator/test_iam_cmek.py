"""IAM policies per queue and the CMEK config per location, through the real client."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from google.api_core import exceptions
from google.cloud import tasks_v2
from google.iam.v1 import iam_policy_pb2, policy_pb2

from tests.emulator.conftest import PARENT, Emulator

ROLE = "roles/cloudtasks.enqueuer"
MEMBER = "serviceAccount:web@emu-test.iam.gserviceaccount.com"


def test_iam_policy_is_kept_per_queue_with_etags(
    emulator: Emulator, make_queue: Callable[..., str]
) -> None:
    queue, other = make_queue(), make_queue()
    empty = emulator.client.get_iam_policy(resource=queue)
    assert list(empty.bindings) == [] and empty.etag
    policy = policy_pb2.Policy(
        bindings=[policy_pb2.Binding(role=ROLE, members=[MEMBER])], etag=empty.etag
    )
    stored = emulator.client.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=queue, policy=policy)
    )
    assert stored.version == 1 and stored.etag != empty.etag
    assert emulator.client.get_iam_policy(resource=queue) == stored
    assert list(emulator.client.get_iam_policy(resource=other).bindings) == []
    with pytest.raises(exceptions.Aborted):  # a stale etag: someone changed it meanwhile
        emulator.client.set_iam_policy(
            request=iam_policy_pb2.SetIamPolicyRequest(resource=queue, policy=policy)
        )
    allowed = emulator.client.test_iam_permissions(
        resource=queue, permissions=["cloudtasks.tasks.create", "storage.buckets.get"]
    )
    assert list(allowed.permissions) == ["cloudtasks.tasks.create"]
    with pytest.raises(exceptions.NotFound):
        emulator.client.get_iam_policy(resource=f"{PARENT}/queues/no-such-queue")


def test_iam_policy_survives_a_restart(
    start_emulator: Callable[..., Emulator], tmp_path: Path
) -> None:
    data = tmp_path / "d.sqlite3"
    emu = start_emulator("--data-file", str(data))
    queue = f"{PARENT}/queues/iam"
    emu.client.create_queue(parent=PARENT, queue=tasks_v2.Queue(name=queue))
    policy = policy_pb2.Policy(bindings=[policy_pb2.Binding(role=ROLE, members=[MEMBER])])
    stored = emu.client.set_iam_policy(
        request=iam_policy_pb2.SetIamPolicyRequest(resource=queue, policy=policy)
    )
    key = "projects/emu-test/locations/us-central1/keyRings/r/cryptoKeys/k"
    name = f"{PARENT}/cmekConfig"
    emu.client.update_cmek_config(cmek_config=tasks_v2.CmekConfig(name=name, kms_key=key))
    emu.kill()
    again = start_emulator("--data-file", str(data))
    assert again.client.get_iam_policy(resource=queue) == stored
    assert again.client.get_cmek_config(name=name).kms_key == key


def test_cmek_config_get_update_and_errors(emulator: Emulator) -> None:
    name = f"{PARENT}/cmekConfig"
    assert emulator.client.get_cmek_config(name=name) == tasks_v2.CmekConfig(name=name)
    key = "projects/emu-test/locations/us-central1/keyRings/ring/cryptoKeys/key"
    updated = emulator.client.update_cmek_config(
        cmek_config=tasks_v2.CmekConfig(name=name, kms_key=key)
    )
    assert updated.kms_key == key
    assert emulator.client.get_cmek_config(name=name).kms_key == key
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.update_cmek_config(
            cmek_config=tasks_v2.CmekConfig(name=name, kms_key="not-a-key")
        )
    with pytest.raises(exceptions.InvalidArgument):
        emulator.client.get_cmek_config(name=f"{PARENT}/somethingElse")
    emulator.client.update_cmek_config(cmek_config=tasks_v2.CmekConfig(name=name, kms_key=""))
    assert emulator.client.get_cmek_config(name=name).kms_key == ""
