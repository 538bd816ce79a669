"""Write a phantom as a DICOM CT series (one file per slice) with pydicom.

UIDs are derived from the trial seed and patient id (``2.25.<integer>`` form), so files are
identical for a given seed; no wall-clock time is written anywhere.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import numpy as np
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

__all__ = ["derived_uid", "write_dicom_series"]


def derived_uid(*parts: object) -> str:
    """A DICOM UID that depends only on ``parts`` (2.25 root + 128-bit hash, as for UUID-based UIDs).

    >>> derived_uid("seed", 0) == derived_uid("seed", 0), derived_uid("a").startswith("2.25.")
    (True, True)
    """
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return "2.25." + str(int.from_bytes(digest[:16], "big"))


def write_dicom_series(
    hu: np.ndarray,
    *,
    spacing: tuple[float, float, float],
    origin: tuple[float, float, float],
    folder: str | Path,
    patient_id: str,
    study_uid: str,
    series_uid: str,
    acquired: dt.datetime,
    slice_mm: float,
    signed: bool = True,
    manufacturer: str = "",
    kernel: str = "",
    site: str = "",
    tilt_deg: float = 0.0,
    table: np.ndarray | None = None,
) -> list[Path]:
    """Write ``hu`` ([z, y, x] HU, axial, identity orientation) as one CT file per slice.

    spacing: (z, y, x) mm; origin: LPS (x, y, z) mm of voxel [0, 0, 0]. Pixels are stored as
    int16 with intercept 0 (``signed``) or uint16 with intercept -1024, slope 1.
    tilt_deg: a gantry tilt: the head is sampled on tilted planes (`corelab.synth.tilt.tilted_stack`)
    and written with their orientation and GantryDetectorTilt, slices moving along the table axis
    as on a scanner; ``table``: its slices' table positions (`corelab.synth.tilt.plane_table`).
    Returns the written paths (``IM0001.dcm`` ...).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    col = (0.0, 1.0, 0.0)
    positions = [(origin[0], origin[1], origin[2] + k * spacing[0]) for k in range(hu.shape[0])]
    if tilt_deg:
        from corelab.synth.tilt import tilted_stack

        hu, positions, col = tilted_stack(hu, spacing, origin, tilt_deg, table)
    intercept = 0.0 if signed else -1024.0
    stored = np.rint(hu - intercept)
    stored = stored.astype(np.int16) if signed else np.clip(stored, 0, 65535).astype(np.uint16)
    frame_uid = derived_uid(series_uid, "frame")
    date, time = acquired.strftime("%Y%m%d"), acquired.strftime("%H%M%S")
    paths = []
    for k in range(hu.shape[0]):
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = CTImageStorage
        meta.MediaStorageSOPInstanceUID = derived_uid(series_uid, k)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        path = folder / f"IM{k + 1:04d}.dcm"
        ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.Modality = "CT"
        ds.PatientID, ds.PatientName = patient_id, f"SYNTH^{patient_id}"
        ds.PatientPosition = "HFS"
        ds.BodyPartExamined = "HEAD"
        ds.StudyDescription, ds.SeriesDescription = "CT HEAD WO CONTRAST", f"Head {slice_mm:g}mm"
        ds.Manufacturer, ds.ConvolutionKernel, ds.InstitutionName = manufacturer, kernel, site
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = date
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = time
        ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "1", 2, k + 1
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP, ds.GantryDetectorTilt = 120, f"{tilt_deg:g}" if tilt_deg else 0
        ds.SliceThickness = f"{slice_mm:g}"
        ds.PixelSpacing = [f"{spacing[1]:.6f}", f"{spacing[2]:.6f}"]
        # Untilted series keep the integer cosines they always had (same bytes for the same seed).
        ds.ImageOrientationPatient = [1, 0, 0, *(f"{c:.8f}" for c in col)] if tilt_deg else [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [f"{c:.4f}" for c in positions[k]]
        ds.SliceLocation = f"{positions[k][2]:.4f}"
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[2]
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
        ds.PixelRepresentation = 1 if signed else 0
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = f"{intercept:g}", "1", "HU"
        ds.WindowCenter, ds.WindowWidth = "40", "80"
        ds.PixelData = stored[k].tobytes()
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths
