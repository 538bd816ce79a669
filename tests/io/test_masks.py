"""Reference and label masks that are not what they claim: values and grids (read_mask, mask_onto).

Split from tests/test_scans.py to keep files small; real files written with SimpleITK in tmp_path.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import SimpleITK as sitk

from corelab.errors import ScanError
from corelab.io.errors import MaskGridError, MaskValuesError
from corelab.io.read import mask_onto, read_mask
from corelab.io.volume import Volume


def _write(path, array, spacing_zyx, origin=(0.0, 0.0, 0.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in spacing_zyx[::-1]))
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return path


def _scan(shape=(4, 8, 8), spacing=(5.0, 0.5, 0.5)):
    return Volume(array=np.full(shape, -1000.0, np.float32), spacing=spacing)


def test_mask_with_the_scans_voxel_counts_but_default_1mm_spacing_is_refused(tmp_path):
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 1
    path = _write(tmp_path / "lost.nii.gz", labels, (1.0, 1.0, 1.0))  # an array saved without its header
    with pytest.raises(MaskGridError) as error:
        read_mask(path, like=_scan())
    message = str(error.value)
    assert "4 x 8 x 8 voxels but voxels of 1 x 1 x 1 mm instead of 5 x 0.5 x 0.5 mm" in message
    assert message.endswith(".") and "\n" not in message and isinstance(error.value, ScanError)


def test_same_voxel_counts_with_spacing_rounded_in_the_header_is_the_same_grid(tmp_path):
    labels = np.zeros((4, 8, 8), np.uint8)
    labels[1, 2:4, 2:4] = 1
    # 0.5 mm written as 0.502 mm (rounded by an exporting tool): within 1%, so resampled, not refused;
    # nearest neighbour over 8 voxels lands every centre in its own voxel.
    path = _write(tmp_path / "ok.nii.gz", labels, (5.0, 0.502, 0.502))
    np.testing.assert_array_equal(read_mask(path, like=_scan()).array, labels)


def test_same_voxel_counts_and_spacing_with_a_shifted_origin_is_resampled_not_refused():
    mask = Volume(array=np.ones((4, 8, 8), np.uint8), spacing=(5.0, 0.5, 0.5), origin=(1.0, 0.0, 0.0))
    moved = mask_onto(mask, _scan())
    # shifted 1 mm = 2 columns in x: the first two columns of the scan lie outside the mask
    assert moved.array[:, :, :2].sum() == 0 and moved.array[:, :, 2:].all()


@pytest.mark.parametrize(
    "values, words",
    [
        (np.where(np.arange(256).reshape(4, 8, 8) % 2, 40.0, -1000.0), "negative values (lowest -1000)"),
        (np.arange(512, dtype=np.float64).reshape(8, 8, 8) + 3000, "512 different values up to 3511"),
        (np.full((4, 8, 8), 0.5), "fractional values"),
    ],
)
def test_an_image_or_probability_map_given_as_a_mask_is_refused(tmp_path, values, words):
    path = _write(tmp_path / "not_a_mask.nrrd", values.astype(np.float32), (5.0, 1.0, 1.0))
    with pytest.raises(MaskValuesError, match=re.escape(words)):
        read_mask(path)


@pytest.mark.parametrize("foreground", [1, 255, 1000])
def test_binary_masks_with_any_foreground_value_are_labels(tmp_path, foreground):
    labels = np.zeros((4, 8, 8), np.int32)
    labels[2, 3:5, 3:5] = foreground
    mask = read_mask(_write(tmp_path / "m.mha", labels, (5.0, 1.0, 1.0)))
    assert mask.array.dtype == (np.uint8 if foreground <= 255 else np.int32)
    assert int(np.count_nonzero(mask.array)) == 4 and int(mask.array.max()) == foreground
