"""The pure steps behind read_scan (grid, series rules, date-times), on hand-worked arrays."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import write_ct_series
from pydicom.dataset import FileDataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from corelab.io.errors import InconsistentSeriesError, SliceGapError
from corelab.io.grid import align_slices, even_slice_spacing, resample_slices, stack_geometry
from corelab.io.read import orient_superior, read_scan
from corelab.io.series import SeriesSummary, kernel_class, parse_dicom_datetime, rank_series
from corelab.io.volume import Volume, to_sitk

ROW, COL = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])


def test_stack_geometry_measures_a_hand_made_shear():
    # Table steps of 10 mm along z with the image plane tilted 30 degrees about x: the normal is
    # (0, -sin 30, cos 30); along it slices are 10 cos 30 apart, and each is 10 sin 30 = 5 mm
    # further along the column direction than the one below.
    t = np.deg2rad(30.0)
    col = np.array([0.0, np.cos(t), np.sin(t)])
    positions = np.array([[0.0, 0.0, 20.0], [0.0, 0.0, 0.0], [0.0, 0.0, 10.0]])
    geometry = stack_geometry(positions, ROW, col)
    assert geometry.order.tolist() == [1, 2, 0]
    np.testing.assert_allclose(geometry.positions_mm, [0.0, 10 * np.cos(t), 20 * np.cos(t)])
    np.testing.assert_allclose(geometry.shifts_mm, [[0, 0], [0, 5.0], [0, 10.0]], atol=1e-12)
    assert geometry.tilt_deg == pytest.approx(30.0)
    np.testing.assert_allclose(geometry.slice_axis, [0.0, -np.sin(t), np.cos(t)])


def test_stack_geometry_normal_points_superior_even_for_a_feet_first_orientation():
    # Column direction -y makes row x col point inferior; corelab's slice axis must still go up.
    geometry = stack_geometry(np.array([[0, 0, 0.0], [0, 0, 5.0]]), ROW, -COL)
    assert geometry.slice_axis == (0.0, 0.0, 1.0)
    assert geometry.order.tolist() == [0, 1] and geometry.tilt_deg == 0.0


def test_align_slices_nearest_keeps_labels_and_fills_outside():
    labels = np.zeros((2, 4, 1), np.uint8)
    labels[1, 1, 0] = 4
    out = align_slices(labels, np.array([[0.0, 0.0], [0.0, 2.0]]), (1.0, 1.0), order=0, fill=0)
    assert out[1, :, 0].tolist() == [0, 0, 0, 4]
    assert out.dtype == np.uint8 and out[0].sum() == 0


def test_align_slices_linear_half_pixel():
    hu = np.zeros((2, 1, 3), np.float32)
    hu[1, 0] = [0.0, 10.0, 20.0]
    out = align_slices(hu, np.array([[0.0, 0.0], [0.5, 0.0]]), (1.0, 1.0), fill=0.0)
    np.testing.assert_allclose(out[1, 0, 1:], [5.0, 15.0])


def test_even_spacing_tolerates_rounded_positions():
    spacing, even = even_slice_spacing(np.array([0.0, 0.6, 1.25, 1.875, 2.5]))  # 0.625 mm rounded
    assert not even and spacing == pytest.approx(0.625)
    spacing, even = even_slice_spacing(np.array([0.0, 5.001, 10.0]))
    assert even and spacing == pytest.approx(5.0)


def test_gap_bound_is_two_spacings():
    assert even_slice_spacing(np.array([0.0, 5.0, 15.0, 20.0, 25.0])) == (5.0, False)
    with pytest.raises(SliceGapError, match="11.0 mm gap"):
        even_slice_spacing(np.array([0.0, 5.0, 16.0, 21.0, 26.0]))


def test_single_slice_has_no_spacing():
    with pytest.raises(InconsistentSeriesError, match="single slice"):
        even_slice_spacing(np.array([3.0]))


def test_resample_slices_nearest_for_labels():
    labels = np.array([1, 2, 3], np.uint8)[:, None, None]
    out, z = resample_slices(labels, np.array([0.0, 5.0, 15.0]), spacing_mm=5.0, order=0)
    assert out[:, 0, 0].tolist() == [1, 2, 3, 3] and z.tolist() == [0.0, 5.0, 10.0, 15.0]


def test_resample_slices_keeps_both_ends_by_adjusting_the_step():
    hu = np.array([0.0, 10.0, 20.0], np.float32)[:, None, None]
    out, z = resample_slices(hu, np.array([0.0, 4.0, 11.0]), spacing_mm=5.0)
    np.testing.assert_allclose(z, [0.0, 5.5, 11.0])
    np.testing.assert_allclose(out[:, 0, 0], [0.0, 10.0 + 10.0 * 1.5 / 7.0, 20.0], rtol=1e-6)


@pytest.mark.parametrize(
    ("kernel", "description", "expected"),
    [
        ("H30s", "", "soft"),
        ("J40s", "", "soft"),
        ("Hr38\\3", "", "soft"),
        ("H70h", "", "sharp"),
        ("Hr64", "", "sharp"),
        ("STANDARD", "", "soft"),
        ("BONEPLUS", "", "sharp"),
        ("FC26", "", "soft"),
        ("FC30", "", "sharp"),
        ("UB", "", "soft"),
        ("YD", "", "sharp"),
        ("", "Head bone 1mm", "sharp"),
        ("", "Brain 5mm", "soft"),
        ("XYZ", "", "unknown"),
    ],
)
def test_kernel_class(kernel, description, expected):
    assert kernel_class(kernel, description) == expected


def summary(uid, *, kernel_class="soft", n=20, extent=100.0, axial=True):
    return SeriesSummary(uid, "CT", "", "", kernel_class, n, extent, False, True, axial)


def test_rank_series_rules_in_order():
    ranked = rank_series([
        summary("coronal", n=200, extent=150.0, axial=False),
        summary("partial_thin", n=100, extent=50.0),
        summary("bone_thin", kernel_class="sharp", n=200),
        summary("soft_thick", n=20, extent=95.0),  # within 90% of the longest: full coverage
        summary("soft_thin", n=80, extent=98.0),
    ])
    assert [s.series_uid for s in ranked] == ["soft_thin", "soft_thick", "bone_thin", "partial_thin", "coronal"]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("20240301", "0815"), dt.datetime(2024, 3, 1, 8, 15)),
        (("2024.03.01", "08:15:30"), dt.datetime(2024, 3, 1, 8, 15, 30)),
        (("20240301", "081530.123"), dt.datetime(2024, 3, 1, 8, 15, 30, 123000)),
        (("20240231", "081530"), None),  # no 31 February
        (("20240301", ""), None),
        (("", "081530"), None),
    ],
)
def test_parse_dicom_date_and_time(args, expected):
    assert parse_dicom_datetime(*args) == expected


def test_parse_dicom_datetime_value():
    assert parse_dicom_datetime(datetime="20240301235959-0500") == dt.datetime(2024, 3, 1, 23, 59, 59)
    assert parse_dicom_datetime(datetime="20240301") is None


def test_orient_superior_reorients_a_sagittal_stack_without_moving_voxels():
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    # Array axes x -> posterior (y), y -> inferior (-z), z -> left (x): a sagittal stack.
    sagittal = Volume(array=array, spacing=(3.0, 2.0, 1.0), direction=(0, 0, 1, 1, 0, 0, 0, -1, 0))
    upright = orient_superior(sagittal)
    direction = np.asarray(upright.direction).reshape(3, 3)
    np.testing.assert_allclose(direction, np.eye(3), atol=1e-12)
    before, after = to_sitk(sagittal), to_sitk(upright)
    for index in [(0, 0, 0), (3, 2, 1), (1, 2, 0)]:
        point = before.TransformIndexToPhysicalPoint(index)
        assert after.GetPixel(after.TransformPhysicalPointToIndex(point)) == before.GetPixel(index)
    assert "not axial" in upright.meta.notes[-1]


def test_single_multiframe_file_is_read_and_non_image_dicom_is_skipped(tmp_path):
    hu = np.full((4, 8, 8), -1000.0)
    hu[2, 3, 3] = 50.0
    written = write_ct_series(tmp_path / "ct", hu, (5.0, 1.0, 1.0), multiframe=True)
    np.testing.assert_array_equal(read_scan(written.files[0]).array, hu)
    report = _basic_text_sr(tmp_path / "ct" / "report.dcm")
    volume = read_scan(tmp_path / "ct")
    assert report.exists() and any("1 file in" in note for note in volume.meta.notes)


def _basic_text_sr(path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.SeriesInstanceUID = generate_uid()
    ds.save_as(path, enforce_file_format=True)
    assert pydicom.dcmread(path).Modality == "SR"
    return path
