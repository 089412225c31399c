"""The cost ledger: one JSON line per call, atomic appends from threads, the per-run budget."""

from __future__ import annotations

import json
import threading

import pytest

from catalogue.core.errors import BudgetExceeded, GenerationError
from catalogue.generation.ledger import FIELDS, Ledger, budget_message


def test_record_writes_one_line_with_every_field(tmp_path):
    led = Ledger(tmp_path / ".state" / "ledger.jsonl", None)
    rec = led.record(folder="L100001-V09A", view="1_face", model="gemini-3-pro-image", image_size="2K",
                     input_tokens=1500, output_tokens=1120, cost_usd=0.137, seconds=12.5, outcome="ok",
                     request_key="ab" * 32, attempt=1)
    lines = (tmp_path / ".state" / "ledger.jsonl").read_text().splitlines()
    assert len(lines) == 1 and json.loads(lines[0]) == rec
    assert set(FIELDS) <= set(rec) and rec["attempt"] == 1 and rec["time"].endswith("+00:00")
    assert led.read() == [rec] and led.calls == 1 and led.run_cost == pytest.approx(0.137)


def test_concurrent_appends_never_interleave(tmp_path):
    led = Ledger(tmp_path / "ledger.jsonl", None)

    def work(n):
        for i in range(50):
            led.record(folder=f"R{n}", view="1_face", cost_usd=0.01, outcome="ok", detail="x" * 3000)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = (tmp_path / "ledger.jsonl").read_text().splitlines()
    assert len(lines) == 400 and all(json.loads(line)["detail"] == "x" * 3000 for line in lines)
    assert led.run_cost == pytest.approx(4.0)


def test_run_cost_is_per_run_not_per_file(tmp_path):
    p = tmp_path / "ledger.jsonl"
    Ledger(p, 1.0).record(cost_usd=0.9, outcome="ok")
    again = Ledger(p, 1.0)                        # the next run starts with a fresh budget
    assert again.run_cost == 0 and len(again.read()) == 1
    again.check_budget(0.5)


def test_budget_message_and_flag(tmp_path):
    led = Ledger(tmp_path / "ledger.jsonl", 0.30)
    led.record(cost_usd=0.134, outcome="ok")
    led.check_budget(0.14)                        # 0.274 <= 0.30
    assert not led.budget_reached
    led.record(cost_usd=0.134, outcome="ok")
    with pytest.raises(BudgetExceeded) as ei:
        led.check_budget(0.14)
    assert str(ei.value) == ("Budget MAX_COST atteint (0.27 $ dépensés sur 0.30 $) : "
                             "plus aucun appel payant dans cette exécution.")
    assert str(ei.value) == budget_message(0.268, 0.30)
    assert isinstance(ei.value, GenerationError) and led.budget_reached


def test_failed_unbilled_calls_cost_nothing(tmp_path):
    led = Ledger(tmp_path / "ledger.jsonl", 0.2)
    for outcome in ("rate_limited", "server_error", "timeout"):
        led.record(cost_usd=0, outcome=outcome)
    assert led.run_cost == 0 and led.calls == 3
    led.check_budget(0.19)


def test_no_cap_never_raises(tmp_path):
    led = Ledger(tmp_path / "ledger.jsonl", None)
    led.record(cost_usd=1e6, outcome="ok")
    led.check_budget(1e6)
    assert not led.budget_reached


def test_reservations_keep_parallel_calls_under_the_cap(tmp_path):
    led = Ledger(tmp_path / "ledger.jsonl", 0.5)
    started, refused = [], []
    barrier = threading.Barrier(6)

    def call():
        barrier.wait()
        try:
            with led.reserve(0.2):
                started.append(1)
                barrier_done.wait(2)
                led.record(cost_usd=0.19, outcome="ok")
        except BudgetExceeded:
            refused.append(1)
            barrier_done.wait(2)

    barrier_done = threading.Barrier(6)
    threads = [threading.Thread(target=call) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert len(started) == 2 and len(refused) == 4 and led.run_cost <= 0.5
