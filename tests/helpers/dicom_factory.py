"""Write real DICOM CT series (pydicom) into a folder, for tests of everything that reads scans.

Reuse it for bad-input cases: every option below maps to something a real scanner or PACS export
does. Import it from a test as ``from dicom_factory import write_ct_series, write_scout, pixel_positions``
(pytest puts ``tests/`` on ``sys.path``).

Geometry (patient LPS coordinates, mm), the same for every option:
    the image row direction is +x (patient left), the column direction is +y (posterior) turned by
    the gantry tilt about x: ``col = (0, cos t, sin t)``; slice k sits at
    ``IPP_k = origin + (0, 0, z_k)``: the table moves along z, as on a real tilted acquisition, so a
    tilted stack is sheared (its slices are not stacked along their normal).
    ``z_k = k * spacing[0]`` unless ``slice_z`` gives them explicitly (missing slices, uneven gaps).
    ``hu[k]`` is slice k; ``hu[k, i, j]`` lies at ``IPP_k + j * spacing[2] * row + i * spacing[1] * col``.
    `pixel_positions` returns exactly these positions, so a phantom can be sampled where the scanner
    "measured" it (e.g. a sphere that must read back in place after tilt correction).

Example::

    hu = np.full((12, 64, 64), -1000.0, dtype=np.float32)
    written = write_ct_series(tmp_path / "ct", hu, (5.0, 0.5, 0.5), kernel="H30s")
    written.series_uid, written.files[0]

Stored values are ``round((hu - intercept) / slope)`` as uint16 (or int16 when ``rescale=None``,
which also omits RescaleSlope/RescaleIntercept); clip your HU to what the rescale can hold
(default slope 1, intercept -1024: -1024..64511 HU).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
ENHANCED_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2.1"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"

# Default date-times: study 08:00, series 08:05, acquisition 08:06 on 2024-03-01, so a test of the
# fallback order can tell which level was used by the time alone.
DEFAULT_DATETIME_TAGS: dict[str, str] = {
    "StudyDate": "20240301",
    "StudyTime": "080000",
    "SeriesDate": "20240301",
    "SeriesTime": "080500",
    "AcquisitionDate": "20240301",
    "AcquisitionTime": "080600",
}

__all__ = [
    "WrittenSeries",
    "write_ct_series",
    "write_scout",
    "pixel_positions",
    "slice_axes",
    "DEFAULT_DATETIME_TAGS",
]


@dataclass(frozen=True)
class WrittenSeries:
    """What `write_ct_series` wrote.

    folder: the folder written into; files: the files, in slice order (one file when multi-frame).
    series_uid / study_uid: the UIDs written. positions: (n, 3) IPP of each slice, mm (LPS).
    row / col: image row and column direction cosines.
    """

    folder: Path
    files: tuple[Path, ...]
    series_uid: str
    study_uid: str
    positions: np.ndarray
    row: tuple[float, float, float]
    col: tuple[float, float, float]


def slice_axes(tilt_deg: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Row and column direction cosines of an axial slice with the gantry tilted by ``tilt_deg``."""
    t = np.deg2rad(tilt_deg)
    return np.array([1.0, 0.0, 0.0]), np.array([0.0, np.cos(t), np.sin(t)])


def _slice_z(n_slices: int, spacing_z: float, slice_z: Sequence[float] | None) -> np.ndarray:
    if slice_z is None:
        return np.arange(n_slices, dtype=float) * spacing_z
    z = np.asarray(slice_z, dtype=float)
    if z.shape != (n_slices,):
        raise ValueError(f"slice_z has {z.shape} values for {n_slices} slices")
    return z


def pixel_positions(
    shape: tuple[int, int, int],
    spacing: tuple[float, float, float],
    *,
    tilt_deg: float = 0.0,
    slice_z: Sequence[float] | None = None,
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """LPS position (mm) of every pixel `write_ct_series` writes: array of shape (*shape, 3).

    >>> pixel_positions((2, 1, 1), (5.0, 1.0, 1.0))[:, 0, 0].tolist()
    [[0.0, 0.0, 0.0], [0.0, 0.0, 5.0]]
    """
    nz, ny, nx = shape
    row, col = slice_axes(tilt_deg)
    z = _slice_z(nz, spacing[0], slice_z)
    ipp = np.asarray(origin, dtype=float)[None, :] + z[:, None] * np.array([0.0, 0.0, 1.0])[None, :]
    i = np.arange(ny, dtype=float)[:, None, None] * spacing[1] * col
    j = np.arange(nx, dtype=float)[None, :, None] * spacing[2] * row
    return ipp[:, None, None, :] + (i + j)[None, :, :, :]


def _ds(value: float) -> str:
    # DS is at most 16 characters; 10 significant digits keeps sub-micrometre precision for heads.
    return f"{value:.10g}"


def _base_dataset(sop_class: str, series_uid: str, study_uid: str, frame_uid: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = frame_uid
    ds.PatientName = "Phantom^Test"
    ds.PatientID = "PHANTOM"
    ds.PatientPosition = "HFS"
    return ds


def _set_pixels(ds: Dataset, stored: np.ndarray, signed: bool) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1 if signed else 0
    ds.Rows, ds.Columns = int(stored.shape[-2]), int(stored.shape[-1])
    ds.PixelData = stored.astype("<i2" if signed else "<u2").tobytes()


def _stored_values(hu: np.ndarray, rescale: tuple[float, float] | None) -> tuple[np.ndarray, bool]:
    if rescale is None:
        return np.clip(np.round(hu), -32768, 32767).astype(np.int16), True
    slope, intercept = rescale
    return np.clip(np.round((hu - intercept) / slope), 0, 65535).astype(np.uint16), False


def _apply_tags(ds: Dataset, tags: Mapping[str, object], omit: Iterable[str]) -> None:
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    for keyword in omit:
        if keyword in ds:
            delattr(ds, keyword)


def _save(ds: FileDataset, stem: Path, part10: bool) -> Path:
    if part10:
        path = stem.with_name(stem.name + ".dcm")
        ds.save_as(path, enforce_file_format=True)
    else:
        path = stem
        ds.preamble = None
        ds.file_meta = FileMetaDataset()
        ds.save_as(path, implicit_vr=True, little_endian=True, enforce_file_format=False)
    return path


def write_ct_series(
    folder: str | Path,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    modality: str = "CT",
    rescale: tuple[float, float] | None = (1.0, -1024.0),
    kernel: str | None = "H30s",
    series_uid: str | None = None,
    study_uid: str | None = None,
    description: str = "Head 5mm",
    series_number: int = 2,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    tilt_deg: float = 0.0,
    slice_z: Sequence[float] | None = None,
    origin: tuple[float, float, float] = (-16.0, -16.0, 0.0),
    slice_thickness: float | None = None,
    multiframe: bool = False,
    tags: Mapping[str, object] | None = None,
    omit_tags: Iterable[str] = (),
    prefix: str | None = None,
    part10: bool = True,
) -> WrittenSeries:
    """Write ``hu`` ([z, y, x], HU) as a DICOM series in ``folder`` (created if needed).

    spacing: (table increment between slices, row spacing, column spacing) in mm; on a tilted
        series the slices' distance along their normal is ``spacing[0] * cos(tilt)``.
    modality: "CT" (CT Image Storage) or e.g. "MR" (MR Image Storage, same pixels).
    rescale: (slope, intercept); None writes signed HU with no RescaleSlope/RescaleIntercept.
    kernel: ConvolutionKernel, or None to leave it out.
    tilt_deg: GantryDetectorTilt; tilts the image plane and leaves the IPPs on the table axis.
    slice_z: explicit table positions (mm) of the slices, for missing slices or uneven gaps.
    slice_thickness: SliceThickness tag (default spacing[0]).
    multiframe: one Enhanced CT file with per-frame positions instead of one file per slice.
    tags: DICOM keyword -> value set on every file after the defaults (date-times, description, ...);
        the date-time defaults are `DEFAULT_DATETIME_TAGS`.
    omit_tags: keywords deleted from every file (e.g. "AcquisitionDate", "RescaleIntercept").
    prefix: file name prefix (default: a piece of the series UID), so several series share a folder.
    part10: False writes bare datasets (implicit VR, no preamble, no "DICM" marker, no .dcm suffix),
        as old scanners and some PACS exports do.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hu = np.asarray(hu, dtype=float)
    if hu.ndim != 3:
        raise ValueError(f"hu must be [z, y, x], got shape {hu.shape}")
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    prefix = prefix or series_uid.rsplit(".", 1)[-1][-8:]
    row, col = slice_axes(tilt_deg)
    z = _slice_z(hu.shape[0], spacing[0], slice_z)
    positions = np.asarray(origin, dtype=float)[None, :] + z[:, None] * np.array([0.0, 0.0, 1.0])
    iop = [_ds(v) for v in (*row, *col)]
    pixel_spacing = [_ds(spacing[1]), _ds(spacing[2])]
    thickness = _ds(slice_thickness if slice_thickness is not None else spacing[0])
    stored, signed = _stored_values(hu, rescale)
    all_tags = {**DEFAULT_DATETIME_TAGS, **(tags or {})}

    def common(ds: Dataset) -> None:
        ds.Modality = modality
        ds.SeriesDescription = description
        ds.SeriesNumber = series_number
        ds.ImageType = list(image_type)
        ds.GantryDetectorTilt = _ds(tilt_deg)
        if kernel is not None:
            ds.ConvolutionKernel = kernel

    if multiframe:
        ds = _base_dataset(ENHANCED_CT_IMAGE_STORAGE, series_uid, study_uid, frame_uid)
        common(ds)
        ds.InstanceNumber = 1
        ds.NumberOfFrames = hu.shape[0]
        shared = Dataset()
        measures = Dataset()
        measures.PixelSpacing = pixel_spacing
        measures.SliceThickness = thickness
        shared.PixelMeasuresSequence = DicomSequence([measures])
        orientation = Dataset()
        orientation.ImageOrientationPatient = iop
        shared.PlaneOrientationSequence = DicomSequence([orientation])
        if rescale is not None:
            transform = Dataset()
            transform.RescaleSlope = _ds(rescale[0])
            transform.RescaleIntercept = _ds(rescale[1])
            transform.RescaleType = "HU"
            shared.PixelValueTransformationSequence = DicomSequence([transform])
        ds.SharedFunctionalGroupsSequence = DicomSequence([shared])
        frames = []
        for k in range(hu.shape[0]):
            frame = Dataset()
            position = Dataset()
            position.ImagePositionPatient = [_ds(v) for v in positions[k]]
            frame.PlanePositionSequence = DicomSequence([position])
            frames.append(frame)
        ds.PerFrameFunctionalGroupsSequence = DicomSequence(frames)
        _set_pixels(ds, stored, signed)
        _apply_tags(ds, all_tags, omit_tags)
        path = _save(ds, folder / f"{prefix}_mf", part10)
        files = (path,)
    else:
        sop_class = CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE
        written = []
        for k in range(hu.shape[0]):
            ds = _base_dataset(sop_class, series_uid, study_uid, frame_uid)
            common(ds)
            ds.InstanceNumber = k + 1
            ds.ImagePositionPatient = [_ds(v) for v in positions[k]]
            ds.ImageOrientationPatient = iop
            ds.PixelSpacing = pixel_spacing
            ds.SliceThickness = thickness
            if rescale is not None:
                ds.RescaleSlope = _ds(rescale[0])
                ds.RescaleIntercept = _ds(rescale[1])
                ds.RescaleType = "HU"
            _set_pixels(ds, stored[k], signed)
            _apply_tags(ds, all_tags, omit_tags)
            path = _save(ds, folder / f"{prefix}_{k:04d}", part10)
            written.append(path)
        files = tuple(written)
    return WrittenSeries(
        folder=folder,
        files=files,
        series_uid=series_uid,
        study_uid=study_uid,
        positions=positions,
        row=tuple(float(v) for v in row),
        col=tuple(float(v) for v in col),
    )


def write_scout(
    folder: str | Path,
    *,
    size: int = 64,
    study_uid: str | None = None,
    series_uid: str | None = None,
    n_images: int = 1,
) -> WrittenSeries:
    """Write a CT localizer (scout): ``n_images`` 2D coronal projection images, ImageType LOCALIZER."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    files = []
    positions = []
    for k in range(n_images):
        ds = _base_dataset(CT_IMAGE_STORAGE, series_uid, study_uid, frame_uid)
        ds.Modality = "CT"
        ds.SeriesDescription = "Topogram"
        ds.SeriesNumber = 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "LOCALIZER"]
        ds.InstanceNumber = k + 1
        position = [-128.0, 0.0, 200.0]
        positions.append(position)
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "0", "-1"]
        ds.PixelSpacing = ["4", "4"]
        ds.RescaleSlope = "1"
        ds.RescaleIntercept = "-1024"
        for keyword, value in DEFAULT_DATETIME_TAGS.items():
            setattr(ds, keyword, value)
        _set_pixels(ds, np.full((size, size), 1024, dtype=np.uint16), False)
        path = folder / f"scout_{series_uid.rsplit('.', 1)[-1][-8:]}_{k}.dcm"
        ds.save_as(path, enforce_file_format=True)
        files.append(path)
    return WrittenSeries(
        folder=folder,
        files=tuple(files),
        series_uid=series_uid,
        study_uid=study_uid,
        positions=np.asarray(positions, dtype=float),
        row=(1.0, 0.0, 0.0),
        col=(0.0, 0.0, -1.0),
    )


def read_tags(path: str | Path) -> pydicom.Dataset:
    """The header of one written file (pydicom), for tests that want to check or alter a tag."""
    return pydicom.dcmread(path, stop_before_pixels=True)


def today_at(hour: int, minute: int = 0) -> dt.datetime:
    """2024-03-01 at hour:minute, the date of `DEFAULT_DATETIME_TAGS`, as a naive datetime."""
    return dt.datetime(2024, 3, 1, hour, minute)
