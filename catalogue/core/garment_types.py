"""Garment types: which family of style references (tops, bottoms) each product and each style image
belongs to, and the choice of a product's style image within its family.

Light (standard library only): the task graph reads what is already known, cheaply —

    refs/types.toml                    a person's declaration of each style image's type
    photos/<folder>/type.txt           a person's declaration of a product's type (one word)
    PRODUCTS_MAP, third column         an optional type column of the CSV map
    output/.state/garment_types.json   types inferred from pixels, by the image's SHA-256 (+ a stat
                                       index, so the graph load never hashes product photos)
    output/.state/product_types.json   the shop database's category of each product, as last read
                                       (by a view's build, `doit plan` or an upload lookup)

and the view's build (`generation.garment_choice`) fills the gaps: infers the types nobody declared,
reads the database's category, and records both here for the next graph load. The same `decide`
and `choose_style` run in both places, so the graph's file dependencies and the build agree.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import threading
import tomllib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .files import atomic_write_bytes, sha256_file

FAMILIES = ("tops", "bottoms")
LABELS = {"tops": "haut", "bottoms": "bas"}
REFS_TYPES_FILE = "types.toml"
DECLARATION_FILE = "type.txt"
IMAGE_TYPES_FILE = "garment_types.json"
PRODUCT_TYPES_FILE = "product_types.json"
# imaging/silhouette.py's version (it cannot be imported here): a new one re-infers every image.
SILHOUETTE_VERSION = "1"
# An inference under this confidence is a best guess: the choice is flagged INCERTAIN.
TYPE_SURE = 0.6

# Words (family folder names, declarations, the shop's category names and slugs) -> family.
# Compared without accents, case or plural 's'; the shop's categories are the first of each line.
_WORDS = {
    "tops": ("tops top hauts haut vestes veste blousons blouson manteaux manteau parkas parka doudounes "
             "doudoune sweats sweat sweatshirts sweatshirt hoodies hoodie t-shirts t-shirt tshirts tshirt "
             "tee-shirts tee-shirt polos polo chemises chemise surchemises surchemise pulls pull maille "
             "tricots tricot gilets gilet cardigans cardigan debardeurs debardeur overshirts jackets "
             "jacket coats sweaters sweater shirts shirt"),
    "bottoms": ("bottoms bottom bas pantalons pantalon shorts short jeans jean bermudas bermuda joggings "
                "jogging joggers jogger cargos cargo chinos chino jupes jupe trousers pants"),
}
WORDS = {w: fam for fam, words in _WORDS.items() for w in words.split()}


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode()
    return "-".join(text.lower().replace("_", " ").replace("/", " ").split())


def family_of(text: str | None) -> str | None:
    """The family a word names (« Pantalons », `t-shirts`, « bas », `tops`…), else None."""
    if not text:
        return None
    word = normalise(text)
    for candidate in (word, word.rstrip("s"), word.replace("-", ""), word.split("-")[0]):
        if candidate in WORDS:
            return WORDS[candidate]
    return None


def family_of_category(name: str | None, slug: str | None) -> str | None:
    return family_of(slug) or family_of(name)


def label(family: str | None) -> str:
    return LABELS.get(family or "", "?")


# --- a decision from several sources ------------------------------------------------------------

SOURCE_ORDER = ("declared", "database", "map", "inferred")


@dataclass(frozen=True)
class Source:
    kind: str                # one of SOURCE_ORDER
    family: str
    why: str                 # French: « catégorie « Pantalons » en base », …
    sure: bool = True        # an inference may be unsure


@dataclass(frozen=True)
class TypeChoice:
    family: str
    source: str
    why: str
    uncertain: bool = False
    reason: str = ""         # French, why it is uncertain

    def to_json(self) -> dict:
        return {"family": self.family, "label": label(self.family), "source": self.source, "why": self.why,
                "uncertain": self.uncertain, "reason": self.reason}


def decide(sources: list[Source]) -> TypeChoice | None:
    """The best available source wins (declared > database > PRODUCTS_MAP > inferred); another
    source saying otherwise, or an unsure inference alone, makes it uncertain with the reason.
    A declaration silences the inference (it is the person's correction of it)."""
    ranked = sorted(sources, key=lambda s: SOURCE_ORDER.index(s.kind))
    if not ranked:
        return None
    best = ranked[0]
    others = [s for s in ranked[1:] if s.family != best.family and s.sure
              and not (best.kind == "declared" and s.kind == "inferred")]
    if others:
        said = " ; ".join(f"{s.why} : {label(s.family)}" for s in others)
        return TypeChoice(best.family, best.kind, best.why, True,
                          f"type de vêtement incertain : {label(best.family)} ({best.why}) mais {said}")
    if not best.sure:
        return TypeChoice(best.family, best.kind, best.why, True,
                          f"type de vêtement incertain : {label(best.family)} ({best.why}) — déclarez-le "
                          f"dans photos/<dossier>/{DECLARATION_FILE} (haut ou bas)")
    return TypeChoice(best.family, best.kind, best.why)


# --- the style image of a product within its family ---------------------------------------------

@dataclass(frozen=True)
class StyleImage:
    path: Path
    family: str | None       # None: not known yet (to infer)
    how: str                 # "folder" (refs/<family>/), "declared" (types.toml), "inferred", "" unknown

    @property
    def rel(self) -> str:
        return self.path.name


@dataclass(frozen=True)
class StyleChoice:
    path: Path
    family: str | None
    why: str                 # French
    uncertain: str = ""      # French reason when the image is not of the product's type


def rendezvous(paths, folder: str) -> Path:
    """Rendezvous hashing: adding an image moves only the products that pick the new one (about
    1 in n+1), so the others are not regenerated and paid again."""
    return max(paths, key=lambda p: hashlib.sha256(f"{folder}\0{p.name}".encode()).digest())


def needs_type(pool: tuple[StyleImage, ...]) -> bool:
    """Whether the product's type matters for this view: more than one image, of several (or
    unknown) types."""
    return len(pool) > 1 and (any(s.family is None for s in pool) or len({s.family for s in pool}) > 1)


def choose_style(pool: tuple[StyleImage, ...], folder: str, family: str | None, view: str) -> StyleChoice | None:
    """The style image of `folder` for `view`: one of its family's, chosen stably."""
    if not pool:
        return None
    if not needs_type(pool):
        chosen = rendezvous([s.path for s in pool], folder)
        only = len(pool) == 1
        fam = pool[0].family
        why = "seule référence de style de la vue" if only else \
            f"une des {len(pool)} références {label(fam) if fam else ''} (choix stable par référence)".replace("  ", " ")
        return StyleChoice(chosen, fam, why)
    same = [s for s in pool if s.family == family and family is not None]
    if same:
        chosen = rendezvous([s.path for s in same], folder)
        how = next(s.how for s in same if s.path == chosen)
        origin = {"folder": "dossier de la famille", "declared": f"déclarée dans {REFS_TYPES_FILE}",
                  "inferred": "type déduit de l'image"}.get(how, how)
        return StyleChoice(chosen, family, f"référence {label(family)} ({origin}), "
                                           f"{'seule' if len(same) == 1 else f'une des {len(same)}'} de ce type")
    typed = [s for s in pool if s.family is not None] or list(pool)
    chosen = rendezvous([s.path for s in typed], folder)
    fam = next(s.family for s in typed if s.path == chosen)
    if family is None:
        return StyleChoice(chosen, fam, "type du produit inconnu", "type du vêtement inconnu : "
                           f"référence de style {chosen.name} prise au hasard stable, à vérifier")
    return StyleChoice(chosen, fam, f"aucune référence {label(family)} pour la vue {view}",
                       f"aucune référence de style « {label(family)} » pour la vue {view} : {chosen.name} "
                       f"({label(fam)}) utilisée — ajoutez-en une (refs/{'bottoms' if family == 'bottoms' else 'tops'}/)")


# --- declarations ---------------------------------------------------------------------------------

def read_refs_types(refs_dir: Path) -> tuple[dict[str, str], str | None]:
    """refs/types.toml: {"face/face_b.jpg": "bas", ...} -> ({relative path (lower-cased): family}, problem)."""
    path = refs_dir / REFS_TYPES_FILE
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError):
        return {}, None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        return {}, f"{path} est illisible ({exc}) : corrigez-le (une ligne par image : \"face/face_b.jpg\" = \"bas\")."
    out = {}
    for key, value in data.items():
        fam = family_of(value) if isinstance(value, str) else None
        if fam is None:
            return {}, (f"{path} : « {key} = {value!r} » — type inconnu ; valeurs possibles : haut (tops) "
                        f"ou bas (bottoms).")
        out[Path(key).as_posix().lower()] = fam
    return out, None


def read_declaration(photo_dir: Path) -> tuple[str | None, str | None]:
    """photos/<folder>/type.txt: (family, problem)."""
    path = photo_dir / DECLARATION_FILE
    try:
        text = path.read_text(encoding="utf-8-sig").strip()
    except (FileNotFoundError, NotADirectoryError):
        return None, None
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"{path} est illisible ({exc}) : écrivez-y « haut » ou « bas »."
    word = next((line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")), "")
    fam = family_of(word)
    if fam is None:
        return None, f"{path} : « {word} » n'est pas un type connu ; écrivez-y « haut » ou « bas »."
    return fam, None


def read_map_types(products_map: Path | None) -> dict[str, str]:
    """The optional third column of PRODUCTS_MAP (`reference,product_id,type`): {folder: family}.
    Unreadable files are the upload's business (lookup says so): here they give nothing."""
    if not products_map:
        return {}
    try:
        text = Path(products_map).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return {}
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    out = {}
    for row in csv.reader(text.splitlines(), delimiter=delimiter):
        cells = [c.strip() for c in row]
        if len(cells) >= 3 and cells[0] and not cells[0].startswith("#"):
            fam = family_of(cells[2])
            if fam:
                out.setdefault(cells[0].replace("/", "-"), fam)
    return out


# --- state files ----------------------------------------------------------------------------------

_lock = threading.Lock()  # view builds run in threads (doit -n 4)


def _load(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def _save(path: Path, update) -> None:
    """Re-read, update, write atomically: concurrent builds of this process each add their part."""
    with _lock:
        data = _load(path)
        update(data)
        atomic_write_bytes(path, (json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n").encode())


def _stat_key(path: Path) -> list | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


class ImageTypes:
    """Types inferred from pixels (output/.state/garment_types.json), by SHA-256 of the image."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / IMAGE_TYPES_FILE
        data = _load(self.path)
        self.images = data.get("images") or {}
        self.files = data.get("files") or {}

    def sha_if_known(self, path: Path) -> str | None:
        """The image's SHA-256 when the stat index knows this exact file (no hashing)."""
        entry = self.files.get(str(path))
        key = _stat_key(path)
        if entry and key and entry[:2] == key:
            return entry[2]
        return None

    def lookup(self, path: Path, *, hash_missing: bool = False) -> dict | None:
        sha = self.sha_if_known(path)
        if sha is None and hash_missing:
            sha = self.hash(path)
        entry = self.images.get(sha) if sha else None
        if entry and entry.get("version") == SILHOUETTE_VERSION:
            return entry
        return None

    def hash(self, path: Path) -> str | None:
        try:
            sha = sha256_file(path)
        except OSError:
            return None
        key = _stat_key(path)
        if key:
            self.files[str(path)] = key + [sha]
        return sha

    def record(self, path: Path, sha: str, entry: dict) -> None:
        key = _stat_key(path)
        self.images[sha] = entry
        if key:
            self.files[str(path)] = key + [sha]

        def update(data):
            data.setdefault("images", {})[sha] = entry
            if key:
                data.setdefault("files", {})[str(path)] = key + [sha]
        _save(self.path, update)


class ProductTypes:
    """The shop database's category of each product, as last read (output/.state/product_types.json)."""

    def __init__(self, state_dir: Path):
        self.path = Path(state_dir) / PRODUCT_TYPES_FILE
        self.data = _load(self.path)

    def category(self, folder: str) -> dict | None:
        entry = self.data.get(folder) or {}
        return entry.get("category")

    def record_categories(self, categories: dict[str, dict | None]) -> None:
        """{folder: {"name", "slug"} or None (no category / no product)}."""
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for folder, cat in categories.items():
            self.data[folder] = {"category": cat, "read_at": now}

        def update(data):
            for folder, cat in categories.items():
                data[folder] = {"category": cat, "read_at": now}
        _save(self.path, update)


def database_source(category: dict | None) -> Source | None:
    if not category:
        return None
    fam = family_of_category(category.get("name"), category.get("slug"))
    if fam is None:
        return None
    return Source("database", fam, f"catégorie « {category.get('name') or category.get('slug')} » en base")


def inferred_source(entry: dict | None, what: str = "la photo de face") -> Source | None:
    if not entry or entry.get("family") not in FAMILIES:
        return None
    return Source("inferred", entry["family"], f"déduit de {what} ({entry.get('reason', '')})",
                  sure=float(entry.get("confidence", 0)) >= TYPE_SURE)


def known_sources(photo_dir: Path, folder: str, declared: str | None, map_types: dict[str, str],
                  products: ProductTypes, inferred: dict | None) -> list[Source]:
    """The sources of a product's type the caller has at hand (graph load: caches only)."""
    out = []
    if declared:
        out.append(Source("declared", declared, f"déclaré dans {folder}/{DECLARATION_FILE}"))
    db = database_source(products.category(folder))
    if db:
        out.append(db)
    if folder in map_types:
        out.append(Source("map", map_types[folder], "colonne type de PRODUCTS_MAP"))
    inf = inferred_source(inferred)
    if inf:
        out.append(inf)
    return out
