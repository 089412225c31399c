"""The path of every file the pipeline writes: one spelling each (doit links tasks by file name).

    output/<folder>/<view>.png           a finished view            view_path
    output/<folder>/<view>.json          its provenance sidecar     sidecar_path
    output/<folder>/upload.json          the upload stamp           stamp_path
    output/<folder>/.upload-intent.json  the upload's intent        intent_path
    output/<folder>/review.json          a person's decisions       review_path
    output/index.html                    the static report          report_path
    output/.state/answers/               raw generator answers      answers_dir
    output/.state/answers/<kk>/<key>.lock  per-key lock            core.in_flight.key_lock_path
    output/.state/ledger.jsonl           the cost ledger            ledger_path
    output/.state/thumbs/                review thumbnails          thumbs_dir
    output/.state/batches/<id>.json      a Batch API job's record   batch_record_path
    output/.state/errors.log             tracebacks of bugs         errors_log_path
    <root>/.doit.lock, .doit.sqlite      the run lock's PID (the lock is an flock on <root>
                                         itself), doit's state (next to dodo.py)
"""

from __future__ import annotations

import functools
from pathlib import Path

LOCK_FILE = ".doit.lock"
DEP_FILE = ".doit.sqlite"
STATE_DIR = ".state"
STAMP_FILE = "upload.json"
INTENT_FILE = ".upload-intent.json"
REVIEW_FILE = "review.json"
REPORT_FILE = "index.html"


def view_path(settings, folder: str, view: str) -> Path:
    return _view_path(settings.output_dir, folder, view)


@functools.lru_cache(maxsize=None)
def _view_path(output_dir: Path, folder: str, view: str) -> Path:
    # Memoised: each path is asked for by several tasks, thousands of times per graph load.
    return output_dir / folder / f"{view}.png"


def sidecar_path(view_png: Path) -> Path:
    return view_png.with_suffix(".json")


def folder_dir(settings, folder: str) -> Path:
    return settings.output_dir / folder


def stamp_path(settings, folder: str) -> Path:
    return settings.output_dir / folder / STAMP_FILE


def intent_path(settings, folder: str) -> Path:
    return settings.output_dir / folder / INTENT_FILE


def review_path(folder_dir: Path) -> Path:
    return folder_dir / REVIEW_FILE


def report_path(settings) -> Path:
    return settings.output_dir / REPORT_FILE


def state_dir(settings) -> Path:
    """Pipeline state that is not a deliverable: raw answers, ledger, thumbnails, logs."""
    return settings.output_dir / STATE_DIR


def answers_dir(settings) -> Path:
    return state_dir(settings) / "answers"


def answer_file(answers_root: Path | str, key: str, suffix: str) -> Path:
    """`answers/<kk>/<key><suffix>`: the answer store's layout (.json metadata, .lock, data)."""
    return Path(answers_root) / key[:2] / f"{key}{suffix}"


def ledger_path(settings) -> Path:
    return state_dir(settings) / "ledger.jsonl"


def thumbs_dir(settings) -> Path:
    return state_dir(settings) / "thumbs"


def batches_dir(settings) -> Path:
    """Batch API jobs submitted and not yet collected (GEMINI_MODE=batch), and their spool files."""
    return state_dir(settings) / "batches"


def batch_record_path(settings, record_id: str) -> Path:
    return batches_dir(settings) / f"{record_id}.json"


def errors_log_path(settings) -> Path:
    return state_dir(settings) / "errors.log"


def lock_path(settings) -> Path:
    return settings.root / LOCK_FILE
