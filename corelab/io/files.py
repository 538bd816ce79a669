"""Read one image file (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd) with header checks before pixels.

The header is read first (``ReadImageInformation``) so a 2D, 4D, colour or absurdly large image is
refused before any memory is allocated for it.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from corelab.io.errors import (
    MAX_VOXELS,
    MaskValuesError,
    NoHUCalibrationError,
    NotCTError,
    NotVolumeError,
    UnreadableScanError,
    too_large,
)
from corelab.io.volume import ScanMeta, Volume, from_sitk

__all__ = ["IMAGE_SUFFIXES", "AIR_BELOW_HU", "image_suffix", "find_image", "image_ids", "read_image_file", "check_hu_plausible", "as_label_array"]

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")

# A head CT in HU always contains the air around the head (about -1000 HU) or the scanner's padding
# outside the field of view (-1024 to -3024). If nothing anywhere is below -500 HU, the values are
# not HU: raw stored values without the -1024 intercept, an MR, or an image scaled to 0..255/0..1.
AIR_BELOW_HU = -500.0


def image_suffix(path: Path) -> str | None:
    """The image-file suffix of ``path`` (".nii.gz", ".nrrd", ...), or None for anything else."""
    name = path.name.lower()
    return next((suffix for suffix in IMAGE_SUFFIXES if name.endswith(suffix)), None)


def find_image(folder: Path, patient_id: str) -> Path | None:
    """The image of one patient in a folder of reads or scans: ``<patient_id>`` plus any of
    `IMAGE_SUFFIXES` (tried in that order), else a DICOM folder ``<patient_id>/``; None if absent.

    >>> find_image(Path("/no/such/folder"), "P001") is None
    True
    """
    for suffix in IMAGE_SUFFIXES:
        path = folder / f"{patient_id}{suffix}"
        if path.is_file():
            return path
    folder_path = folder / patient_id
    return folder_path if folder_path.is_dir() else None


def image_ids(folder: Path) -> set[str]:
    """Patient ids that `find_image` finds in ``folder``: image files by name less suffix, and subfolders."""
    ids = set()
    for path in folder.iterdir():
        suffix = image_suffix(path) if path.is_file() else None
        if path.is_dir():
            ids.add(path.name)
        elif suffix is not None:
            ids.add(path.name[: -len(suffix)])
    return ids


def check_hu_plausible(array: np.ndarray, *, source: str) -> None:
    """Raise `NoHUCalibrationError` unless ``array`` looks like Hounsfield units (see AIR_BELOW_HU).

    >>> check_hu_plausible(np.array([-1000.0, 40.0]), source="x.nii.gz")
    """
    if array.size == 0 or not np.isfinite(array).all():
        raise NoHUCalibrationError(f"{source} holds values that are not numbers (NaN or infinite), not HU.")
    if float(array.min()) >= AIR_BELOW_HU:
        raise NoHUCalibrationError(
            f"{source} has no value below {AIR_BELOW_HU:.0f} anywhere (lowest {float(array.min()):.0f}),"
            " so there is no air around the head and the values cannot be Hounsfield units."
        )


def as_label_array(array: np.ndarray, *, source: str) -> np.ndarray:
    """Whole-number labels as uint8 (values 0..255) or int32; anything else is a `MaskValuesError`:
    NaN, fractions (probabilities), negative values, or more than 256 distinct values (the last two
    mean an image, e.g. the scan itself, was given as a mask).

    >>> as_label_array(np.array([0.0, 1.0, 4.0]), source="m").dtype
    dtype('uint8')
    """
    if array.size and not np.isfinite(array).all():
        raise MaskValuesError(f"The mask {source} holds values that are not numbers (NaN or infinite).")
    rounded = np.rint(array)
    if not np.array_equal(rounded, array):
        raise MaskValuesError(
            f"The mask {source} holds fractional values (e.g. probabilities), not whole-number labels."
        )
    if array.size == 0 or (rounded.min() >= 0 and rounded.max() <= 255):
        return rounded.astype(np.uint8)
    if rounded.min() < 0:
        raise MaskValuesError(
            f"The mask {source} holds negative values (lowest {rounded.min():.0f}), so it is an image, not a"
            " label mask."
        )
    # Counted only past 255 (rare), where the cost of np.unique is worth it.
    distinct = len(np.unique(rounded))
    if distinct > 256:
        raise MaskValuesError(
            f"The mask {source} holds {distinct} different values up to {rounded.max():.0f},"
            " so it is an image, not a label mask."
        )
    return rounded.astype(np.int32)


def _nifti_expected_bytes(header: bytes) -> int | None:
    """vox_offset + voxel bytes claimed by a NIfTI-1 or NIfTI-2 header, or None if it is neither."""
    for endian in "<>":
        if len(header) >= 348 and struct.unpack(endian + "i", header[:4])[0] == 348:
            dims = struct.unpack(endian + "8h", header[40:56])
            bitpix = struct.unpack(endian + "h", header[72:74])[0]
            offset = int(struct.unpack(endian + "f", header[108:112])[0])
            break
        if len(header) >= 540 and struct.unpack(endian + "i", header[:4])[0] == 540:
            dims = struct.unpack(endian + "8q", header[16:80])
            bitpix = struct.unpack(endian + "h", header[14:16])[0]
            offset = struct.unpack(endian + "q", header[168:176])[0]
            break
    else:
        return None
    n_voxels = int(np.prod([max(d, 1) for d in dims[1 : 1 + max(0, min(dims[0], 7))]], dtype=np.float64))
    return offset + n_voxels * max(bitpix, 8) // 8


def _check_nifti_complete(path: Path) -> None:
    # ITK's NIfTI reader fills a file cut short with zeros instead of failing; a truncated scan
    # would then read as a head with its top missing. Count the bytes ourselves (streaming).
    gzipped = path.name.lower().endswith(".gz")
    try:
        with (gzip.open(path, "rb") if gzipped else open(path, "rb")) as handle:
            expected = _nifti_expected_bytes(handle.read(540))
            if expected is None:
                return
            if gzipped:
                handle.seek(0)
                available = 0
                while available < expected and (chunk := handle.read(1 << 22)):
                    available += len(chunk)
            else:
                available = path.stat().st_size
    except (OSError, EOFError):
        raise UnreadableScanError(f"The file {path} could not be read; it is truncated or corrupt.") from None
    if available < expected:
        raise UnreadableScanError(
            f"The file {path} is truncated: its header announces {expected:,} bytes but it holds {available:,}."
        )


def read_image_file(path: Path, *, as_labels: bool = False) -> Volume:
    """A 3D image file as a `Volume`: float32 HU (checked plausible), or integer labels if ``as_labels``."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise UnreadableScanError(
            f"The file {path} could not be read; it is truncated, corrupt or not an image."
        ) from None
    size = tuple(int(s) for s in reader.GetSize())
    if int(np.prod(size, dtype=np.float64)) > MAX_VOXELS:
        raise too_large(f"The header of {path} claims {' x '.join(map(str, size))} voxels")
    if reader.GetNumberOfComponents() != 1:
        kind = "mask" if as_labels else "CT"
        components = reader.GetNumberOfComponents()
        raise NotCTError(f"{path} is a colour or vector image with {components} components, not a {kind}.")
    extra = [s for s in size[3:] if s != 1]
    if extra:
        raise NotVolumeError(f"{path} is a {len(size)}D image ({' x '.join(map(str, size))}), not a single 3D scan.")
    if len(size) < 3 or min(size[:3]) == 1:
        shown = " x ".join(str(s) for s in size[:3] if s != 1)
        raise NotVolumeError(f"{path} is a single 2D image ({shown}), not a 3D head CT.")
    if image_suffix(path) in (".nii", ".nii.gz"):
        _check_nifti_complete(path)
    try:
        image = reader.Execute()
    except RuntimeError:
        raise UnreadableScanError(
            f"The pixel data of {path} could not be read; the file is truncated or corrupt."
        ) from None
    if image.GetDimension() > 3:
        image = image[:, :, :, 0]  # a trailing time axis of length 1 carries no information
    note = "Image file without DICOM tags: modality, kernel and acquisition date-time are unknown."
    volume = from_sitk(image, ScanMeta(source=str(path), notes=(note,)))
    if as_labels:
        array = as_label_array(volume.array, source=str(path))
    else:
        array = volume.array.astype(np.float32, copy=False)
        check_hu_plausible(array, source=str(path))
    return replace(volume, array=array)
