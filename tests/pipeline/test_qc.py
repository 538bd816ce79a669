"""QC images: windowing, colours of Figure 3, slice choice, and a PNG that reads back.

Outlines, markers, aspect and title: test_qc_outlines.py."""

import io

import matplotlib.image as mpimg
import numpy as np
import pytest

from corelab.pipeline.qc import (
    LABEL_COLORS,
    choose_slices,
    png_bytes,
    qc_figure,
    window_gray,
)


def test_window_maps_center_to_mid_gray_and_clips():
    hu = np.array([19.9, 20.0, 35.0, 50.0, 1000.0, -1000.0])
    assert window_gray(hu, center=35, width=30).tolist() == [0, 0, 128, 255, 255, 0]
    assert window_gray(np.array([0.0, 40.0, 80.0]), center=40, width=80).tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="positive width"):
        window_gray(hu, center=35, width=0)


def test_label_colours_are_figure_3():
    red, orange, yellow, blue = (np.asarray(LABEL_COLORS[v]) for v in (1, 2, 3, 4))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert orange[0] > 200 and 100 < orange[1] < 200 and orange[2] < 60
    assert yellow[0] > 200 and yellow[1] > 200 and yellow[2] < 60
    assert blue[2] > 200 and blue[0] < 60


def test_choose_slices_prefers_labelled_then_middle():
    labels = np.zeros((12, 4, 4), np.uint8)
    labels[9, :2] = 1  # 8 voxels
    labels[3, 0, 0] = 4  # 1 voxel
    assert choose_slices(labels, n=2) == [3, 9]
    assert choose_slices(labels, n=4) == [3, 5, 6, 9]  # middle of 0..11 is 5.5
    assert choose_slices(np.zeros((1, 3, 3), np.uint8), n=4) == [0]  # one slice
    assert choose_slices(np.zeros((5, 3, 3), np.uint8), n=3) == [1, 2, 3]  # empty mask
    wide = np.zeros((20, 4, 4), np.uint8)
    wide[4:17, 0, 0] = 2  # a lesion over slices 4..16, widest on slice 9
    wide[9] = 2
    assert choose_slices(wide, n=4) == [4, 9, 12, 16]  # spread 4, 8, 12, 16 with 8 -> widest 9
    stray = np.zeros((30, 20, 20), np.uint8)
    stray[10:19, 5:15, 5:15] = 2  # the lesion: 100 voxels on each of slices 10..18
    stray[2, 0, 0] = stray[27, 0, 0] = 1  # one stray voxel at the skull base and one at the vertex
    assert choose_slices(stray, n=4) == [10, 13, 15, 18]


def test_qc_png_reads_back_with_labels_drawn():
    hu = np.full((6, 40, 30), 35.0, np.float32)  # a constant image
    labels = np.zeros(hu.shape, np.uint8)
    labels[2, 10:20, 10:20] = 1
    labels[4, 5:8, 5:8] = 4

    def colour_pixels(lab):
        image = mpimg.imread(io.BytesIO(png_bytes(qc_figure(hu, lab, (5.0, 0.5, 0.5), title="P1", n_slices=3))))
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
        rgb = (image[..., :3] * 255).round().astype(int)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        reddish = (r > g + 60) & (r > b + 60) & (abs(g - b) < 20)  # red outline, antialiased over gray
        bluish = (b > r + 60) & (b > g + 40)
        return reddish.sum(), bluish.sum()

    red, blue = colour_pixels(labels)
    red0, blue0 = colour_pixels(np.zeros_like(labels))  # only the legend is coloured
    assert red > red0 + 200 and blue > blue0 + 20


def test_qc_figure_rejects_mismatched_arrays():
    with pytest.raises(ValueError, match="same shape"):
        qc_figure(np.zeros((2, 3, 3)), np.zeros((2, 3, 4), np.uint8), (5.0, 1.0, 1.0))
