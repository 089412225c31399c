"""Settings: the environment, with `.env` at the project root loaded by python-dotenv.

The environment wins over `.env`. Every setting is documented in the README and `.env.example`.
Secrets (`GEMINI_API_KEY`, `BACKEND_TOKEN`, `DATABASE_URL`, and the password inside a URL such as
`BACKEND_URL=http://admin:…@host`) are kept out of `repr()` so that they never reach a log line, a
traceback or `doit info`; `without_secret(url)` is the spelling of a URL that may be shown.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dotenv import load_dotenv

from .errors import InputError
from .models import resolve_model

IMAGE_SIZES = ("1K", "2K", "4K")
GENERATORS = ("gemini", "local")
UPLOAD_MODES = ("replace", "append")


def without_secret(url: str) -> str:
    """`url` without the password of its user:password part (kept: the user, the rest)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<adresse illisible>"
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass(frozen=True, repr=False)
class Settings:
    root: Path
    photos_dir: Path
    refs_dir: Path
    output_dir: Path
    generator: str                      # "gemini" | "local"
    generator_chosen: bool              # False when defaulted from the presence of a key
    model: str                          # full model id (aliases resolved)
    image_size: str                     # "1K" | "2K" | "4K"
    output_size: tuple[int, int] | None  # (w, h) forced; None = the style reference's size
    gemini_concurrency: int
    gemini_rpm: float
    gemini_max_wait: float              # seconds of retry waits allowed per view
    gemini_timeout: float               # seconds per request
    max_cost: float | None              # USD per run; None = no cap
    max_pixels: int                     # larger photos are refused (decompression bombs)
    backend_url: str
    upload_mode: str
    allow_local_upload: bool
    products_map: Path | None
    review_port: int                    # `doit review` listens on 127.0.0.1:<port>
    gemini_api_key: str | None = field(default=None, repr=False)
    backend_token: str | None = field(default=None, repr=False)
    database_url: str | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if isinstance(value, str) and "://" in value:
                value = without_secret(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def state_dir(self) -> Path:
        """Pipeline state that is not a deliverable: raw answers, ledger, locks."""
        return self.output_dir / ".state"


def _int(env, name, default):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InputError(f"Réglage {name} invalide : « {raw} » n'est pas un nombre entier.")


def _float(env, name, default):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(raw.replace(",", "."))
    except ValueError:
        raise InputError(f"Réglage {name} invalide : « {raw} » n'est pas un nombre.")


def _choice(env, name, default, choices):
    raw = env.get(name, "").strip().lower() or default
    if raw not in choices:
        raise InputError(f"Réglage {name} invalide : « {raw} » ; valeurs possibles : {', '.join(choices)}.")
    return raw


def _size(env, name):
    raw = env.get(name, "").strip().lower()
    if not raw:
        return None
    try:
        w, h = (int(v) for v in raw.split("x"))
        if w < 16 or h < 16:
            raise ValueError
        return (w, h)
    except ValueError:
        raise InputError(f"Réglage {name} invalide : « {raw} » ; format attendu LARGEURxHAUTEUR, ex. 1600x2000.")


def _path(root: Path, raw: str) -> Path:
    p = Path(raw).expanduser()
    return p if p.is_absolute() else root / p


def load_settings(root: Path | str = ".", environ=None, model_override: str | None = None) -> Settings:
    """Read the settings; `model_override` comes from the command line (`doit model=flash`)."""
    root = Path(root).resolve()
    if environ is None:
        load_dotenv(root / ".env", override=False)
        environ = os.environ
    env = environ
    key = env.get("GEMINI_API_KEY", "").strip() or None
    generator_raw = env.get("GENERATOR", "").strip().lower()
    generator = _choice(env, "GENERATOR", "gemini" if key else "local", GENERATORS)
    if generator == "gemini" and not key:
        raise InputError("GENERATOR=gemini mais GEMINI_API_KEY est vide : ajoutez la clé dans .env, "
                         "ou GENERATOR=local pour l'aperçu hors ligne.")
    max_cost = _float(env, "MAX_COST", None)
    products_map = env.get("PRODUCTS_MAP", "").strip()
    return Settings(
        root=root,
        photos_dir=_path(root, env.get("PHOTOS_DIR", "").strip() or "photos"),
        refs_dir=_path(root, env.get("REFS_DIR", "").strip() or "refs"),
        output_dir=_path(root, env.get("OUTPUT_DIR", "").strip() or "output"),
        generator=generator,
        generator_chosen=bool(generator_raw),
        model=resolve_model(model_override or env.get("GEMINI_MODEL", "").strip() or "pro"),
        image_size=_choice(env, "IMAGE_SIZE", "2k", tuple(s.lower() for s in IMAGE_SIZES)).upper(),
        output_size=_size(env, "OUTPUT_SIZE"),
        gemini_concurrency=max(1, _int(env, "GEMINI_CONCURRENCY", 4)),
        gemini_rpm=max(0.1, _float(env, "GEMINI_RPM", 20.0)),
        gemini_max_wait=max(0.0, _float(env, "GEMINI_MAX_WAIT", 600.0)),
        gemini_timeout=max(1.0, _float(env, "GEMINI_TIMEOUT", 180.0)),
        max_cost=max_cost if max_cost and max_cost > 0 else None,
        max_pixels=_int(env, "MAX_PIXELS", 60_000_000),
        backend_url=(env.get("BACKEND_URL", "").strip() or "http://localhost:3001").rstrip("/"),
        upload_mode=_choice(env, "UPLOAD_MODE", "replace", UPLOAD_MODES),
        allow_local_upload=env.get("ALLOW_LOCAL_UPLOAD", "").strip().lower() in ("1", "true", "yes", "oui"),
        products_map=_path(root, products_map) if products_map else None,
        review_port=_int(env, "REVIEW_PORT", 8765),
        gemini_api_key=key,
        backend_token=env.get("BACKEND_TOKEN", "").strip() or None,
        database_url=env.get("DATABASE_URL", "").strip() or None,
    )
