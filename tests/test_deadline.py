"""Deadlines raised inside the running code: sleeping, reading a socket, or computing."""

from __future__ import annotations

import socket
import time

import pytest

from offload.deadline import Deadline, enforce
from offload.errors import DeadlineExceededError


def test_deadline_interrupts_time_sleep() -> None:
    with pytest.raises(DeadlineExceededError), enforce(Deadline(0.1)):
        time.sleep(5)


def test_deadline_interrupts_a_blocking_socket_read() -> None:
    left, right = socket.socketpair()
    with left, right:
        with pytest.raises(DeadlineExceededError), enforce(Deadline(0.1)):
            left.recv(1)  # nobody ever writes


def test_deadline_interrupts_a_busy_python_loop() -> None:
    n = 0
    with pytest.raises(DeadlineExceededError), enforce(Deadline(0.1)):
        while True:
            n += 1
    assert n > 0


def test_except_exception_does_not_swallow_the_deadline() -> None:
    with pytest.raises(DeadlineExceededError), enforce(Deadline(0.1)):
        try:
            time.sleep(5)
        except Exception:  # noqa: BLE001 - the point of the test
            pytest.fail("DeadlineExceededError must not be an Exception")


def test_a_job_that_swallows_the_error_hits_the_hard_limit() -> None:
    hits: list[float] = []

    def hard_limit() -> None:
        hits.append(time.monotonic())
        raise SystemExit("hard limit")

    with (
        pytest.raises(SystemExit),
        enforce(Deadline(0.1), hard_grace=0.2, on_hard_limit=hard_limit),
    ):
        try:
            time.sleep(5)
        except DeadlineExceededError:
            time.sleep(5)  # ignores its deadline
    assert len(hits) == 1


def test_no_alarm_fires_after_the_block_ends() -> None:
    with enforce(Deadline(0.2)):
        pass
    time.sleep(0.3)  # would raise if the timer were left armed


def test_remaining_and_check() -> None:
    now = [100.0]
    deadline = Deadline(2.0, clock=lambda: now[0])
    assert deadline.remaining() == 2.0 and not deadline.expired()
    now[0] = 103.0
    assert deadline.remaining() == 0.0 and deadline.expired()
    with pytest.raises(DeadlineExceededError):
        deadline.check()
