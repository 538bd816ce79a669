"""DICOM SEG beside the mask (`corelab.io.seg`), on synthetic DICOM series stored five ways.

Each case writes a tiny CT series (6 slices of 64 x 64 pixels), reads it with `read_scan`, puts a
hand-made label map on the scan's grid (labels 1, 3 and 4, none of them symmetric, so a flip or a
shift shows), writes the NIfTI mask as the pipeline does (`write_image`) and the SEG with
`build_seg` / `write_seg`, then reads the SEG back three ways: with highdicom
(`get_pixels_by_source_instance`), with pydicom alone (every frame's pixels placed in patient space
from PerFrameFunctionalGroupsSequence / SharedFunctionalGroupsSequence, then looked up in the NIfTI
read by SimpleITK), and with corelab's own `read_seg`.

    straight     slices written bottom-up, the control
    descending   files written top-down (instance 1 is the highest slice)
    feet_first   ImageOrientationPatient -1 0 0 0 1 0: the series' own grid runs top-down, so the
                 mask is written back onto a flipped grid (``meta.stored_grid``)
    tilted       a 15 degree gantry tilt, corrected on reading: the mask is not on the source
                 slices, so the SEG lies on the mask's own grid and says so
    uneven       slice gaps of 5 and 6 mm, resampled on reading: the same, for resampling

A multi-frame (Enhanced CT) source, empty masks, foreign SEGs and broken inputs have tests of their own.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import write_ct_series
from pydicom.sr.codedict import codes

from corelab import __version__
from corelab.io import mask_onto, read_scan, write_image
from corelab.io.seg import (
    INFARCT,
    EmptySegError,
    SegReadError,
    SegWriteError,
    build_seg,
    read_seg,
    write_seg,
)
from corelab.io.volume import ScanMeta, Volume

SHAPE = (6, 64, 64)
SPACING = (5.0, 0.5, 0.5)
ORIGIN = (-16.0, -16.0, 0.0)
MODEL_VERSION = "test-1.0+abcdef12"
CASES = ("straight", "descending", "feet_first", "tilted", "uneven")
ON_SOURCE = {"straight": True, "descending": True, "feet_first": True, "tilted": False, "uneven": False}
# Header values that identify the patient: the SEG keeps the first group, never the second.
STUDY_TAGS = {"PatientName": "Doe^Jane", "PatientID": "MRN123456", "PatientBirthDate": "19450101",
              "PatientSex": "F", "AccessionNumber": "ACC999", "StudyID": "S1", "ReferringPhysicianName": "Who^Dr"}
OTHER_TAGS = {"InstitutionName": "Secret Hospital", "PatientAge": "079Y", "OtherPatientIDs": "OTHER1",
              "OperatorsName": "Tech^Bob", "StationName": "CT01"}


def _hu() -> np.ndarray:
    """Air with a 40 HU block: enough for `read_scan`'s checks (some HU below -500)."""
    hu = np.full(SHAPE, -1000.0)
    hu[:, 8:56, 8:56] = 40.0
    return hu


def _write(case: str, folder) -> object:
    hu, tags = _hu(), {**STUDY_TAGS, **OTHER_TAGS}
    nz, _, nx = SHAPE
    if case == "straight":
        return write_ct_series(folder, hu, SPACING, origin=ORIGIN, tags=tags)
    if case == "descending":
        top_first = (np.arange(nz) * SPACING[0])[::-1]
        return write_ct_series(folder, hu[::-1], SPACING, slice_z=top_first, origin=ORIGIN, tags=tags)
    if case == "feet_first":
        top_first = (np.arange(nz) * SPACING[0])[::-1]
        origin = (ORIGIN[0] + (nx - 1) * SPACING[2], ORIGIN[1], ORIGIN[2])
        return write_ct_series(folder, hu[::-1, :, ::-1], SPACING, slice_z=top_first, origin=origin,
                               tags={**tags, "ImageOrientationPatient": ["-1", "0", "0", "0", "1", "0"],
                                     "PatientPosition": "FFS"})
    if case == "tilted":
        return write_ct_series(folder, hu, SPACING, origin=ORIGIN, tilt_deg=15.0, tags=tags)
    if case == "uneven":
        return write_ct_series(folder, hu, SPACING, origin=ORIGIN, slice_z=[0.0, 5.0, 10.0, 16.0, 21.0, 26.0],
                               tags=tags)
    raise ValueError(case)


def _mask(shape) -> np.ndarray:
    """Labels on the scan's grid as read (superior-up): severe on slices 1-2, subtle on slice 4 (slice
    3 stays empty, so the SEG has a gap to bridge), hemorrhage on slice 2; all off-centre."""
    mask = np.zeros(shape, dtype=np.uint8)
    mask[1:3, 10:20, 12:30] = 1
    mask[4, 40:44, 20:23] = 3
    mask[2, 30:33, 45:50] = 4
    return mask


@pytest.fixture(scope="module", params=CASES)
def written(request, tmp_path_factory):
    """One case: its series, scan, label volume, NIfTI mask and SEG file."""
    case = request.param
    folder = tmp_path_factory.mktemp(case)
    series = _write(case, folder / "ct")
    scan = read_scan(folder / "ct")
    labels = Volume(array=_mask(scan.array.shape), spacing=scan.spacing, origin=scan.origin,
                    direction=scan.direction, meta=scan.meta)
    nifti = folder / "mask.nii.gz"
    write_image(labels.array, labels, nifti)
    seg = build_seg(labels, model_version=MODEL_VERSION)
    path = folder / "mask.seg.dcm"
    write_seg(seg, path)
    return {"case": case, "series": series, "scan": scan, "labels": labels, "nifti": nifti, "seg": seg, "path": path}


def _nifti_label_at(image: sitk.Image, array: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Labels of the NIfTI at patient positions (n, 3) mm; each must be a voxel centre (within 1e-3 voxel)."""
    index = np.array([image.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in p)) for p in points])
    assert np.abs(index - np.round(index)).max() < 1e-3, "a SEG pixel does not sit on a NIfTI voxel centre"
    i = np.round(index).astype(int)  # (x, y, z)
    return array[i[:, 2], i[:, 1], i[:, 0]]


def test_the_seg_is_on_the_source_slices_exactly_when_reading_kept_them(written):
    meta = written["scan"].meta
    assert len(meta.source_files) == SHAPE[0] and pickle.loads(pickle.dumps(meta)) == meta  # travels from dask workers
    seg = written["seg"]
    assert seg.on_source_geometry is ON_SOURCE[written["case"]]
    assert seg.labels == (1, 3, 4)
    if seg.on_source_geometry:
        assert seg.note == ""
    else:
        word = "gantry tilt of 15.0 degrees" if written["case"] == "tilted" else "uneven slice spacing"
        assert word in seg.note and "references the source series" in seg.note


def test_segments_are_coded_and_name_the_algorithm_and_both_versions(written):
    ds = hd.seg.segread(written["path"])
    assert ds.SegmentationType == "BINARY" and ds.Modality == "SEG"
    items = {int(item.SegmentNumber): item for item in ds.SegmentSequence}
    assert sorted(items) == [1, 2, 3]
    expected = {1: ("Severe hypodense infarct", "55641003", "24484000"),
                2: ("Subtle hypodense infarct", "55641003", "255604002"),
                3: ("Hemorrhage", "50960005", None)}
    for number, (label, type_code, modifier) in expected.items():
        item = items[number]
        assert item.SegmentLabel == label
        category = item.SegmentedPropertyCategoryCodeSequence[0]
        assert (category.CodeValue, category.CodingSchemeDesignator) == ("49755003", "SCT")
        kind = item.SegmentedPropertyTypeCodeSequence[0]
        assert (kind.CodeValue, kind.CodingSchemeDesignator) == (type_code, "SCT")
        modifiers = kind.get("SegmentedPropertyTypeModifierCodeSequence") or []
        assert [m.CodeValue for m in modifiers] == ([modifier] if modifier else [])
        assert item.AnatomicRegionSequence[0].CodeValue == codes.SCT.Brain.value
        assert item.SegmentAlgorithmType == "AUTOMATIC"
        algorithm = item.SegmentationAlgorithmIdentificationSequence[0]
        assert (algorithm.AlgorithmName, algorithm.AlgorithmVersion) == ("corelab", __version__)
        assert MODEL_VERSION in algorithm.AlgorithmParameters
    assert list(ds.SoftwareVersions) == [__version__, MODEL_VERSION]


def test_the_seg_references_the_source_series_and_every_instance(written):
    ds = hd.seg.segread(written["path"])
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in written["series"].files]
    assert ds.StudyInstanceUID == written["series"].study_uid
    assert ds.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    (referenced,) = ds.ReferencedSeriesSequence
    assert referenced.SeriesInstanceUID == written["series"].series_uid
    assert {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence} == {
        s.SOPInstanceUID for s in sources}
    assert ds.SeriesInstanceUID != written["series"].series_uid


def test_highdicom_reads_the_labels_back_where_the_nifti_has_them(written):
    """On the source slices: per source instance. On the mask's own grid: as highdicom's volume,
    every labelled voxel of which is a NIfTI voxel of the same label (and no frame claims to keep a
    source image's pixel locations)."""
    ds = hd.seg.segread(written["path"])
    image = sitk.ReadImage(str(written["nifti"]))
    nifti = sitk.GetArrayFromImage(image)
    if not ON_SOURCE[written["case"]]:
        for groups in ds.PerFrameFunctionalGroupsSequence:
            for derivation in groups.get("DerivationImageSequence", []):
                assert {item.SpatialLocationsPreserved for item in derivation.SourceImageSequence} == {"NO"}
        volume = ds.get_volume()  # [slice, row, column, segment], affine to patient mm
        for index, label in enumerate((1, 3, 4)):
            ijk = np.argwhere(volume.array[..., index] > 0)
            points = (volume.affine[:3, :3] @ ijk.T).T + volume.affine[:3, 3]
            assert np.all(_nifti_label_at(image, nifti, points) == label)
            assert len(ijk) == np.count_nonzero(nifti == label)
        return
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in written["series"].files]
    pixels = ds.get_pixels_by_source_instance([s.SOPInstanceUID for s in sources])  # [file, row, col, segment]
    rows, cols = np.mgrid[0:SHAPE[1], 0:SHAPE[2]]
    for k, source in enumerate(sources):
        orientation = np.asarray(source.ImageOrientationPatient, float)
        row, col = orientation[:3], orientation[3:]
        dy, dx = (float(v) for v in source.PixelSpacing)
        points = (np.asarray(source.ImagePositionPatient, float) + cols.reshape(-1, 1) * dx * row
                  + rows.reshape(-1, 1) * dy * col)
        expected = _nifti_label_at(image, nifti, points).reshape(SHAPE[1:])
        for index, label in enumerate((1, 3, 4)):
            assert np.array_equal(pixels[k, :, :, index] > 0, expected == label), (k, label)


def test_every_frame_lands_on_the_nifti_voxels_of_its_label(written):
    """pydicom only: each frame's set pixels, placed in patient space from its functional groups,
    are NIfTI voxel centres with that frame's segment's label, and together they are all of them."""
    ds = pydicom.dcmread(written["path"])
    shared = ds.SharedFunctionalGroupsSequence[0]
    orientation = np.asarray(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    row, col = orientation[:3], orientation[3:]
    dy, dx = (float(v) for v in shared.PixelMeasuresSequence[0].PixelSpacing)
    label_of = {1: 1, 2: 3, 3: 4}  # segment number -> corelab label
    frames = ds.pixel_array.reshape(int(ds.NumberOfFrames), int(ds.Rows), int(ds.Columns))
    image = sitk.ReadImage(str(written["nifti"]))
    nifti = sitk.GetArrayFromImage(image)
    counts = dict.fromkeys(label_of.values(), 0)
    sources = {pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID: f for f in written["series"].files}
    for frame, groups in zip(frames, ds.PerFrameFunctionalGroupsSequence):
        label = label_of[int(groups.SegmentIdentificationSequence[0].ReferencedSegmentNumber)]
        position = np.asarray(groups.PlanePositionSequence[0].ImagePositionPatient, float)
        i, j = np.nonzero(frame)
        assert i.size, "empty frames are omitted"
        points = position + j[:, None] * dx * row + i[:, None] * dy * col
        assert np.all(_nifti_label_at(image, nifti, points) == label)
        counts[label] += i.size
        if ON_SOURCE[written["case"]]:  # each frame names the source image it lies on
            (source,) = groups.DerivationImageSequence[0].SourceImageSequence
            assert source.SpatialLocationsPreserved == "YES"
            source_ipp = pydicom.dcmread(sources[source.ReferencedSOPInstanceUID]).ImagePositionPatient
            np.testing.assert_allclose(np.asarray(source_ipp, float), position, atol=1e-4)
    assert counts == {label: int(np.count_nonzero(nifti == label)) for label in label_of.values()}
    if not ON_SOURCE[written["case"]]:  # the mask's grid: its orientation and voxel sizes
        direction = np.asarray(image.GetDirection()).reshape(3, 3)
        np.testing.assert_allclose(row, direction[:, 0], atol=1e-6)
        np.testing.assert_allclose(col, direction[:, 1], atol=1e-6)
        assert (dy, dx) == pytest.approx(image.GetSpacing()[1::-1])


# dcmqi's console scripts sit beside the interpreter in a virtual environment that is not on PATH.
SEGIMAGE2ITKIMAGE = shutil.which("segimage2itkimage", path=f"{Path(sys.executable).parent}{os.pathsep}"
                                                            f"{os.environ.get('PATH', '')}")


@pytest.mark.skipif(SEGIMAGE2ITKIMAGE is None,
                    reason="dcmqi (pip install dcmqi, in corelab's [test] extra) is not installed")
def test_dcmqi_reads_every_segment_back_onto_the_nifti_voxels_of_its_label(written, tmp_path):
    """An independent reader (QIICR's dcmqi, the reference SEG converter): segimage2itkimage writes
    one image per segment; each segment's voxels are NIfTI voxel centres with that segment's label,
    and all of them."""
    out = tmp_path / "dcmqi"
    out.mkdir()
    done = subprocess.run([SEGIMAGE2ITKIMAGE, "--inputDICOM", str(written["path"]), "--outputDirectory",
                           str(out), "--outputType", "nifti"], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    meta = json.loads((out / "meta.json").read_text())
    labels = [item["SegmentLabel"] for group in meta["segmentAttributes"] for item in group]
    assert labels == ["Severe hypodense infarct", "Subtle hypodense infarct", "Hemorrhage"]
    image = sitk.ReadImage(str(written["nifti"]))
    nifti = sitk.GetArrayFromImage(image)
    for number, label in ((1, 1), (2, 3), (3, 4)):
        segment = sitk.ReadImage(str(out / f"{number}.nii.gz"))
        k, j, i = np.nonzero(sitk.GetArrayFromImage(segment))
        points = np.array([segment.TransformIndexToPhysicalPoint((int(x), int(y), int(z)))
                           for x, y, z in zip(i, j, k)])
        assert np.all(_nifti_label_at(image, nifti, points) == label), label
        assert k.size == np.count_nonzero(nifti == label), label


def test_read_seg_gives_back_the_mask_on_the_scans_grid(written):
    back = read_seg(written["path"])
    assert back.array.dtype == np.uint8
    on_scan = mask_onto(back, written["scan"])
    assert np.array_equal(on_scan.array, written["labels"].array)
    numbers = read_seg(written["path"], by_segment_number=True)
    assert sorted(np.unique(numbers.array).tolist()) == [0, 1, 2, 3]


def test_the_seg_carries_only_the_patient_and_study_attributes_it_needs(written):
    ds = pydicom.dcmread(written["path"])
    for keyword, value in STUDY_TAGS.items():
        assert str(ds.get(keyword, "")) == value, keyword
    text = str(ds)
    for keyword, value in OTHER_TAGS.items():
        assert keyword not in ds and value not in text, keyword
    assert "Head 5mm" not in text  # the source's free-text SeriesDescription
    assert ds.SeriesDescription == "corelab infarct segmentation"


def test_an_empty_mask_gets_no_seg_and_a_sentence(written):
    labels = replace(written["labels"], array=np.zeros_like(written["labels"].array))
    with pytest.raises(EmptySegError, match="labels no voxel"):
        build_seg(labels, model_version=MODEL_VERSION)


def test_one_labelled_voxel_is_a_seg_of_one_segment_and_one_frame(tmp_path):
    write_ct_series(tmp_path / "ct", _hu(), SPACING, origin=ORIGIN)
    scan = read_scan(tmp_path / "ct")
    mask = np.zeros(scan.array.shape, np.uint8)
    mask[3, 5, 7] = 2
    seg = build_seg(Volume(mask, scan.spacing, scan.origin, scan.direction, scan.meta), model_version="m")
    write_seg(seg, tmp_path / "one.seg.dcm")
    assert seg.labels == (2,) and int(seg.dataset.NumberOfFrames) == 1
    assert seg.dataset.SegmentSequence[0].SegmentLabel == "Intermediate hypodense infarct"
    back = mask_onto(read_seg(tmp_path / "one.seg.dcm"), scan)
    assert np.array_equal(back.array, mask)


def test_an_image_file_input_has_no_seg(tmp_path):
    labels = Volume(_mask(SHAPE), SPACING, meta=ScanMeta(source="scan.nii.gz"))
    with pytest.raises(SegWriteError, match="not a DICOM series"):
        build_seg(labels, model_version="m")


def test_a_source_file_gone_since_reading_is_a_sentence_not_a_crash(tmp_path):
    series = write_ct_series(tmp_path / "ct", _hu(), SPACING, origin=ORIGIN)
    scan = read_scan(tmp_path / "ct")
    series.files[2].unlink()
    with pytest.raises(SegWriteError, match="could not be read again"):
        build_seg(Volume(_mask(SHAPE), scan.spacing, scan.origin, scan.direction, scan.meta), model_version="m")


def test_a_seg_of_an_unknown_structure_is_refused_unless_read_by_segment_number(tmp_path):
    series = write_ct_series(tmp_path / "ct", _hu(), SPACING, origin=ORIGIN, tags=STUDY_TAGS)  # highdicom reads them
    sources = [pydicom.dcmread(f) for f in series.files]
    algorithm = hd.AlgorithmIdentificationSequence("other", codes.cid7162.ArtificialIntelligence, "1")
    brain = hd.seg.SegmentDescription(1, "Brain", codes.cid7150.AnatomicalStructure, codes.SCT.Brain,
                                      "AUTOMATIC", algorithm)
    pixels = np.zeros(SHAPE, np.uint8)
    pixels[2, 10:20, 10:20] = 1
    other = hd.seg.Segmentation(sources, pixels, "BINARY", [brain], hd.UID(), 1, hd.UID(), 1, "x", "x", "1", "1")
    other.save_as(tmp_path / "brain.seg.dcm")
    with pytest.raises(SegReadError, match=r"Segment 1 \(Brain\)"):
        read_seg(tmp_path / "brain.seg.dcm")
    back = mask_onto(read_seg(tmp_path / "brain.seg.dcm", by_segment_number=True), read_scan(tmp_path / "ct"))
    assert np.array_equal(back.array, pixels)


def test_a_file_that_is_not_a_seg_is_a_read_error(tmp_path):
    series = write_ct_series(tmp_path / "ct", _hu(), SPACING, origin=ORIGIN)
    with pytest.raises(SegReadError, match="not a readable DICOM SEG"):
        read_seg(series.files[0])


@pytest.mark.parametrize("kind", ["FRACTIONAL", "LABELMAP"])
def test_fractional_and_labelmap_segs_of_other_tools_read_by_their_codes(tmp_path, kind):
    series = write_ct_series(tmp_path / "ct", _hu(), SPACING, origin=ORIGIN, tags=STUDY_TAGS)
    sources = [pydicom.dcmread(f) for f in series.files]
    algorithm = hd.AlgorithmIdentificationSequence("other", codes.cid7162.ArtificialIntelligence, "1")
    category = codes.cid7150.MorphologicallyAbnormalStructure
    bleed = hd.seg.SegmentDescription(1, "bleed", category, codes.SCT.Hemorrhage, "AUTOMATIC", algorithm)
    mild = hd.seg.SegmentDescription(2, "mild", category, INFARCT, "AUTOMATIC", algorithm)
    mild.SegmentedPropertyTypeCodeSequence[0].SegmentedPropertyTypeModifierCodeSequence = [
        hd.sr.CodedConcept.from_code(codes.SCT.Mild)]
    numbers = np.zeros(SHAPE, np.uint8)
    numbers[2, 10:20, 10:20] = 1
    numbers[3, 30:35, 30:35] = 2
    pixels = numbers if kind == "LABELMAP" else np.stack([numbers == 1, numbers == 2], axis=-1).astype(np.float32)
    other = hd.seg.Segmentation(sources, pixels, kind, [bleed, mild], hd.UID(), 1, hd.UID(), 1, "x", "x", "1", "1")
    other.save_as(tmp_path / "other.seg.dcm")
    back = mask_onto(read_seg(tmp_path / "other.seg.dcm"), read_scan(tmp_path / "ct"))
    assert np.array_equal(back.array, np.select([numbers == 1, numbers == 2], [4, 3], 0))


def test_values_that_are_not_corelab_labels_are_named(written):
    labels = replace(written["labels"], array=np.where(written["labels"].array == 4, 7, written["labels"].array))
    with pytest.raises(SegWriteError, match=r"values \[7\] that are not corelab labels"):
        build_seg(labels, model_version=MODEL_VERSION)


def test_a_multiframe_source_gets_a_seg_on_its_frames(tmp_path):
    series = write_ct_series(tmp_path / "ct", _hu(), SPACING, origin=ORIGIN, multiframe=True, tags=STUDY_TAGS)
    scan = read_scan(tmp_path / "ct")
    labels = Volume(_mask(scan.array.shape), scan.spacing, scan.origin, scan.direction, scan.meta)
    seg = build_seg(labels, model_version="m")
    write_seg(seg, tmp_path / "mf.seg.dcm")
    assert seg.on_source_geometry and seg.note == ""
    ds = pydicom.dcmread(tmp_path / "mf.seg.dcm")
    (referenced,) = ds.ReferencedSeriesSequence
    (source,) = {item.ReferencedSOPInstanceUID for item in referenced.ReferencedInstanceSequence}
    assert source == pydicom.dcmread(series.files[0], stop_before_pixels=True).SOPInstanceUID
    for groups in ds.PerFrameFunctionalGroupsSequence:  # each frame names the source frame it lies on
        (item,) = groups.DerivationImageSequence[0].SourceImageSequence
        frame = int(item.ReferencedFrameNumber) - 1
        np.testing.assert_allclose(groups.PlanePositionSequence[0].ImagePositionPatient, series.positions[frame])
    assert np.array_equal(mask_onto(read_seg(tmp_path / "mf.seg.dcm"), scan).array, labels.array)
