"""Expected failures, each carrying a French message for the shop's operator.

A `PipelineError` fails one view or one reference, never the batch: task actions turn it into a
doit `TaskFailed` (exit code 1); anything else is a bug and surfaces as an error (exit code 2).
"""

import errno

# errno -> (what happened, what to do), in French.
OS_REFUSALS = {
    errno.EACCES: ("permission refusée", "donnez les droits d'écriture à l'utilisateur qui lance doit"),
    errno.EPERM: ("opération non permise", "donnez les droits d'écriture à l'utilisateur qui lance doit"),
    errno.EROFS: ("système de fichiers en lecture seule", "réglez OUTPUT_DIR sur un dossier inscriptible"),
    errno.ENOSPC: ("disque plein", "libérez de la place sur ce disque, puis relancez doit"),
    errno.EDQUOT: ("quota disque dépassé", "libérez de la place (quota), puis relancez doit"),
    errno.ENAMETOOLONG: ("nom de fichier trop long", "raccourcissez le nom du dossier ou du fichier"),
}


# Refusals after which the run starts no new paid call (their answers could not be kept).
STOP_PAYING = (errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM)


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
