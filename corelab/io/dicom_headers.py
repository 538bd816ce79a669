"""DICOM headers: which files are images, and one `SliceHeader` per image (or per frame of a
multi-frame file) with the tags series choice, geometry and timing need, read before any pixels.

SimpleITK (GDCM) reads the tags; pydicom is used only for per-frame positions of multi-frame files
(nested functional groups that SimpleITK's metadata dictionary does not expose) and to tell
non-image DICOM objects from broken images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from corelab.io.errors import MAX_VOXELS, EmptyFolderError, NoDicomImagesError, UnreadableScanError, too_large
from corelab.io.series import SliceHeader

__all__ = ["is_dicom_file", "read_headers"]

_TAGS = {
    "0008|0008": "ImageType",
    "0008|0016": "SOPClassUID",
    "0008|0020": "StudyDate",
    "0008|0021": "SeriesDate",
    "0008|0022": "AcquisitionDate",
    "0008|002a": "AcquisitionDateTime",
    "0008|0030": "StudyTime",
    "0008|0031": "SeriesTime",
    "0008|0032": "AcquisitionTime",
    "0008|0060": "Modality",
    "0008|0201": "TimezoneOffsetFromUTC",
    "0008|103e": "SeriesDescription",
    "0018|0010": "ContrastBolusAgent",
    "0018|0050": "SliceThickness",
    "0018|1120": "GantryDetectorTilt",
    "0018|1210": "ConvolutionKernel",
    "0020|000d": "StudyInstanceUID",
    "0020|000e": "SeriesInstanceUID",
    "0020|0052": "FrameOfReferenceUID",
    "0028|0002": "SamplesPerPixel",
    "0028|0008": "NumberOfFrames",
    "0028|0010": "Rows",
    "0028|0011": "Columns",
    "0028|1052": "RescaleIntercept",
    "0028|1053": "RescaleSlope",
    "0020|0032": "ImagePositionPatient",
    "0020|0037": "ImageOrientationPatient",
    "0028|0030": "PixelSpacing",
    "0018|0088": "SpacingBetweenSlices",
}


def is_dicom_file(path: Path) -> bool:
    """True when the file carries the DICOM Part 10 preamble marker ("DICM" at byte 128)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(128)
            return handle.read(4) == b"DICM"
    except OSError:
        return False


def _floats(text: str) -> tuple[float, ...] | None:
    try:
        values = tuple(float(v) for v in text.split("\\") if v.strip())
    except ValueError:
        return None
    return values or None


def _frame_geometry(path: Path, n_frames: int, tags: dict[str, str]) -> list[dict]:
    """Per-frame position/orientation/spacing/rescale of a multi-frame file (pydicom, header only)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
    per_frame = ds.get("PerFrameFunctionalGroupsSequence", [])

    def from_groups(frame_groups, sequence: str, keyword: str):
        for groups in (frame_groups, shared):
            items = getattr(groups, sequence, None) if groups is not None else None
            if items and keyword in items[0]:
                return getattr(items[0], keyword)
        return None

    frames = []
    top_position = _floats(tags.get("ImagePositionPatient", ""))
    top_orientation = _floats(tags.get("ImageOrientationPatient", ""))
    step = _floats(tags.get("SpacingBetweenSlices", ""))
    for k in range(n_frames):
        groups = per_frame[k] if k < len(per_frame) else None
        position = from_groups(groups, "PlanePositionSequence", "ImagePositionPatient")
        orientation = from_groups(groups, "PlaneOrientationSequence", "ImageOrientationPatient")
        spacing = from_groups(groups, "PixelMeasuresSequence", "PixelSpacing")
        intercept = from_groups(groups, "PixelValueTransformationSequence", "RescaleIntercept")
        orientation = tuple(float(v) for v in orientation) if orientation is not None else top_orientation
        if position is not None:
            position = tuple(float(v) for v in position)
        elif top_position is not None and top_orientation is not None and step:
            # Legacy multi-frame: one position plus SpacingBetweenSlices along the plane normal.
            normal = np.cross(top_orientation[:3], top_orientation[3:])
            position = tuple(float(v) for v in np.asarray(top_position) + k * step[0] * normal)
        if spacing is not None:
            spacing = tuple(float(v) for v in spacing)
        frames.append(
            {
                "position": position,
                "orientation": orientation,
                "pixel_mm": spacing or _floats(tags.get("PixelSpacing", "")),
                "has_rescale": intercept is not None or "RescaleIntercept" in tags,
            }
        )
    return frames


def _header_records(path: Path) -> list[SliceHeader]:
    """SliceHeaders of one file (several for a multi-frame file); [] for non-image DICOM objects."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.SetImageIO("GDCMImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        # Files GDCM cannot read are skipped unless they carry the DICOM marker: a thumbnail or
        # text file is not our business, a broken DICOM slice is.
        if not is_dicom_file(path) or _is_non_image_dicom(path):
            return []
        raise UnreadableScanError(f"The DICOM file {path} could not be read; it is truncated or corrupt.") from None
    tags = {name: reader.GetMetaData(key).strip() for key, name in _TAGS.items() if reader.HasMetaDataKey(key)}
    try:
        n_frames = int(tags.get("NumberOfFrames") or 1)
        rows, cols = int(tags.get("Rows") or 0), int(tags.get("Columns") or 0)
    except ValueError:
        raise UnreadableScanError(f"The DICOM file {path} has an unreadable image size in its header.") from None
    if float(n_frames) * rows * cols > MAX_VOXELS:
        raise too_large(f"The DICOM file {path} claims {n_frames} frames of {rows} x {cols} pixels")
    if n_frames > 1:
        frames = _frame_geometry(path, n_frames, tags)
    else:
        frames = [
            {
                "position": _floats(tags.get("ImagePositionPatient", "")),
                "orientation": _floats(tags.get("ImageOrientationPatient", "")),
                "pixel_mm": _floats(tags.get("PixelSpacing", "")),
                "has_rescale": "RescaleIntercept" in tags and "RescaleSlope" in tags,
            }
        ]
    return [
        SliceHeader(
            path=path,
            frame=k,
            series_uid=tags.get("SeriesInstanceUID", ""),
            rows=rows,
            cols=cols,
            tags=tags,
            **frame,
        )
        for k, frame in enumerate(frames)
    ]


def _is_non_image_dicom(path: Path) -> bool:
    """True for valid DICOM objects that are not images (DICOMDIR, reports, presentation states).

    Decided on the SOP class in the file meta, which sits at the start of the file: a CT slice cut
    short after its header still says "CT Image Storage" and must be reported, not skipped.
    """
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError):
        # pydicom's ways of saying the file is broken: it is not a valid non-image object either.
        return False
    sop_class = ds.file_meta.get("MediaStorageSOPClassUID") or ds.get("SOPClassUID")
    return bool(sop_class) and "Image Storage" not in UID(str(sop_class)).name


def read_headers(folder: Path) -> tuple[list[SliceHeader], list[str]]:
    """Headers of every DICOM image under ``folder`` (recursively), and notes on skipped files."""
    files = [Path(root) / name for root, _, names in os.walk(folder) for name in sorted(names)]
    if folder.is_file():
        files = [folder]
    if not files:
        raise EmptyFolderError(f"The folder {folder} is empty; it holds no DICOM files.")
    headers: list[SliceHeader] = []
    skipped = 0
    for path in sorted(files):
        records = _header_records(path)
        skipped += not records
        headers.extend(records)
    if not headers:
        raise NoDicomImagesError(f"The folder {folder} holds {len(files)} files but no DICOM images.")
    plural = "files" if skipped != 1 else "file"
    notes = [f"{skipped} {plural} in {folder} that are not DICOM images were ignored."] if skipped else []
    return headers, notes
