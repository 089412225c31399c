"""The catalogue pipeline: raw photos -> house-style views -> the shop (see README.md).

Thin on purpose: read the settings, discover the references, yield the task families.
    doit                        every stale view            doit generate:<folder>   one reference
    doit upload                 every changed reference     doit upload:<folder>     one reference
    doit plan                   dry run with reasons and cost
    doit mode=batch             through the Batch API (half price; later runs collect and go on)
    doit check_api              is the Gemini key / model usable (generates nothing)
    doit review                 the review page (a command: catalogue/tasks/commands.py)
"""

import sys
from pathlib import Path

from doit import get_var

from catalogue.core.discovery import discover_references
from catalogue.core.errors import PipelineError
from catalogue.core.paths import DEP_FILE, errors_log_path
from catalogue.core.settings import load_settings
from catalogue.tasks import review_tasks, upload_tasks, view_tasks
from catalogue.tasks.doit_config import doit_config, handle_sigterm, set_aside_broken_dep_file
from catalogue.tasks.reporter import ProgressReporter
from catalogue.tasks.run_lock import busy_message, command_runs_tasks, hold_run_lock, lock_of

handle_sigterm()
try:
    SETTINGS = load_settings(Path(__file__).parent, model_override=get_var("model"), mode_override=get_var("mode"))
except PipelineError as exc:
    sys.exit(f"Réglages invalides : {exc}")
# The run lock, whatever the working folder and the doit command (`doit -f /path/dodo.py` reads
# no pyproject.toml plugin): a second run stops here, before it can pay for anything.
if command_runs_tasks(sys.argv[1:]) and hold_run_lock(SETTINGS) is None:
    print(busy_message(lock_of(SETTINGS)), flush=True)
    sys.exit(0)
set_aside_broken_dep_file(Path(__file__).parent / DEP_FILE)  # before doit opens it
try:
    REFS = discover_references(SETTINGS.photos_dir)
except FileNotFoundError:
    REFS = None  # reported by the `generate` task: « Dossier introuvable »

ProgressReporter.announcement = view_tasks.announcement(SETTINGS)
ProgressReporter.warnings = SETTINGS.warnings
ProgressReporter.errors_log = errors_log_path(SETTINGS)
DOIT_CONFIG = doit_config(ProgressReporter)


def task_generate():
    """Fabrique les vues manquantes ou périmées (1_face, 2_back, 3_detail_logo) de chaque référence."""
    if REFS is None:
        return view_tasks.missing_photos_dir_task(SETTINGS)
    return view_tasks.all_generate_tasks(SETTINGS, REFS)


def task_upload():
    """Envoie à la boutique chaque référence dont les vues ont changé depuis le dernier envoi."""
    if REFS is None:
        return view_tasks.missing_photos_dir_task(SETTINGS)
    return upload_tasks.upload_tasks(SETTINGS, REFS)


def task_approve():
    """Approuve les vues actuelles d'une référence (approve:<dossier> ; toutes : approve --all)."""
    return review_tasks.approve_tasks(SETTINGS, REFS or [], sys.argv[1:])


def task_report():
    """Écrit output/index.html : la même page, statique, à partager."""
    return review_tasks.report_task(SETTINGS, REFS or [])


def task_check_api():
    """Vérifie la clé Gemini, le modèle et le quota, sans rien générer."""
    return review_tasks.check_api_task(SETTINGS)
