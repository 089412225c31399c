"""Find the product references in PHOTOS_DIR and the style references in REFS_DIR.

Discovery runs every time doit loads the task graph (thousands of references from cron), so it only
lists folders: no image is decoded here. Decoding and validation happen in the view's task, so a
bad photo fails that reference alone, with a French message saying what to do.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from .garment_types import ImageTypes, StyleChoice, StyleImage, choose_style, family_of, read_refs_types
from .views import IMAGE_SUFFIXES, PHOTO_NAMES, VIEWS

# Folder names become doit task names: '=' would be read as a doit variable, ':' splits task
# names, and whitespace breaks shell use. The shop's references use letters, digits, '-' and '.'.
VALID_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
OVERRIDES_FILE = "overrides.json"


@dataclass(frozen=True)
class Reference:
    """One product reference: its photos folder and what can be built from it."""

    folder: str
    photo_dir: Path
    photos: dict[str, Path]                       # "face" / "back" -> photo file
    problem: str | None = None                    # French message when the folder is unusable
    seeds: dict[str, int] = field(default_factory=dict)  # view -> seed (a re-roll bumps it)
    files: frozenset[str] = frozenset()          # every file name in the folder (as listed once)

    @property
    def views(self) -> tuple[str, ...]:
        """The views this reference gets: 2_back only when a back photo exists."""
        return tuple(v.name for v in VIEWS if v.source != "back" or "back" in self.photos)

    @property
    def task_name(self) -> str:
        """The folder as a doit task name (doit refuses '=' and splits on ':')."""
        if not self.problem:
            return self.folder
        # Unique even when two bad names sanitise alike ("A B" and "A=B").
        digest = hashlib.sha256(self.folder.encode()).hexdigest()[:6]
        return f"{re.sub(r'[^A-Za-z0-9._-]', '_', self.folder)}~{digest}"

    def seed(self, view: str) -> int:
        return int(self.seeds.get(view, 0))


def _link_problem(entry: os.DirEntry) -> str | None:
    """French message for an image name that is a symlink loop or a dangling link, else None."""
    try:
        entry.is_file()
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return (f"{entry.path} est un lien symbolique en boucle (il ne mène à aucun fichier) : "
                    f"remplacez-le par le fichier de la photo.")
        return f"{entry.path} est illisible ({exc.strerror}) : remplacez-le par le fichier lui-même."
    if entry.is_symlink() and not os.path.exists(entry.path):
        try:
            target = os.readlink(entry.path)
        except OSError:
            target = "?"
        return (f"{entry.path} est un lien symbolique cassé (il pointe sur {target}, introuvable) : "
                f"remplacez-le par le fichier lui-même.")
    return None


@dataclass(frozen=True)
class Listing:
    """The files directly in one folder, listed once."""
    images: dict[str, Path]                    # lower-cased stem -> image file (the first by name)
    names: frozenset[str]                      # every file name in the folder
    same_stem: dict[str, tuple[Path, ...]]     # lower-cased stem -> every image file with that stem
    broken: dict[str, str]                     # lower-cased stem -> French message (link loop, dangling)


def _list(folder: Path) -> Listing:
    """One scandir per folder: the graph is loaded for every doit command, on thousands of folders."""
    found: dict[str, Path] = {}
    same: dict[str, list[Path]] = {}
    broken: dict[str, str] = {}
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return Listing({}, frozenset(), {}, {})
    for entry in entries:
        stem, dot, suffix = entry.name.rpartition(".")
        if not dot or ("." + suffix.lower()) not in IMAGE_SUFFIXES:
            continue
        if entry.is_symlink():
            problem = _link_problem(entry)
            if problem:
                broken.setdefault(stem.lower(), problem)
                continue
        if entry.is_file():
            found.setdefault(stem.lower(), Path(entry.path))
            same.setdefault(stem.lower(), []).append(Path(entry.path))
    return Listing(found, frozenset(e.name for e in entries), {k: tuple(v) for k, v in same.items()}, broken)


def _read_seeds(photo_dir: Path) -> tuple[dict[str, int], str | None]:
    """(view -> seed, problem): a broken file must not silently bring back re-rolled images."""
    path = photo_dir / OVERRIDES_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {str(k): int(v) for k, v in (data.get("seeds") or {}).items()}, None
    except (FileNotFoundError, NotADirectoryError):
        return {}, None
    except (ValueError, TypeError, AttributeError):
        return {}, (f"{path} est illisible (attendu : {{\"seeds\": {{\"2_back\": 1}}}}, les nouveaux "
                    f"tirages y sont notés) : corrigez-le ou supprimez-le.")


def _reference(folder: str, photo_dir: Path) -> Reference:
    if not VALID_FOLDER.match(folder):
        return Reference(folder, photo_dir, {}, problem=(
            f"Nom de dossier invalide « {folder} » : utilisez la référence produit avec « - » à la "
            f"place de « / » (ex. L100001-V09A), sans espace, « = » ni « : »."))
    listing = _list(photo_dir)
    files, names = listing.images, listing.names
    photos = {}
    problem = None
    for role, stems in PHOTO_NAMES.items():
        candidates = [p for stem in stems for p in listing.same_stem.get(stem, ())]
        if len(candidates) > 1:
            count = "deux" if len(candidates) == 2 else str(len(candidates))
            names_ = ", ".join(p.name for p in candidates)
            if role == "face":
                problem = problem or (f"{count} photos de face dans {photo_dir} : {names_} ; laquelle prendre ? "
                                      f"Gardez-en une seule (déplacez les autres hors du dossier).")
            else:
                problem = problem or (f"{count} photos de dos dans {photo_dir} : {names_} ; laquelle prendre ? "
                                      f"Gardez-en une seule (déplacez les autres hors du dossier).")
        for stem in stems:
            if stem in listing.broken:
                problem = problem or listing.broken[stem]
            if stem in files:
                photos[role] = files[stem]
                break
    if problem is None and "face" not in photos:
        problem = (f"Photo de face manquante dans {photo_dir} : ajoutez face.jpg (ou face.heic, "
                   f"face.png, 1_face.jpg…).")
    seeds, seeds_problem = _read_seeds(photo_dir) if OVERRIDES_FILE in names else ({}, None)
    problem = problem or seeds_problem
    return Reference(folder, photo_dir, photos, problem=problem, seeds=seeds, files=names)


def discover_references(photos_dir: Path) -> list[Reference]:
    """Every reference folder in `photos_dir`, sorted; `.` and `_` folders are ignored.

    Raises FileNotFoundError when `photos_dir` itself does not exist (the caller reports it as
    « Dossier introuvable »).
    """
    entries = sorted(os.scandir(photos_dir), key=lambda e: e.name)
    refs = []
    for e in entries:
        if e.name.startswith((".", "_")):
            continue
        try:
            is_dir = e.is_dir()
        except OSError:  # a symlink loop: that reference fails alone, with a message
            refs.append(Reference(e.name, Path(e.path), {}, problem=(
                f"{e.path} est un lien symbolique en boucle : remplacez-le par le dossier de la référence.")))
            continue
        if is_dir:
            refs.append(_reference(e.name, Path(e.path)))
        elif e.is_symlink() and not os.path.exists(e.path):
            refs.append(Reference(e.name, Path(e.path), {}, problem=(
                f"{e.path} est un lien symbolique cassé (il pointe sur {os.readlink(e.path)}, introuvable) : "
                f"remplacez-le par le dossier de la référence.")))
    return refs


# --- style references -------------------------------------------------------------------------

def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:  # a symlink loop
        return False


def _style_candidates(refs_dir: Path, names: tuple[str, ...]) -> tuple[list[Path], str | None]:
    """(the style images for one view: a file `refs/<name>.*` and the images of a folder
    `refs/<name>/` (the shop keeps its main reference beside a folder of alternatives); the French
    message of a link loop or dangling link found on the way)."""
    listing = _list(refs_dir)
    files = listing.images
    broken = next((listing.broken[n.lower()] for n in names if n.lower() in listing.broken), None)
    found = [files[name.lower()] for name in names if name.lower() in files][:1]
    try:
        subdirs = {e.name.lower(): Path(e.path) for e in os.scandir(refs_dir) if _is_dir(e)}
    except OSError:
        return found, broken
    for name in names:
        if name.lower() in subdirs:
            sub = _list(subdirs[name.lower()])
            images = sorted(sub.images.values(), key=lambda p: p.name)
            if images:
                return found + images, broken
            broken = broken or next(iter(sub.broken.values()), None)
    return found, broken


def _family_dirs(refs_dir: Path) -> dict[str, Path]:
    """refs/tops/, refs/bottoms/ (also hauts/, bas/…): one family of style references per type."""
    out: dict[str, Path] = {}
    try:
        entries = sorted(os.scandir(refs_dir), key=lambda e: e.name)
    except OSError:
        return out
    for entry in entries:
        fam = family_of(entry.name) if _is_dir(entry) and not entry.name.startswith((".", "_")) else None
        if fam and fam not in out and not any(entry.name.lower() in v.ref_names for v in VIEWS):
            out[fam] = Path(entry.path)
    return out


class StyleRefs:
    """The style references of REFS_DIR, listed once per run, each with its garment type when
    known: its family folder (refs/tops/…), refs/types.toml, or a type inferred earlier
    (`image_types`, output/.state/garment_types.json)."""

    def __init__(self, refs_dir: Path, image_types: ImageTypes | None = None):
        self.refs_dir = refs_dir
        self.declared, self.problem = read_refs_types(refs_dir)
        self.family_dirs = _family_dirs(refs_dir)
        self.pools: dict[str, tuple[StyleImage, ...]] = {}
        self._broken: dict[str, str] = {}
        for v in VIEWS:
            pool = []
            for fam, d in self.family_dirs.items():
                images, broken = _style_candidates(d, v.ref_names)
                pool += [StyleImage(p, fam, "folder") for p in images]
                if broken:
                    self._broken.setdefault(v.name, broken)
            images, broken = _style_candidates(refs_dir, v.ref_names)
            pool += [self._typed(p, image_types) for p in images]
            if broken:
                self._broken.setdefault(v.name, broken)
            self.pools[v.name] = tuple(pool)

    def _typed(self, path: Path, image_types: ImageTypes | None) -> StyleImage:
        rel = path.relative_to(self.refs_dir).as_posix().lower()
        if rel in self.declared:
            return StyleImage(path, self.declared[rel], "declared")
        entry = image_types.lookup(path, hash_missing=True) if image_types is not None else None
        if entry:
            return StyleImage(path, entry["family"], "inferred")
        return StyleImage(path, None, "")

    def pool(self, view: str) -> tuple[StyleImage, ...]:
        return self.pools.get(view, ())

    def choose(self, view: str, folder: str, family: str | None) -> StyleChoice | None:
        return choose_style(self.pool(view), folder, family, view)

    def for_view(self, view: str, folder: str, family: str | None = None) -> Path | None:
        """The style reference of `view` for `folder` (of type `family`): one of several, chosen
        from the folder name (stable across runs and machines, never random)."""
        choice = self.choose(view, folder, family)
        return choice.path if choice else None

    def missing_message(self, view: str) -> str:
        if view in self._broken:
            return f"Référence de style de la vue {view} inutilisable : {self._broken[view]}"
        names = next(v.ref_names for v in VIEWS if v.name == view)
        return (f"Référence de style manquante pour la vue {view} : ajoutez {self.refs_dir}/{names[0]}.png "
                f"(ou un dossier {self.refs_dir}/{names[0]}/ avec une ou plusieurs images).")
