"""`doit adjust`: the shop's `images adjust`, made to survive rebuilds.

    doit adjust --image output/<folder>/<view>.png --prompt "…" [--ref output/<folder>/1_face.png | --ref PATH]
                [--gemini-pro | --gemini-flash] [--force]
    doit adjust FOLDER VIEW --prompt "…" [...]            (short form of the same)
    doit adjust FOLDER VIEW --fix color-fix|background-fix [--ref …]
    doit adjust --image any/other/picture.jpg --prompt "…"  (one-off: writes picture_adjusted.png beside it)

On a pipeline view the step is recorded in `photos/<folder>/adjustments.toml` (a retouch made by
overwriting the output would be lost at the next regeneration), then the reference is rebuilt
(`python -m doit generate:<folder>`, as `doit reroll`): the step runs, is checked, and the result's
path is printed with what became of the step. On any other image the retouch is made once and
written beside it as `<name>_adjusted.png`; the original is never overwritten.
"""

from __future__ import annotations

import getopt
import os
import sys
from pathlib import Path

from doit.cmd_base import DoitCmdBase

from ..core.errors import InputError, PipelineError
from ..core.provenance import read_sidecar
from ..core.settings import load_settings
from ..core.views import VIEW_NAMES
from ..generation.retouch_steps import FIXES, record_fix, record_step
from .run_lock import regenerate

OPTIONS = (
    {"name": "image", "long": "image", "type": str, "default": None,
     "help": "l'image à retoucher : une vue output/<dossier>/<vue>.png, ou toute autre image (retouche ponctuelle)"},
    {"name": "prompt", "long": "prompt", "type": str, "default": None,
     "help": "la consigne de retouche (en anglais, comme pour Gemini)"},
    {"name": "ref", "long": "ref", "type": str, "default": None,
     "help": "image de référence : une autre vue (output/<dossier>/1_face.png ou 1_face) ou un chemin"},
    {"name": "gemini_pro", "long": "gemini-pro", "type": bool, "default": False,
     "help": "modèle Gemini Pro (par défaut : le modèle de GEMINI_MODEL)"},
    {"name": "gemini_flash", "long": "gemini-flash", "type": bool, "default": False,
     "help": "modèle Gemini Flash (économique)"},
    {"name": "force", "long": "force", "type": bool, "default": False,
     "help": "accepter le résultat même si le contrôle (couleur, forme) le refuse"},
    {"name": "fix", "long": "fix", "type": str, "default": None,
     "help": "correction gratuite au lieu d'une consigne : color-fix ou background-fix"},
)


LONG_OPTIONS = [o["long"] + ("" if o["type"] is bool else "=") for o in OPTIONS]


def _command_line(pos_args: list[str]) -> tuple[list, list[str]] | None:
    """(options, positional args) read from the command line as typed.

    doit stops reading a command's options at the first positional argument (`doit adjust A-1
    2_back --prompt …`) and takes any argument holding a '=' for a variable (`--prompt "width=2cm"`
    would lose its value), so the arguments after `adjust` are read again here."""
    argv = sys.argv[1:]
    if "adjust" in argv:
        try:
            opts, args = getopt.gnu_getopt(argv[argv.index("adjust") + 1:], "", LONG_OPTIONS)
            return opts, [a for a in args if "=" not in a]  # NAME=value: doit variables
        except getopt.GetoptError:
            pass  # doit's own options in the way: what doit parsed, and the rest
    try:
        return getopt.gnu_getopt(pos_args, "", LONG_OPTIONS)
    except getopt.GetoptError:
        return None


def _shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


class Adjust(DoitCmdBase):
    """Retouch one view (declared, replayed at every rebuild) or a one-off image."""

    name = "adjust"
    doc_purpose = ("retouche une vue (consigne Gemini ou correction gratuite) : enregistrée dans "
                   "photos/<dossier>/adjustments.toml puis la vue est refaite ; ou une image quelconque "
                   "(écrit <nom>_adjusted.png à côté)")
    doc_usage = ("[DOSSIER VUE] [--image IMAGE] (--prompt \"…\" | --fix color-fix|background-fix) "
                 "[--ref IMAGE] [--gemini-pro|--gemini-flash] [--force]")
    doc_description = None
    cmd_options = OPTIONS

    def _execute(self, image=None, prompt=None, ref=None, gemini_pro=False, gemini_flash=False,
                 force=False, fix=None, pos_args=None):
        self.dep_manager.close()
        try:
            parsed = _command_line(list(pos_args or []))
            if parsed is None:
                raise InputError("Option invalide : voyez « doit help adjust ».")
            opts, pos_args = parsed
            given = {"image": image, "prompt": prompt, "ref": ref, "fix": fix, "gemini_pro": gemini_pro,
                     "gemini_flash": gemini_flash, "force": force}
            for flag, value in opts:
                name = flag[2:].replace("-", "_")
                given[name] = True if name in ("gemini_pro", "gemini_flash", "force") else value
            image, prompt, ref, fix = given["image"], given["prompt"], given["ref"], given["fix"]
            gemini_pro, gemini_flash, force = given["gemini_pro"], given["gemini_flash"], given["force"]
            settings = load_settings(os.getcwd())
            request = _Request(settings, image, prompt, ref, gemini_pro, gemini_flash, force, fix,
                               list(pos_args or []))
            if request.folder:
                return request.pipeline()
            return request.one_off()
        except PipelineError as exc:
            print(exc.message, flush=True)
            return 1


class _Request:
    def __init__(self, settings, image, prompt, ref, pro, flash, force, fix, args):
        self.settings = settings
        usage = ("Usage : doit adjust --image output/<dossier>/<vue>.png --prompt \"…\" [--ref IMAGE] "
                 "[--gemini-pro|--gemini-flash] [--force], ou doit adjust DOSSIER VUE --prompt \"…\", "
                 f"ou --fix {'|'.join(FIXES)} au lieu de --prompt.")
        if pro and flash:
            raise InputError("Choisissez --gemini-pro ou --gemini-flash, pas les deux.")
        self.model = "pro" if pro else ("flash" if flash else None)
        self.prompt = (prompt or "").strip() or None
        self.fix = (fix or "").strip() or None
        if bool(self.prompt) == bool(self.fix):
            raise InputError("Donnez soit une consigne (--prompt \"…\"), soit une correction (--fix), pas les "
                             "deux. " + usage)
        if self.fix and self.fix not in FIXES:
            raise InputError(f"Correction inconnue « {self.fix} » (possibles : {', '.join(FIXES)}).")
        if self.fix and self.model:
            raise InputError("--fix ne fait aucun appel à Gemini : --gemini-pro / --gemini-flash n'ont pas "
                             "de sens ici.")
        self.ref, self.force = ref, force
        self.folder = self.view = None
        self.image = None
        if args:
            if len(args) != 2 or image:
                raise InputError(usage)
            self.folder, self.view = args
            if self.view not in VIEW_NAMES:
                raise InputError(f"Vue inconnue « {self.view} » (vues : {', '.join(sorted(VIEW_NAMES))}). " + usage)
            return
        if not image:
            raise InputError(usage)
        path = Path(image).expanduser()
        self.image = (path if path.is_absolute() else Path.cwd() / path).resolve()
        out = settings.output_dir.resolve()
        if (self.image.parent.parent == out and self.image.suffix.lower() == ".png"
                and self.image.stem in VIEW_NAMES
                and (settings.photos_dir / self.image.parent.name).is_dir()):
            self.folder, self.view = self.image.parent.name, self.image.stem

    # --- a pipeline view: recorded, then rebuilt ------------------------------------------------

    def pipeline(self) -> int:
        s = self.settings
        if self.prompt:
            path = record_step(s, self.folder, self.view, self.prompt, ref=self.ref, model=self.model,
                               force=self.force)
        else:
            path = record_fix(s, self.folder, self.view, self.fix, ref=self.ref, force=self.force)
        print(f"Retouche enregistrée pour {self.folder} / {self.view} dans {_shown(path)} (rejouée à "
              f"chaque génération) : la vue est refaite…", flush=True)
        code = regenerate(self.folder)
        output = s.output_dir / self.folder / f"{self.view}.png"
        side = read_sidecar(output) or {}
        records = side.get("adjustments") or []
        last = records[-1] if records else None
        if code != 0 or last is None:
            print(f"La vue {self.folder} / {self.view} n'a pas pu être refaite (voir ci-dessus) ; la retouche "
                  f"reste enregistrée dans {_shown(path)} et sera rejouée à la prochaine exécution.", flush=True)
            return code or 1
        status = last.get("status")
        if status in ("accepted", "applied"):
            print(f"Retouche appliquée : {_shown(output)}", flush=True)
            return 0
        if status == "refused":
            print(f"Retouche refusée, image précédente gardée : {_shown(output)} — {last.get('why')}", flush=True)
            return 1
        print(f"Retouche non appliquée : {_shown(output)} — {last.get('why')}", flush=True)
        return 1

    # --- any other image: a one-off beside it ---------------------------------------------------

    def one_off(self) -> int:
        from ..generation.one_off_retouch import retouch_one_off  # numpy, Pillow, google-genai

        return retouch_one_off(self.settings, self.image, prompt=self.prompt, fix=self.fix, ref=self.ref,
                               model=self.model, force=self.force)
