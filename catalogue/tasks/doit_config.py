"""doit's configuration for a paid, long-running, cron-driven pipeline (see the README, "Why these
doit settings", and ../shared/notes/doit.md for the trap behind each value)."""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
from datetime import datetime, timezone
from pathlib import Path

SQLITE_HEADER = b"SQLite format 3\x00"


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


def _dep_file_is_broken(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return False
    if not header:
        return False  # empty: sqlite makes a database of it
    if header != SQLITE_HEADER:
        return True
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            conn.execute("select count(*) from sqlite_master").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError:
        return True
    return False


def set_aside_broken_dep_file(path: Path) -> Path | None:
    """doit's database unreadable (random bytes, a torn copy): move it (and its journal) aside
    and say so in French, instead of doit's English DatabaseException on every run. The views'
    sidecars hold the truth: the next run finds them current and pays nothing."""
    path = Path(path)
    if not _dep_file_is_broken(path):
        return None
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = path.with_name(f"{path.name}.broken-{stamp}")
    os.replace(path, aside)
    for suffix in ("-journal", "-wal", "-shm"):
        extra = path.with_name(path.name + suffix)
        if extra.exists():
            os.replace(extra, aside.with_name(aside.name + suffix))
    print(f"La base d'état de doit ({path.name}) est illisible : mise de côté sous {aside.name}. doit repart "
          f"d'une base neuve ; les fiches des vues (output/<dossier>/*.json) font foi, rien n'est payé deux "
          f"fois (chaque vue est vérifiée une fois).", file=sys.stdout, flush=True)
    return aside
