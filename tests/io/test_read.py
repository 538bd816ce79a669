"""read_scan / read_mask on real files written in tmp_path: DICOM series (pydicom) and image files (SimpleITK)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from dicom_factory import pixel_positions, write_ct_series, write_scout

from corelab.errors import ScanError
from corelab.io.errors import (
    EmptyFolderError,
    InconsistentSeriesError,
    MaskOutsideScanError,
    MaskValuesError,
    NoDicomImagesError,
    NoHUCalibrationError,
    NotCTError,
    NotVolumeError,
    ScanNotFoundError,
    ScanTooLargeError,
    SeriesNotFoundError,
    SliceGapError,
    UnreadableScanError,
    UnsupportedFormatError,
)
from corelab.io.read import read_mask, read_scan
from corelab.io.volume import Volume, to_sitk

SHAPE = (12, 64, 64)


def head(shape=SHAPE, seed=0) -> np.ndarray:
    """Whole-number HU from air to bone, so DICOM's integer storage holds them exactly."""
    rng = np.random.default_rng(seed)
    hu = rng.integers(-1000, 1500, size=shape).astype(np.float64)
    hu[:, 0, 0] = -1000.0  # air in every slice, as around a real head
    return hu


def write_image(path, array, spacing_zyx, *, origin=(0.0, 0.0, 0.0), direction=None):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    image.SetOrigin(origin)
    if direction is not None:
        image.SetDirection(direction)
    sitk.WriteImage(image, str(path))
    return path


# --- round trips -------------------------------------------------------------------------------


def test_dicom_series_round_trips_hu_spacing_and_metadata(tmp_path):
    hu = head()
    written = write_ct_series(tmp_path / "ct", hu, (5.0, 0.45, 0.5), kernel="H31s", origin=(-10.0, -20.0, 30.0))
    volume = read_scan(tmp_path / "ct")
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, hu)
    assert volume.spacing == (5.0, 0.45, 0.5)
    assert volume.origin == (-10.0, -20.0, 30.0)
    assert volume.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    meta = volume.meta
    assert (meta.modality, meta.series_uid, meta.kernel) == ("CT", written.series_uid, "H31s")
    assert meta.slice_thickness_mm == 5.0 and meta.tilt_deg == 0.0
    assert meta.acquisition_datetime == dt.datetime(2024, 3, 1, 8, 6)


def test_rescale_slope_is_applied(tmp_path):
    hu = np.round(head() * 2) / 2  # half-HU steps, exact with slope 0.5
    write_ct_series(tmp_path / "ct", hu, (2.5, 0.5, 0.5), rescale=(0.5, -1024.0))
    np.testing.assert_array_equal(read_scan(tmp_path / "ct").array, hu)


def test_slices_are_sorted_inferior_to_superior_whatever_the_file_order(tmp_path):
    hu = head()
    # Table positions written top-down: the file of slice 0 is the highest one.
    write_ct_series(tmp_path / "ct", hu, (5.0, 0.5, 0.5), slice_z=[55.0 - 5.0 * k for k in range(12)])
    volume = read_scan(tmp_path / "ct")
    np.testing.assert_array_equal(volume.array, hu[::-1])
    assert volume.origin[2] == 0.0 and volume.direction[8] == 1.0


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_image_files_round_trip_hu_and_spacing_exactly(tmp_path, suffix):
    hu = head(shape=(6, 20, 24)).astype(np.int16)
    path = write_image(tmp_path / f"scan{suffix}", hu, (5.0, 0.45, 0.5), origin=(1.0, 2.0, 3.0))
    volume = read_scan(path)
    np.testing.assert_array_equal(volume.array, hu.astype(np.float32))
    assert volume.array.dtype == np.float32
    assert np.allclose(volume.spacing, (5.0, 0.45, 0.5), rtol=0, atol=1e-6)
    assert volume.meta.modality == "" and volume.meta.slice_thickness_mm == pytest.approx(5.0)


def test_image_file_stored_top_down_is_flipped_without_moving_anatomy(tmp_path):
    hu = head(shape=(5, 8, 8)).astype(np.int16)
    top_down = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
    path = write_image(tmp_path / "td.nii.gz", hu, (4.0, 1.0, 1.0), origin=(0.0, 0.0, 40.0), direction=top_down)
    volume = read_scan(path)
    np.testing.assert_array_equal(volume.array, hu[::-1].astype(np.float32))
    assert volume.direction[8] == pytest.approx(1.0)
    # Voxel [0, 3, 2] of the result is the lowest slice: it sits at z = 40 - 4 * 4 = 24 mm.
    assert to_sitk(volume).TransformIndexToPhysicalPoint((2, 3, 0)) == pytest.approx((2.0, 3.0, 24.0))


def test_multiframe_enhanced_ct_round_trips(tmp_path):
    hu = head()
    write_ct_series(tmp_path / "mf", hu, (5.0, 0.5, 0.5), multiframe=True, rescale=(2.0, -1024.0))
    volume = read_scan(tmp_path / "mf")
    np.testing.assert_array_equal(volume.array, np.round(hu / 2) * 2)  # stored at 2 HU steps
    assert volume.spacing == (5.0, 0.5, 0.5)


def test_multiframe_without_rescale_is_refused(tmp_path):
    write_ct_series(tmp_path / "mf", head(), (5.0, 0.5, 0.5), multiframe=True, rescale=None)
    with pytest.raises(NoHUCalibrationError, match="RescaleIntercept"):
        read_scan(tmp_path / "mf")


# --- series choice -------------------------------------------------------------------------------


def study_folder(tmp_path):
    """Scout, bone thick, soft thick, soft thin, bone thin, all 40 mm of head, in one folder."""
    folder = tmp_path / "study"
    study = pydicom.uid.generate_uid()
    uids = {"scout": write_scout(folder, study_uid=study, n_images=2).series_uid}
    for name, kernel, spacing, n in [
        ("bone_thick", "H70h", 5.0, 9),
        ("soft_thick", "H30s", 5.0, 9),
        ("soft_thin", "H30s", 2.0, 21),
        ("bone_thin", "H60s", 2.0, 21),
    ]:
        hu = head(shape=(n, 16, 16), seed=n)
        written = write_ct_series(folder, hu, (spacing, 1.0, 1.0), kernel=kernel, study_uid=study, description=name)
        uids[name] = written.series_uid
    return folder, uids


def test_soft_thin_axial_series_is_chosen_and_the_choice_is_noted(tmp_path):
    folder, uids = study_folder(tmp_path)
    volume = read_scan(folder)
    assert volume.meta.series_uid == uids["soft_thin"]
    assert volume.array.shape == (21, 16, 16) and volume.spacing[0] == 2.0
    notes = " ".join(volume.meta.notes)
    assert "chosen from 5 series" in notes
    assert f"{uids['scout']} (CT, 2 images): localizer" in notes
    assert "Topogram" not in notes  # free-text SeriesDescription never reaches the outputs
    assert "sharp kernel" in notes and "fewer slices" in notes


def test_full_coverage_beats_a_thin_partial_series(tmp_path):
    folder = tmp_path / "study"
    full = write_ct_series(folder, head(shape=(20, 16, 16)), (5.0, 1.0, 1.0), kernel="H30s").series_uid
    write_ct_series(folder, head(shape=(30, 16, 16)), (1.0, 1.0, 1.0), kernel="H30s")  # 29 mm of 95
    volume = read_scan(folder)
    assert volume.meta.series_uid == full
    assert "shorter coverage (29 mm)" in " ".join(volume.meta.notes)


def test_ct_is_chosen_over_mr_in_the_same_folder(tmp_path):
    folder = tmp_path / "mixed"
    write_ct_series(folder, head(shape=(30, 16, 16)), (5.0, 1.0, 1.0), modality="MR", kernel=None)
    ct = write_ct_series(folder, head(shape=(6, 16, 16)), (5.0, 1.0, 1.0)).series_uid
    assert read_scan(folder).meta.series_uid == ct


def test_series_uid_overrides_the_rules(tmp_path):
    folder, uids = study_folder(tmp_path)
    volume = read_scan(folder, series_uid=uids["bone_thick"])
    assert volume.meta.series_uid == uids["bone_thick"] and volume.meta.kernel == "H70h"
    assert "series_uid" in volume.meta.notes[0]


def test_unknown_series_uid_lists_what_is_there(tmp_path):
    folder, uids = study_folder(tmp_path)
    with pytest.raises(SeriesNotFoundError) as error:
        read_scan(folder, series_uid="1.2.3.4")
    message = str(error.value)
    assert "1.2.3.4" in message and all(uid in message for uid in uids.values())


def test_series_uid_naming_the_scout_is_refused_as_2d(tmp_path):
    folder, uids = study_folder(tmp_path)
    with pytest.raises(NotVolumeError):
        read_scan(folder, series_uid=uids["scout"])


# --- geometry: tilt, uneven spacing ----------------------------------------------------------------


@pytest.mark.parametrize("tilt", [20.0, -15.0])
def test_gantry_tilt_is_corrected_and_the_sphere_stays_in_place(tmp_path, tilt):
    spacing = (5.0, 2.0, 2.0)
    origin = (-64.0, -64.0, 0.0)
    centre = np.array([0.0, 4.0, 28.0])
    points = pixel_positions(SHAPE, spacing, tilt_deg=tilt, origin=origin)
    inside = np.linalg.norm(points - centre, axis=-1) < 20.0
    write_ct_series(tmp_path / "tilt", np.where(inside, 40.0, -1000.0), spacing, tilt_deg=tilt, origin=origin)
    volume = read_scan(tmp_path / "tilt")
    assert volume.meta.tilt_deg == pytest.approx(abs(tilt), abs=0.01)
    # Orthogonal grid: the direction matrix is a rotation, and slices are cos(tilt) * 5 mm apart.
    matrix = np.asarray(volume.direction).reshape(3, 3)
    np.testing.assert_allclose(matrix.T @ matrix, np.eye(3), atol=1e-6)
    assert volume.spacing[0] == pytest.approx(5.0 * np.cos(np.deg2rad(tilt)))
    image = to_sitk(volume)
    index = np.argwhere(volume.array > -300)[:, ::-1].mean(axis=0)
    found = np.asarray(image.TransformContinuousIndexToPhysicalPoint(tuple(index)))
    assert np.all(np.abs(found - centre) <= np.asarray(volume.spacing[::-1]))
    # Weighted by HU above air, the centroid equals that of the points the scanner sampled.
    weight = volume.array + 1000.0
    weighted = (np.argwhere(weight >= 0)[:, ::-1] * weight[weight >= 0][:, None]).sum(0) / weight.sum()
    sampled = points[inside].mean(axis=0)
    np.testing.assert_allclose(image.TransformContinuousIndexToPhysicalPoint(tuple(weighted)), sampled, atol=0.05)


def test_tilt_tag_without_shear_needs_no_correction(tmp_path):
    write_ct_series(tmp_path / "ct", head(), (5.0, 0.5, 0.5), tags={"GantryDetectorTilt": "12"})
    volume = read_scan(tmp_path / "ct")
    assert volume.meta.tilt_deg == 0.0
    np.testing.assert_array_equal(volume.array, head())


def test_one_missing_slice_is_interpolated_onto_an_even_grid(tmp_path):
    hu = head(shape=(11, 8, 8))
    z = [0.0, 5.0, 10.0, 15.0, 20.0, 30.0, 35.0, 40.0, 45.0, 50.0, 55.0]  # 25 mm missing
    write_ct_series(tmp_path / "ct", hu, (5.0, 1.0, 1.0), slice_z=z)
    volume = read_scan(tmp_path / "ct")
    assert volume.array.shape == (12, 8, 8) and volume.spacing[0] == pytest.approx(5.0)
    np.testing.assert_array_equal(volume.array[:5], hu[:5])
    np.testing.assert_allclose(volume.array[5], (hu[4] + hu[5]) / 2, atol=1e-4)
    np.testing.assert_array_equal(volume.array[6:], hu[5:])
    assert any("resampled onto an even 5.00 mm grid" in note for note in volume.meta.notes)


def test_a_gap_of_two_missing_slices_is_refused_with_its_position_and_size(tmp_path):
    z = [0.0, 5.0, 10.0, 25.0, 30.0, 35.0]
    write_ct_series(tmp_path / "ct", head(shape=(6, 8, 8)), (5.0, 1.0, 1.0), slice_z=z, origin=(0.0, 0.0, 100.0))
    with pytest.raises(SliceGapError, match=r"15\.0 mm gap between the slices at 110\.0 mm and 125\.0 mm"):
        read_scan(tmp_path / "ct")


def test_two_slices_at_one_position_are_refused(tmp_path):
    write_ct_series(tmp_path / "ct", head(shape=(4, 8, 8)), (5.0, 1.0, 1.0), slice_z=[0.0, 5.0, 5.0, 10.0])
    with pytest.raises(InconsistentSeriesError, match="same position"):
        read_scan(tmp_path / "ct")


# --- acquisition date-time -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("omit", "tags", "expected"),
    [
        ((), {}, dt.datetime(2024, 3, 1, 8, 6)),
        (("AcquisitionDate", "AcquisitionTime"), {}, dt.datetime(2024, 3, 1, 8, 5)),
        (("AcquisitionTime", "SeriesDate", "SeriesTime"), {}, dt.datetime(2024, 3, 1, 8, 0)),
        (
            ("AcquisitionDate", "AcquisitionTime"),
            {"AcquisitionDateTime": "20240301081500.25+0100"},
            dt.datetime(2024, 3, 1, 8, 15, 0, 250000),
        ),
        (("AcquisitionTime", "SeriesTime", "StudyTime"), {}, None),  # dates alone: the time is unknown
    ],
)
def test_acquisition_datetime_fallback_order(tmp_path, omit, tags, expected):
    write_ct_series(tmp_path / "ct", head(shape=(3, 8, 8)), (5.0, 1.0, 1.0), omit_tags=omit, tags=tags)
    assert read_scan(tmp_path / "ct").meta.acquisition_datetime == expected


def test_earliest_slice_time_and_timezone_note(tmp_path):
    tags = {"TimezoneOffsetFromUTC": "+0200"}
    written = write_ct_series(tmp_path / "ct", head(shape=(3, 8, 8)), (5.0, 1.0, 1.0), tags=tags)
    ds = pydicom.dcmread(written.files[1])
    ds.AcquisitionTime = "080559.5"  # a helical scan's slices carry slightly different times
    ds.save_as(written.files[1])
    volume = read_scan(tmp_path / "ct")
    assert volume.meta.acquisition_datetime == dt.datetime(2024, 3, 1, 8, 5, 59, 500000)
    assert any("+0200" in note for note in volume.meta.notes)


# --- errors ------------------------------------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(ScanNotFoundError, match="does not exist"):
        read_scan(tmp_path / "nowhere")


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(EmptyFolderError):
        read_scan(tmp_path / "empty")


def test_folder_without_dicom_images(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "readme.txt").write_text("not an image")
    with pytest.raises(NoDicomImagesError, match="1 files but no DICOM images"):
        read_scan(tmp_path / "docs")


def test_stray_non_dicom_file_is_ignored_and_noted(tmp_path):
    write_ct_series(tmp_path / "ct", head(shape=(3, 8, 8)), (5.0, 1.0, 1.0))
    (tmp_path / "ct" / "Thumbs.db").write_bytes(b"\x00" * 300)
    volume = read_scan(tmp_path / "ct")
    assert any("1 file in" in note and "ignored" in note for note in volume.meta.notes)


@pytest.mark.parametrize("keep_bytes", [200, 1000, -100])
def test_truncated_dicom_slice_is_named(tmp_path, keep_bytes):
    written = write_ct_series(tmp_path / "ct", head(shape=(4, 16, 16)), (5.0, 1.0, 1.0))
    data = written.files[2].read_bytes()
    written.files[2].write_bytes(data[:keep_bytes])
    with pytest.raises(UnreadableScanError, match=written.files[2].name):
        read_scan(tmp_path / "ct")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
def test_truncated_image_file(tmp_path, suffix):
    # Random HU do not compress, so half the file is half the voxels (ITK alone zero-fills NIfTI).
    data = write_image(tmp_path / f"ok{suffix}", head(shape=(6, 16, 16)).astype(np.int16), (5.0, 1.0, 1.0)).read_bytes()
    (tmp_path / f"cut{suffix}").write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableScanError, match=f"cut{suffix}"):
        read_scan(tmp_path / f"cut{suffix}")


def test_unsupported_file_format(tmp_path):
    (tmp_path / "photo.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(UnsupportedFormatError):
        read_scan(tmp_path / "photo.png")


def test_mr_series_is_not_ct(tmp_path):
    write_ct_series(tmp_path / "mr", head(shape=(4, 8, 8)), (5.0, 1.0, 1.0), modality="MR", kernel=None)
    with pytest.raises(NotCTError, match="holds MR images, not a CT"):
        read_scan(tmp_path / "mr")


def test_one_slice_and_scout_only_folders_are_2d(tmp_path):
    write_ct_series(tmp_path / "one", head(shape=(1, 8, 8)), (5.0, 1.0, 1.0))
    write_scout(tmp_path / "scout")
    for folder in ("one", "scout"):
        with pytest.raises(NotVolumeError, match="2D"):
            read_scan(tmp_path / folder)


@pytest.mark.parametrize("shape", [(8, 8), (1, 8, 8)])
def test_2d_image_file(tmp_path, shape):
    path = write_image(tmp_path / "slice.nii.gz", np.full(shape, -1000, np.int16), (5.0, 1.0, 1.0)[-len(shape):])
    with pytest.raises(NotVolumeError, match="single 2D image"):
        read_scan(path)


def test_dicom_without_rescale_tags_has_no_hu(tmp_path):
    write_ct_series(tmp_path / "ct", head(shape=(3, 8, 8)), (5.0, 1.0, 1.0), rescale=None)
    with pytest.raises(NoHUCalibrationError, match="RescaleIntercept/RescaleSlope"):
        read_scan(tmp_path / "ct")


@pytest.mark.parametrize("values", ["raw", "constant_zero"])
def test_image_file_without_air_is_not_hu(tmp_path, values):
    array = head(shape=(4, 8, 8)) + 1024 if values == "raw" else np.zeros((4, 8, 8))
    path = write_image(tmp_path / "raw.nrrd", array.astype(np.int16), (5.0, 1.0, 1.0))
    with pytest.raises(NoHUCalibrationError, match="no value below -500"):
        read_scan(path)


def test_constant_air_image_is_read(tmp_path):
    path = write_image(tmp_path / "air.mha", np.full((3, 4, 4), -1000, np.int16), (5.0, 1.0, 1.0))
    assert float(read_scan(path).array.max()) == -1000.0


def test_absurd_header_size_is_refused_before_reading(tmp_path):
    header = tmp_path / "huge.mha"
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 100000 100000 100000\nElementType = MET_SHORT\n"
        "ElementSpacing = 1 1 1\nElementDataFile = LOCAL\n"
    )
    with pytest.raises(ScanTooLargeError, match="100000 x 100000 x 100000"):
        read_scan(header)


def test_scan_over_the_worker_memory_bound_is_refused_and_says_what_to_do(tmp_path):
    # 512 x 512 x 382 is one slice over MAX_VOXELS (100 million voxels, about 2.5 GiB measured).
    header = tmp_path / "thin.mha"
    header.write_text(
        "ObjectType = Image\nNDims = 3\nDimSize = 512 512 382\nElementType = MET_SHORT\n"
        "ElementSpacing = 0.4 0.4 0.3\nElementDataFile = LOCAL\n"
    )
    with pytest.raises(ScanTooLargeError, match=r"512 x 512 x 382 voxels.*3 GiB.*thicker slices .*slabs\)\.$"):
        read_scan(header)
    header.write_text(header.read_text().replace("512 512 382", "512 512 381"))
    with pytest.raises(ScanError) as error:  # within the bound: refused only because the pixels are missing
        read_scan(header)
    assert not isinstance(error.value, ScanTooLargeError)


def test_absurd_dicom_image_size_is_refused(tmp_path):
    written = write_ct_series(tmp_path / "ct", head(shape=(3, 8, 8)), (5.0, 1.0, 1.0))
    for path in written.files:
        ds = pydicom.dcmread(path)
        ds.Rows = ds.Columns = 65535
        ds.save_as(path)
    with pytest.raises(ScanTooLargeError, match="65535 x 65535"):
        read_scan(tmp_path / "ct")


def test_every_scan_error_is_one_sentence(tmp_path):
    with pytest.raises(ScanError) as error:
        read_scan(tmp_path / "nowhere")
    message = str(error.value)
    assert message.endswith(".") and "\n" not in message


# --- masks ---------------------------------------------------------------------------------------------


def scan_volume(shape=(4, 8, 8), spacing=(5.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0)) -> Volume:
    return Volume(array=np.full(shape, -1000.0, np.float32), spacing=spacing, origin=origin)


def test_mask_on_the_same_grid_is_returned_as_labels(tmp_path):
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1:3, 2:5, 3:6] = 2
    path = write_image(tmp_path / "mask.nii.gz", labels.astype(np.float32), (5.0, 1.0, 1.0))
    mask = read_mask(path, like=scan_volume())
    assert mask.array.dtype == np.uint8
    np.testing.assert_array_equal(mask.array, labels)


def test_empty_mask_is_read(tmp_path):
    path = write_image(tmp_path / "empty.nrrd", np.zeros((4, 8, 8), np.uint8), (5.0, 1.0, 1.0))
    assert read_mask(path).array.sum() == 0


def test_mask_on_a_coarser_grid_is_resampled_nearest_neighbour(tmp_path):
    coarse = np.zeros((2, 4, 4), np.uint8)
    coarse[1, 1, 2] = 3  # covers fine voxels z 2-3, y 2-3, x 4-5
    path = write_image(tmp_path / "coarse.mha", coarse, (10.0, 2.0, 2.0), origin=(0.5, 0.5, 2.5))
    mask = read_mask(path, like=scan_volume())
    expected = np.zeros((4, 8, 8), np.uint8)
    expected[2:4, 2:4, 4:6] = 3
    np.testing.assert_array_equal(mask.array, expected)
    assert mask.spacing == (5.0, 1.0, 1.0)


def test_mask_outside_the_scan_is_refused(tmp_path):
    path = write_image(tmp_path / "far.nii.gz", np.ones((4, 8, 8), np.uint8), (5.0, 1.0, 1.0), origin=(500.0, 0.0, 0.0))
    with pytest.raises(MaskOutsideScanError):
        read_mask(path, like=scan_volume())


def test_probability_mask_is_refused(tmp_path):
    path = write_image(tmp_path / "prob.nii.gz", np.full((4, 8, 8), 0.3, np.float32), (5.0, 1.0, 1.0))
    with pytest.raises(MaskValuesError, match="fractional"):
        read_mask(path)


def test_mask_stored_as_a_dicom_series(tmp_path):
    labels = np.zeros((4, 8, 8))
    labels[2, 3, 3] = 1
    write_ct_series(tmp_path / "seg", labels, (5.0, 1.0, 1.0), rescale=None, kernel=None, modality="OT")
    mask = read_mask(tmp_path / "seg")
    np.testing.assert_array_equal(mask.array, labels.astype(np.uint8))


# --- more real-world folders -------------------------------------------------------------------------


def test_files_without_part10_header_are_read(tmp_path):
    hu = head(shape=(4, 8, 8))
    written = write_ct_series(tmp_path / "raw", hu, (5.0, 1.0, 1.0), part10=False)
    assert written.files[0].suffix == "" and written.files[0].read_bytes()[128:132] != b"DICM"
    np.testing.assert_array_equal(read_scan(tmp_path / "raw").array, hu)


def test_non_contrast_series_is_chosen_over_a_thinner_cta(tmp_path):
    folder = tmp_path / "study"
    ncct = write_ct_series(folder, head(shape=(10, 16, 16)), (5.0, 1.0, 1.0)).series_uid
    cta = {"ContrastBolusAgent": "Iodine"}
    write_ct_series(folder, head(shape=(46, 16, 16)), (1.0, 1.0, 1.0), description="CTA head", tags=cta)
    volume = read_scan(folder)
    assert volume.meta.series_uid == ncct
    assert "contrast-enhanced" in " ".join(volume.meta.notes)


def test_perfusion_series_with_repeated_positions_is_not_chosen(tmp_path):
    folder = tmp_path / "study"
    ncct = write_ct_series(folder, head(shape=(6, 16, 16)), (5.0, 1.0, 1.0)).series_uid
    z = [5.0 * (k % 4) for k in range(40)]  # 10 time points of 4 positions
    write_ct_series(folder, head(shape=(40, 16, 16)), (5.0, 1.0, 1.0), slice_z=z, description="Brain 4D")
    volume = read_scan(folder)
    assert volume.meta.series_uid == ncct
    assert "repeated slice positions" in " ".join(volume.meta.notes)


def test_image_file_with_one_row_is_2d(tmp_path):
    path = write_image(tmp_path / "row.mha", np.full((8, 1, 8), -1000, np.int16), (5.0, 1.0, 1.0))
    with pytest.raises(NotVolumeError, match=r"single 2D image \(8 x 8\)"):
        read_scan(path)


def test_mask_written_on_a_tilt_corrected_grid_reads_back_unchanged(tmp_path):
    spacing = (5.0, 2.0, 2.0)
    written = write_ct_series(tmp_path / "tilt", head(), spacing, tilt_deg=20.0)
    scan = read_scan(tmp_path / "tilt")
    labels = np.zeros(scan.array.shape, np.uint8)
    labels[4:8, 20:40, 20:40] = 1
    write_image(tmp_path / "m.nrrd", labels, scan.spacing, origin=scan.origin, direction=scan.direction)
    mask = read_mask(tmp_path / "m.nrrd", like=scan)
    np.testing.assert_array_equal(mask.array, labels)
    assert written.series_uid == scan.meta.series_uid


def test_multiframe_header_with_absurd_frame_count_is_refused_early(tmp_path):
    written = write_ct_series(tmp_path / "mf", head(shape=(3, 8, 8)), (5.0, 1.0, 1.0), multiframe=True)
    ds = pydicom.dcmread(written.files[0])
    ds.NumberOfFrames = 100_000_000
    ds.save_as(written.files[0])
    with pytest.raises(ScanTooLargeError, match="100000000 frames"):
        read_scan(tmp_path / "mf")


def test_two_studies_in_one_folder_are_flagged(tmp_path):
    folder = tmp_path / "patient"
    write_ct_series(folder, head(shape=(6, 8, 8)), (5.0, 1.0, 1.0))
    write_ct_series(folder, head(shape=(6, 8, 8)), (5.0, 1.0, 1.0))  # another StudyInstanceUID
    notes = " ".join(read_scan(folder).meta.notes)
    assert "from 2 studies" in notes and "series_uid" in notes


def test_4d_image_file_is_not_one_scan(tmp_path):
    frames = [sitk.GetImageFromArray(np.full((3, 4, 4), -1000, np.int16)) for _ in range(2)]
    sitk.WriteImage(sitk.JoinSeries(frames), str(tmp_path / "dyn.nii.gz"))
    with pytest.raises(NotVolumeError, match="4D image"):
        read_scan(tmp_path / "dyn.nii.gz")


def test_colour_image_file_is_not_ct(tmp_path):
    rgb = sitk.GetImageFromArray(np.zeros((3, 4, 4, 3), np.uint8), isVector=True)
    sitk.WriteImage(rgb, str(tmp_path / "rgb.mha"))
    with pytest.raises(NotCTError, match="3 components"):
        read_scan(tmp_path / "rgb.mha")


def test_image_file_with_nan_is_not_hu(tmp_path):
    hu = head(shape=(3, 4, 4)).astype(np.float32)
    hu[1, 1, 1] = np.nan
    path = write_image(tmp_path / "nan.nrrd", hu, (5.0, 1.0, 1.0))
    with pytest.raises(NoHUCalibrationError, match="not numbers"):
        read_scan(path)


def test_mask_of_a_top_down_file_is_written_back_in_the_file_geometry(tmp_path):
    """A NIfTI stored top-down is read superior-up, yet a mask written `like` it overlays the file."""
    import SimpleITK as sitk

    from corelab.io.read import read_scan
    from corelab.io.volume import write_image

    hu = np.full((6, 16, 16), -1000.0, dtype=np.float32)
    hu[:, 4:12, 4:12] = 30.0
    hu[0] = 80.0  # marks the first stored slice (the top of the head in this file)
    image = sitk.GetImageFromArray(hu)
    image.SetSpacing((0.5, 0.5, 5.0))
    image.SetDirection((1, 0, 0, 0, 1, 0, 0, 0, -1))  # slice index runs towards inferior
    path = tmp_path / "topdown.nii.gz"
    sitk.WriteImage(image, str(path))

    volume = read_scan(path)
    assert volume.array[-1, 8, 8] == 80.0  # superior slice last after reading
    assert volume.meta.stored_grid is not None

    labels = (volume.array == 80.0).astype(np.uint8)
    out = tmp_path / "mask.nii.gz"
    write_image(labels, volume, out)
    written = sitk.ReadImage(str(out))
    assert written.GetSize() == image.GetSize()
    assert np.allclose(written.GetDirection(), image.GetDirection())
    assert np.allclose(written.GetOrigin(), image.GetOrigin())
    stored_labels = sitk.GetArrayFromImage(written)
    assert stored_labels[0].all() and not stored_labels[1:].any()
