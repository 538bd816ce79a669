"""Why a scan could not be read: one `ScanError` subclass per failure a core lab meets.

Every message is one sentence naming the path (and the slice, series or gap concerned), because it is
written as-is into the `error` column of volumes.csv. Import these names from `corelab.io`.
"""

from __future__ import annotations

from corelab.errors import ScanError

__all__ = [
    "ScanNotFoundError",
    "EmptyFolderError",
    "UnreadableScanError",
    "UnsupportedFormatError",
    "NoDicomImagesError",
    "NotCTError",
    "NotVolumeError",
    "NoHUCalibrationError",
    "ScanTooLargeError",
    "SeriesNotFoundError",
    "InconsistentSeriesError",
    "SliceGapError",
    "MaskValuesError",
    "MaskOutsideScanError",
    "MaskGridError",
]


class ScanNotFoundError(ScanError):
    """The path given for a scan or mask does not exist."""


class EmptyFolderError(ScanError):
    """A DICOM folder holds no files at all."""


class UnreadableScanError(ScanError):
    """A file is truncated, corrupt, or otherwise cannot be decoded."""


class UnsupportedFormatError(ScanError):
    """A file is neither DICOM nor one of .nii, .nii.gz, .nrrd, .mha (.mhd, .nhdr)."""


class NoDicomImagesError(ScanError):
    """A folder holds files, but none is a DICOM image."""


class NotCTError(ScanError):
    """The image is not a CT (e.g. MR, a colour screenshot)."""


class NotVolumeError(ScanError):
    """The image is 2D (one slice, a localizer) or 4D, not a 3D head CT."""


class NoHUCalibrationError(ScanError):
    """Pixel values cannot be taken as Hounsfield units (no rescale tags, or implausible values)."""


class ScanTooLargeError(ScanError):
    """The header claims more voxels than a worker can process within its memory bound; refused before reading pixels."""


class SeriesNotFoundError(ScanError):
    """The requested SeriesInstanceUID is not in the folder."""


class InconsistentSeriesError(ScanError):
    """Slices of one series disagree (orientation, pixel size, two slices at one position, ...)."""


class SliceGapError(ScanError):
    """A gap between slices is too large to interpolate honestly (more than one missing slice)."""


class MaskValuesError(ScanError):
    """A mask holds values that are not whole-number labels."""


class MaskOutsideScanError(ScanError):
    """A mask's extent does not overlap the scan it should be resampled onto."""


class MaskGridError(ScanError):
    """A mask has the scan's voxel grid but other voxel sizes: its geometry was lost on saving."""
