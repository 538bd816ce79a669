"""DICOM SEG of a label mask (written with highdicom), beside ``masks/<patient_id>.nii.gz``, and its reader.

A SEG is what a PACS or a DICOM viewer attaches to the patient's study, so a core-lab reader can
open the labels over the scan without a NIfTI tool. `build_seg` makes one from the label map of a
DICOM input and `write_seg` saves it; `read_seg` reads one back as a label `Volume`.

What it holds:

- one BINARY segment per class present in the mask, numbered 1, 2, ... in label order; each coded
  from DICOM's segmentation property categories and types (category "Morphologically Abnormal
  Structure", SCT 49755003; type "Infarct", SCT 55641003, with the modifier "Severe", "Moderate" or
  "Mild" for the severe, intermediate and subtle hypodensity classes, or type "Hemorrhage", SCT
  50960005), anatomic region "Brain", and a label and description naming the class and its HU
  range (`SEGMENT_CLASSES`);
- the algorithm: name "corelab", family "Artificial Intelligence", version corelab's, the model's
  version in the algorithm parameters and the software versions;
- references to the source series and every one of its instances. When the mask lies on the source
  slices (the usual case) the frames take their plane positions from the source images and each
  frame names its source image (Spatial Locations Preserved YES). When reading moved the slices (a
  gantry tilt corrected, uneven spacing resampled) the frames lie on the mask's own grid, as in the
  NIfTI mask (highdicom still names the source image whose plane a frame lies in, with Spatial
  Locations Preserved NO), and `DicomSeg.note` says so (the pipeline puts it in the scan's read_notes).

Privacy: a SEG must sit in its study, so the Patient and General Study attributes that attach it
there are copied from the source: PatientName, PatientID, PatientBirthDate, PatientSex,
StudyInstanceUID, StudyDate, StudyTime, StudyID, AccessionNumber and ReferringPhysicianName. Nothing
else of the source's header is passed to highdicom (no institution, station, operator, series
description or other patient fields), so the SEG is the one corelab output that carries the
source's identifiers.

Example::

    scan = read_scan("P017/CT")            # a DICOM series
    labels = Volume(array=mask, spacing=scan.spacing, origin=scan.origin, direction=scan.direction,
                    meta=scan.meta)
    write_seg(build_seg(labels, model_version="corelab-0.1.0+cfaec82d"), "P017.seg.dcm")
    read_seg("P017.seg.dcm").array         # the same labels, z running superior
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from corelab import __version__
from corelab.config import CLASS_RANGES_HU, LABELS
from corelab.errors import CorelabError, ScanError
from corelab.io.read import orient_superior
from corelab.io.volume import ScanMeta, Volume, on_stored_grid

__all__ = [
    "SEG_SUFFIX",
    "SEG_SERIES_NUMBER",
    "INFARCT",
    "SegmentClass",
    "SEGMENT_CLASSES",
    "DicomSeg",
    "SegError",
    "EmptySegError",
    "SegWriteError",
    "SegReadError",
    "build_seg",
    "write_seg",
    "read_seg",
]

SEG_SUFFIX = ".seg.dcm"
SEG_SERIES_NUMBER = 900  # SeriesNumber of corelab's SEG series: high, so viewers list it after the scanner's

# SNOMED CT "Infarct" (CID 7151, Segmentation Property Types) is missing from pydicom's code
# dictionary, so it is the one code spelled out here.
INFARCT = Code("55641003", "SCT", "Infarct")


@dataclass(frozen=True)
class SegmentClass:
    """How one corelab label is described in a SEG: segment label and description (text), property
    type, and the type's modifier (None for hemorrhage)."""

    label: str
    description: str
    property_type: Code
    modifier: Code | None


def _infarct_class(name: str, modifier: Code) -> SegmentClass:
    low, high = CLASS_RANGES_HU[name]
    return SegmentClass(
        label=f"{name.capitalize()} hypodense infarct",
        description=f"Infarct of {name} hypodensity (mean {low:g}-{high:g} HU, Sales Barros et al. 2020)",
        property_type=INFARCT,
        modifier=modifier,
    )


# Severity modifiers (SNOMED CT Severe / Moderate / Mild) for the paper's three hypodensity classes.
SEGMENT_CLASSES: dict[int, SegmentClass] = {
    LABELS["severe"]: _infarct_class("severe", codes.SCT.Severe),
    LABELS["intermediate"]: _infarct_class("intermediate", codes.SCT.Moderate),
    LABELS["subtle"]: _infarct_class("subtle", codes.SCT.Mild),
    LABELS["hemorrhage"]: SegmentClass(
        label="Hemorrhage",
        description="Hemorrhage within or beside the infarct (corelab's hemorrhage network)",
        property_type=codes.SCT.Hemorrhage,
        modifier=None,
    ),
}

# Patient and General Study attributes a SEG needs to attach to the study (see the module docstring).
_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyInstanceUID", "StudyDate", "StudyTime",
    "StudyID", "AccessionNumber", "ReferringPhysicianName",
)
# What highdicom reads to reference the source instances and place the frames.
_IMAGE_KEYWORDS = (
    "SpecificCharacterSet", "SOPClassUID", "SOPInstanceUID", "Modality", "SeriesInstanceUID", "FrameOfReferenceUID",
    "Rows", "Columns", "NumberOfFrames", "ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
    "SliceThickness", "SpacingBetweenSlices", "SharedFunctionalGroupsSequence", "PerFrameFunctionalGroupsSequence",
)

# A source frame lies on a mask slice when its position is within these fractions of a voxel.
_SLICE_TOLERANCE = 0.25
_INPLANE_TOLERANCE = 0.05
_COSINE_TOLERANCE = 1e-4


class SegError(CorelabError):
    """No DICOM SEG could be made; the message (one sentence) says why, for the scan's read_notes."""


class EmptySegError(SegError):
    """The mask labels no voxel: a SEG needs at least one segment, so none is written."""


class SegWriteError(SegError):
    """The source series cannot be read again, or highdicom refused it."""


class SegReadError(ScanError):
    """A file is not a DICOM SEG corelab can turn into labels."""


@dataclass(frozen=True, eq=False)
class DicomSeg:
    """A SEG made by `build_seg`, not yet saved.

    dataset: the highdicom Segmentation. labels: corelab labels of its segments, in segment order.
    on_source_geometry: True when its frames are the source images' planes. note: "" then, else a
    sentence for the scan's read_notes saying on which grid the frames lie.
    """

    dataset: hd.seg.Segmentation
    labels: tuple[int, ...]
    on_source_geometry: bool
    note: str


def build_seg(labels: Volume, *, model_version: str, corelab_version: str = __version__) -> DicomSeg:
    """A BINARY DICOM SEG of ``labels`` (corelab labels 0-4 on a DICOM input's grid, ``meta`` as read).

    labels: the mask as `corelab.pipeline.scan.ScanResult.label_volume` gives it: the scan's grid
        and meta, whose ``source_files`` name the source series' DICOM files (re-read here, headers
        only) and whose ``stored_grid``, ``tilt_deg`` and ``resampled_spacing`` say how reading
        placed the slices.
    model_version: the model set's version (`corelab.segment.folder.ModelSet.version`).

    Raises `EmptySegError` when no voxel is labelled, `SegWriteError` when the input was not DICOM,
    its files cannot be read again, or highdicom refuses them.
    """
    meta = labels.meta
    if not meta.source_files:
        raise SegWriteError(f"No DICOM SEG was written: the scan {meta.source or '(unnamed)'} is not a DICOM series.")
    values = [int(v) for v in np.unique(labels.array) if v]
    unknown = [v for v in values if v not in SEGMENT_CLASSES]
    if unknown:
        raise SegWriteError(f"No DICOM SEG was written: the mask holds values {unknown} that are not corelab labels.")
    present = tuple(values)
    if not present:
        raise EmptySegError(
            "No DICOM SEG was written: the mask labels no voxel, and a DICOM SEG needs at least one segment."
        )
    sources = [_source_dataset(path, meta.series_uid) for path in meta.source_files]
    grid = on_stored_grid(labels)
    frames = _source_frames(grid, sources, meta.tilt_deg, meta.resampled_spacing)
    stack = np.stack([grid.array == value for value in present], axis=-1).astype(np.uint8)
    placement: dict = {}
    if frames is not None:
        stack = stack[frames]
        note = ""
    else:
        placement = _grid_placement(grid)
        note = _off_source_note(meta.tilt_deg, meta.resampled_spacing)
    algorithm = hd.AlgorithmIdentificationSequence(
        name="corelab", family=codes.cid7162.ArtificialIntelligence, version=corelab_version,
        parameters={"model_version": model_version},
    )
    descriptions = [_segment_description(number, SEGMENT_CLASSES[value], algorithm)
                    for number, value in enumerate(present, start=1)]
    try:
        dataset = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=stack,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=descriptions,
            series_instance_uid=hd.UID(),
            series_number=SEG_SERIES_NUMBER,
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="corelab",
            manufacturer_model_name="corelab",
            software_versions=[corelab_version, model_version],
            # Software has no serial number; the model version names this installation's networks.
            device_serial_number=model_version,
            content_label="CORELAB",
            content_description="Automated infarct segmentation",
            series_description="corelab infarct segmentation",
            **placement,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        reason = " ".join(str(error).split()).rstrip(".") or type(error).__name__
        raise SegWriteError(f"No DICOM SEG was written: highdicom refused the source series ({reason}).") from None
    dataset.ContentCreatorName = ""  # type 2 (present, may be empty); no person drew an automated result
    return DicomSeg(dataset=dataset, labels=present, on_source_geometry=frames is not None, note=note)


def write_seg(seg: DicomSeg, path: str | Path) -> None:
    """Save a `build_seg` result as a DICOM Part 10 file (the caller chooses the name, e.g. a
    temporary one moved into place)."""
    seg.dataset.save_as(str(path), enforce_file_format=True)


def _source_dataset(path: str, series_uid: str) -> pydicom.Dataset:
    """The header of one source file, reduced to the attributes in `_STUDY_KEYWORDS` and `_IMAGE_KEYWORDS`."""
    try:
        # force: series without the Part 10 preamble are read by corelab, so they are re-read here too
        full = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except (OSError, InvalidDicomError, EOFError, ValueError, KeyError, TypeError):
        raise SegWriteError(f"No DICOM SEG was written: the source file {path} could not be read again.") from None
    if series_uid and str(full.get("SeriesInstanceUID", "")) != series_uid:
        raise SegWriteError(
            f"No DICOM SEG was written: the source file {path} no longer belongs to series {series_uid}."
        )
    if not full.get("StudyInstanceUID") or not full.get("SOPInstanceUID"):
        raise SegWriteError(f"No DICOM SEG was written: the source file {path} has no study or instance UID.")
    kept = pydicom.Dataset()
    for keyword in _IMAGE_KEYWORDS:
        if keyword in full:
            kept[keyword] = full[keyword]
    for keyword in _STUDY_KEYWORDS:
        # Type 2 attributes: present and empty when the source lacks them (highdicom reads them all).
        if keyword in full:
            kept[keyword] = full[keyword]
        else:
            setattr(kept, keyword, "")
    return kept


def _frame_planes(ds: pydicom.Dataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(position, 6 orientation cosines, pixel spacing) of every frame of one source image."""

    def group_value(groups, sequence: str, keyword: str):
        for item in groups:
            items = item.get(sequence) if item is not None else None
            if items and keyword in items[0]:
                return items[0][keyword].value
        return None

    if "PerFrameFunctionalGroupsSequence" in ds:
        shared = ds.get("SharedFunctionalGroupsSequence", [None])[0]
        planes = []
        for frame in ds.PerFrameFunctionalGroupsSequence:
            position = group_value((frame, shared), "PlanePositionSequence", "ImagePositionPatient")
            orientation = group_value((frame, shared), "PlaneOrientationSequence", "ImageOrientationPatient")
            spacing = group_value((frame, shared), "PixelMeasuresSequence", "PixelSpacing")
            if position is None or orientation is None or spacing is None:
                return []
            planes.append((np.asarray(position, float), np.asarray(orientation, float), np.asarray(spacing, float)))
        return planes
    if not all(k in ds for k in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing")):
        return []
    return [(np.asarray(ds.ImagePositionPatient, float), np.asarray(ds.ImageOrientationPatient, float),
             np.asarray(ds.PixelSpacing, float))]


def _source_frames(grid: Volume, sources: list[pydicom.Dataset], tilt_deg: float,
                   resampled: bool) -> np.ndarray | None:
    """For each source frame in order, the grid slice that holds exactly its pixels; None when the
    grid is not the source slices' geometry (slices moved by reading, or positions that do not match)."""
    if tilt_deg or resampled:
        return None
    if len(sources) > 1 and any("PerFrameFunctionalGroupsSequence" in ds for ds in sources):
        return None  # highdicom takes one multi-frame image or single-frame images, not a mix
    nz, ny, nx = grid.array.shape
    axes = np.asarray(grid.direction, dtype=float).reshape(3, 3)  # columns: x (row cosine), y, z
    origin = np.asarray(grid.origin, dtype=float)
    dz, dy, dx = grid.spacing
    slices = []
    for ds in sources:
        planes = _frame_planes(ds)
        if not planes or (int(ds.get("Rows", 0)), int(ds.get("Columns", 0))) != (ny, nx):
            return None
        for position, orientation, pixel in planes:
            row = orientation[:3] / np.linalg.norm(orientation[:3])
            col = orientation[3:] / np.linalg.norm(orientation[3:])
            if row @ axes[:, 0] < 1 - _COSINE_TOLERANCE or col @ axes[:, 1] < 1 - _COSINE_TOLERANCE:
                return None
            if not np.allclose(pixel, (dy, dx), rtol=1e-4):
                return None
            offset = position - origin
            i, j, k = offset @ axes[:, 1] / dy, offset @ axes[:, 0] / dx, offset @ axes[:, 2] / dz
            if max(abs(i), abs(j)) > _INPLANE_TOLERANCE or abs(k - round(k)) > _SLICE_TOLERANCE:
                return None
            slices.append(int(round(k)))
    if sorted(slices) != list(range(nz)):
        return None
    return np.asarray(slices)


def _grid_placement(grid: Volume) -> dict:
    """highdicom's plane positions, orientation and pixel measures of every slice of ``grid``."""
    axes = np.asarray(grid.direction, dtype=float).reshape(3, 3)
    origin = np.asarray(grid.origin, dtype=float)
    dz, dy, dx = (float(s) for s in grid.spacing)
    return {
        "plane_positions": [
            hd.PlanePositionSequence(hd.CoordinateSystemNames.PATIENT, tuple(origin + k * dz * axes[:, 2]))
            for k in range(grid.array.shape[0])
        ],
        "plane_orientation": hd.PlaneOrientationSequence(
            hd.CoordinateSystemNames.PATIENT, tuple(axes[:, 0]) + tuple(axes[:, 1])
        ),
        "pixel_measures": hd.PixelMeasuresSequence(pixel_spacing=(dy, dx), slice_thickness=dz,
                                                   spacing_between_slices=dz),
    }


def _off_source_note(tilt_deg: float, resampled: bool) -> str:
    if tilt_deg:
        why = f"the gantry tilt of {tilt_deg:.1f} degrees was corrected, so the mask's slices are not the source's"
    elif resampled:
        why = "uneven slice spacing was resampled, so the mask's slices are not the source's"
    else:
        why = "its slices do not match the source images' positions"
    return (f"The DICOM SEG lies on the mask's own grid, not on the source slices' geometry ({why}): it references "
            "the source series, but its frames do not coincide with the source images.")


def _segment_description(number: int, cls: SegmentClass,
                         algorithm: hd.AlgorithmIdentificationSequence) -> hd.seg.SegmentDescription:
    description = hd.seg.SegmentDescription(
        segment_number=number,
        segment_label=cls.label,
        segmented_property_category=codes.cid7150.MorphologicallyAbnormalStructure,
        segmented_property_type=cls.property_type,
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=algorithm,
        anatomic_regions=[codes.SCT.Brain],
    )
    description.SegmentDescription = cls.description
    if cls.modifier is not None:
        description.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
            hd.sr.CodedConcept.from_code(cls.modifier)
        ]
    return description


def _corelab_label(item: pydicom.Dataset) -> int | None:
    """The corelab label a segment's codes name (`SEGMENT_CLASSES`), or None."""
    types = item.get("SegmentedPropertyTypeCodeSequence") or []
    if not types:
        return None
    kind = types[0]
    modifiers = kind.get("SegmentedPropertyTypeModifierCodeSequence") or []
    modifier = (str(modifiers[0].CodeValue), str(modifiers[0].CodingSchemeDesignator)) if modifiers else None
    for value, cls in SEGMENT_CLASSES.items():
        same_type = (str(kind.CodeValue), str(kind.CodingSchemeDesignator)) == (
            cls.property_type.value, cls.property_type.scheme_designator)
        wanted = (cls.modifier.value, cls.modifier.scheme_designator) if cls.modifier is not None else None
        if same_type and (cls.modifier is None or modifier == wanted):
            return value
    return None


def seg_segments(path: str | Path) -> list[tuple[int, str, int | None]]:
    """(segment number, SegmentLabel, the corelab label its codes name or None) of each segment of
    a DICOM SEG, read without its pixels."""
    try:
        ds = pydicom.dcmread(str(path), stop_before_pixels=True)
        items = list(ds.SegmentSequence)
    except (OSError, InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError):
        raise SegReadError(f"The file {path} is not a readable DICOM SEG.") from None
    return [(int(item.SegmentNumber), str(item.get("SegmentLabel", "")), _corelab_label(item))
            for item in items if int(item.SegmentNumber) > 0]


def read_seg(path: str | Path, *, by_segment_number: bool = False, labels: Mapping[int, int] | None = None) -> Volume:
    """A DICOM SEG as a uint8 label `Volume`, z running superior (as `corelab.io.read_mask`).

    Segments become corelab labels by their codes (`SEGMENT_CLASSES`: infarct with a severity
    modifier 1-3, hemorrhage 4); a segment whose codes name none of them raises `SegReadError`.
    ``by_segment_number`` instead labels each voxel with its segment number, for SEGs from other
    tools (nonzero = segmented). ``labels`` maps segment numbers to the labels to give them instead
    (segments it leaves out are not read; `corelab.io.reference` names other tools' segments this
    way). Where segments overlap, the higher label wins (hemorrhage over
    subtle over intermediate over severe, as corelab's masks). BINARY, FRACTIONAL (a voxel counts
    from 0.5) and LABELMAP SEGs are read.

    The grid spans the SEG's own frames: slices without a labelled voxel are usually not stored, so
    put the labels on a scan with `corelab.io.mask_onto` (physical positions are exact).
    """
    try:
        seg = hd.seg.segread(str(path))
    except (OSError, InvalidDicomError, EOFError, ValueError, KeyError, TypeError, AttributeError):
        raise SegReadError(f"The file {path} is not a readable DICOM SEG.") from None
    numbers = [int(item.SegmentNumber) for item in seg.SegmentSequence if int(item.SegmentNumber) > 0]
    if labels is not None:
        mapping = {n: int(labels[n]) for n in numbers if n in labels}
        numbers = list(mapping)
        if not numbers:
            raise SegReadError(f"None of the segments of the DICOM SEG {path} was chosen.")
    elif by_segment_number:
        mapping = {n: n for n in numbers}
    else:
        mapping = {}
        for item in seg.SegmentSequence:
            if int(item.SegmentNumber) == 0:
                continue  # a LABELMAP's background
            label = _corelab_label(item)
            if label is None:
                name = str(item.get("SegmentLabel", "")) or "unnamed"
                raise SegReadError(
                    f"Segment {int(item.SegmentNumber)} ({name}) of the DICOM SEG {path} is not an infarct class or"
                    " hemorrhage that corelab knows by its codes."
                )
            mapping[int(item.SegmentNumber)] = label
    if max(mapping.values(), default=0) > 255:
        raise SegReadError(f"The DICOM SEG {path} has more than 255 segments, too many for a uint8 label map.")
    try:
        volume = seg.get_volume(segment_numbers=numbers, combine_segments=False)
    except (ValueError, RuntimeError) as error:
        reason = " ".join(str(error).split()).rstrip(".")
        raise SegReadError(f"The frames of the DICOM SEG {path} do not form a regular volume ({reason}).") from None
    array = volume.array
    if array.ndim == 3:  # one segment: no channel axis
        array = array[..., None]
    out = np.zeros(array.shape[:3], dtype=np.uint8)
    for index, number in enumerate(numbers):
        claimed = array[..., index] >= 0.5 if array.dtype.kind == "f" else array[..., index] > 0
        out[claimed] = np.maximum(out[claimed], mapping[number])
    # highdicom's affine maps (slice, row, column) indices to patient LPS mm; a Volume's axes are
    # [z, y, x] = the same order, with its direction given for (x, y, z).
    affine = np.asarray(volume.affine, dtype=float)
    steps = [affine[:3, axis] for axis in (2, 1, 0)]  # x (column), y (row), z (slice)
    spacing = [float(np.linalg.norm(step)) for step in steps]
    direction = np.stack([step / size for step, size in zip(steps, spacing)], axis=1)
    labels = Volume(
        array=out,
        spacing=(spacing[2], spacing[1], spacing[0]),
        origin=tuple(float(v) for v in affine[:3, 3]),
        direction=tuple(float(v) for v in direction.ravel()),
        meta=ScanMeta(source=str(path), modality="SEG", series_uid=str(seg.SeriesInstanceUID)),
    )
    return orient_superior(labels)
