"""Waiting until something is true: the one polling loop of the test suite.

Tests wait for a state they can observe (a flag, a file, a lock holder), never for a
fixed time; the timeout is only there to fail a test that would otherwise hang.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class _Deadline:
    def __init__(self, timeout: float, what: str) -> None:
        self.end = time.monotonic() + timeout
        self.timeout = timeout
        self.what = what

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise AssertionError(f"timed out after {self.timeout} s waiting for {self.what}")


def wait_until(
    condition: Callable[[], T],
    *,
    timeout: float = 60.0,
    interval: float = 0.02,
    what: str = "the condition",
) -> T:
    """Poll ``condition`` until it returns something true, and return that; fail with
    ``what`` in the message after ``timeout`` seconds. A condition may itself raise (an
    ``assert`` that a process is still alive, say) to stop waiting at once."""
    deadline = _Deadline(timeout, what)
    while not (value := condition()):
        deadline.check()
        time.sleep(interval)
    return value


async def wait_until_async(
    condition: Callable[[], T],
    *,
    timeout: float = 60.0,
    interval: float = 0.02,
    what: str = "the app",
) -> T:
    """:func:`wait_until` for code on an event loop (a Textual app under Pilot): sleeps
    with asyncio so the app keeps running. Not ``pilot.pause()``: that waits for every
    queued message, which never ends while an indexing run keeps posting progress."""
    deadline = _Deadline(timeout, what)
    while not (value := condition()):
        deadline.check()
        await asyncio.sleep(interval)
    return value
