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


def open_image(path: Path | str, *, max_pixels: int, what: str = "la photo",
               max_side: int | None = None) -> Image.Image:
    """Decode `path` fully into an upright 8-bit RGB image, or raise `InputError` in French.

    Refuses empty files, non-images, truncated files and images above `max_pixels`
    (decompression bombs) before decoding their pixels. With `max_side`, the result's longer side
    is at most that (JPEGs are decoded at reduced scale directly: a 24 Mpx photo in a fraction of
    the time and memory).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise InputError(f"Fichier introuvable : {path}. Vérifiez le nom du fichier.")
    if size == 0:
        raise InputError(f"{what.capitalize()} {path.name} est vide (0 octet) : "
                         f"recopiez le fichier depuis le téléphone.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                w, h = img.size
                if w * h > max_pixels:
                    raise InputError(
                        f"{what.capitalize()} {path.name} est trop grande ({w}×{h} = {w * h / 1e6:.0f} Mpx, "
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
        raise InputError(f"{what.capitalize()} {path.name} est trop grande (au-delà de la limite de "
                         f"pixels, image piégée ?) : réduisez-la ou relevez MAX_PIXELS.")
    except Image.UnidentifiedImageError:
        raise InputError(f"{what.capitalize()} {path.name} n'est pas une image lisible "
                         f"(format inconnu ou fichier texte) : remplacez-la par un JPEG, PNG ou HEIC.")
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{what.capitalize()} {path.name} est corrompue ou incomplète ({exc}) : "
                         f"recopiez le fichier depuis le téléphone.")


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
