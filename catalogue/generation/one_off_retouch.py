"""A one-off retouch of any image (`doit adjust --image picture.jpg ...`): made once, through the one
paid path, and written beside the image as `<name>_adjusted.png`; the original is never overwritten."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..core.errors import InputError
from ..core.models import resolve_model
from ..imaging.colour_fixes import background_fix, color_transfer
from ..imaging.decode import open_image, save_png_atomic
from ..imaging.finishing import finish
from ..imaging.masks import border_grey
from .image_request import ImageRequest, nearest_aspect_ratio, prepare_image
from .paid_call import paid_image
from .retouches import check_retouch


def shown(path: Path) -> str:
    try:
        return os.path.relpath(path)
    except ValueError:
        return str(path)


def free_name(image: Path) -> Path:
    """`<name>_adjusted.png` beside the image; `_adjusted-2`, `-3`… when taken (never overwrite)."""
    target = image.with_name(f"{image.stem}_adjusted.png")
    n = 2
    while target.exists():
        target = image.with_name(f"{image.stem}_adjusted-{n}.png")
        n += 1
    return target


def retouch_one_off(settings, image: Path, *, prompt: str | None, fix: str | None, ref: str | None,
                    model: str | None, force: bool) -> int:
    """Retouch `image` (an instruction, or a free fix); prints what became of it; exit code."""
    if not image.is_file():
        raise InputError(f"Image introuvable : {image}.")
    original = open_image(image, max_pixels=settings.max_pixels, what="l'image à retoucher")
    ref_path = None
    if ref:
        p = Path(ref).expanduser()
        ref_path = p if p.is_absolute() else Path.cwd() / p
        if not ref_path.is_file():
            raise InputError(f"Image de référence introuvable : {ref}.")
    ref_img = open_image(ref_path, max_pixels=settings.max_pixels, what="l'image de référence",
                         max_side=2048) if ref_path else None
    flat = border_grey(np.asarray(original.resize((64, 64)))) is not None
    if fix == "background-fix":
        res = background_fix(original, original.size)
        result, note, ok = res.image, res.note, res.applied
    elif fix == "color-fix":
        if ref_img is None:
            raise InputError("color-fix sur une image hors du catalogue : donnez l'image dont prendre "
                             "la couleur (--ref IMAGE).")
        res = color_transfer(original, ref_img, what=shown(ref_path))
        result, note, ok = res.image, res.note, res.applied
    else:
        result, note, ok = _gemini(settings, image, prompt, model, force, original, ref_path, ref_img, flat)
    if not ok:
        print(f"Retouche non appliquée, rien n'est écrit : {note}", flush=True)
        return 1
    target = free_name(image)
    save_png_atomic(result, target)
    print(f"Retouche écrite : {shown(target)} (original inchangé)" + (f" — {note}" if note else ""), flush=True)
    return 0


def _gemini(settings, image: Path, prompt: str, model: str | None, force: bool, original, ref_path, ref_img,
            flat: bool):
    if not settings.gemini_api_key:
        raise InputError("Retouche sur consigne impossible sans GEMINI_API_KEY (le rendu local ne sait "
                         "pas retoucher) : ajoutez la clé dans .env, ou utilisez --fix.")
    images = [prepare_image(image, max_pixels=settings.max_pixels)]
    if ref_path:
        images.append(prepare_image(ref_path, max_pixels=settings.max_pixels))
    request = ImageRequest(model=resolve_model(model) if model else settings.model, images=tuple(images),
                           instruction=prompt, aspect_ratio=nearest_aspect_ratio(*original.size),
                           image_size=settings.image_size, seed=0)
    answer = paid_image(settings, request, folder=image.parent.name, view=image.name,
                        meta={"kind": "one-off", "image": str(image)},
                        unreadable=f"La réponse de Gemini pour {image.name} n'est pas une image lisible.")
    paid = ("réponse déjà payée, reprise sans nouvel appel" if answer.from_store
            else f"{answer.cost_usd:.3f} $")
    # A catalogue-style image (on the house grey) gets the house finishing and the check;
    # anything else is kept as Gemini returned it.
    if not flat:
        return answer.image, f"{paid} ; contrôle couleur/forme non applicable (image hors fond gris)", True
    result = finish(answer.image, original.size).image
    ok, _values, message = check_retouch(original, result, ref=ref_img)
    if ok:
        return result, f"{paid} ; {message}", True
    if force:
        return result, f"{paid} ; acceptée malgré le contrôle (--force) : {message}", True
    return result, (f"retouche refusée par le contrôle : {message} ({paid}) ; relancez avec --force "
                    f"pour l'accepter quand même"), False
