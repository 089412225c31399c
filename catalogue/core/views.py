"""The three catalogue views: what each is made from, where it goes, how the shop names it.

Data only: the task graph, the generators and the upload all read these specs, so adding or
re-ordering a view is a change here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ViewSpec:
    name: str                     # output file stem, e.g. "1_face"
    order: int                    # image order on the product page
    source: str                   # "face" | "back" photo, or the name of a finished view
    ref_names: tuple[str, ...]    # accepted names of its style reference (file stem or folder)
    anchor: str | None = None     # finished view sent as the colour anchor
    label: str = ""               # French label for the operator

    @property
    def filename(self) -> str:
        return f"{self.name}.png"

    @property
    def inputs_views(self) -> tuple[str, ...]:
        """Finished views this view is made from (its upstream in the task graph)."""
        return tuple(v for v in (self.source, self.anchor) if v and v in VIEW_NAMES)


VIEWS: tuple[ViewSpec, ...] = (
    ViewSpec("1_face", 0, source="face", ref_names=("1_face", "face"), label="face"),
    ViewSpec("2_back", 1, source="back", ref_names=("2_back", "back"), anchor="1_face", label="dos"),
    ViewSpec("3_detail_logo", 2, source="1_face",
             ref_names=("3_detail_logo", "3-detail", "detail", "details", "3_detail"), label="détail logo"),
)
VIEW_NAMES = tuple(v.name for v in VIEWS)   # in page order
VIEWS_BY_NAME = {v.name: v for v in VIEWS}

# Image files the pipeline reads (HEIC/HEIF: the shop's iPhone).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".heic", ".heif")

# Accepted stems of the raw photos in photos/<folder>/ (matched case-insensitively).
PHOTO_NAMES = {
    "face": ("face", "1_face"),
    "back": ("back", "2_back"),
}
