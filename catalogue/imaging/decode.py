"""Image files in and out: safe decoding of phone photos, encoding, atomic saving.

Every image the pipeline reads goes through `open_image` (upright, RGB, size-capped, clear French
errors); every file it writes goes through `atomic_write_bytes`, so a crash never leaves a
half-written file where doit or the shop would take it as done.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

from ..core.errors import InputError
from ..core.files import atomic_write_bytes

try:  # HEIC/HEIF straight from the shop's iPhone
    from pillow_heif import register_heif_opener

    register_heif_opener()
except ImportError:  # pragma: no cover - pillow-heif is a declared dependency
    pass

HOUSE_GREY = (243, 243, 243)  # #F3F3F3


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def jpeg_bytes(img: Image.Image, quality: int = 92) -> bytes:
    """JPEG 4:4:4. Pillow's optimize pass fails on near-incompressible content ("Suspension not
    allowed here"): then without it."""
    rgb = img.convert("RGB")
    buf = io.BytesIO()
    try:
        rgb.save(buf, format="JPEG", quality=quality, subsampling=0, optimize=True)
    except OSError:
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def save_png_atomic(img: Image.Image, path: Path | str) -> bytes:
    data = png_bytes(img)
    atomic_write_bytes(path, data)
    return data


_SRGB = None


def _to_srgb(img: Image.Image, icc: bytes | None) -> Image.Image:
    """Convert from the embedded colour profile (the iPhone writes Display P3) to sRGB, so that
    colours are judged and sent as the phone showed them."""
    global _SRGB
    if not icc or img.mode != "RGB":
        return img

    try:
        if _SRGB is None:
            _SRGB = ImageCms.createProfile("sRGB")
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if src.profile.xcolor_space.strip() != "RGB":
            return img
        if "srgb" in (ImageCms.getProfileDescription(src) or "").lower():
            return img
        return ImageCms.profileToProfile(img, src, _SRGB, outputMode="RGB")
    except (ImageCms.PyCMSError, OSError, ValueError):
        return img  # a broken profile: keep the pixels as they are


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any mode (CMYK, 16-bit, palette, alpha, greyscale) -> 8-bit RGB; transparency -> house grey."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        img = Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0), 0, 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        base = Image.new("RGB", rgba.size, HOUSE_GREY)
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return img.convert("RGB")


# Formats recognised by their first bytes, to say what is wrong with a file Pillow cannot open.
HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1", b"avif")


def _sniff(path: Path) -> str | None:
    """The image format `path` starts like (JPEG, PNG, HEIC, WebP, GIF), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(32)
    except OSError:
        return None
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG"):
        return "PNG"
    if head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS:
        return "HEIC"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "WebP"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "GIF"
    return None


def _advice(what: str) -> str:
    """What to do with a bad file, by what it is: a phone photo, a style reference, a view."""
    if what.startswith("la référence de style"):
        return "remplacez-la dans REFS_DIR par l'image de style de la maison (PNG ou JPEG)"
    if what.startswith("la vue"):
        return "supprimez-la : doit la refera depuis la réponse gardée, sans nouveau paiement"
    if what.startswith("la photo"):
        return "recopiez-la depuis le téléphone"
    return "remplacez-la par une image lisible"


def _shown(path: Path, what: str) -> str:
    """The file's name; a style reference with its folder (refs/1_face.png)."""
    return f"{path.parent.name}/{path.name}" if what.startswith("la référence de style") else path.name


def open_image(path: Path | str, *, max_pixels: int, what: str = "la photo",
               max_side: int | None = None) -> Image.Image:
    """Decode `path` fully into an upright 8-bit RGB image, or raise `InputError` in French.

    Refuses empty files, non-images, truncated files and images above `max_pixels`
    (decompression bombs) before decoding their pixels. With `max_side`, the result's longer side
    is at most that (JPEGs are decoded at reduced scale directly: a 24 Mpx photo in a fraction of
    the time and memory).
    """
    path = Path(path)
    name = _shown(path, what)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"Fichier introuvable : {path}. Vérifiez le nom du fichier.")
    if size == 0:
        raise InputError(f"{what.capitalize()} {name} est vide (0 octet) : {_advice(what)}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if img.format in ("GIF", "WEBP", "PNG") and getattr(img, "is_animated", False):
                    raise InputError(
                        f"{what.capitalize()} {name} est une animation ({img.format}, {img.n_frames} images), "
                        f"pas une photo : remplacez-la par une photo fixe (JPEG, PNG ou HEIC).")
                if w * h > max_pixels:
                    raise InputError(
                        f"{what.capitalize()} {name} est trop grande ({w}×{h} = {w * h / 1e6:.0f} Mpx, "
                        f"limite {max_pixels / 1e6:.0f} Mpx) : réduisez-la ou relevez MAX_PIXELS.")
                if max_side and img.format == "JPEG" and max(w, h) > max_side:
                    scale = max_side / max(w, h)  # draft keeps at least this size on both sides
                    img.draft("RGB", (int(w * scale) + 1, int(h * scale) + 1))
                img.load()
                icc = img.info.get("icc_profile")
                img = _to_rgb(ImageOps.exif_transpose(img))
                if max_side:
                    img = downscale(img, max_side)
                return _to_srgb(img, icc)
    except InputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{what.capitalize()} {name} est trop grande (au-delà de la limite de "
                         f"pixels, image piégée ?) : réduisez-la ou relevez MAX_PIXELS.")
    except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        fmt = _sniff(path)
        if fmt is None:
            raise InputError(f"{what.capitalize()} {name} n'est pas une image lisible (ni JPEG, PNG, HEIC "
                             f"ni WebP : format inconnu ou fichier texte) : remplacez-la par un JPEG, PNG ou HEIC.")
        said = (str(exc).strip().splitlines() or [""])[0][:160]
        detail = "" if isinstance(exc, Image.UnidentifiedImageError) or not said else f", {said}"
        raise InputError(f"{what.capitalize()} {name} est corrompue ou incomplète (fichier {fmt} de {size} "
                         f"octets{detail}) : {_advice(what)}.")


def downscale(img: Image.Image, long_side: int, resample=Image.LANCZOS,
              reducing_gap: float | None = None) -> Image.Image:
    """Shrink so that the longer side is at most `long_side` (never enlarges): the one resize of
    the package (photos sent to Gemini with LANCZOS, measuring copies through `work_copy`)."""
    w, h = img.size
    scale = long_side / max(w, h)
    if scale >= 1:
        return img
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), resample,
                      reducing_gap=reducing_gap)


def work_copy(img: Image.Image, long_side: int) -> Image.Image:
    """The RGB copy every measure is made on (masks, framing, checks, colour fixes): box-filtered
    (an average: medians and masks are stable), at most `long_side` on its longer side."""
    return downscale(img.convert("RGB"), long_side, Image.BOX, reducing_gap=2.0)
