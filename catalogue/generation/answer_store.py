"""Content-addressed store of the generators' raw answers: the money-safe part of the pipeline.

The key is the request's digest (model, instruction, every image's bytes, config, seed), so an
identical request is answered from disk whatever happened to doit's state: `doit forget`,
`doit clean`, a deleted database, or a re-run of post-processing. Answers are kept as received,
each with its SHA-256 in its metadata, verified on every read: a damaged entry (truncated answer
or metadata) is set aside under `answers/corrupt/` and reported, so that it is paid again once,
said, instead of failing its view on every run or being paid again silently.

One lookup-and-call at a time per key, across threads and processes: a file lock per key
(`core.in_flight.KeyLock`) is held from the lookup to the stored answer.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from ..core.files import atomic_write_bytes, sha256_bytes
from ..core.in_flight import KeyLock, count_paying
from ..core.paths import answer_file

MIME_SUFFIX = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
CORRUPT_DIR = "corrupt"

# One lock per request key inside the process, before the file lock: doit's worker threads
# asking the same request wait for the first answer instead of paying twice.
_key_locks: dict[str, threading.Lock] = {}
_key_locks_guard = threading.Lock()


def _lock_for(key: str) -> threading.Lock:
    with _key_locks_guard:
        return _key_locks.setdefault(key, threading.Lock())


@dataclass
class Damaged:
    """A stored entry that failed its check, set aside: `note` says so in French."""
    note: str


class AnswerStore:
    def __init__(self, root: Path):
        self.root = root

    def _dir(self, key: str) -> Path:
        return answer_file(self.root, key, "").parent

    def _meta_path(self, key: str) -> Path:
        return answer_file(self.root, key, ".json")

    def lookup(self, key: str) -> tuple[bytes, dict] | Damaged | None:
        """(raw bytes, metadata) for `key`; None when absent; `Damaged` when the entry was
        damaged (it is set aside, the caller pays again)."""
        meta_path = self._meta_path(key)
        try:
            raw_meta = meta_path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            meta = json.loads(raw_meta)
            name = meta["file"]
        except (ValueError, KeyError, TypeError):
            return self.set_aside(key, "sa fiche (métadonnées) est illisible")
        try:
            data = (self._dir(key) / name).read_bytes()
        except FileNotFoundError:
            return self.set_aside(key, f"le fichier {name} manque")
        digest = meta.get("sha256")
        if digest is not None and sha256_bytes(data) != digest:
            return self.set_aside(key, f"le fichier {name} est abîmé ({len(data)} octets, empreinte différente)")
        return data, meta

    def set_aside(self, key: str, why: str) -> Damaged:
        """Move the entry's files to answers/corrupt/ (kept for inspection, never used again)."""
        aside = self.root / CORRUPT_DIR
        aside.mkdir(parents=True, exist_ok=True)
        for path in self._dir(key).glob(f"{key}.*"):
            if path.suffix != ".lock":
                os.replace(path, aside / path.name)
        return Damaged(f"réponse gardée abîmée ({why}) : mise de côté dans {aside}, payée à nouveau")

    def put(self, key: str, data: bytes, meta: dict) -> None:
        """Store the answer first, then its metadata with the answer's SHA-256: a crash in
        between leaves no entry."""
        name = key + MIME_SUFFIX.get(meta.get("mime", ""), ".bin")
        atomic_write_bytes(self._dir(key) / name, data)
        atomic_write_bytes(self._meta_path(key),
                           json.dumps({**meta, "file": name, "sha256": sha256_bytes(data)},
                                      indent=1, sort_keys=True).encode())

    def get_or_create(self, key: str, produce) -> tuple[bytes, dict, bool]:
        """(data, metadata, from_store): the stored answer, else `produce()` -> (data, metadata),
        stored before it is returned. `produce` (the paid call) runs once per key at a time, in
        every process. A damaged entry found on the way is set aside: metadata["store_note"]."""
        with _lock_for(key), KeyLock(self.root, key):
            hit = self.lookup(key)
            if isinstance(hit, tuple):
                return hit[0], hit[1], True
            count_paying(+1)
            try:
                data, meta = produce()
                self.put(key, data, meta)
            finally:
                count_paying(-1)
            if isinstance(hit, Damaged):
                meta = {**meta, "store_note": hit.note}
            return data, meta, False
