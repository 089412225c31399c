"""Folder name -> product id, read-only.

The backend has no endpoint to find a product by reference, so the id comes either from the shop's
PostgreSQL (`DATABASE_URL`, one parameterised SELECT in a read-only transaction; in development an
SSH tunnel makes the production database reachable on a local port) or, for shops without database
access, from `PRODUCTS_MAP` (a CSV `reference,product_id`, header optional). When both are set the
database wins.

A folder is the reference with `/` replaced by `-`, and some references contain `-` themselves
(`REF-001`), so the mapping is never reversed: the folder matches the one product whose reference,
with `/` replaced by `-`, equals it. Two such products -> an error listing both.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path


from ..core.errors import UploadError
from ..core.garment_types import ProductTypes

CONNECT_TIMEOUT = 5  # seconds

# The product's category comes with its id, in the same read (the garment type: see
# core/garment_types.py); `= ANY(%s)` serves one folder (an upload) and all of them (`doit plan`).
QUERY = ("SELECT p.id, p.reference, c.name, c.slug FROM products p "
         "LEFT JOIN categories c ON c.id = p.category_id "
         "WHERE replace(p.reference, '/', '-') = ANY(%s) ORDER BY p.id LIMIT %s")


def folder_of(reference: str) -> str:
    """The folder name of a reference (`L100001/V09A` -> `L100001-V09A`)."""
    return reference.strip().replace("/", "-")


def resolve_product_id(settings, folder: str) -> tuple[int, str]:
    """(product_id, reference as stored) for an output folder, or UploadError in French."""
    if settings.database_url:
        rows = _from_database(settings.database_url, [folder])
        candidates = [(pid, ref) for pid, ref, _ in rows]
        if len(rows) == 1:  # the category read with it: a changed type rebuilds the views next run
            ProductTypes(settings.state_dir).record_categories({folder: rows[0][2]})
    elif settings.products_map:
        candidates = _from_map(Path(settings.products_map), folder)
    else:
        raise UploadError(
            f"{folder} : impossible de retrouver le produit — réglez DATABASE_URL (base PostgreSQL de la "
            f"boutique, lecture seule) ou PRODUCTS_MAP (fichier CSV « reference,product_id ») dans .env.",
            reference=folder)
    if not candidates:
        raise UploadError(f"Aucun produit trouvé pour la référence « {folder} »", reference=folder)
    if len(candidates) > 1:
        listed = ", ".join(f"« {ref} » (id {pid})" for pid, ref in candidates)
        raise UploadError(
            f"{folder} : plusieurs produits correspondent au dossier ({listed}) — renommez le dossier ou "
            f"corrigez les références en base ; rien n'est envoyé.", reference=folder)
    return candidates[0]


# --- database ---------------------------------------------------------------------------------

def _driver():
    """psycopg (0.1 s to import): loaded when a database is used, not by every view build."""
    import psycopg
    import psycopg.conninfo

    return psycopg


def conninfo_to_dict(url: str) -> dict:
    return _driver().conninfo.conninfo_to_dict(url)


def describe_url(url: str) -> str:
    """`user@host:port/dbname` of a libpq URL or DSN, never its password."""
    try:
        info = conninfo_to_dict(url)
    except Exception:
        return "(DATABASE_URL illisible)"
    host = info.get("host") or "localhost"
    port = info.get("port") or "5432"
    user = info.get("user")
    return f"{user + '@' if user else ''}{host}:{port}/{info.get('dbname') or ''}"


def _scrub(text: str, url: str) -> str:
    """Remove the password of `url` from a driver message (belt and braces)."""
    try:
        password = conninfo_to_dict(url).get("password")
    except Exception:
        password = None
    if password:
        text = text.replace(str(password), "***")
    return re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)


def categories(settings, folders: list[str]) -> dict[str, dict | None]:
    """{folder: {"name", "slug"} or None} of the products of `folders` (one read-only query);
    folders matching no product, or several, are left out. UploadError when the base is unreachable."""
    rows = _from_database(settings.database_url, sorted(set(folders)), limit=10 * len(set(folders)) + 10)
    found: dict[str, list] = {}
    for _pid, ref, cat in rows:
        found.setdefault(folder_of(ref), []).append(cat)
    return {f: cats[0] for f, cats in found.items() if len(cats) == 1}


def _from_database(url: str, folders: list[str], limit: int = 10) -> list[tuple[int, str, dict | None]]:
    folder = folders[0] if len(folders) == 1 else f"{len(folders)} références"
    where = describe_url(url)
    psycopg = _driver()
    try:
        params = conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        raise UploadError(f"{folder} : DATABASE_URL n'est pas une adresse PostgreSQL valide "
                          f"(forme attendue : postgresql://utilisateur:motdepasse@hôte:port/base).",
                          reference=folder) from None
    kwargs = {} if params.get("connect_timeout") else {"connect_timeout": CONNECT_TIMEOUT}
    try:
        with psycopg.connect(url, **kwargs) as conn:
            conn.read_only = True              # SET TRANSACTION READ ONLY: this code never writes
            with conn.cursor() as cur:
                cur.execute(QUERY, (list(folders), limit))
                rows = cur.fetchall()
            conn.rollback()
    except psycopg.OperationalError as exc:
        detail = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, url)
        raise UploadError(
            f"{folder} : base de données injoignable ({where}) — vérifiez que le tunnel SSH vers la base de la "
            f"boutique est ouvert et que DATABASE_URL est juste. Détail : {detail}", reference=folder) from None
    except psycopg.Error as exc:
        detail = _scrub(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, url)
        raise UploadError(f"{folder} : la recherche du produit a échoué dans la base ({where}) : {detail}",
                          reference=folder) from None
    return [(int(pid), ref, {"name": name, "slug": slug} if (name or slug) else None)
            for pid, ref, name, slug in rows]


# --- CSV map ----------------------------------------------------------------------------------

def _from_map(path: Path, folder: str) -> list[tuple[int, str]]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise UploadError(f"{folder} : fichier PRODUCTS_MAP introuvable : {path}", reference=folder) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UploadError(f"{folder} : fichier PRODUCTS_MAP illisible ({path}) : {exc}", reference=folder) from None
    try:
        delimiter = csv.Sniffer().sniff(text[:4096], delimiters=",;\t").delimiter
    except csv.Error:
        delimiter = ","
    found: dict[str, int] = {}
    for lineno, row in enumerate(csv.reader(text.splitlines(), delimiter=delimiter), start=1):
        cells = [c.strip() for c in row]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if len(cells) < 2:
            raise UploadError(f"{folder} : PRODUCTS_MAP ({path}), ligne {lineno} : deux colonnes attendues "
                              f"« reference,product_id ».", reference=folder)
        reference, raw_id = cells[0], cells[1]
        try:
            product_id = int(raw_id)
        except ValueError:
            if lineno == 1:
                continue                      # header
            raise UploadError(f"{folder} : PRODUCTS_MAP ({path}), ligne {lineno} : « {raw_id} » n'est pas un "
                              f"identifiant de produit (nombre entier).", reference=folder) from None
        if folder_of(reference) == folder:
            found.setdefault(reference, product_id)
    return sorted(((pid, ref) for ref, pid in found.items()), key=lambda c: c[0])
