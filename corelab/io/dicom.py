"""Read a DICOM folder (or one DICOM file) into one `Volume`: find series, choose one, build the grid.

SimpleITK (GDCM) reads headers and pixels and applies RescaleSlope/Intercept; pydicom is used only
for per-frame positions of multi-frame files (nested functional groups that SimpleITK's metadata
dictionary does not expose) and to tell non-image DICOM objects from broken images.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from corelab.io.errors import (
    EmptyFolderError,
    InconsistentSeriesError,
    NoDicomImagesError,
    NoHUCalibrationError,
    NotCTError,
    NotVolumeError,
    ScanTooLargeError,
    SeriesNotFoundError,
    UnreadableScanError,
)
from corelab.io.grid import align_slices, even_slice_spacing, resample_slices, stack_geometry
from corelab.io.series import SeriesSummary, SliceHeader, acquisition_datetime, rank_series, summarize_series
from corelab.io.volume import ScanMeta, Volume

__all__ = ["MAX_VOXELS", "read_dicom", "read_headers", "is_dicom_file"]

# The memory bound of one worker is 3 GiB. Its measured peak (benchmarks/speed.py, section 4;
# torch 2.13, 2 threads, oneDNN cache capped as corelab/__init__.py does) is 1.6-2.1 GiB for a
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


def _choose(
    folder: Path, by_series: dict[str, list[SliceHeader]], series_uid: str | None, *, require_ct: bool
) -> tuple[str, list[str]]:
    summaries = [summarize_series(uid, hs) for uid, hs in by_series.items()]
    listing = "; ".join(s.describe() for s in summaries)
    if series_uid is not None:
        if series_uid not in by_series:
            raise SeriesNotFoundError(
                f"Series {series_uid} is not in {folder}, which holds: {listing}."
            )
        chosen = next(s for s in summaries if s.series_uid == series_uid)
        candidates = [chosen]
    else:
        candidates = summaries
    if require_ct:
        ct = [s for s in candidates if s.modality == "CT"]
        if not ct:
            modalities = ", ".join(sorted({s.modality or "unknown" for s in candidates}))
            raise NotCTError(f"The DICOM data in {folder} holds {modalities} images, not a CT.")
        candidates = ct
    volumes = [s for s in candidates if s.is_volume]
    if not volumes:
        raise NotVolumeError(
            f"{folder} holds only 2D images (a single slice or localizer), not a 3D head CT: {listing}."
        )
    if series_uid is not None:
        return series_uid, [f"Series {chosen.describe()} used as the manifest's series_uid asks."]
    ranked = rank_series(volumes)
    best = ranked[0]
    notes = [
        f"Series {best.describe()} chosen from {len(summaries)} series by the rules CT, 3D (not a localizer),"
        " one image per position, non-contrast, axial, full coverage, soft kernel, most slices"
        f" (it covers {best.extent_mm:.0f} mm with a {best.kernel_class} kernel)."
    ]
    studies = {s.study_uid for s in volumes}
    if len(studies) > 1:
        # Baseline and follow-up exported together: the rules cannot know which visit is meant.
        notes.append(
            f"Warning: the folder holds CT volumes from {len(studies)} studies; give the manifest's series_uid"
            " to be sure the follow-up scan is the one analysed."
        )
    if best.contrast:
        notes.append("Warning: the chosen series looks contrast-enhanced; the method expects non-contrast CT.")
    others = [s for s in summaries if s.series_uid != best.series_uid]
    if others:
        notes.append("Not chosen: " + "; ".join(_why_not(s, best) for s in others) + ".")
    return best.series_uid, notes


def _why_not(s: SeriesSummary, best: SeriesSummary) -> str:
    if s.modality != "CT":
        reason = f"{s.modality or 'no'} modality"
    elif s.localizer:
        reason = "localizer"
    elif not s.is_volume:
        reason = "not a 3D stack"
    elif s.repeated_positions and not best.repeated_positions:
        reason = "repeated slice positions (perfusion or multi-phase)"
    elif s.contrast and not best.contrast:
        reason = "contrast-enhanced"
    elif not s.axial and best.axial:
        reason = "not axial"
    elif s.extent_mm < 0.9 * best.extent_mm:
        reason = f"shorter coverage ({s.extent_mm:.0f} mm)"
    elif s.kernel_class != best.kernel_class:
        reason = f"{s.kernel_class} kernel"
    else:
        reason = "fewer slices"
    return f"{s.describe()}: {reason}"


def _check_consistent(folder: Path, headers: list[SliceHeader]) -> None:
    shapes = {(h.rows, h.cols) for h in headers}
    spacings = {tuple(np.round(h.pixel_mm, 4)) if h.pixel_mm else None for h in headers}
    if len(shapes) > 1:
        raise InconsistentSeriesError(f"The chosen series in {folder} mixes image sizes {sorted(shapes)}.")
    if None in spacings or any(len(s) != 2 for s in spacings if s):
        raise InconsistentSeriesError(f"The chosen series in {folder} has images without PixelSpacing.")
    if len(spacings) > 1:
        raise InconsistentSeriesError(f"The chosen series in {folder} mixes pixel sizes {sorted(spacings)} mm.")
    if any(h.position is None or h.orientation is None or len(h.position) != 3 for h in headers):
        raise InconsistentSeriesError(f"The chosen series in {folder} has images without a position or orientation.")


def _read_pixels(headers: list[SliceHeader]) -> np.ndarray:
    """[n, rows, cols] float32 in rescaled units (GDCM applies RescaleSlope/Intercept)."""
    out = np.empty((len(headers), headers[0].rows, headers[0].cols), dtype=np.float32)
    # Only the last file is kept: consecutive frames of a multi-frame file reuse it, while a
    # one-file-per-slice series is never held twice in memory.
    last_path, last_pixels = None, None
    for k, h in enumerate(headers):
        if h.path != last_path:
            try:
                image = sitk.ReadImage(str(h.path), imageIO="GDCMImageIO")
            except RuntimeError:
                raise UnreadableScanError(
                    f"The pixel data of DICOM file {h.path} could not be read; the file is truncated or corrupt."
                ) from None
            if image.GetNumberOfComponentsPerPixel() != 1:
                raise NotCTError(f"The DICOM file {h.path} is a colour image, not a CT.")
            last_path, last_pixels = h.path, sitk.GetArrayFromImage(image).reshape(-1, h.rows, h.cols)
        out[k] = last_pixels[h.frame]
    return out


def _check_usable(path: Path, series: list[SliceHeader], *, as_labels: bool) -> None:
    """Size, colour and HU calibration of the chosen series, from headers only (before pixels)."""
    first = series[0]
    n_voxels = float(len(series)) * first.rows * first.cols
    if n_voxels > MAX_VOXELS:
        raise too_large(f"The DICOM series in {path} claims {len(series)} images of {first.rows} x {first.cols} pixels")
    if first.tag("SamplesPerPixel") not in ("", "1"):
        raise NotCTError(f"The DICOM series in {path} holds colour images, not a CT.")
    if not as_labels:
        missing = [h for h in series if not h.has_rescale]
        if missing:
            raise NoHUCalibrationError(
                f"The CT series in {path} has no RescaleIntercept/RescaleSlope (e.g. {missing[0].path.name}),"
                " so its pixel values cannot be converted to Hounsfield units."
            )


def _slice_thickness(header: SliceHeader, fallback_mm: float) -> float:
    try:
        return float(header.tag("SliceThickness").split("\\")[0])
    except ValueError:
        return fallback_mm


def read_dicom(
    path: Path, *, series_uid: str | None = None, as_labels: bool = False
) -> Volume:
    """One DICOM series under ``path`` as a `Volume` (see `corelab.io.read.read_scan` for the contract).

    as_labels: read a label mask stored as DICOM images: no CT/HU checks, nearest-neighbour
    resampling (the caller turns the float32 values into integer labels).
    """
    headers, notes = read_headers(path)
    by_series: dict[str, list[SliceHeader]] = defaultdict(list)
    for h in headers:
        by_series[h.series_uid].append(h)
    uid, choice_notes = _choose(path, by_series, series_uid, require_ct=not as_labels)
    notes += choice_notes
    series = by_series[uid]
    _check_consistent(path, series)
    _check_usable(path, series, as_labels=as_labels)
    first = series[0]
    orientation = np.asarray(first.orientation, dtype=float)
    # Headers round cosines to a few digits; unit vectors keep the direction matrix a rotation.
    row, col = orientation[:3] / np.linalg.norm(orientation[:3]), orientation[3:] / np.linalg.norm(orientation[3:])
    geometry = stack_geometry(np.array([h.position for h in series]), row, col)
    series = [series[i] for i in geometry.order]
    pixels = _read_pixels(series)
    order = 0 if as_labels else 1
    fill = 0.0 if as_labels else float(pixels.min())
    tilt = 0.0
    # Shear under 1% of a pixel is rounding in the written positions, not a tilt.
    if np.abs(geometry.shifts_mm).max() >= 0.01 * min(first.pixel_mm):
        pixels = align_slices(pixels, geometry.shifts_mm, first.pixel_mm, order=order, fill=fill)
        tilt = geometry.tilt_deg
        notes.append(
            f"Gantry tilt of {tilt:.1f} degrees corrected: slices shifted in-plane onto an orthogonal grid"
            f" (GantryDetectorTilt tag: {first.tag('GantryDetectorTilt') or 'absent'})."
        )
    spacing_z, even = even_slice_spacing(geometry.positions_mm)
    if not even:
        gaps = np.diff(geometry.positions_mm)
        pixels, _ = resample_slices(pixels, geometry.positions_mm, spacing_mm=spacing_z, order=order)
        spacing_z = float((geometry.positions_mm[-1] - geometry.positions_mm[0]) / (len(pixels) - 1))
        notes.append(
            f"Uneven slice gaps ({gaps.min():.2f}-{gaps.max():.2f} mm) resampled onto an even"
            f" {spacing_z:.2f} mm grid ({'nearest' if as_labels else 'linear'} interpolation)."
        )
    date_time, date_notes = acquisition_datetime(series)
    notes += date_notes
    axis = geometry.slice_axis
    direction = (row[0], col[0], axis[0], row[1], col[1], axis[1], row[2], col[2], axis[2])
    meta = ScanMeta(
        source=str(path),
        modality=first.tag("Modality"),
        series_uid=uid,
        acquisition_datetime=date_time,
        slice_thickness_mm=_slice_thickness(first, spacing_z),
        kernel=first.tag("ConvolutionKernel"),
        tilt_deg=float(tilt),
        notes=tuple(notes),
    )
    return Volume(
        array=pixels.astype(np.float32, copy=False),
        spacing=(float(spacing_z), float(first.pixel_mm[0]), float(first.pixel_mm[1])),
        origin=tuple(float(v) for v in series[0].position),
        direction=tuple(float(v) for v in direction),
        meta=meta,
    )
