"""The provenance sidecar written next to every finished view (`output/<folder>/<view>.json`).

It says where the image comes from (inputs' SHA-256, generator, model, prompt version, seed,
tokens, cost, time, QA verdict) and lets a run recognise a view that is already up to date even
when doit's own state is lost: `inputs_digest` covers everything that determines the output.

It is also what decides that a view is stale when doit thinks it is not (`ViewCurrent`): doit
records its inputs' md5 after the action (a photo copied over during the build would pass), and
never looks at a target's content (a damaged PNG or sidecar would pass).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from datetime import datetime, timezone
from pathlib import Path

from doit.tools import config_changed

from .errors import InputError
from .files import atomic_write_bytes, sha256_file
from .paths import sidecar_path


def read_sidecar(view_png: Path) -> dict | None:
    try:
        meta = json.loads(sidecar_path(view_png).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # absent, unreadable, truncated, not UTF-8
        return None
    return meta if isinstance(meta, dict) else None


def write_sidecar(view_png: Path, data: dict) -> None:
    atomic_write_bytes(sidecar_path(view_png),
                       (json.dumps(data, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode())


def config_digest(config: dict) -> str:
    """doit's `config_changed` digest of `config`, computed by us: the same md5 of the same JSON
    (so what doit recorded stays valid), once per task family instead of once per task and run."""
    return hashlib.md5(json.dumps(config, sort_keys=True).encode("utf-8")).hexdigest()


def inputs_digest(config: dict, inputs: dict[str, Path]) -> tuple[str, dict[str, dict]]:
    """Digest of the settings that shape a view and of its input files' content.

    Returns (digest, {role: {"path", "sha256"}}) for the sidecar.
    """
    files = {role: {"path": str(path), "sha256": sha256_file(path)} for role, path in sorted(inputs.items())}
    payload = json.dumps({"config": config, "inputs": {r: f["sha256"] for r, f in files.items()}},
                         sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest(), files


def file_stat(path: Path | str) -> list[int] | None:
    """[size, mtime_ns] of `path`, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def hash_inputs(config: dict, inputs: dict[str, Path]) -> tuple[str, dict[str, dict], dict[str, list]]:
    """`inputs_digest`, plus each input's [path, size, mtime_ns] as hashed (for `ViewCurrent`).

    Raises InputError when a file changes while it is read (a copy under way)."""
    before = {role: file_stat(path) for role, path in inputs.items()}
    digest, files = inputs_digest(config, inputs)
    after = {role: file_stat(path) for role, path in inputs.items()}
    moving = sorted(str(inputs[r].name) for r in inputs if before[r] != after[r])
    if moving:
        raise InputError(f"{', '.join(moving)} a changé pendant sa lecture (une copie est en cours ?) : "
                         f"relancez doit quand la copie est finie.")
    return digest, files, {role: [str(inputs[role]), *after[role]] for role in inputs}


def view_problem(view_png: Path, inputs: dict[str, Path]) -> str | None:
    """What makes a finished view stale by its own files (French), or None when it is intact and
    made from the inputs as they are now."""
    meta = read_sidecar(view_png)
    if meta is None:
        return "fiche de la vue (.json) absente ou illisible"
    try:
        made = sha256_file(view_png)
    except OSError:
        return "image absente"
    if made != meta.get("output_sha256"):
        return "image abîmée (ne correspond pas à sa fiche)"
    recorded = meta.get("inputs") or {}
    for role, path in sorted(inputs.items()):
        was = (recorded.get(role) or {}).get("sha256") if isinstance(recorded, dict) else None
        try:
            now = sha256_file(path)
        except OSError:
            continue  # a missing input is doit's to report
        if now != was:
            return f"{Path(path).name} a changé depuis la fabrication de la vue"
    return None


class ViewCurrent(config_changed):
    """doit `uptodate` of a view: its settings unchanged (config_changed) and its PNG and sidecar
    as the last build left them; when they are not, the sidecar's output hash and input hashes
    are checked against the files now (`view_problem`). `reason` keeps why it is stale, for
    `doit plan`. (A photo replaced while its view is made fails that build: `inputs_unchanged`.)"""

    def __init__(self, config: dict | str, output: Path, inputs: dict[str, Path]):
        super().__init__(config)  # a dict, or its `config_digest`
        self.output = output
        self.inputs = inputs
        self.reason: str | None = None

    # doit calls inspect.signature() on every uptodate object of every task, every run, to find
    # its (task, values) arguments: about a third of a no-op's status checks. Given here at once.
    __signature__ = inspect.Signature([inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD)
                                       for n in ("task", "values")])

    def __call__(self, task, values):
        self.reason = None
        if not super().__call__(task, values):
            return False
        made = values.get("made")
        if not made:
            return True  # built before this was recorded: doit's own checks decide
        if outputs_stat(self.output) == made:
            return True
        self.reason = view_problem(self.output, self.inputs)
        return self.reason is None


def outputs_stat(view_png: Path) -> list[int] | None:
    """[png size, png mtime_ns, sidecar size, sidecar mtime_ns]: what `ViewCurrent` compares."""
    png, side = file_stat(view_png), file_stat(sidecar_path(view_png))
    return png + side if png is not None and side is not None else None


def inputs_unchanged(inputs: dict[str, Path], stats: dict[str, list]) -> None:
    """Raise InputError when an input is no longer the file that was hashed (replaced during the
    build: doit would record the new file's md5 after the action and call the view current)."""
    moved = sorted(Path(p).name for role, (p, *st) in stats.items() if file_stat(inputs[role]) != st)
    if moved:
        raise InputError(f"{', '.join(moved)} a été remplacé(e) pendant la fabrication de la vue : rien n'est "
                         f"écrit ; relancez doit, la vue sera faite depuis le nouveau fichier.")


def is_current(view_png: Path, digest: str) -> bool:
    """True when `view_png` exists, was made from exactly these inputs and is intact."""
    meta = read_sidecar(view_png)
    if not meta or meta.get("inputs_digest") != digest or not view_png.exists():
        return False
    return meta.get("output_sha256") == sha256_file(view_png)


def now_iso() -> str:
    """The timestamp written in sidecars and answer metadata (UTC, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
