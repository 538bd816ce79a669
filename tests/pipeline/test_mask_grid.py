"""masks/<patient_id>.nii.gz lies on the input file's own grid, however the file stores the head.

`read_scan` turns every input superior-up (flipping a top-down stack, permuting a coronal one) and
records the file's own grid in ``meta.stored_grid``; the mask must be written back onto that grid,
so that a viewer overlays it on the input voxel for voxel. One head (the pipeline trial's phantom,
HU rounded to integers so a DICOM series holds it exactly) is stored six ways, each holding the
same physical head in the same place:

    AXIAL       NIfTI, slice 0 the lowest (corelab's own order): the control
    TOPDOWN     NIfTI whose slices run head to foot (z direction -1, origin at the top slice)
    CORONAL     NIfTI stored as coronal slices (axes permuted), rows running top to bottom
    OBLIQUE     the coronal NIfTI of a head tilted 5 degrees about the left-right axis
    DICOM_DESC  DICOM series whose files and instance numbers start at the top slice
    DICOM_FFS   DICOM series of a feet-first scan (ImageOrientationPatient -1 0 0 0 1 0): the
                slice normal points to the feet, so DICOM's own order runs top-down

The reference for "the input file's grid" is SimpleITK reading the file as it is stored
(ImageSeriesReader for a DICOM folder).
"""

import numpy as np
import pytest
import SimpleITK as sitk
from dicom_factory import write_ct_series
from pipeline_trial import LESION_BAND, SMALL_METHOD, SPACING, head_phantom, lesion_stub, write_model_folder

from corelab.pipeline.batch import run_batch

LESION_HU = 60.0  # brighter than brain (35 HU) by 12 noise SDs (2 HU): a threshold finds it exactly
ORIGIN = (-53.25, -53.25, -30.0)  # LPS mm of the lowest slice's first voxel; centres the 72 x 72 slices
NIFTI_CASES = ("AXIAL", "TOPDOWN", "CORONAL", "OBLIQUE")
DICOM_CASES = ("DICOM_DESC", "DICOM_FFS")


def _rotation_about_x(degrees: float) -> tuple[float, ...]:
    t = np.deg2rad(degrees)
    return (1.0, 0.0, 0.0, 0.0, np.cos(t), -np.sin(t), 0.0, np.sin(t), np.cos(t))


def _axial(array: np.ndarray, direction=(1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0)) -> sitk.Image:
    """``array`` [z, y, x] as corelab reads it: slice 0 lowest, spacing `SPACING`, origin `ORIGIN`."""
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING[::-1])
    image.SetOrigin(ORIGIN)
    image.SetDirection(direction)
    return image


def _coronal(image: sitk.Image) -> sitk.Image:
    # Slices along y (front to back), rows along z flipped so they run from the top down, as a
    # scanner's coronal reformat stores them. Flip and PermuteAxes keep every voxel's position.
    return sitk.Flip(sitk.PermuteAxes(image, [0, 2, 1]), [False, True, False])


def _stored(case: str, axial_array: np.ndarray) -> sitk.Image:
    """The image file of ``case`` (a NIfTI case) holding ``axial_array`` ([z, y, x], slice 0 lowest)."""
    if case == "AXIAL":
        return _axial(axial_array)
    if case == "TOPDOWN":
        return sitk.Flip(_axial(axial_array), [False, False, True])  # origin moves to the top slice
    if case == "CORONAL":
        return _coronal(_axial(axial_array))
    if case == "OBLIQUE":
        return _coronal(_axial(axial_array, _rotation_about_x(5.0)))
    raise ValueError(case)


def _write_dicom(case: str, folder, hu: np.ndarray) -> None:
    nz, _, nx = hu.shape
    top_first = (np.arange(nz) * SPACING[0])[::-1]  # file k (instance k + 1) is the k-th slice from the top
    if case == "DICOM_DESC":
        write_ct_series(folder, hu[::-1], SPACING, slice_z=top_first, origin=ORIGIN)
    else:
        # Feet first: image columns run to the patient's right, so column j is x index nx - 1 - j
        # and the first column sits at the other side of the head; the head stays where it was.
        origin = (ORIGIN[0] + (nx - 1) * SPACING[2], ORIGIN[1], ORIGIN[2])
        write_ct_series(folder, hu[::-1, :, ::-1], SPACING, slice_z=top_first, origin=origin,
                        tags={"ImageOrientationPatient": ["-1", "0", "0", "0", "1", "0"], "PatientPosition": "FFS"})


def _read_as_stored(path) -> sitk.Image:
    """The input as SimpleITK reads it: the file's own grid (DICOM: the series reader's slice order)."""
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    """The head stored every way and a manifest of all of them."""
    folder = tmp_path_factory.mktemp("mask_grid")
    hu = np.round(head_phantom(lesion_hu=LESION_HU, seed=5))
    lesion = head_phantom(lesion_hu=LESION_HU, seed=5) != head_phantom(lesion_hu=20.0, seed=5)
    scans = {}
    for case in NIFTI_CASES:
        scans[case] = folder / "scans" / f"{case}.nii.gz"
        scans[case].parent.mkdir(exist_ok=True)
        sitk.WriteImage(_stored(case, hu.astype(np.int16)), str(scans[case]))
    for case in DICOM_CASES:
        scans[case] = folder / "dicom" / case
        _write_dicom(case, scans[case], hu)
    manifest = folder / "manifest.csv"
    rows = "".join(f"{case},{path.relative_to(folder).as_posix()}\n" for case, path in scans.items())
    manifest.write_text("patient_id,scan\n" + rows)
    return {"manifest": manifest, "scans": scans, "lesion": lesion}


def _stub_models(folder):
    """A model folder run_batch accepts, for runs whose `segment` is replaced (cut-offs unused)."""
    import torch

    from corelab.segment.card import NETWORK_NAMES, save_models
    from corelab.segment.networks import PatchCNN

    torch.manual_seed(0)
    save_models(folder, {name: PatchCNN().eval() for name in NETWORK_NAMES}, dict.fromkeys(NETWORK_NAMES, 0.5),
                grid={"slice_mm": 5.0, "pixel_mm": 1.5})
    return folder


def _run(trial, out, models):
    summary = run_batch(trial["manifest"], out_dir=out, models_dir=models, method=SMALL_METHOD,
                        progress=False, threads=1)
    assert summary.n_ok == len(trial["scans"]), (out / "volumes.csv").read_text()
    return {case: sitk.ReadImage(str(out / "masks" / f"{case}.nii.gz")) for case in trial["scans"]}


def _assert_on_grid_of(mask: sitk.Image, scan: sitk.Image) -> None:
    assert mask.GetSize() == scan.GetSize()
    assert mask.GetSpacing() == pytest.approx(scan.GetSpacing(), abs=1e-5)
    assert mask.GetOrigin() == pytest.approx(scan.GetOrigin(), abs=1e-4)
    assert mask.GetDirection() == pytest.approx(scan.GetDirection(), abs=1e-6)


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_each_mask_lies_on_its_input_files_grid_with_the_lesion_where_the_file_has_it(trial, tmp_path, monkeypatch):
    monkeypatch.setattr("corelab.segment.labels.segment", lesion_stub)
    masks = _run(trial, tmp_path / "out", _stub_models(tmp_path / "models"))
    n_lesion = int(trial["lesion"].sum())
    assert n_lesion > 100  # a lesion worth finding (about 1.4 mL of 11.25 uL voxels)
    for case, path in trial["scans"].items():
        scan = _read_as_stored(path)
        _assert_on_grid_of(masks[case], scan)
        labels = sitk.GetArrayFromImage(masks[case])
        stored_hu = sitk.GetArrayFromImage(scan)
        # The file's own voxels at lesion HU, indexed as the file stores them: the mask must label
        # exactly these, and they are the phantom's lesion (no other voxel has its HU).
        expected = np.where((stored_hu > LESION_BAND[0]) & (stored_hu < LESION_BAND[1]), 2, 0)
        assert int(np.count_nonzero(expected)) == n_lesion, case
        assert np.array_equal(labels, expected), f"{case}: {np.count_nonzero(labels != expected)} voxels differ"


@pytest.mark.slow
def test_the_networks_label_the_same_voxels_of_the_head_however_the_file_stores_it(trial, tmp_path):
    """The real (random-weight) networks see the same superior-up array for every storage, so each
    mask is the AXIAL mask carried through that storage's flips and permutations."""
    masks = _run(trial, tmp_path / "out", write_model_folder(tmp_path / "models"))
    reference = sitk.GetArrayFromImage(masks["AXIAL"])
    assert np.count_nonzero(reference) > 0  # the random networks label something
    for case in NIFTI_CASES:
        expected = sitk.GetArrayFromImage(_stored(case, reference))
        assert np.array_equal(sitk.GetArrayFromImage(masks[case]), expected), case
    # DICOM_DESC: the series reader sorts the slices bottom-up, so its grid is AXIAL's.
    assert np.array_equal(sitk.GetArrayFromImage(masks["DICOM_DESC"]), reference)
    for case, path in trial["scans"].items():
        _assert_on_grid_of(masks[case], _read_as_stored(path))
