"""Paid calls under way in this process: an interrupted run waits for them, so that an answer
already paid for is stored, not lost with the process (counted by the answer store)."""

from __future__ import annotations

import threading

_paying = 0
_paying_changed = threading.Condition()


def paid_calls_in_flight() -> int:
    with _paying_changed:
        return _paying


def wait_for_paid_calls(timeout: float) -> int:
    """Wait until no paid call is under way (at most `timeout` s); returns how many still are."""
    with _paying_changed:
        _paying_changed.wait_for(lambda: _paying == 0, timeout=timeout)
        return _paying


def count_paying(delta: int) -> None:
    global _paying
    with _paying_changed:
        _paying += delta
        _paying_changed.notify_all()
