"""One rate limiter shared by every worker thread (`doit -n N -P thread`).

Two limits, both process-wide:

- at most `concurrency` requests in flight;
- at most `rpm` request *starts* per minute, evenly spaced (one start every `60 / rpm` s; no
  burst: a window of any 60 s never holds more than `rpm` starts, whatever the server's window
  alignment).

Waiting threads are served first come, first served. A 429 from the server slows the whole
limiter down, not only the worker that got it: `penalize(seconds)` stops every new start until
the server-given retry time has passed, then starts resume at a reduced pace that recovers with
each success (`on_success`). The clock and the waiting primitive are injectable for tests.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextlib import contextmanager
from typing import Callable, Iterator

# Pace multiplier after a 429 (applied once per pause), its ceiling, and its recovery per success.
SLOWDOWN_FACTOR = 1.25
MAX_SLOWDOWN = 4.0
RECOVERY_FACTOR = 0.95


class RateLimiter:
    def __init__(self, concurrency: int, rpm: float, *,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[threading.Condition, float | None], object] | None = None):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if rpm <= 0:
            raise ValueError("rpm must be > 0")
        self.concurrency = int(concurrency)
        self.rpm = float(rpm)
        self._clock = clock
        self._wait = wait or (lambda cond, timeout: cond.wait(timeout))
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[int] = deque()   # tickets of waiting threads, FIFO
        self._next_ticket = 0
        self._in_flight = 0
        self._next_start = float("-inf")     # earliest time the next request may start
        self._paused_until = float("-inf")
        self._slowdown = 1.0
        # Observability (tests, benchmark, summaries).
        self.max_in_flight = 0
        self.starts: list[float] = []
        self.penalties = 0

    @property
    def interval(self) -> float:
        """Current spacing between two starts, in seconds."""
        return 60.0 / self.rpm * self._slowdown

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    @property
    def paused_until(self) -> float:
        return self._paused_until

    def acquire(self) -> float:
        """Block until this thread may start a request; returns the seconds spent waiting."""
        with self._cond:
            t0 = self._clock()
            ticket = self._next_ticket
            self._next_ticket += 1
            self._queue.append(ticket)
            try:
                while True:
                    now = self._clock()
                    timeout: float | None = None
                    if self._queue[0] == ticket and self._in_flight < self.concurrency:
                        ready_at = max(self._next_start, self._paused_until)
                        if now >= ready_at:
                            break
                        timeout = ready_at - now
                    self._wait(self._cond, timeout)
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._next_start = max(self._next_start, now) + self.interval
            self.starts.append(now)
            self._cond.notify_all()
            return now - t0

    def release(self) -> None:
        with self._cond:
            if self._in_flight <= 0:
                raise RuntimeError("release() without acquire()")
            self._in_flight -= 1
            self._cond.notify_all()

    @contextmanager
    def slot(self) -> Iterator[float]:
        """`with limiter.slot(): call()`: one request in flight, started within the rate."""
        waited = self.acquire()
        try:
            yield waited
        finally:
            self.release()

    def penalize(self, seconds: float) -> None:
        """A 429: nobody starts before `seconds` from now; then a slower pace, recovering."""
        with self._cond:
            now = self._clock()
            if now >= self._paused_until:   # first 429 of this pause: slow down once
                self._slowdown = min(self._slowdown * SLOWDOWN_FACTOR, MAX_SLOWDOWN)
                self.penalties += 1
            self._paused_until = max(self._paused_until, now + max(0.0, seconds))
            # Resume evenly spaced after the pause rather than all at once.
            self._next_start = max(self._next_start, self._paused_until)
            self._cond.notify_all()

    def on_success(self) -> None:
        """A request went through: recover the configured pace gradually."""
        with self._cond:
            if self._slowdown > 1.0:
                self._slowdown = max(1.0, self._slowdown * RECOVERY_FACTOR)
