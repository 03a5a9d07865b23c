"""The provider's own deadline around a blocking call: stop at the deadline, nothing fed afterwards."""

from __future__ import annotations

import threading

import pytest

from sandbox_e2b.deadline import Deadline


def test_a_call_that_ends_in_time_is_not_stopped() -> None:
    stopped: list[bool] = []
    deadline = Deadline(30.0, lambda: stopped.append(True))
    fed: list[str] = []
    feed = deadline.guard(fed.append)
    assert deadline.run(lambda: feed("done")) is False
    assert fed == ["done"] and not stopped


def test_an_error_before_the_deadline_is_raised_to_the_caller() -> None:
    def fail() -> None:
        raise LookupError("from the SDK")

    with pytest.raises(LookupError, match="from the SDK"):
        Deadline(30.0, lambda: None).run(fail)


def test_at_the_deadline_the_call_is_stopped_and_later_output_dropped() -> None:
    release = threading.Event()
    events: list[str] = []

    def stop() -> None:
        events.append("stopped")
        release.set()  # as killing the sandbox ends the SDK's blocked call

    deadline = Deadline(0.2, stop)
    feed = deadline.guard(events.append)

    def call() -> None:
        feed("before")
        release.wait(30)
        feed("after the deadline")
        raise ConnectionError("the sandbox was killed")  # the expected end: not raised

    assert deadline.run(call) is True
    assert events == ["before", "stopped"]
