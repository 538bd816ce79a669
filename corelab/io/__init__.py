"""Step 1, reading: every SimpleITK and pydicom read and write, the `Volume` type and its axis
convention, DICOM series choice, image files, the manifest, and the errors of bad input. The DICOM
SEG writer and reader (highdicom) are `corelab.io.seg`, imported from there so that reading a scan
does not load highdicom.
"""

from corelab.io.errors import (
    MAX_VOXELS,
    EmptyFolderError,
    InconsistentSeriesError,
    MaskGridError,
    MaskOutsideScanError,
    MaskValuesError,
    NoDicomImagesError,
    NoHUCalibrationError,
    NotCTError,
    NotVolumeError,
    ScanNotFoundError,
    ScanTooLargeError,
    SeriesNotFoundError,
    SliceGapError,
    UnreadableScanError,
    UnsupportedFormatError,
)
from corelab.io.files import AIR_BELOW_HU, IMAGE_SUFFIXES, find_image, image_ids
from corelab.io.grid import MAX_GAP_RATIO
from corelab.io.manifest import Manifest, ManifestRow, imaging_window, read_manifest
from corelab.io.read import mask_onto, orient_superior, read_mask, read_scan
from corelab.io.volume import ScanMeta, StoredGrid, Volume, from_sitk, same_geometry, to_sitk, write_image

__all__ = [
    "Volume", "ScanMeta", "StoredGrid", "read_scan", "read_mask", "mask_onto", "orient_superior",
    "to_sitk", "from_sitk", "write_image", "same_geometry", "find_image", "image_ids",
    "Manifest", "ManifestRow", "read_manifest", "imaging_window",
    "IMAGE_SUFFIXES", "AIR_BELOW_HU", "MAX_VOXELS", "MAX_GAP_RATIO",
    "ScanNotFoundError", "EmptyFolderError", "UnreadableScanError", "UnsupportedFormatError",
    "NoDicomImagesError", "NotCTError", "NotVolumeError", "NoHUCalibrationError", "ScanTooLargeError",
    "SeriesNotFoundError", "InconsistentSeriesError", "SliceGapError", "MaskValuesError",
    "MaskOutsideScanError", "MaskGridError",
]
