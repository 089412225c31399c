"""`ViewJob`: everything one view task needs, computed when the task graph loads (paths only).

Made by `tasks.view_tasks`, carried in the task's meta (read by `doit plan`) and run by
`generation.view_build.build_view`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ViewJob:
    """Everything one view task needs, computed when the task graph is loaded (cheap: paths)."""

    folder: str
    view: str
    source: Path             # raw photo, or the finished view it is made from
    style: Path              # the style reference chosen for this folder
    anchor: Path | None      # finished view sent as the colour anchor (Gemini only)
    output: Path
    config: dict             # the settings that shape this output (also doit's config_changed)
    steps: tuple = ()        # declared retouches (generation.retouch_steps.PlannedStep), applied after generation
    step_inputs: tuple = ()  # ((role, path), ...): the steps' reference images
    extra_inputs: tuple = ()  # ((role, path), ...): e.g. the local detail's photo and face style reference
    # The garment type (core.garment_types): the product's front photo, every style image of the
    # view with its type as known at graph load, the product's type as known then (TypeChoice or
    # None) and the choice made from them (StyleChoice). The build completes what is unknown.
    photo: Path | None = None
    style_pool: tuple = ()
    garment: object = None
    style_choice: object = None
    pending_deps: tuple = ()  # style images the build may still pick (types unknown at graph load)

    @property
    def base_inputs(self) -> dict[str, Path]:
        """The images of the base generation request, in request order."""
        roles = {"source": self.source, "style": self.style}
        if self.anchor:
            roles["anchor"] = self.anchor
        return roles

    @property
    def inputs(self) -> dict[str, Path]:
        """Every input file of the view (file_dep, sidecar digest): base images + steps' references."""
        return {**self.base_inputs, **dict(self.extra_inputs), **dict(self.step_inputs)}
