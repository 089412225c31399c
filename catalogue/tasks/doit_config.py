"""doit's configuration for a paid, long-running, cron-driven pipeline (see the README, "Why these
doit settings", and ../shared/notes/doit.md for the trap behind each value)."""

from __future__ import annotations

import signal


def doit_config(reporter_cls) -> dict:
    return {
        "default_tasks": ["generate"],
        "backend": "sqlite3",             # the default dbm changes with the interpreter, loses records
        "dep_file": ".doit.sqlite",
        "check_file_uptodate": "md5",     # timestamps would re-pay for every touched photo
        "continue": True,                 # one bad reference never stops the others
        "forget_disable_default": True,   # a bare `doit forget` must not forget the catalogue
        "par_type": "thread",             # API-bound work; one shared rate limiter
        "reporter": reporter_cls,
        "verbosity": 2,
    }


def handle_sigterm() -> None:
    """cron's `timeout` sends SIGTERM: treat it like Ctrl-C so doit saves what finished."""
    signal.signal(signal.SIGTERM, signal.default_int_handler)
