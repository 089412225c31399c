"""The instructions sent to Gemini, one per view: data, versioned.

Every instruction is assembled here from the module-level blocks below and nowhere else. The
request always carries the images in a fixed order (see `catalogue.views` and `gemini.py`):

- image 1: the product (the raw photo, or the finished `1_face` for the detail view);
- image 2: the house-style reference of that view;
- image 3 (`2_back` only, when anchored): the finished `1_face` of the same garment.

The instruction text comes last in the request. Bump `PROMPT_VERSION` whenever any text below
changes: it goes into the raw-answer cache key (through the instruction itself) and into doit's
`config_changed`, so a new wording regenerates what it should and nothing else.
"""

from __future__ import annotations

PROMPT_VERSION = "2026.11-1"

# --- Shared blocks -------------------------------------------------------------------------------

ROLES = (
    "Image 1 is the PRODUCT: its garment is the only garment that may appear in your output. "
    "Image 2 is a STYLE REFERENCE only: from image 2 copy nothing but the framing, the fold, the "
    "alignment, the light and the background. Never output, copy or blend in the garment of image 2: "
    "not its colour, shape, fabric, print, text, logo or details."
)

FIDELITY = (
    "Keep the garment of image 1 exactly as it is: the exact same colour (same hue, saturation and "
    "brightness, no colour shift, no white-balance change), the same fabric and texture, the same cut, "
    "collar, sleeves, hem, pockets, zips, buttons, seams, prints and text. Never invent or add a logo, "
    "badge, patch, label, print or hood that image 1 does not show, and never remove one that it shows."
)

BACKGROUND = (
    "Background: plain, uniform light grey #F3F3F3 (RGB 243, 243, 243) from edge to edge, with no "
    "texture, gradient, vignette, props, hanger, mannequin, person, hands, text or watermark; at most "
    "a soft, natural contact shadow under the garment."
)

OUTPUT = "Output a single photograph of that garment and nothing else: no collage, no border, no caption."

# --- Per-view tasks ------------------------------------------------------------------------------

FACE_TASK = (
    "Task: a catalogue photograph of the FRONT of the garment of image 1, laid flat, in the house "
    "style of image 2: the same framing (size of the garment in the frame, position, margins), the "
    "same way of folding and laying out the sleeves and the hem, the same straight, centred "
    "alignment and the same soft studio light. Remove everything around the garment in image 1 "
    "(hanger, window, furniture, wrinkles of the backdrop)."
)

BACK_TASK = (
    "Task: a catalogue photograph of the BACK of the garment of image 1 (image 1 shows its back), "
    "laid flat, in the house style of image 2: the same framing (size of the garment in the frame, "
    "position, margins), the same way of folding and laying out the sleeves and the hem, the same "
    "straight, centred alignment and the same soft studio light. Remove everything around the "
    "garment in image 1 (hanger, window, furniture, wrinkles of the backdrop)."
)

BACK_ANCHOR = (
    "Image 3 is the finished front view of this same garment, already approved. Match its colours "
    "exactly: the back must look like the same garment photographed in the same session, with the "
    "same colour and the same light. Use image 3 for colour and light only: do not copy its front "
    "details (logo, buttons, zip, print, pockets) onto the back; show only what image 1 shows."
)

DETAIL_TASK = (
    "Here image 1 is the finished front view of the garment: it is the source of truth. "
    "Task: a tight close-up crop on the chest of the garment of image 1, centred on its logo, badge "
    "or embroidery when it has one (on the chest fabric otherwise), in the framing, scale and light "
    "of the close-up in image 2. Reproduce the logo exactly as image 1 shows it: same shape, letters, "
    "colours, size relative to the garment and position; do not redraw, correct, complete or "
    "translate any text. If image 1 shows no logo on the chest, show the chest fabric and its texture "
    "without inventing one. Never show the logo or the garment of image 2."
)

# --- Assembly ------------------------------------------------------------------------------------

FACE_INSTRUCTION = "\n\n".join((ROLES, FACE_TASK, FIDELITY, BACKGROUND, OUTPUT))
BACK_INSTRUCTION = "\n\n".join((ROLES, BACK_TASK, FIDELITY, BACKGROUND, OUTPUT))
BACK_ANCHORED_INSTRUCTION = "\n\n".join((ROLES, BACK_TASK, BACK_ANCHOR, FIDELITY, BACKGROUND, OUTPUT))
DETAIL_INSTRUCTION = "\n\n".join((ROLES, DETAIL_TASK, FIDELITY, BACKGROUND, OUTPUT))

# (view, has_anchor) -> instruction. Only `2_back` takes a colour anchor (image 3).
INSTRUCTIONS: dict[tuple[str, bool], str] = {
    ("1_face", False): FACE_INSTRUCTION,
    ("2_back", False): BACK_INSTRUCTION,
    ("2_back", True): BACK_ANCHORED_INSTRUCTION,
    ("3_detail_logo", False): DETAIL_INSTRUCTION,
}


def instruction_for(view: str, *, has_anchor: bool) -> str:
    """The English instruction for `view`; `has_anchor` when image 3 (the colour anchor) is sent."""
    try:
        return INSTRUCTIONS[(view, bool(has_anchor))]
    except KeyError:
        if any(v == view for v, _ in INSTRUCTIONS):
            raise ValueError(f"view {view!r} takes no colour anchor (image 3)") from None
        raise ValueError(f"unknown view {view!r}") from None
