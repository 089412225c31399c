"""A deliberate re-roll: a new seed for one view, recorded in `photos/<folder>/overrides.json`.

The seed is part of the view's request (and so of its cache key and doit's config_changed), so
the next build of the view is a new paid call; everything else stays cached.
"""

from __future__ import annotations

import json

from ..core.discovery import OVERRIDES_FILE
from ..core.errors import InputError
from ..core.files import atomic_write_bytes
from ..core.settings import Settings
from ..core.views import VIEWS_BY_NAME


def bump_seed(settings: Settings, args: list[str]) -> tuple[str, str, int]:
    """Record a new seed for (folder, view); returns (folder, view, new seed)."""
    if len(args) != 2 or args[1] not in VIEWS_BY_NAME:
        raise InputError(f"Usage : doit reroll DOSSIER VUE (VUE parmi {', '.join(VIEWS_BY_NAME)}).")
    folder, view = args
    if settings.generator != "gemini":
        raise InputError("Le rendu local est déterministe : un nouveau tirage ne changerait rien. "
                         "Réglez GEMINI_API_KEY pour un nouveau tirage Gemini.")
    photo_dir = settings.photos_dir / folder
    if not photo_dir.is_dir():
        raise InputError(f"Dossier introuvable : {photo_dir}")
    path = photo_dir / OVERRIDES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        data = {}
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("seeds", {}), dict):
        raise InputError(f"{path} est illisible (attendu : {{\"seeds\": {{\"2_back\": 1}}}}) : "
                         f"corrigez-le ou supprimez-le.")
    seeds = data.setdefault("seeds", {})
    seeds[view] = int(seeds.get(view, 0)) + 1
    atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return folder, view, seeds[view]
