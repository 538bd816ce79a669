"""Reference reads in every format readers produce (`corelab.io.reference`), through `compare` and `train`.

One scan (a DICOM CT series, 6 slices of 40 x 40 pixels of 0.8 mm) carries one hand-made read:
infarct (label 1) on slices 1, 2 and 4 (a hole on slice 1, an L shape on slice 4) and hemorrhage
(label 4) inside it on slice 2, all drawn along voxel edges so that every format, contours included,
has one exact answer. The same read is saved as NIfTI, NRRD, MHA, NIfTI on a 3x finer grid, a
Slicer segmentation (two layers, RAS header), corelab's DICOM SEG, another tool's DICOM SEG (named,
not coded, segments), an RTSTRUCT (with a body outline to be left out) in a folder beside the CT,
and a DICOM label series; each must read back onto the scan's voxels exactly, and `corelab compare`
must give every format the same agreement row. A reader's edit of corelab's mask (a blob erased, one
added), saved as DICOM SEG and as .seg.nrrd, must score the Dice its voxel counts give.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import highdicom as hd
import numpy as np
import pandas as pd
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import write_ct_series
from pydicom.sr.coding import Code
from read_formats import voxel_outline, write_rtstruct, write_slicer_seg
from typer.testing import CliRunner

from corelab.cli import app
from corelab.io import mask_onto, read_scan, write_image
from corelab.io.reference import (
    ContoursNeedScanError,
    ReferenceReadError,
    find_reference,
    read_reference,
    reference_ids,
)
from corelab.io.seg import build_seg, write_seg
from corelab.io.volume import Volume
from corelab.train.cohort import load_cohort

SHAPE = (6, 40, 40)
SPACING = (5.0, 0.8, 0.8)
INFARCT, HEMORRHAGE = 1, 4
STUDY_TAGS = {"PatientBirthDate": "19450101", "PatientSex": "F", "AccessionNumber": "A1", "StudyID": "S1",
              "ReferringPhysicianName": ""}  # what a SEG needs of its source's study
L_SHAPE = [(4.5, 24.5), (9.5, 24.5), (9.5, 29.5), (19.5, 29.5), (19.5, 34.5), (4.5, 34.5)]  # (col, row) edges


def _labels() -> np.ndarray:
    labels = np.zeros(SHAPE, np.uint8)
    labels[1, 10:20, 12:30] = INFARCT
    labels[1, 13:16, 16:20] = 0  # the hole
    labels[2, 10:20, 12:30] = INFARCT
    labels[4, 25:35, 5:10] = INFARCT
    labels[4, 30:35, 10:20] = INFARCT
    labels[2, 14:17, 20:25] = HEMORRHAGE
    return labels


def _polygon(grid: Volume, k: int, corners) -> np.ndarray:
    image = sitk.Image(1, 1, 1, sitk.sitkUInt8)
    image.SetSpacing(grid.spacing[::-1])
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    return np.array([image.TransformContinuousIndexToPhysicalPoint((x, y, float(k))) for x, y in corners])


def _contours(scan: Volume) -> list[tuple[str, str, list[np.ndarray]]]:
    infarct = [voxel_outline(scan, 1, (10, 19), (12, 29)), voxel_outline(scan, 1, (13, 15), (16, 19)),
               voxel_outline(scan, 2, (10, 19), (12, 29)), _polygon(scan, 4, L_SHAPE)]
    body = [voxel_outline(scan, k, (2, 37), (2, 37)) for k in range(SHAPE[0])]
    return [("BODY", "EXTERNAL", body), ("Infarct", "ORGAN", infarct),
            ("Hemorrhage", "ORGAN", [voxel_outline(scan, 2, (14, 16), (20, 24))])]


def _slicer_layers(labels: np.ndarray) -> np.ndarray:
    """Layer 0: the whole lesion (infarct value 1); layer 1: the hemorrhage, overlapping it."""
    layers = np.zeros((*labels.shape, 2), np.uint8)
    layers[..., 0] = labels > 0
    layers[..., 1] = labels == HEMORRHAGE
    return layers


def _foreign_seg(labels: Volume, series_files) -> hd.seg.Segmentation:
    """Another tool's SEG: segments coded 'Lesion', told apart by their names only."""
    sources = [pydicom.dcmread(f) for f in series_files]
    lesion = Code("52988006", "SCT", "Lesion")
    tissue = Code("85756007", "SCT", "Tissue")
    descriptions = [
        hd.seg.SegmentDescription(segment_number=n, segment_label=name, segmented_property_category=tissue,
                                  segmented_property_type=lesion,
                                  algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, name in ((1, "Core and penumbra"), (2, "Bleed (haemorrhage)"))]
    stack = np.stack([labels.array > 0, labels.array == HEMORRHAGE], axis=-1).astype(np.uint8)
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=stack, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=5,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="Other", manufacturer_model_name="Viewer",
        software_versions="1", device_serial_number="1")


def _save_all(folder, pid_of, scan: Volume, series, labels: np.ndarray, contours=None) -> None:
    """The read ``labels`` in every format, patient ids from ``pid_of[format]``; ``contours``: the
    RTSTRUCT's ROIs (default: `_contours`, this module's read)."""
    grid = replace(scan, array=labels)
    write_image(labels, scan, folder / f"{pid_of['nifti']}.nii.gz")
    write_image(labels, scan, folder / f"{pid_of['nrrd']}.nrrd")
    write_image(labels, scan, folder / f"{pid_of['mha']}.mha")
    fine = np.repeat(np.repeat(labels, 3, axis=1), 3, axis=2)
    step = scan.spacing[1] / 3
    fine_grid = Volume(array=fine, spacing=(scan.spacing[0], step, step),
                       origin=(scan.origin[0] - step, scan.origin[1] - step, scan.origin[2]), direction=scan.direction)
    write_image(fine, fine_grid, folder / f"{pid_of['fine']}.nii.gz")
    write_slicer_seg(folder / f"{pid_of['slicer']}.seg.nrrd", _slicer_layers(labels), scan,
                     [("Infarct", 0, 1), ("Hemorrhage", 1, 1)])
    write_seg(build_seg(grid, model_version="reader"), folder / f"{pid_of['seg']}.seg.dcm")
    _foreign_seg(grid, series.files).save_as(folder / f"{pid_of['foreign']}.dcm")
    rt_folder = folder / pid_of["rtstruct"]
    shutil.copytree(series.folder, rt_folder)  # the structure set exported with its CT, as PACS do
    write_rtstruct(rt_folder / "RS.dcm", series.files, contours if contours is not None else _contours(scan))
    write_ct_series(folder / pid_of["dicom"], labels, scan.spacing, modality="OT", rescale=None, kernel=None,
                    origin=tuple(scan.origin))


FORMATS = ("nifti", "nrrd", "mha", "fine", "slicer", "seg", "foreign", "rtstruct", "dicom")


@pytest.fixture(scope="module")
def reads(tmp_path_factory):
    root = tmp_path_factory.mktemp("reads")
    hu = np.full(SHAPE, -1000.0)
    hu[:, 1:39, 1:39] = 1000.0  # skull, closed by the top and bottom slices (training finds the head in it)
    hu[1:-1, 3:37, 3:37] = 35.0
    labels = _labels()
    hu[labels == INFARCT] = 20.0
    hu[labels == HEMORRHAGE] = 70.0
    series = write_ct_series(root / "ct", hu, SPACING, origin=(-16.0, -16.0, 0.0), tags=STUDY_TAGS)
    scan = read_scan(root / "ct")
    assert scan.array.shape == SHAPE
    folder = root / "reference"
    folder.mkdir()
    _save_all(folder, {f: f"P-{f}" for f in FORMATS}, scan, series, labels)
    return {"root": root, "scan": scan, "series": series, "labels": labels, "folder": folder}


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_reads_back_onto_the_scans_voxels_exactly(reads, fmt):
    path = find_reference(reads["folder"], f"P-{fmt}")
    assert path is not None
    read = read_reference(path, grid=reads["scan"])
    on_scan = mask_onto(read.volume, reads["scan"]).array
    assert np.array_equal(on_scan, reads["labels"]), (fmt, np.argwhere(on_scan != reads["labels"])[:5])
    notes = {"slicer": 'Slicer segmentation: segments "Infarct", "Hemorrhage" read.',
             "seg": 'DICOM SEG: segments "Severe hypodense infarct", "Hemorrhage" read.',
             "foreign": 'DICOM SEG: segments "Core and penumbra", "Bleed (haemorrhage)" read.',
             "rtstruct": 'RTSTRUCT: ROIs "Infarct", "Hemorrhage" drawn onto the scan\'s slices (5 contours, '
                         'voxel centres inside, even-odd); "BODY" left out.'}
    assert read.note == notes.get(fmt, "")


def test_segments_are_chosen_by_name_and_an_absent_name_lists_those_present(reads):
    folder, scan = reads["folder"], reads["scan"]
    infarct_only = read_reference(folder / "P-slicer.seg.nrrd", segments=("infarct",))
    assert np.array_equal(infarct_only.volume.array > 0, reads["labels"] > 0)  # layer 0 holds the whole lesion
    assert infarct_only.volume.array.max() == INFARCT and '"Hemorrhage" left out' in infarct_only.note
    bleed = read_reference(folder / "P-foreign.dcm", segments=("Bleed (haemorrhage)",))
    assert np.array_equal(mask_onto(bleed.volume, scan).array, np.where(reads["labels"] == HEMORRHAGE, 4, 0))
    body = read_reference(folder / "P-rtstruct", grid=scan, segments=("body",))
    assert int(body.volume.array.sum()) == SHAPE[0] * 36 * 36  # chosen by name, the outline is read
    with pytest.raises(ReferenceReadError, match=r'no segment named .Core.*"Infarct", "Hemorrhage"'):
        read_reference(folder / "P-slicer.seg.nrrd", segments=("Core",))


def test_anatomy_outlines_beside_the_lesion_are_left_out_unless_named(reads, tmp_path):
    # A contouring tool's read: the lesion plus the brain it was drawn in (read as infarct, the
    # brain would become the lesion).
    scan, labels = reads["scan"], reads["labels"]
    layers = np.zeros((*labels.shape, 3), np.uint8)
    layers[..., :2] = _slicer_layers(labels)
    layers[1:-1, 3:37, 3:37, 2] = 1
    path = tmp_path / "P.seg.nrrd"
    write_slicer_seg(path, layers, scan, [("Infarct", 0, 1), ("Hemorrhage", 1, 1), ("Whole_Brain", 2, 1)])
    read = read_reference(path)
    assert np.array_equal(mask_onto(read.volume, scan).array, labels)
    assert read.note == ('Slicer segmentation: segments "Infarct", "Hemorrhage" read, "Whole_Brain" left out '
                         '("Whole_Brain": normal anatomy, not read as infarct; --reference-segment names what to read).')
    named = read_reference(path, segments=("whole_brain",))
    assert int((named.volume.array > 0).sum()) == int(layers[..., 2].sum())
    only = tmp_path / "Q.seg.nrrd"
    write_slicer_seg(only, layers[..., 2:], scan, [("Brain", 0, 1)])
    with pytest.raises(ReferenceReadError, match=r'only normal anatomy \("Brain"\).*--reference-segment'):
        read_reference(only)


def test_contours_need_the_scan_and_contours_off_its_slices_are_counted(reads, tmp_path):
    with pytest.raises(ContoursNeedScanError, match="RT Structure Set"):
        read_reference(reads["folder"] / "P-rtstruct" / "RS.dcm")
    scan, series = reads["scan"], reads["series"]
    above = voxel_outline(scan, 2, (10, 19), (12, 29)) + np.array([0.0, 0.0, 40.0])  # 8 slices above the top
    on = voxel_outline(scan, 3, (5, 8), (5, 8))
    write_rtstruct(tmp_path / "rs.dcm", series.files, [("Infarct", "", [above, on])])
    read = read_reference(tmp_path / "rs.dcm", grid=scan)
    assert int(read.volume.array.sum()) == 16 and "1 contours more than half a slice from every slice" in read.note
    write_rtstruct(tmp_path / "off.dcm", series.files, [("Infarct", "", [above])])
    with pytest.raises(ReferenceReadError, match="lies off the scan's slices"):
        read_reference(tmp_path / "off.dcm", grid=scan)


def test_an_rtstruct_of_another_frame_of_reference_is_refused_one_of_another_series_is_drawn(reads, tmp_path):
    scan, series = reads["scan"], reads["series"]
    assert scan.meta.frame_uid  # read from the DICOM series
    on = voxel_outline(scan, 3, (5, 8), (5, 8))
    # Contoured on the thin-slice reconstruction of the same acquisition: same frame, valid here.
    write_rtstruct(tmp_path / "thin.dcm", series.files, [("Infarct", "", [on])], series_uid="1.2.826.0.1.98")
    assert int(read_reference(tmp_path / "thin.dcm", grid=scan).volume.array.sum()) == 16
    write_rtstruct(tmp_path / "other.dcm", series.files, [("Infarct", "", [on])], frame_uid="1.2.826.0.1.99")
    with pytest.raises(ReferenceReadError, match=r'frame of reference "1\.2\.826\.0\.1\.99", not in the scan'):
        read_reference(tmp_path / "other.dcm", grid=scan)
    with pytest.raises(ReferenceReadError, match="another acquisition"):  # the frame given beside a mask's grid
        read_reference(tmp_path / "other.dcm", grid=replace(scan, meta=replace(scan.meta, frame_uid="")),
                       frame_uid=scan.meta.frame_uid)
    unknown = read_reference(tmp_path / "other.dcm", grid=scan, frame_uid="")  # nothing known: drawn
    assert int(unknown.volume.array.sum()) == 16


def test_one_rule_finds_reads_and_two_reads_of_a_patient_are_named(reads, tmp_path):
    assert reference_ids(reads["folder"]) == {f"P-{f}" for f in FORMATS}  # "P-slicer", not "P-slicer.seg"
    (tmp_path / "P1.nii.gz").write_bytes(b"")
    (tmp_path / "P1.seg.nrrd").write_bytes(b"")
    with pytest.raises(ReferenceReadError, match=r"P1 has 2 reads .*P1.seg.nrrd, P1.nii.gz.*keep one"):
        find_reference(tmp_path, "P1")
    assert find_reference(tmp_path, "P2") is None


def _results(root, scan_folder, automated: dict[str, np.ndarray], scan: Volume):
    results = root / "results"
    (results / "masks").mkdir(parents=True)
    rows = []
    for pid, mask in automated.items():
        write_image(mask, scan, results / "masks" / f"{pid}.nii.gz")
        rows.append({"patient_id": pid, "status": "ok", "error": "", "hours_since_onset": 30, "in_window": "true",
                     "infarct_ml": "", "mask": f"masks/{pid}.nii.gz", "scan": str(scan_folder),
                     "needs_review": "false", "flags": ""})
    pd.DataFrame(rows).to_csv(results / "volumes.csv", index=False)
    (results / "run.json").write_text(json.dumps({"versions": {"corelab": "0.1.0"}, "manifest": str(root / "m.csv"),
                                                  "models": {"version": "test"}}))
    return results


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


@pytest.mark.slow  # one whole `corelab compare` with its PDF: make test runs it, the quick loop does not
def test_compare_gives_every_format_the_same_row_and_scores_an_edited_read(reads, tmp_path):
    """One `corelab compare` over a reference folder holding every format, a reader's edit of corelab's
    mask saved as DICOM SEG and as .seg.nrrd, an unreadable read and a patient with two reads."""
    scan, labels, series = reads["scan"], reads["labels"], reads["series"]
    reference = tmp_path / "reference"
    reference.mkdir()
    _save_all(reference, {f: f"P-{f}" for f in FORMATS}, scan, series, labels)
    automated = np.roll(labels, 3, axis=2)  # the automated mask, 3 voxels off the read
    # The reader's edit of corelab's result: the L-shaped blob erased, a new one added on slice 3.
    corelab_mask = labels.copy()
    edited = labels.copy()
    edited[4] = 0
    edited[3, 5:9, 30:36] = INFARCT
    grid = replace(scan, array=edited)
    write_seg(build_seg(grid, model_version="edited"), reference / "EDIT-seg.seg.dcm")
    write_slicer_seg(reference / "EDIT-slicer.seg.nrrd", _slicer_layers(edited), scan,
                     [("Infarct", 0, 1), ("Hemorrhage", 1, 1)])
    (reference / "BROKEN.seg.dcm").write_bytes(b"not a DICOM file at all")
    write_image(labels, scan, reference / "TWICE.nii.gz")
    write_image(labels, scan, reference / "TWICE.mha")
    shutil.copytree(series.folder, reference / "ELSEWHERE")  # contours exported from another series
    write_rtstruct(reference / "ELSEWHERE" / "RS.dcm", series.files, _contours(scan), frame_uid="1.2.826.0.1.99")
    masks = {**{f"P-{f}": automated for f in FORMATS}, "EDIT-seg": corelab_mask, "EDIT-slicer": corelab_mask,
             "BROKEN": automated, "TWICE": automated, "ELSEWHERE": automated}
    results = _results(tmp_path, series.folder, masks, scan)
    done = CliRunner().invoke(app, ["compare", str(results), "--reference", str(reference)])
    assert done.exit_code == 0, done.output
    table = pd.read_excel(results / "agreement.xlsx", sheet_name="per_patient", dtype={"patient_id": str})
    table = table.set_index("patient_id")
    metrics = ["reference_ml", "other_ml", "dice", "hd95_mm", "lesions", "lesions_detected", "reference_mean_hu",
               "reference_class", "in_primary"]
    nifti = table.loc["P-nifti", metrics]
    assert nifti["in_primary"] and 0.3 < nifti["dice"] < 0.95
    for fmt in FORMATS[1:]:
        pd.testing.assert_series_equal(table.loc[f"P-{fmt}", metrics], nifti, check_names=False, obj=fmt)
    assert table.loc["P-rtstruct", "note"].startswith('RTSTRUCT: ROIs "Infarct", "Hemorrhage" drawn onto')
    expected = _dice(edited > 0, corelab_mask > 0)
    assert 0.5 < expected < 0.95
    for pid in ("EDIT-seg", "EDIT-slicer"):
        assert table.loc[pid, "dice"] == pytest.approx(expected, abs=1e-3)  # the sheet rounds to 3 places
        assert table.loc[pid, "reference_ml"] == pytest.approx(np.count_nonzero(edited) * scan.voxel_ml, abs=0.05)
    assert not table.loc["BROKEN", "in_primary"] and not table.loc["TWICE", "in_primary"]
    assert table.loc["BROKEN", "excluded_because"].startswith("reference read unusable: The file")
    assert not table.loc["ELSEWHERE", "in_primary"]
    assert 'frame of reference "1.2.826.0.1.99", not in the scan' in table.loc["ELSEWHERE", "excluded_because"]
    assert "TWICE has 2 reads" in table.loc["TWICE", "excluded_because"]
    flow = pd.read_excel(results / "agreement.xlsx", sheet_name="patient_flow").set_index("reason")["patients"]
    assert flow["reference read unusable"] == 3 and flow["analysed (primary population)"] == len(FORMATS) + 2


def test_train_reads_manual_reads_in_any_format_onto_the_scan(tmp_path):
    """`corelab train`'s cohort reader takes the same reads: each format gives the NIfTI's voxels.
    The head is large enough for training's preprocessing (skull, intracranial region): 12 slices of
    156 x 156 pixels of 0.45 mm, brain inside a skull ring, a block of infarct with blood in it."""
    shape, spacing = (12, 156, 156), (5.0, 0.45, 0.45)
    _, y, x = np.ogrid[: shape[0], : shape[1], : shape[2]]
    r = np.hypot(y - 78, x - 78) + np.zeros((shape[0], 1, 1))
    hu = np.where(r < 66, 45.0, np.where(r < 72, 1000.0, -1000.0))
    hu[0] = hu[-1] = np.where(r[0] < 72, 1000.0, -1000.0)
    labels = np.zeros(shape, np.uint8)
    labels[4:8, 60:80, 90:110] = INFARCT
    labels[6, 66:70, 95:99] = HEMORRHAGE
    hu[labels == INFARCT], hu[labels == HEMORRHAGE] = 20.0, 70.0
    series = write_ct_series(tmp_path / "ct", hu, spacing, origin=(-35.0, -35.0, 0.0), tags=STUDY_TAGS)
    scan = read_scan(tmp_path / "ct")
    contours = [("Infarct", "", [voxel_outline(scan, k, (60, 79), (90, 109)) for k in range(4, 8)]),
                ("Hemorrhage", "", [voxel_outline(scan, 6, (66, 69), (95, 98))])]
    cohort = tmp_path / "cohort"
    (cohort / "manual").mkdir(parents=True)
    _save_all(cohort / "manual", {f: f"P-{f}" for f in FORMATS}, scan, series, labels, contours)
    rows = ["patient_id,scan"] + [f"P-{f},{series.folder}" for f in FORMATS]
    (cohort / "manifest.csv").write_text("\n".join(rows) + "\n")
    scans = {s.patient_id: s for s in load_cohort(cohort, log=lambda _: None)}
    assert scans["P-nifti"].reference.sum() > 0 and scans["P-nifti"].hemorrhage.sum() > 0
    for fmt in FORMATS[1:]:
        assert np.array_equal(scans[f"P-{fmt}"].reference, scans["P-nifti"].reference), fmt
        assert np.array_equal(scans[f"P-{fmt}"].hemorrhage, scans["P-nifti"].hemorrhage), fmt


def test_inter_reader_mode_draws_an_rtstruct_onto_the_other_readers_grid(reads, tmp_path):
    """Without a results folder there is no scan: reader A's contours go onto reader B's voxels."""
    from corelab.compare import reader_rows

    reader_a, reader_b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(reads["folder"] / "P-rtstruct", reader_a / "P1")
    reader_b.mkdir()
    write_image(reads["labels"], reads["scan"], reader_b / "P1.nii.gz")
    rows = reader_rows(None, None, reader_a, reader_b, {}).set_index("patient_id")
    assert rows.loc["P1", "dice"] == pytest.approx(1.0) and rows.loc["P1", "in_primary"]
    assert rows.loc["P1", "note"].startswith('reader A: RTSTRUCT: ROIs "Infarct", "Hemorrhage" drawn')


@pytest.mark.parametrize("clockwise", [False, True])
def test_a_contour_through_voxel_centres_takes_them_whichever_way_it_is_drawn(reads, tmp_path, clockwise):
    """Mask-to-contour tools (OpenCV's findContours, rt-utils) put the corners on the centres of the
    boundary voxels: those voxels belong to the read, in either drawing direction."""
    corners = [(12.0, 10.0), (21.0, 10.0), (21.0, 19.0), (12.0, 19.0)]  # (col, row) voxel centres: a 10 x 10 block
    points = _polygon(reads["scan"], 3, corners[::-1] if clockwise else corners)
    write_rtstruct(tmp_path / "rs.dcm", reads["series"].files, [("Infarct", "", [points])])
    read = read_reference(tmp_path / "rs.dcm", grid=reads["scan"])
    expected = np.zeros(SHAPE, bool)
    expected[3, 10:20, 12:22] = True
    assert np.array_equal(read.volume.array > 0, expected)


def test_a_contour_not_parallel_to_the_slices_is_left_out_and_counted(reads, tmp_path):
    scan = reads["scan"]
    slanted = _polygon(scan, 2, [(5.0, 5.0), (9.0, 5.0), (9.0, 9.0)])
    slanted[1, 2] += 2 * SPACING[0]  # one corner two slices higher: drawn on another reformat
    write_rtstruct(tmp_path / "rs.dcm", reads["series"].files,
                   [("Infarct", "", [slanted, voxel_outline(scan, 3, (5, 8), (5, 8))])])
    read = read_reference(tmp_path / "rs.dcm", grid=scan)
    assert int(read.volume.array.sum()) == 16 and read.contours_left_out == 1
    assert "1 contours not parallel to the scan's slices left out" in read.note


def test_a_slicer_file_from_before_layers_has_one_component_per_segment(reads, tmp_path):
    """Slicer before 4.11 wrote one component per segment and no Layer field."""
    path = tmp_path / "old.seg.nrrd"
    write_slicer_seg(path, _slicer_layers(reads["labels"]), reads["scan"], [("Infarct", 0, 1), ("Hemorrhage", 1, 1)])
    text = path.read_bytes()
    header, _, data = text.partition(b"\n\n")
    header = b"\n".join(line for line in header.split(b"\n") if b"_Layer:=" not in line)
    path.write_bytes(header + b"\n\n" + data)
    read = read_reference(path)
    assert np.array_equal(mask_onto(read.volume, reads["scan"]).array, reads["labels"])


def test_inter_reader_contours_are_not_drawn_onto_a_seg_and_reasons_are_counted_once(reads, tmp_path):
    from corelab.compare import reader_rows
    from corelab.report.tables import reason_counts

    reader_a, reader_b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(reads["folder"] / "P-rtstruct", reader_a / "P1")
    reader_b.mkdir()
    shutil.copy(reads["folder"] / "P-seg.seg.dcm", reader_b / "P1.seg.dcm")
    write_image(reads["labels"].astype(np.float32) / 2, reads["scan"], reader_a / "P2.nii.gz")  # fractions
    write_image(reads["labels"], reads["scan"], reader_b / "P2.nii.gz")
    rows = reader_rows(None, None, reader_a, reader_b, {})
    by_id = rows.set_index("patient_id")
    assert not by_id.loc["P1", "in_primary"]
    assert by_id.loc["P1", "excluded_because"].startswith("read by reader A or B unusable: The read")
    assert "DICOM SEG" in by_id.loc["P1", "excluded_because"]
    assert "fractional values" in by_id.loc["P2", "excluded_because"]
    flow = reason_counts(rows, "inter-reader").set_index("reason")["patients"]
    assert flow["read by reader A or B unusable"] == 2 and flow["mask missing or unreadable"] == 0


def test_contours_on_a_rotated_and_anisotropic_grid_land_on_the_voxels_simpleitk_places_there():
    # The contour's points go to voxel indices in one matrix product; SimpleITK's own index -> physical
    # mapping of an oblique grid (rotated 20 degrees about x and 10 about z, uneven spacing) must
    # come back to the same voxels.
    from corelab.io import Volume
    from corelab.io.rtstruct import rasterise

    a, b = np.radians(20.0), np.radians(10.0)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    grid = Volume(array=np.zeros((6, 30, 40), np.uint8), spacing=(4.0, 0.7, 0.45), origin=(-12.0, 30.0, 7.5),
                  direction=tuple((rz @ rx).ravel()))
    image = sitk.Image(40, 30, 6, sitk.sitkUInt8)
    image.SetSpacing((0.45, 0.7, 4.0))
    image.SetOrigin(grid.origin)
    image.SetDirection(grid.direction)
    corners = [(10, 5), (25, 5), (25, 20), (10, 20)]  # (col, row) voxel centres on slice 3
    points = np.array([image.TransformIndexToPhysicalPoint((c, r, 3)) for c, r in corners])
    mask = rasterise((points,), grid).mask
    expected = np.zeros(grid.array.shape, bool)
    expected[3, 5:21, 10:26] = True
    assert np.array_equal(mask, expected)
