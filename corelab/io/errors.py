"""Why a scan could not be read: one `ScanError` subclass per failure a core lab meets.

Every message is one sentence naming the path (and the slice, series or gap concerned), because it is
written as-is into the `error` column of volumes.csv. Import these names from `corelab.io`.
"""

from __future__ import annotations

from corelab.errors import ScanError

__all__ = [
    "MAX_VOXELS",
    "too_large",
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


# The memory bound of one worker is 3 GiB. Its measured peak (benchmarks/speed.py, section 4;
# torch 2.13, 2 threads, oneDNN primitive cache capped at 16) is 1.6-2.1 GiB for a
# 512 x 512 x 64 scan (it varies by up to 0.5 GiB between runs of the same scan) and 2.9 GiB for
# 512 x 512 x 512: about 1.7 GiB plus 10.4 bytes per input voxel. So scans over 100 million voxels
# (512 x 512 x 381; about 2.5 GiB, leaving room for that variation) are refused from their
# headers, before any pixels are read; the sentence says what to do instead.
MAX_VOXELS = 100_000_000


def too_large(what: str) -> ScanTooLargeError:
    """The error for a scan over `MAX_VOXELS`; `what` says what its header claims."""
    return ScanTooLargeError(
        f"{what}, more than the {MAX_VOXELS:,} voxels that keep a corelab worker within 3 GiB of memory;"
        f" export the series with thicker slices (the method measures on 5 mm slabs)."
    )
