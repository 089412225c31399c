"""The shared rate limiter: concurrency cap, evenly spaced starts, 429 pause, FIFO; fake clock."""

from __future__ import annotations

import threading
import time

import pytest

from catalogue.generation.rate_limiter import MAX_SLOWDOWN, RateLimiter


class FakeClock:
    """A clock that moves only when a thread waits with a timeout (single-threaded tests)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def wait(self, cond, timeout):
        assert timeout is not None, "would block forever in a single-threaded test"
        self.now += timeout


def fake_limiter(concurrency=10, rpm=60.0):
    clock = FakeClock()
    return RateLimiter(concurrency, rpm, clock=clock, wait=clock.wait), clock


def test_starts_are_evenly_spaced_at_the_configured_rate():
    lim, clock = fake_limiter(rpm=60)            # one start per second
    waits = []
    for _ in range(5):
        with lim.slot() as waited:
            waits.append(waited)
    assert waits == [0.0, 1.0, 1.0, 1.0, 1.0]
    assert lim.starts == [1000.0, 1001.0, 1002.0, 1003.0, 1004.0]


def test_no_burst_after_idle_time():
    lim, clock = fake_limiter(rpm=30)            # one start per 2 s
    with lim.slot():
        pass
    clock.now += 100                             # idle: credit does not pile up
    for _ in range(3):
        with lim.slot():
            pass
    assert lim.starts[1:] == [1100.0, 1102.0, 1104.0]


def test_any_minute_holds_at_most_rpm_starts():
    lim, clock = fake_limiter(rpm=20)
    for _ in range(100):
        with lim.slot():
            clock.now += 0.7                     # the call itself takes a while
    s = lim.starts
    for i, t in enumerate(s):
        assert sum(1 for u in s[i:] if u < t + 60.0) <= 20


def test_penalize_pauses_then_resumes_slower_and_recovers():
    lim, clock = fake_limiter(rpm=60)
    with lim.slot():
        pass
    lim.penalize(10.0)                           # the server said: retry in 10 s
    lim.penalize(3.0)                            # a second 429 of the same burst: no extra slowdown
    assert lim.penalties == 1 and lim.interval == pytest.approx(1.25)
    with lim.slot():
        pass
    assert lim.starts[-1] == pytest.approx(1010.0)
    with lim.slot():
        pass
    assert lim.starts[-1] - lim.starts[-2] == pytest.approx(1.25)   # slower after a 429
    for _ in range(20):
        lim.on_success()
    assert lim.interval == pytest.approx(1.0)                       # back to the configured pace
    for _ in range(20):
        clock.now = lim.paused_until + 1
        lim.penalize(1.0)
    assert lim.interval == pytest.approx(MAX_SLOWDOWN)              # bounded slowdown


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
