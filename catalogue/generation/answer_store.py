"""Content-addressed store of the generators' raw answers: the money-safe part of the pipeline.

The key is the request's digest (model, instruction, every image's bytes, config, seed), so an
identical request is answered from disk whatever happened to doit's state: `doit forget`,
`doit clean`, a deleted database, or a re-run of post-processing. Answers are kept as received.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from contextlib import contextmanager
from pathlib import Path

from ..core.files import atomic_write_bytes
from ..core.in_flight import count_paying

MIME_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}

# One lock per request key: doit's worker threads asking the same request (two references with
# the same photos, a retouch shared by views) wait for the first answer instead of paying twice.
_key_locks: dict[str, threading.Lock] = {}
_key_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _key_locks_guard:
        return _key_locks.setdefault(key, threading.Lock())


@contextmanager
def _file_lock(path: Path):
    """An exclusive flock on `path`, held while the block runs (released by the OS on a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class AnswerStore:
    def __init__(self, root: Path):
        self.root = root

    def _dir(self, key: str) -> Path:
        return self.root / key[:2]

    def get(self, key: str) -> tuple[bytes, dict] | None:
        """(raw bytes, metadata) for `key`, or None."""
        meta_path = self._dir(key) / f"{key}.json"
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            return (self._dir(key) / meta["file"]).read_bytes(), meta
        except (FileNotFoundError, KeyError, ValueError):
            return None

    def put(self, key: str, data: bytes, meta: dict) -> None:
        """Store the answer first, then its metadata: a crash in between leaves no entry."""
        name = key + MIME_SUFFIX.get(meta.get("mime", ""), ".bin")
        atomic_write_bytes(self._dir(key) / name, data)
        atomic_write_bytes(self._dir(key) / f"{key}.json",
                           json.dumps({**meta, "file": name}, indent=1, sort_keys=True).encode())

    def get_or_create(self, key: str, produce) -> tuple[bytes, dict, bool]:
        """(data, metadata, from_store): the stored answer, else `produce()` -> (data, metadata),
        stored before it is returned. `produce` (the paid call) runs once per key at a time, in
        this process (threads) and across processes (a flock on `<key>.lock` beside the answer)."""
        with _lock_for(key), _file_lock(self._dir(key) / f"{key}.lock"):
            hit = self.get(key)
            if hit:
                return hit[0], hit[1], True
            count_paying(+1)
            try:
                data, meta = produce()
                self.put(key, data, meta)
            finally:
                count_paying(-1)
            return data, meta, False
