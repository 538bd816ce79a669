"""corelab's exceptions.

Every error corelab raises on purpose is a `CorelabError`. Its message is one sentence that a
core-lab person understands without reading code ("The DICOM folder /x holds an MR series, not a
CT."), because it is written as-is into the `error` column of `volumes.csv` and printed by the CLI.
Modules define narrower subclasses next to the code that raises them; these are the families.
"""

__all__ = [
    "CorelabError",
    "ScanError",
    "PreprocessError",
    "ModelError",
    "ManifestError",
    "CohortError",
    "ReferenceMaskError",
]


class CorelabError(Exception):
    """Base class: a failure with a one-sentence, human-readable message."""


class ScanError(CorelabError):
    """A scan cannot be read or is not a usable head CT (missing, truncated, MR, 2D, ...)."""


class PreprocessError(CorelabError):
    """Intracranial or CSF segmentation failed on a scan that was read correctly."""


class ModelError(CorelabError):
    """A model folder is missing, incomplete, or its checksum does not match its card."""


class ManifestError(CorelabError):
    """The manifest as a whole cannot be used (missing column, empty, unreadable)."""


class CohortError(CorelabError):
    """A training cohort cannot be used (no infarcts of a class, missing masks, mismatched grids)."""


class ReferenceMaskError(CorelabError):
    """A manual reference mask cannot be used (unreadable, wrong grid that cannot be resampled)."""
