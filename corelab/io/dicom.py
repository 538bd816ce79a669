"""Read a DICOM folder (or one DICOM file) into one `Volume`: find series, choose one, build the grid.

SimpleITK (GDCM) reads headers and pixels and applies RescaleSlope/Intercept; pydicom is used only
for per-frame positions of multi-frame files (nested functional groups that SimpleITK's metadata
dictionary does not expose) and to tell non-image DICOM objects from broken images.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from corelab.io.dicom_headers import read_headers
from corelab.io.errors import (
    MAX_VOXELS,
    InconsistentSeriesError,
    NoHUCalibrationError,
    NotCTError,
    NotVolumeError,
    SeriesNotFoundError,
    UnreadableScanError,
    too_large,
)
from corelab.io.grid import align_slices, even_slice_spacing, invented_slices, resample_slices, stack_geometry
from corelab.io.series import SeriesSummary, SliceHeader, acquisition_datetime, rank_series, summarize_series
from corelab.io.volume import ScanMeta, Volume

__all__ = ["read_dicom"]

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
    invented, gaps_mm = 0, None
    if not even:
        gaps = np.diff(geometry.positions_mm)
        gaps_mm = (float(gaps.min()), float(gaps.max()))
        pixels, targets = resample_slices(pixels, geometry.positions_mm, spacing_mm=spacing_z, order=order)
        invented = invented_slices(geometry.positions_mm, targets)
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
        frame_uid=first.tag("FrameOfReferenceUID"),
        acquisition_datetime=date_time,
        slice_thickness_mm=_slice_thickness(first, spacing_z),
        kernel=first.tag("ConvolutionKernel"),
        tilt_deg=float(tilt),
        notes=tuple(notes),
        interpolated_slices=invented,
        resampled_spacing=not even,
        slice_gaps_mm=gaps_mm,
        source_files=tuple(sorted({str(h.path) for h in series})),
    )
    return Volume(
        array=pixels.astype(np.float32, copy=False),
        spacing=(float(spacing_z), float(first.pixel_mm[0]), float(first.pixel_mm[1])),
        origin=tuple(float(v) for v in series[0].position),
        direction=tuple(float(v) for v in direction),
        meta=meta,
    )
