"""A local stand-in of the shop, to try `doit upload` end to end without the real backend.

Starts a throwaway PostgreSQL with the shop's two tables (`products`, `images`) and one product per
reference folder found in `photos/` (and `output/`), plus the test double of the NestJS backend
(`tests/fakes/reboul_backend.py`, with a fake Cloudinary in memory) on http://127.0.0.1:3001, then
prints the DATABASE_URL and BACKEND_URL to use, and runs until Ctrl-C (everything is thrown away).

    python scripts/local_shop.py                 # then, in another terminal:
    DATABASE_URL=... BACKEND_URL=... ALLOW_LOCAL_UPLOAD=1 doit upload

Folder -> reference: a trailing variant code `-V…` becomes `/V…` (`L100001-V09A` -> `L100001/V09A`,
`SI-8015-V0029` -> `SI-8015/V0029`); other folders are taken as the reference itself (`REF-001`).
Needs PostgreSQL server binaries (`apt-get install postgresql`) or `pip install pgserver`.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import signal
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fakes.postgres import PostgresCluster, PostgresUnavailable  # noqa: E402
from tests.fakes.reboul_backend import ReboulBackend  # noqa: E402

VARIANT = re.compile(r"(.+)-(V[0-9A-Za-z]+)")


def reference_of(folder: str) -> str:
    m = VARIANT.fullmatch(folder)
    return f"{m.group(1)}/{m.group(2)}" if m else folder


def folders(*dirs: Path) -> list[str]:
    found = set()
    for d in dirs:
        if d.is_dir():
            found |= {p.name for p in d.iterdir() if p.is_dir() and not p.name.startswith((".", "_"))}
    return sorted(found)


def _dir_setting(name: str, default: str) -> Path:
    """PHOTOS_DIR / OUTPUT_DIR from the environment or .env, like the pipeline reads them."""
    value = os.environ.get(name, "").strip()
    if not value:
        try:
            from dotenv import dotenv_values

            value = (dotenv_values(ROOT / ".env").get(name) or "").strip()
        except ImportError:
            value = ""
    p = Path(value or default).expanduser()
    return p if p.is_absolute() else ROOT / p


def placeholder_png(text: str) -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (320, 400), (200, 200, 205))
    ImageDraw.Draw(img).text((20, 190), f"ancienne image\n{text}", fill=(40, 40, 40))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def update_env_file(path: Path, values: dict[str, str]) -> None:
    """Set KEY=value lines in a .env file, keeping every other line as it is."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    done = set()
    out = []
    for line in lines:
        key = line.split("=", 1)[0].strip().removeprefix("export ").strip()
        if key in values:
            out.append(f"{key}={values[key]}")
            done.add(key)
        else:
            out.append(line)
    out += [f"{k}={v}" for k, v in values.items() if k not in done]
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Local stand-in of the shop: PostgreSQL + backend double.")
    ap.add_argument("--port", type=int, default=3001, help="backend port (default 3001)")
    ap.add_argument("--pg-port", type=int, default=None, help="PostgreSQL TCP port (default: a free one)")
    ap.add_argument("--photos", type=Path, default=None, help="photos folder (default PHOTOS_DIR or photos/)")
    ap.add_argument("--reference", action="append", default=[],
                    help="also create this product reference (repeatable), e.g. REF-001")
    ap.add_argument("--old-images", type=int, default=1,
                    help="placeholder images each product starts with, to watch the replace (default 1)")
    ap.add_argument("--token", default=None, help="require this bearer token (BACKEND_TOKEN)")
    ap.add_argument("--write-env", type=Path, default=None,
                    help="write DATABASE_URL and BACKEND_URL into this file (e.g. .env); other lines are kept")
    ap.add_argument("--verbose", action="store_true", help="log every request")
    args = ap.parse_args(argv)

    photos = args.photos or _dir_setting("PHOTOS_DIR", "photos")
    output = _dir_setting("OUTPUT_DIR", "output")
    refs = [reference_of(f) for f in folders(photos, output)] + args.reference
    refs = list(dict.fromkeys(refs))
    if not refs:
        print(f"Aucun dossier de référence dans {photos} : ajoutez des photos, ou --reference REF.", file=sys.stderr)

    try:
        pg = PostgresCluster(tcp=True, port=args.pg_port).start()
    except PostgresUnavailable as exc:
        print(f"PostgreSQL indisponible : {exc}", file=sys.stderr)
        return 1
    try:
        backend = ReboulBackend(pg.url, token=args.token, port=args.port, quiet=not args.verbose).start()
    except OSError as exc:
        pg.stop()
        print(f"Port {args.port} indisponible ({exc}) : choisissez-en un autre avec --port.", file=sys.stderr)
        return 1

    import requests

    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    print(f"PostgreSQL ({pg.kind}) et backend de test démarrés. Produits :")
    for ref in refs:
        pid = pg.add_product(ref)
        if args.old_images > 0:
            files = [("files", (f"ancienne_{i}.png", placeholder_png(ref), "image/png"))
                     for i in range(min(args.old_images, 7))]
            requests.post(f"{backend.url}/products/{pid}/images/bulk", files=files, headers=headers,
                          params={"orders": ",".join(str(i) for i in range(len(files)))}, timeout=30)
        print(f"  {pid:>4}  {ref}")
    backend.clear_log()

    values = {"DATABASE_URL": pg.url, "BACKEND_URL": backend.url}
    if args.token:
        values["BACKEND_TOKEN"] = args.token
    print("\nÀ mettre dans .env (ou dans l'environnement) :\n")
    for k, v in values.items():
        print(f"{k}={v}")
    if args.write_env:
        update_env_file(args.write_env, values)
        print(f"\n(écrit dans {args.write_env})")
    print("\nPuis : doit upload   (images du rendu local : ajoutez ALLOW_LOCAL_UPLOAD=1)")
    print(f"Images d'un produit : {backend.url}/products/<id>/images ; fichier : {backend.url}/__cloudinary/<publicId>")
    print("Ctrl-C pour tout arrêter (la base et les images sont jetées).", flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        backend.stop()
        pg.stop()
        print("\nBoutique locale arrêtée.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
