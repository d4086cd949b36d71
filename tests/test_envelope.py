"""The task envelope: the one codec of what web puts in a Cloud Task and the worker reads."""

from __future__ import annotations

import pytest

from offload.envelope import TaskEnvelope
from offload.errors import EnvelopeError
from offload.ids import new_job_id


def test_a_job_envelope_round_trips_and_keeps_only_its_own_keys() -> None:
    job_id = new_job_id()
    body = TaskEnvelope.make(job_id=job_id, job_type="demo.echo", request_id="r1").encode()
    assert len(body) < 200  # the payload stays in the store
    decoded = TaskEnvelope.decode(body[:-1] + b',"extra":"x","type2":1}')
    assert (decoded.job_id, decoded.job_type, decoded["request_id"]) == (job_id, "demo.echo", "r1")
    assert "extra" not in decoded


@pytest.mark.parametrize(
    "body", [b"", b"{", b"[]", b'{"job_id": 5}', b'{"job_id": "not-a-job"}', b"[" * 100_000]
)
def test_a_body_that_is_not_a_job_envelope_is_an_envelope_error(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        TaskEnvelope.decode(body)


def test_a_webhook_envelope_round_trips() -> None:
    body = TaskEnvelope.for_webhook("d-123").encode()
    assert TaskEnvelope.decode_webhook(body) == "d-123"


@pytest.mark.parametrize(
    "body", [b"{", b"[]", b"{}", b'{"delivery_id": 7}', b'{"delivery_id": ""}', b"[" * 100_000]
)
def test_a_body_that_is_not_a_webhook_envelope_is_an_envelope_error(body: bytes) -> None:
    with pytest.raises(EnvelopeError):
        TaskEnvelope.decode_webhook(body)
    with pytest.raises(EnvelopeError):
        TaskEnvelope.decode_webhook(b'{"delivery_id": "' + b"x" * 41 + b'"}')
