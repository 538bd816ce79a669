"""Reference reads (manual delineations) in every format readers produce, for `compare` and `train`.

One rule finds a patient's read in a folder of reads: ``<patient_id>`` plus one of
`REFERENCE_SUFFIXES`, or a folder ``<patient_id>/``; two reads of one patient are an error that
names both (the comparison would otherwise depend on which one is picked).

Formats, and what counts as the read:

- NIfTI, NRRD, MHA/MHD: a label image; nonzero = infarct, labels kept (4 = hemorrhage).
- Slicer segmentation (``.seg.nrrd``, or any NRRD carrying Slicer's ``Segment<i>_*`` fields):
  segments in one or several layers; a segment's voxels are those of its layer holding its
  ``LabelValue``.
- DICOM SEG (``.seg.dcm``, a ``.dcm`` file or in the patient's folder; highdicom): segments by
  their codes when they are corelab's classes (`corelab.io.seg`), else by their names (below).
- RTSTRUCT (a ``.dcm`` file or in the patient's folder): closed planar contours drawn onto the
  scan's grid by the rule in `corelab.io.rtstruct`; it needs the scan (``grid``).
- A DICOM image folder (a label series stored as pixel values) with no SEG or RTSTRUCT in it.

Segments and ROIs from other tools become labels by name: a name containing "hemorrhag" or
"haemorrhag" is hemorrhage (4: "Hemorrhage", "hemorrhagic transformation"), one of corelab's own segment labels ("Severe hypodense infarct",
...) its class (1-3), any other name infarct (1). ``segments`` (names, case-insensitive) keeps
only the segments so named, and names the ones present when none matches; without it every segment
is read, except RTSTRUCT ROIs whose RT ROI Interpreted Type is EXTERNAL (the body outline) and
segments whose whole name is normal anatomy (`ANATOMY_NAMES`: "Brain", "Ventricles", "Skull", ...;
contouring tools keep such outlines beside the lesion, and read as infarct they would turn a brain
into one): the read's note names what was left out and why, and a read holding nothing else is an
error that says to name the segment. Where segments overlap the higher label wins, as in corelab's
own masks.

A read on another grid than the scan is put on it by `corelab.io.mask_onto` (nearest neighbour,
labels never blended); the caller does that, since the read's own volume is reported too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.errors import InvalidDicomError

from corelab.config import LABELS
from corelab.io.dicom_headers import is_dicom_file
from corelab.io.errors import (
    MAX_VOXELS,
    NotVolumeError,
    ScanError,
    UnreadableScanError,
    too_large,
)
from corelab.io.files import as_label_array, image_suffix
from corelab.io.read import orient_superior, read_mask
from corelab.io.volume import ScanMeta, Volume, from_sitk

__all__ = ["REFERENCE_SUFFIXES", "ANATOMY_NAMES", "ReferenceReadError", "ContoursNeedScanError", "ReferenceRead",
           "find_reference", "reference_ids", "read_reference", "label_for_name"]

# Longest first, so "P001.seg.nrrd" is found as P001's Slicer segmentation, not as patient "P001.seg".
REFERENCE_SUFFIXES = (".seg.nrrd", ".seg.dcm", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm")
_HEMORRHAGE_WORDS = ("hemorrhag", "haemorrhag")
_EXTERNAL = "EXTERNAL"
# Whole segment names (case-insensitive; spaces, "_" and "-" alike) that are normal anatomy, not a lesion.
# A side ("Left", "R"), an ordinal ("4th") or "whole" may come first, and "mask", "outline", "ROI" or
# the like after: "Brain_Mask", "Left ventricle", "4th ventricle" are anatomy; "Brain infarct" is not.
ANATOMY_NAMES = re.compile(
    r"((left|right|lt|rt|l|r)[ _-]?)?((3rd|4th|third|fourth)[ _-]?)?(whole[ _-]?)?"
    r"(brain|cerebrum|cerebellum|brainstem|brain[ _-]?stem|(lateral[ _-]?)?ventricles?|csf|skull|bone|"
    r"body|head|external|outline|skin|scalp|midline|falx|intracranial|intracranial[ _-]?(space|region|volume))"
    r"([ _-]?(mask|outline|contour|region|roi|segmentation|seg|label))?",
    re.IGNORECASE)


class ReferenceReadError(ScanError):
    """A reference read cannot be found unambiguously or turned into labels; the message says why."""


class ContoursNeedScanError(ReferenceReadError):
    """An RTSTRUCT read was given no scan to draw its contours onto."""


@dataclass(frozen=True)
class ReferenceRead:
    """A read as labels: ``volume`` on the read's own grid (an RTSTRUCT's on the scan's), and
    ``note``, a sentence on how a format with segments or contours was read ("" for a label image),
    and ``contours_left_out``, how many of an RTSTRUCT's contours could not be drawn."""

    volume: Volume
    note: str
    contours_left_out: int = 0  # an RTSTRUCT's contours that were not drawn (off the grid, oblique)


def find_reference(folder: Path, patient_id: str) -> Path | None:
    """The one read of ``patient_id`` in ``folder`` (module rule), None when there is none.

    >>> find_reference(Path("/no/such/folder"), "P001") is None
    True
    """
    found = [folder / f"{patient_id}{suffix}" for suffix in REFERENCE_SUFFIXES
             if (folder / f"{patient_id}{suffix}").is_file()]
    if (folder / patient_id).is_dir():
        found.append(folder / patient_id)
    if len(found) > 1:
        raise ReferenceReadError(
            f"Patient {patient_id} has {len(found)} reads in {folder} ({', '.join(p.name for p in found)}); "
            "keep one, so that the comparison does not depend on which is taken."
        )
    return found[0] if found else None


def reference_ids(folder: Path) -> set[str]:
    """Patient ids with a read in ``folder`` by `find_reference`'s rule (files by name less suffix,
    and subfolders)."""
    ids = set()
    for path in folder.iterdir():
        if path.name.startswith((".", "__")):
            continue  # hidden files and archive debris (__MACOSX), not patients
        if path.is_dir():
            ids.add(path.name)
            continue
        suffix = next((s for s in REFERENCE_SUFFIXES if path.name.endswith(s)), None)
        if suffix is not None and len(path.name) > len(suffix):
            ids.add(path.name[: -len(suffix)])
    return ids


def label_for_name(name: str) -> int:
    """The label a segment or ROI of another tool stands for, by its name (module rule).

    >>> label_for_name("Hemorrhagic transformation"), label_for_name("Infarct core")
    (4, 1)
    >>> label_for_name("Haemorrhage"), label_for_name("subtle hypodense infarct")
    (4, 3)
    """
    from corelab.io.seg import SEGMENT_CLASSES

    lowered = name.strip().lower()
    if any(word in lowered for word in _HEMORRHAGE_WORDS):
        return LABELS["hemorrhage"]
    return next((label for label, cls in SEGMENT_CLASSES.items() if cls.label.lower() == lowered), 1)


def _chosen(names: dict[int, str], segments: tuple[str, ...] | None, path: Path, what: str) -> list[int]:
    """Keys of ``names`` kept by ``segments`` (when None: all but normal anatomy, `ANATOMY_NAMES`);
    an error naming what is there when none is."""
    if not segments:
        kept = [key for key, name in names.items() if not _is_anatomy(name)]
        if names and not kept:
            raise ReferenceReadError(
                f"The read {path} holds only normal anatomy ({_listed(list(names.values()))}), no lesion {what}; "
                f"if one of them is the infarct, name it with --reference-segment; a control's read needs an empty "
                f"lesion segment beside them, or no segment at all.")
        return kept
    wanted = {s.strip().lower() for s in segments}
    kept = [key for key, name in names.items() if name.strip().lower() in wanted]
    if not kept:
        present = ", ".join(f'"{n}"' for n in names.values()) or "none"
        raise ReferenceReadError(
            f"The read {path} has no {what} named {' or '.join(repr(s) for s in segments)} (it has {present})."
        )
    return kept


def _listed(names: list[str]) -> str:
    return ", ".join(f'"{n}"' if n else "unnamed" for n in names)


def _is_anatomy(name: str) -> bool:
    """True for a segment whose whole name is normal anatomy.

    >>> [_is_anatomy(n) for n in ("Brain", "lateral_ventricles", "Whole brain", "Brain_Mask", "Left ventricle",
    ...                           "4th ventricle", "Brain infarct", "Infarct", "Lesion mask", "Left MCA infarct")]
    [True, True, True, True, True, True, False, False, False, False]
    """
    return ANATOMY_NAMES.fullmatch(name.strip()) is not None


def _left_out(left: list[str], segments: tuple[str, ...] | None, *, outlines: tuple[str, ...] = ()) -> str:
    """The note's words on segments not read: which, and for anatomy left out by default, why
    (``outlines``: RTSTRUCT body outlines, left out by their type, not their name)."""
    if not left:
        return ""
    anatomy = [name for name in left if not segments and name not in outlines and _is_anatomy(name)]
    return (f"{_listed(left)} left out"
            + (f" ({_listed(anatomy)}: normal anatomy, not read as infarct; --reference-segment names what to read)"
               if anatomy else ""))


# --- Slicer segmentations ------------------------------------------------------------------------------

def _slicer_segments(reader: sitk.ImageFileReader) -> dict[int, tuple[str, int, int]]:
    """Segment index -> (name, layer, label value) from Slicer's ``Segment<i>_*`` header fields."""
    keys = set(reader.GetMetaDataKeys())
    segments, i = {}, 0
    # Slicer before 4.11 wrote one component per segment and no Layer field: segment i is layer i.
    layered = any(key.endswith("_Layer") for key in keys) or reader.GetNumberOfComponents() == 1
    while f"Segment{i}_ID" in keys or f"Segment{i}_LabelValue" in keys:
        fields = {key[len(f"Segment{i}_"):]: reader.GetMetaData(key) for key in keys if key.startswith(f"Segment{i}_")}
        try:
            segments[i] = (fields.get("Name", fields.get("ID", f"Segment {i}")),
                           int(fields.get("Layer", "0")) if layered else i, int(fields.get("LabelValue", "1")))
        except ValueError:
            raise ReferenceReadError(f"Segment {i} of {reader.GetFileName()} has a layer or label value that is "
                                     "not a whole number.") from None
        i += 1
    return segments


def _read_slicer(reader: sitk.ImageFileReader, segments: dict[int, tuple[str, int, int]],
                 chosen: tuple[str, ...] | None) -> ReferenceRead:
    path = Path(reader.GetFileName())
    try:
        image = reader.Execute()
    except RuntimeError:
        raise UnreadableScanError(f"The pixel data of {path} could not be read; it is truncated or corrupt.") from None
    layers = sitk.GetArrayFromImage(image)
    if layers.ndim == 3:
        layers = layers[..., None]  # one layer: a plain label map
    if not any(key.endswith("_Layer") for key in reader.GetMetaDataKeys()) and layers.shape[3] not in (1, len(segments)):
        raise ReferenceReadError(f"{path} has {len(segments)} segments but {layers.shape[3]} components and no "
                                 "layer fields, so its segments cannot be told apart.")
    kept = _chosen({i: name for i, (name, _, _) in segments.items()}, chosen, path, "segment")
    labels = np.zeros(layers.shape[:3], dtype=np.uint8)
    for i in kept:
        name, layer, value = segments[i]
        if not 0 <= layer < layers.shape[3]:
            raise ReferenceReadError(f"Segment {name!r} of {path} is in layer {layer}, which the file does not hold.")
        claimed = layers[..., layer] == value
        labels[claimed] = np.maximum(labels[claimed], label_for_name(name))
    scalar = sitk.GetImageFromArray(labels)
    scalar.CopyInformation(sitk.VectorIndexSelectionCast(image, 0) if image.GetNumberOfComponentsPerPixel() > 1
                           else image)
    volume = from_sitk(scalar, ScanMeta(source=str(path)))
    note = (f"Slicer segmentation: segment{'s' if len(kept) > 1 else ''} "
            f"{_listed([segments[i][0] for i in kept])} read")
    left = [segments[i][0] for i in segments if i not in kept]
    return ReferenceRead(orient_superior(volume), note + (f", {_left_out(left, chosen)}." if left else "."))


def _image_file(path: Path, segments: tuple[str, ...] | None) -> ReferenceRead:
    """A label image file; a NRRD with Slicer's segment fields is read as a Slicer segmentation."""
    if image_suffix(path) in (".nrrd", ".nhdr"):
        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        try:
            reader.ReadImageInformation()
        except RuntimeError:
            raise UnreadableScanError(f"The file {path} could not be read; it is truncated, corrupt or not an image.") \
                from None
        found = _slicer_segments(reader)
        if found:
            size = reader.GetSize()
            if len(size) != 3 or min(size) == 1:
                raise NotVolumeError(f"{path} is not a 3D segmentation ({' x '.join(map(str, size))} voxels).")
            if int(np.prod(size, dtype=np.float64)) > MAX_VOXELS:
                raise too_large(f"The header of {path} claims {' x '.join(map(str, size))} voxels")
            return _read_slicer(reader, found, segments)
    return ReferenceRead(read_mask(path), "")


# --- DICOM: SEG, RTSTRUCT, label series ----------------------------------------------------------------

def _modality(path: Path) -> str:
    try:
        return str(pydicom.dcmread(str(path), stop_before_pixels=True, specific_tags=["Modality"]).get("Modality", ""))
    except (OSError, InvalidDicomError, EOFError, ValueError, TypeError):
        return ""


def _read_seg_reference(path: Path, segments: tuple[str, ...] | None) -> ReferenceRead:
    from corelab.io.seg import read_seg, seg_segments

    listed = seg_segments(path)
    names = {number: name for number, name, _ in listed}
    kept = _chosen(names, segments, path, "segment")
    labels = {number: coded if coded is not None else label_for_name(name)
              for number, name, coded in listed if number in kept}
    volume = read_seg(path, labels=labels)
    left = [name for number, name, _ in listed if number not in kept]
    note = f"DICOM SEG: segment{'s' if len(kept) > 1 else ''} {_listed([names[n] for n in kept])} read"
    return ReferenceRead(volume, note + (f", {_left_out(left, segments)}." if left else "."))


def _read_rtstruct_reference(path: Path, grid: Volume | None, segments: tuple[str, ...] | None,
                             frame_uid: str | None = None) -> ReferenceRead:
    from corelab.io.rtstruct import rasterise, read_structure_set

    if grid is None:
        raise ContoursNeedScanError(
            f"The read {path} is an RT Structure Set (contours), which can only be drawn onto its scan, and the "
            "scan is not available here."
        )
    structure = read_structure_set(path)
    frame = frame_uid if frame_uid is not None else grid.meta.frame_uid
    if frame and structure.frame_uids and frame not in structure.frame_uids:
        raise ReferenceReadError(
            f"The RT Structure Set {path} is in frame of reference {_listed(list(structure.frame_uids))}, not in "
            f'the scan\'s "{frame}": it was drawn on another acquisition and its contours would land in the '
            "wrong place. Export the read from the scan that was segmented."
        )
    rois = structure.rois
    by_number = {roi.number: roi for roi in rois}
    candidates = {roi.number: roi.name for roi in rois
                  if segments or roi.interpreted_type.upper() != _EXTERNAL}
    kept = _chosen(candidates, segments, path, "ROI")
    labels = np.zeros(grid.array.shape, dtype=np.uint8)
    outside = oblique = n_contours = 0
    for number in kept:
        roi = by_number[number]
        drawn = rasterise(roi.contours, grid)
        labels[drawn.mask] = np.maximum(labels[drawn.mask], label_for_name(roi.name))
        outside, oblique = outside + drawn.off_slices, oblique + drawn.oblique
        n_contours += len(roi.contours)
    if n_contours and outside + oblique == n_contours:
        raise ReferenceReadError(f"Every contour of the RT Structure Set {path} lies off the scan's slices.")
    volume = Volume(array=labels, spacing=grid.spacing, origin=grid.origin, direction=grid.direction,
                    meta=ScanMeta(source=str(path), modality="RTSTRUCT"))
    left = [roi.name for roi in rois if roi.number not in kept]
    note = (f"RTSTRUCT: ROI{'s' if len(kept) > 1 else ''} {_listed([by_number[n].name for n in kept])} drawn onto "
            f"the scan's slices ({n_contours} contours, voxel centres inside, even-odd)")
    if outside:
        note += f"; {outside} contours more than half a slice from every slice left out"
    if oblique:
        note += f"; {oblique} contours not parallel to the scan's slices left out"
    outlines = tuple(roi.name for roi in rois if roi.interpreted_type.upper() == _EXTERNAL)
    return ReferenceRead(volume, note + (f"; {_left_out(left, segments, outlines=outlines)}." if left else "."),
                         contours_left_out=outside + oblique)


def _dicom_reference(path: Path, grid: Volume | None, segments: tuple[str, ...] | None,
                     frame_uid: str | None = None) -> ReferenceRead:
    if path.is_file() and not is_dicom_file(path):
        raise ReferenceReadError(f"The file {path} is not a DICOM file (it has no DICOM header).")
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file() and is_dicom_file(p))
    objects = [(p, m) for p in files if (m := _modality(p)) in ("SEG", "RTSTRUCT")]
    if len(objects) > 1:
        raise ReferenceReadError(
            f"The read folder {path} holds {len(objects)} segmentation objects "
            f"({', '.join(p.name for p, _ in objects)}); keep one."
        )
    if objects:
        (found, modality), = objects
        if modality == "SEG":
            return _read_seg_reference(found, segments)
        return _read_rtstruct_reference(found, grid, segments, frame_uid)
    return ReferenceRead(read_mask(path), "")


def read_reference(path: str | Path, *, grid: Volume | None = None, segments: tuple[str, ...] | None = None,
                   frame_uid: str | None = None) -> ReferenceRead:
    """Read a reference in any format the module lists, as labels on its own grid.

    grid: the scan the read belongs to; needed only to draw an RTSTRUCT's contours (on it).
    frame_uid: the scan's FrameOfReferenceUID when ``grid`` does not carry it (a mask's grid; default
    ``grid.meta.frame_uid``); an RTSTRUCT in another frame of reference is refused, "" checks nothing.
    segments: names of the segments / ROIs to keep (case-insensitive); None keeps all (module rule).
    Errors are `ScanError` subclasses with one sentence each (`ReferenceReadError` for this module's).
    """
    path = Path(path)
    if path.is_dir() or path.name.lower().endswith(".dcm") or (path.is_file() and is_dicom_file(path)):
        read = _dicom_reference(path, grid, segments, frame_uid)
    else:
        read = _image_file(path, segments)
    volume = read.volume
    return replace(read, volume=replace(volume, array=as_label_array(volume.array, source=str(path))))
