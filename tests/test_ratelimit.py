"""The shared rate limiter: concurrency cap, a sliding window counted at both ends with bursts up
to the window's room, spend pacing, 429 pause, deadlines, closing, FIFO; fake clock."""

from __future__ import annotations

import threading
import time

import pytest

from catalogue.generation.rate_limiter import (
    MAX_SLOWDOWN,
    DeadlineExceeded,
    LimiterClosed,
    RateLimiter,
)


class FakeClock:
    """A clock that moves only when a thread waits with a timeout (single-threaded tests)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wait(self, cond, timeout):
        assert timeout is not None, "would block forever in a single-threaded test"
        self.now += timeout


def fake_limiter(concurrency=100, rpm=60.0, **kw):
    clock = FakeClock()
    return RateLimiter(concurrency, rpm, clock=clock, wait=clock.wait, **kw), clock


def max_in_closed_window(starts, span):
    """Most starts in any window [t, t + span], both ends counted."""
    s = sorted(starts)
    return max(sum(1 for u in s[i:] if u <= t + span) for i, t in enumerate(s))


def test_a_burst_up_to_the_window_room_then_the_next_one_window_later():
    lim, clock = fake_limiter(rpm=12)
    for _ in range(12):
        lim.acquire()
    assert lim.starts == [1000.0] * 12                 # 12 at once: the quota allows it
    lim.acquire()
    # one window (60 s) plus the margin (1 s per minute) after the first, not 60/12 s later
    assert lim.starts[-1] == pytest.approx(1061.0, abs=1e-3)
    assert max_in_closed_window(lim.starts, 60.0) == 12


def test_any_closed_window_holds_at_most_rpm_starts():
    lim, clock = fake_limiter(concurrency=4, rpm=12)
    for _ in range(207):
        lim.acquire()
        clock.now += 0.5                               # the call itself takes a while
        lim.release()
    assert max_in_closed_window(lim.starts, 60.0) == 12
    # nothing left unused: the 207th start (3rd of the 18th window, one at a time, 0.5 s each)
    # comes 17 windows (+ margins) and 1 s after the first
    assert lim.starts[-1] - lim.starts[0] == pytest.approx(17 * 61.0 + 1.0, abs=1e-3)


def test_the_window_and_its_margin_scale_together():
    lim, clock = fake_limiter(rpm=5, window=30.0)      # a benchmark's 30-second "minute"
    for _ in range(6):
        lim.acquire()
    assert lim.starts[-1] - lim.starts[0] == pytest.approx(30.5, abs=1e-3)
    lim, clock = fake_limiter(rpm=5, window=1.0)       # a test's 1-second one: 0.2 s at least
    for _ in range(6):
        lim.acquire()
    assert lim.starts[-1] - lim.starts[0] == pytest.approx(1.2, abs=1e-3)


def test_penalize_pauses_then_allows_fewer_starts_and_recovers():
    lim, clock = fake_limiter(rpm=60)
    lim.acquire()
    lim.penalize(10.0)                           # the server said: retry in 10 s
    lim.penalize(3.0)                            # a second 429 of the same burst: no extra slowdown
    assert lim.penalties == 1 and lim.capacity == 48
    lim.acquire()
    assert lim.starts[-1] == pytest.approx(1010.0)
    for _ in range(20):
        lim.on_success()
    assert lim.capacity == 60                    # back to the configured quota
    for _ in range(20):
        clock.now = lim.paused_until + 1
        lim.penalize(1.0)
    assert lim.capacity == int(60 / MAX_SLOWDOWN)    # bounded slowdown


def test_a_start_that_cannot_happen_before_the_deadline_fails_at_once():
    lim, clock = fake_limiter(rpm=2)
    lim.acquire()
    lim.acquire()
    with pytest.raises(DeadlineExceeded) as ei:
        lim.acquire(deadline=clock.now + 30)
    assert ei.value.ready_at == pytest.approx(1061.0, abs=1e-3)
    assert clock.now == 1000.0 and len(lim.starts) == 2     # no waiting, no start
    lim.penalize(100.0)
    with pytest.raises(DeadlineExceeded):
        lim.acquire(deadline=clock.now + 99)
    lim.acquire(deadline=clock.now + 101)                   # fits: starts when the pause ends
    assert lim.starts[-1] == pytest.approx(1100.0)


def test_close_wakes_waiting_threads_and_refuses_new_starts():
    lim = RateLimiter(1, 60_000)
    lim.acquire()                                 # hold the only slot
    raised = []

    def waiter():
        try:
            lim.acquire()
        except LimiterClosed as e:
            raised.append(str(e))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.05)
    lim.close("quota journalier atteint")
    t.join(5)
    assert raised == ["quota journalier atteint"]
    with pytest.raises(LimiterClosed):
        lim.acquire()


PRO = 0.134


def test_spend_pacing_keeps_every_window_under_the_cap():
    lim, clock = fake_limiter(concurrency=4, rpm=1000, spend_per_window=10.0, spend_window=600.0)
    for _ in range(300):
        with lim.slot(PRO):
            clock.now += 0.3
    s = [t - lim.starts[0] for t in lim.starts]
    in_first_ten_minutes = sum(1 for t in s if t <= 600.0)
    assert 72 <= in_first_ten_minutes <= 74                  # about 74 views per 10 minutes
    assert max_in_closed_window(lim.starts, 600.0) * PRO <= 10.0
    for span in (60.0, 120.0, 300.0):                        # no shorter window above its share
        assert max_in_closed_window(lim.starts, span) * PRO <= 10.0 * span / 600.0 + PRO


def test_spend_pacing_uses_the_settled_price():
    lim, clock = fake_limiter(rpm=1000, spend_per_window=1.0, spend_window=100.0)
    with lim.slot(0.1) as slot:
        slot.settle(0.3)                         # it cost three times the estimate
    lim.acquire(0.1)
    # the pace is (1.0 - 0.3) / 100 USD/s: 0.3 USD takes 300/7 s
    assert lim.starts[1] - lim.starts[0] == pytest.approx(0.3 / (0.7 / 100), rel=1e-6)
    assert lim.costs == [0.3, 0.1]


def test_concurrency_cap_under_threads():
    lim = RateLimiter(3, 60_000)
    in_flight, peak, lock = [0], [0], threading.Lock()

    def work():
        for _ in range(5):
            with lim.slot():
                with lock:
                    in_flight[0] += 1
                    peak[0] = max(peak[0], in_flight[0])
                time.sleep(0.01)
                with lock:
                    in_flight[0] -= 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert peak[0] == 3 and lim.max_in_flight == 3 and lim.in_flight == 0
    assert len(lim.starts) == 40


def test_a_penalty_holds_back_threads_already_waiting():
    lim = RateLimiter(4, 60_000)
    with lim.slot():
        pass
    lim.penalize(0.3)
    t0 = time.monotonic()
    started = []

    def work():
        with lim.slot():
            started.append(time.monotonic())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(started) == 3 and min(started) - t0 >= 0.25


def test_waiting_threads_are_served_in_order():
    lim = RateLimiter(1, 60_000)
    order = []
    lim.acquire()                                 # hold the only slot
    threads = []
    for i in range(5):
        t = threading.Thread(target=lambda i=i: (lim.acquire(), order.append(i), lim.release()))
        t.start()
        threads.append(t)
        time.sleep(0.02)                          # queue them in a known order
    lim.release()
    for t in threads:
        t.join(5)
    assert order == [0, 1, 2, 3, 4]


def test_misuse_is_refused():
    with pytest.raises(ValueError):
        RateLimiter(0, 10)
    with pytest.raises(ValueError):
        RateLimiter(1, 0)
    with pytest.raises(RuntimeError):
        RateLimiter(1, 10).release()
