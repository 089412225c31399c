"""Expected failures, each carrying a French message for the shop's operator.

A `PipelineError` fails one view or one reference, never the batch: task actions turn it into a
doit `TaskFailed` (exit code 1); anything else is a bug and surfaces as an error (exit code 2).
"""


class PipelineError(Exception):
    """An expected failure: bad input, refusal by a remote service, budget reached, ..."""

    def __init__(self, message: str, *, reference: str | None = None):
        super().__init__(message)
        self.message = message
        self.reference = reference

    def __str__(self) -> str:
        return self.message


class InputError(PipelineError):
    """A photo, style reference or folder the operator must fix."""


class GenerationError(PipelineError):
    """The image generator refused or failed (no image, blocked, quota, bad key, ...)."""


class BudgetExceeded(GenerationError):
    """MAX_COST reached: no new paid call is started in this run."""


class UploadError(PipelineError):
    """The backend or the reference lookup refused or failed."""


class BatchPending(PipelineError):
    """GEMINI_MODE=batch: the view's request is in a Batch API job (or queued for one) and its
    answer is not back yet. Not a failure: the run ends with exit 0, a later run collects it."""
