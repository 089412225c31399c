"""One rate limiter shared by every worker thread (`doit -n N -P thread`).

Three limits, all process-wide:

- at most `concurrency` requests in flight;
- at most `rpm` request *starts* in any window of `window` seconds (60: Google's minute),
  counted at both ends: a start at t is allowed only when fewer than `rpm` starts happened in
  [t - window - margin, t]. Bursts are allowed up to the window's room (12 at once for a quota of
  12 per minute, then the 13th exactly one window after the first, plus the margin), so a batch
  finishes as early as the quota allows; `margin` (1 s per minute) absorbs the time a request
  takes to reach the server, so that a server counting both ends never sees `rpm + 1`;
- optionally, a spend rate (`spend_per_window` USD in any `spend_window` seconds, Google's
  rolling 10 minutes): starts are paced evenly by each call's price, at `(cap - price) /
  spend_window` USD per second, so that any spend window holds at most the cap (the last call of
  a window included) and no shorter window holds more than its share plus one call. A call
  reserves its estimated price; `Slot.settle(actual)` corrects the pace to what it really cost.

Waiting threads are served first come, first served. A 429 from the server slows the whole
limiter down, not only the worker that got it: `penalize(seconds)` stops every new start until
the server-given retry time has passed, then fewer starts per window are allowed, recovering
with each success (`on_success`). `close(message)` stops the limiter for good (a daily quota
reached): every waiting and future `acquire` raises `LimiterClosed`. An `acquire` may carry a
deadline (a view's GEMINI_MAX_WAIT): it raises `DeadlineExceeded` at once when the start cannot
happen before it. The clock and the waiting primitive are injectable for tests.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from typing import Callable

# Share of the quota allowed after a 429 (divided once per pause), its floor, and its recovery
# per success.
SLOWDOWN_FACTOR = 1.25
MAX_SLOWDOWN = 4.0
RECOVERY_FACTOR = 0.95
# Seconds added to each window per minute of window: the time a start takes to reach the server.
MARGIN_PER_MINUTE = 1.0
# ... and at least this many seconds (the arrival jitter does not shrink with a scaled window).
MIN_MARGIN = 0.2


class LimiterClosed(Exception):
    """The run stopped starting paid calls (`close`)."""


class DeadlineExceeded(Exception):
    """The start could not happen before the caller's deadline; `ready_at` says when it could."""

    def __init__(self, ready_at: float):
        super().__init__(ready_at)
        self.ready_at = ready_at


class Slot:
    """One request in flight: `with limiter.slot(cost) as slot: ...; slot.settle(actual)`."""

    def __init__(self, limiter: "RateLimiter", waited: float, cost: float, index: int):
        self.limiter = limiter
        self.waited = waited
        self.cost = cost
        self.index = index
        self._released = False

    def settle(self, actual_cost: float) -> None:
        """The call cost `actual_cost`, not its estimate: pace the next starts accordingly."""
        self.limiter._settle(self.index, self.cost, actual_cost)
        self.cost = actual_cost

    def release(self) -> None:
        if not self._released:
            self._released = True
            self.limiter.release()

    def __enter__(self) -> "Slot":
        return self

    def __exit__(self, *exc) -> bool:
        self.release()
        return False


class RateLimiter:
    def __init__(self, concurrency: int, rpm: float, *, window: float = 60.0,
                 margin: float | None = None, spend_per_window: float | None = None,
                 spend_window: float | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 wait: Callable[[threading.Condition, float | None], object] | None = None):
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if rpm <= 0:
            raise ValueError("rpm must be > 0")
        if window <= 0:
            raise ValueError("window must be > 0")
        self.concurrency = int(concurrency)
        self.rpm = float(rpm)
        self.window = float(window)
        self.margin = (max(MIN_MARGIN, MARGIN_PER_MINUTE * self.window / 60.0) if margin is None
                       else float(margin))
        self.spend_per_window = spend_per_window if spend_per_window and spend_per_window > 0 else None
        self.spend_window = float(spend_window) if spend_window else 10 * self.window
        self._clock = clock
        self._wait = wait or (lambda cond, timeout: cond.wait(timeout))
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[int] = deque()   # tickets of waiting threads, FIFO
        self._next_ticket = 0
        self._in_flight = 0
        self._recent: deque[float] = deque()  # starts still inside the window
        self._paused_until = float("-inf")
        self._slowdown = 1.0
        self._max_cost = 0.0
        self._closed: str | None = None
        # Observability (tests, benchmark, summaries).
        self.max_in_flight = 0
        self.starts: list[float] = []
        self.costs: list[float] = []          # settled cost of each start, same order
        self.penalties = 0

    # --- state ---------------------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        """Starts allowed in one window now (the quota, less after a 429)."""
        return max(1, math.floor(self.rpm / self._slowdown + 1e-9))

    @property
    def in_flight(self) -> int:
        with self._cond:
            return self._in_flight

    @property
    def paused_until(self) -> float:
        return self._paused_until

    @property
    def closed(self) -> str | None:
        return self._closed

    def _spend_rate(self) -> float:
        """USD per second the spend pacing allows: the cap less one call, over the window, so that
        the window's last call still fits under the cap."""
        cap = self.spend_per_window
        room = cap - self._max_cost if cap > self._max_cost else cap / 2
        return room / self.spend_window

    def _ready_at(self, now: float, cost: float) -> float:
        """Earliest time a start of `cost` may happen, the concurrency aside."""
        span = self.window + self.margin
        while self._recent and self._recent[0] < now - span:
            self._recent.popleft()
        ready = self._paused_until
        cap = self.capacity
        if len(self._recent) >= cap:
            # the cap-th most recent start must have left the closed window [t - span, t]
            ready = max(ready, self._recent[-cap] + span + 1e-6)
        if self.spend_per_window is not None:
            ready = max(ready, self._spend_ready_at(now))
        return ready

    def _spend_ready_at(self, now: float) -> float:
        """The pacing's next allowed start: max over past starts i of s_i + (costs from i on) / rate
        (the GCRA recurrence, recomputed so that settled prices and a new rate apply at once)."""
        rate = self._spend_rate()
        horizon = now - 2 * self.spend_window
        ready, total = float("-inf"), 0.0
        for i in range(len(self.starts) - 1, -1, -1):
            if self.starts[i] < horizon:
                break
            total += self.costs[i]
            ready = max(ready, self.starts[i] + total / rate)
        return ready

    # --- acquire / release ---------------------------------------------------------------------

    def acquire(self, cost: float = 0.0, deadline: float | None = None) -> float:
        """Block until this thread may start a request of estimated `cost` USD; returns the
        seconds spent waiting. Raises `DeadlineExceeded` (the start cannot happen before
        `deadline`, on this limiter's clock) or `LimiterClosed`."""
        return self._acquire(cost, deadline)[0]

    def _acquire(self, cost: float, deadline: float | None) -> tuple[float, int]:
        with self._cond:
            t0 = self._clock()
            ticket = self._next_ticket
            self._next_ticket += 1
            self._queue.append(ticket)
            try:
                while True:
                    if self._closed is not None:
                        raise LimiterClosed(self._closed)
                    now = self._clock()
                    timeout: float | None = None
                    if self._queue[0] == ticket and self._in_flight < self.concurrency:
                        self._max_cost = max(self._max_cost, cost)
                        ready_at = self._ready_at(now, cost)
                        if now >= ready_at:
                            break
                        if deadline is not None and ready_at > deadline:
                            raise DeadlineExceeded(ready_at)
                        timeout = ready_at - now
                    elif deadline is not None:
                        if now >= deadline:
                            raise DeadlineExceeded(float("inf"))
                        timeout = deadline - now
                    self._wait(self._cond, timeout)
            except BaseException:
                self._queue.remove(ticket)
                self._cond.notify_all()
                raise
            self._queue.popleft()
            self._in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self._in_flight)
            self._recent.append(now)
            self.starts.append(now)
            self.costs.append(cost)
            self._cond.notify_all()
            return now - t0, len(self.starts) - 1

    def release(self) -> None:
        with self._cond:
            if self._in_flight <= 0:
                raise RuntimeError("release() without acquire()")
            self._in_flight -= 1
            self._cond.notify_all()

    def slot(self, cost: float = 0.0, deadline: float | None = None) -> Slot:
        """`with limiter.slot(cost) as s: call(); s.settle(actual)`: one request in flight."""
        waited, index = self._acquire(cost, deadline)
        return Slot(self, waited, cost, index)

    def _settle(self, index: int, estimated: float, actual: float) -> None:
        with self._cond:
            self.costs[index] = actual
            self._max_cost = max(self._max_cost, actual)
            self._cond.notify_all()

    # --- feedback from the server --------------------------------------------------------------

    def penalize(self, seconds: float) -> None:
        """A 429: nobody starts before `seconds` from now; then fewer starts per window."""
        with self._cond:
            now = self._clock()
            if now >= self._paused_until:   # first 429 of this pause: slow down once
                self._slowdown = min(self._slowdown * SLOWDOWN_FACTOR, MAX_SLOWDOWN)
                self.penalties += 1
            self._paused_until = max(self._paused_until, now + max(0.0, seconds))
            self._cond.notify_all()

    def on_success(self) -> None:
        """A request went through: recover the configured quota gradually."""
        with self._cond:
            if self._slowdown > 1.0:
                self._slowdown = max(1.0, self._slowdown * RECOVERY_FACTOR)
                self._cond.notify_all()

    def close(self, message: str) -> None:
        """Stop for good: waiting and future `acquire` calls raise `LimiterClosed(message)`."""
        with self._cond:
            if self._closed is None:
                self._closed = message
            self._cond.notify_all()
