"""The upload task family: `upload:<folder>`, the reference's finished views -> the shop."""

from __future__ import annotations

from doit.tools import config_changed

from ..core.discovery import Reference
from ..core.provenance import config_digest
from ..core.paths import stamp_path, view_path
from ..core.settings import Settings, without_secret
from .actions import fail_action, run_action


def _upload(settings: Settings, folder: str, views: tuple[str, ...]):
    from ..publishing.upload import upload_reference  # requests, psycopg: only when uploading

    outcome = upload_reference(settings, folder, views)
    if outcome.skipped_reason:
        return fail_action(outcome.skipped_reason)
    return {"outcome": "uploaded" if outcome.uploaded else "uptodate", "message": outcome.message,
            "product_id": outcome.product_id}


def _upload_current(settings: Settings, folder: str, views: tuple[str, ...]):
    """doit uptodate: True when the stamp matches every finished view (nothing to send)."""
    def check(task, values):
        from ..publishing.stamp import needs_upload  # light: no requests, psycopg or PIL

        return not needs_upload(settings, folder, views)
    return check


def upload_tasks(settings: Settings, refs: list[Reference]):
    """`upload:<folder>`: the reference's finished views -> the shop (safe replace)."""
    digest = config_digest({"backend_url": without_secret(settings.backend_url), "mode": settings.upload_mode})
    for ref in refs:
        task = {"name": ref.task_name, "io": {"capture": False}, "meta": {"kind": "upload", "folder": ref.folder}}
        if ref.problem:
            yield {**task, "actions": [(fail_action, [ref.problem])]}
            continue
        views = [str(view_path(settings, ref.folder, v)) for v in ref.views]
        yield {**task,
               "file_dep": views,
               "targets": [str(stamp_path(settings, ref.folder))],
               "actions": [(run_action, ["upload", ref.folder, settings, _upload, settings, ref.folder, ref.views])],
               "uptodate": [config_changed(digest), _upload_current(settings, ref.folder, ref.views)]}
