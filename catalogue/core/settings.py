"""Settings: the environment, with `.env` at the project root loaded by python-dotenv.

The environment wins over `.env`. Every setting is documented in the README and `.env.example`.
Secrets (`GEMINI_API_KEY`, `BACKEND_TOKEN`, `DATABASE_URL`, and the password inside a URL such as
`BACKEND_URL=http://admin:…@host`) are kept out of `repr()` so that they never reach a log line, a
traceback or `doit info`; `without_secret(url)` is the spelling of a URL that may be shown.
"""

from __future__ import annotations

import difflib
import io
import logging
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from dotenv import load_dotenv
from dotenv.parser import parse_stream

from .errors import InputError
from .models import MODEL_ALIASES, PRICES, default_timeout, resolve_model

# Every name the settings read (the README's table and .env.example list them all): a `.env` name
# close to one of these but not one of them is a typo, said on the run's first lines.
KNOWN_NAMES = ("GEMINI_API_KEY", "GEMINI_MODEL", "GENERATOR", "IMAGE_SIZE", "OUTPUT_SIZE", "GEMINI_CONCURRENCY",
               "GEMINI_RPM", "GEMINI_MAX_WAIT", "GEMINI_TIMEOUT", "MAX_COST", "MAX_PIXELS", "PHOTOS_DIR", "REFS_DIR",
               "OUTPUT_DIR", "BACKEND_URL", "BACKEND_TOKEN", "DATABASE_URL", "PRODUCTS_MAP", "UPLOAD_MODE",
               "ALLOW_LOCAL_UPLOAD", "REVIEW_PORT", "GOOGLE_GEMINI_BASE_URL", "UPLOAD_MAX_REQUEST_MB",
               "GEMINI_SPEND_PER_10MIN", "GEMINI_QUOTA_WINDOW", "GEMINI_MODE")
IMAGE_SIZES = ("1K", "2K", "4K")
GENERATORS = ("gemini", "local")
UPLOAD_MODES = ("replace", "append")
GEMINI_MODES = ("interactive", "batch")


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
    gemini_rpm: float                   # request starts allowed in any quota window
    gemini_max_wait: float              # seconds a view may keep retrying after its first failure
    gemini_timeout: float               # seconds per request, wall clock
    gemini_spend_per_10min: float | None  # USD allowed in any rolling 10 minutes; None = off
    gemini_quota_window: float          # seconds of Google's "minute" (60; tests and benchmarks scale it)
    max_cost: float | None              # USD per run; None = no cap
    max_pixels: int                     # larger photos are refused (decompression bombs)
    backend_url: str
    upload_mode: str
    allow_local_upload: bool
    upload_max_request_bytes: int       # body of one bulk request (the production front: nginx 20M)
    products_map: Path | None
    review_port: int                    # `doit review` listens on 127.0.0.1:<port>
    gemini_mode: str = "interactive"    # "interactive" | "batch" (the Batch API: half price, answers within 24 h)
    warnings: tuple[str, ...] = ()      # French: `.env` typos, malformed lines, unknown model (run's first lines)
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
    """One of `choices` (compared without case; returned as written in `choices`)."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    for choice in choices:
        if raw.lower() == choice.lower():
            return choice
    raise InputError(f"Réglage {name} invalide : « {raw} » ; valeurs possibles : {', '.join(choices)}.")


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


def _request_bytes(env, name, default_mb):
    """Megabytes as nginx counts them (`client_max_body_size 20M` = 20 x 1024 x 1024 bytes)."""
    mb = _float(env, name, default_mb)
    if mb <= 0:
        raise InputError(f"Réglage {name} invalide : « {mb} » ; une taille en Mo plus grande que 0 est attendue "
                         f"(20 pour le frontal nginx de la boutique).")
    return int(mb * 1024 * 1024)


def _path(root: Path, raw: str) -> Path:
    p = Path(raw).expanduser()
    return p if p.is_absolute() else root / p


def dotenv_warnings(path: Path) -> list[str]:
    """French warnings about `path` (a .env file): lines that cannot be read, and names that look
    like a setting but are not one (a typo, a lower-case name), with the closest known name."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError) as exc:
        return [f"{path} illisible ({getattr(exc, 'strerror', None) or exc}) : ses réglages sont ignorés."]
    out = []
    for binding in parse_stream(io.StringIO(text)):
        line = binding.original.line
        if binding.error:  # the line's text is not repeated: it may hold a key
            out.append(f"{path}, ligne {line} : ligne illisible, ignorée (attendu NOM=valeur, "
                       f"ou un commentaire commençant par #).")
            continue
        name = binding.key
        if not name or name in KNOWN_NAMES:
            continue
        # the same name in upper case, the same letters in another order (GEMINI_MODLE: GEMINI_MODEL,
        # not GEMINI_MODE), else the closest
        close = [n for n in KNOWN_NAMES if n == name.upper()] or [
            n for n in KNOWN_NAMES if sorted(n) == sorted(name.upper())] or difflib.get_close_matches(
            name.upper(), KNOWN_NAMES, n=1, cutoff=0.8)
        if close:
            out.append(f"{path}, ligne {line} : « {name} » n'est pas un réglage, il est ignoré ; "
                       f"vouliez-vous dire {close[0]} ?")
    return out


def model_warning(model: str) -> str | None:
    """A French warning when `model` is neither an alias nor a model id this version knows."""
    if model in PRICES:
        return None
    known = ", ".join([*MODEL_ALIASES, *PRICES])
    return (f"Modèle Gemini inconnu : « {model} » (GEMINI_MODEL ou model=) ; modèles connus : {known}. "
            f"Son prix n'est pas connu : les coûts sont estimés au tarif le plus cher.")


def load_settings(root: Path | str = ".", environ=None, model_override: str | None = None,
                  mode_override: str | None = None) -> Settings:
    """Read the settings; `model_override` and `mode_override` come from the command line
    (`doit model=flash`, `doit mode=batch`)."""
    root = Path(root).resolve()
    warnings: list[str] = []
    if environ is None:
        warnings = dotenv_warnings(root / ".env")
        quiet = logging.getLogger("dotenv.main")
        was, quiet.disabled = quiet.disabled, True  # its English parse warnings: said in French above
        try:
            load_dotenv(root / ".env", override=False)
        finally:
            quiet.disabled = was
        environ = os.environ
    env = environ
    key = env.get("GEMINI_API_KEY", "").strip() or None
    generator_raw = env.get("GENERATOR", "").strip().lower()
    generator = _choice(env, "GENERATOR", "gemini" if key else "local", GENERATORS)
    if generator == "gemini" and not key:
        raise InputError("GENERATOR=gemini mais GEMINI_API_KEY est vide : ajoutez la clé dans .env, "
                         "ou GENERATOR=local pour l'aperçu hors ligne.")
    max_cost = _float(env, "MAX_COST", None)
    spend = _float(env, "GEMINI_SPEND_PER_10MIN", None)
    image_size = _choice(env, "IMAGE_SIZE", "2K", IMAGE_SIZES)
    model = resolve_model(model_override or env.get("GEMINI_MODEL", "").strip() or "pro")
    if model_warning(model):
        warnings.append(model_warning(model))
    products_map = env.get("PRODUCTS_MAP", "").strip()
    mode = _choice(env, "GEMINI_MODE", "interactive", GEMINI_MODES)
    if mode_override:  # `doit mode=batch` wins over the environment
        mode = _choice({"GEMINI_MODE": mode_override}, "GEMINI_MODE", mode, GEMINI_MODES)
    if mode == "batch" and generator != "gemini":
        warnings.append("GEMINI_MODE=batch sans Gemini (générateur local) : le mode lot est ignoré.")
    return Settings(
        root=root,
        photos_dir=_path(root, env.get("PHOTOS_DIR", "").strip() or "photos"),
        refs_dir=_path(root, env.get("REFS_DIR", "").strip() or "refs"),
        output_dir=_path(root, env.get("OUTPUT_DIR", "").strip() or "output"),
        generator=generator,
        generator_chosen=bool(generator_raw),
        model=model,
        image_size=image_size,
        output_size=_size(env, "OUTPUT_SIZE"),
        gemini_concurrency=max(1, _int(env, "GEMINI_CONCURRENCY", 4)),
        gemini_rpm=max(0.1, _float(env, "GEMINI_RPM", 20.0)),
        gemini_max_wait=max(0.0, _float(env, "GEMINI_MAX_WAIT", 600.0)),
        gemini_timeout=max(1.0, _float(env, "GEMINI_TIMEOUT", default_timeout(image_size))),
        gemini_spend_per_10min=spend if spend and spend > 0 else None,
        gemini_quota_window=max(0.1, _float(env, "GEMINI_QUOTA_WINDOW", 60.0)),
        max_cost=max_cost if max_cost and max_cost > 0 else None,
        max_pixels=_int(env, "MAX_PIXELS", 60_000_000),
        backend_url=(env.get("BACKEND_URL", "").strip() or "http://localhost:3001").rstrip("/"),
        upload_mode=_choice(env, "UPLOAD_MODE", "replace", UPLOAD_MODES),
        allow_local_upload=env.get("ALLOW_LOCAL_UPLOAD", "").strip().lower() in ("1", "true", "yes", "oui"),
        upload_max_request_bytes=_request_bytes(env, "UPLOAD_MAX_REQUEST_MB", 20.0),
        products_map=_path(root, products_map) if products_map else None,
        review_port=_int(env, "REVIEW_PORT", 8765),
        gemini_mode=mode,
        gemini_api_key=key,
        backend_token=env.get("BACKEND_TOKEN", "").strip() or None,
        database_url=env.get("DATABASE_URL", "").strip() or None,
        warnings=tuple(warnings),
    )
