"""QC outlines, reference outline, L/R markers, physical aspect and the title's volumes.

The PNG is decoded and read at positions that the figure's own transforms give for known mm
coordinates, so the tests do not depend on the layout's margins.
"""

import io

import matplotlib.image as mpimg
import numpy as np
import pytest

from corelab.measure import measure_labels
from corelab.pipeline.qc import (
    LABEL_COLORS,
    REFERENCE_COLOR,
    edge_letters,
    png_bytes,
    qc_figure,
    radiological_flips,
    slice_rule,
    volume_line,
)

IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
X_FLIPPED = (-1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


def render(hu, labels, spacing, **kwargs):
    """(figure, RGB 0-255 int array of its PNG); the figure's transforms are those of the PNG."""
    fig = qc_figure(hu, labels, spacing, **kwargs)
    rgb = (mpimg.imread(io.BytesIO(png_bytes(fig)))[..., :3] * 255).round().astype(int)
    return fig, rgb


def to_pixel(fig, ax, x_mm, y_mm):
    """(row, column) of the PNG pixel at data point (x_mm, y_mm) of ``ax``."""
    x, y = ax.transData.transform((x_mm, y_mm))
    return round(fig.bbox.height - y), round(x)


def near(rgb, color, tol=45):
    return np.abs(rgb - np.asarray(color)).max(axis=-1) <= tol


def square_scan(value=1, *, shape=(1, 60, 60), box=(20, 40)):
    hu = np.full(shape, 35.0, np.float32)  # constant: mid gray in the 35/30 window
    labels = np.zeros(shape, np.uint8)
    labels[:, box[0]:box[1], box[0]:box[1]] = value
    return hu, labels


def edge_hits(fig, ax, rgb, color, lo, hi, *, reach=2):
    """Per sample point along the four edges of the square [lo, hi] mm (corners left out): whether
    ``color`` appears within ``reach`` pixels."""
    hits = []
    for t in np.linspace(lo + 2, hi - 2, 40):
        for x_mm, y_mm in ((t, lo), (t, hi), (lo, t), (hi, t)):
            r, c = to_pixel(fig, ax, x_mm, y_mm)
            hits.append(near(rgb[r - reach:r + reach + 1, c - reach:c + reach + 1], color).any())
    return np.asarray(hits)


@pytest.mark.parametrize("value", [1, 2, 3, 4])
def test_outline_lies_on_the_lesion_border_not_inside(value):
    hu, labels = square_scan(value)  # a 20 x 20 mm square, 1 mm pixels, edges at 20 and 40 mm
    fig, rgb = render(hu, labels, (5.0, 1.0, 1.0), direction=IDENTITY)
    ax = fig.axes[1]  # first row, stroke window with outlines
    color = LABEL_COLORS[value]
    assert edge_hits(fig, ax, rgb, color, 20.0, 40.0).all()
    (r0, c0), (r1, c1) = to_pixel(fig, ax, 23.0, 23.0), to_pixel(fig, ax, 37.0, 37.0)
    interior = rgb[r0:r1, c0:c1]
    assert not near(interior, color).any()
    assert np.abs(interior - 128).max() <= 2  # the scan's gray, not a fill
    (r0, c0), (r1, c1) = to_pixel(fig, ax, 3.0, 3.0), to_pixel(fig, ax, 17.0, 57.0)
    assert not near(rgb[r0:r1, c0:c1], color).any()  # nothing drawn outside the lesion either
    bare = fig.axes[0]  # the stroke window column carries no outline
    (r0, c0), (r1, c1) = to_pixel(fig, bare, 15.0, 15.0), to_pixel(fig, bare, 45.0, 45.0)
    assert not near(rgb[r0:r1, c0:c1], color).any()


def test_outline_is_thin():
    hu, labels = square_scan(1)
    fig, rgb = render(hu, labels, (5.0, 1.0, 1.0), direction=IDENTITY)
    ax = fig.axes[1]
    r, c0 = to_pixel(fig, ax, 20.0, 30.0)  # across the left edge, halfway down
    _, c1 = to_pixel(fig, ax, 30.0, 30.0)
    run = near(rgb[r, c0 - 8:c1], LABEL_COLORS[1], tol=80)
    assert 1 <= run.sum() <= 3  # 1-2 px at the PNG's resolution, plus one antialiased pixel


def test_reference_outline_is_dashed_cyan_and_only_when_given():
    hu, labels = square_scan(1, shape=(1, 80, 80), box=(10, 30))
    reference = np.zeros_like(labels)
    reference[:, 45:70, 45:70] = 1
    fig, rgb = render(hu, labels, (5.0, 1.0, 1.0), direction=IDENTITY, reference=reference)
    ax = fig.axes[1]
    hits = edge_hits(fig, ax, rgb, REFERENCE_COLOR, 45.0, 70.0, reach=1)
    assert 0.3 < hits.mean() < 0.8  # drawn along the reference's edge, with the gaps of a dash
    assert "reference" in [t.get_text() for t in fig.legends[0].get_texts()]
    fig0, rgb0 = render(hu, labels, (5.0, 1.0, 1.0), direction=IDENTITY)
    assert not near(rgb0, REFERENCE_COLOR).any()
    assert "reference" not in [t.get_text() for t in fig0.legends[0].get_texts()]
    with pytest.raises(ValueError, match="reference mask"):
        qc_figure(hu, labels, (5.0, 1.0, 1.0), reference=reference[:, :10])


def test_lr_letters_follow_the_direction_cosines():
    assert edge_letters(IDENTITY) == ("R", "L")  # LPS x runs to the patient's left: radiological
    assert edge_letters(X_FLIPPED) == ("L", "R")
    assert radiological_flips(IDENTITY) == (False, False)
    assert radiological_flips(X_FLIPPED) == (False, True)
    assert radiological_flips((1, 0, 0, 0, -1, 0, 0, 0, 1)) == (True, False)  # rows running anterior
    # An axial grid turned 90 degrees in-plane: columns run posterior, so the edges are A and P.
    assert edge_letters((0, 1, 0, 1, 0, 0, 0, 0, 1)) == ("A", "P")
    assert radiological_flips((0, 1, 0, 1, 0, 0, 0, 0, 1)) == (False, False)


def test_markers_drawn_and_image_turned_to_radiological_view():
    hu = np.full((1, 40, 40), 35.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 15:25, 2:10] = 1  # low column indices
    for direction, on_image_left in ((IDENTITY, True), (X_FLIPPED, False)):
        fig, rgb = render(hu, labels, (5.0, 1.0, 1.0), direction=direction)
        ax = fig.axes[1]
        texts = sorted((t.get_position()[0], t.get_text()) for t in ax.texts)
        assert [letter for _, letter in texts] == ["R", "L"]  # after turning: right always on the left
        (r0, c0), (r1, c1) = to_pixel(fig, ax, 0.0, 0.0), to_pixel(fig, ax, 40.0, 40.0)
        columns = np.flatnonzero(near(rgb[r0:r1, c0:c1], LABEL_COLORS[1]).any(axis=0))
        assert (columns.mean() < (c1 - c0) / 2) == on_image_left
    fig = qc_figure(hu, labels, (5.0, 1.0, 1.0))  # no direction: no marker, and the caption says so
    assert not fig.axes[1].texts
    assert any("Orientation not given" in t.get_text() for t in fig.texts)


def test_pixels_drawn_at_their_physical_size():
    # 0.5 mm rows, 1.0 mm columns: a 10 x 10 mm square is 20 rows by 10 columns.
    hu = np.full((1, 80, 40), 35.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[:, 30:50, 15:25] = 1

    def bbox(spacing):
        fig, rgb = render(hu, labels, spacing, direction=IDENTITY)
        ax = fig.axes[1]
        x0, y0, x1, y1 = ax.get_window_extent().extents
        panel = rgb[int(fig.bbox.height - y1) + 2:int(fig.bbox.height - y0) - 2, int(x0) + 2:int(x1) - 2]
        rows, cols = np.nonzero(near(panel, LABEL_COLORS[1]))
        return rows.max() - rows.min(), cols.max() - cols.min()

    height, width = bbox((5.0, 0.5, 1.0))
    assert abs(height - width) <= 3
    height, width = bbox((5.0, 1.0, 1.0))  # the same array with square pixels: twice as tall
    assert abs(height / width - 2.0) < 0.1


def test_title_holds_ml_per_class_and_union():
    hu = np.full((2, 30, 30), 35.0, np.float32)
    labels = np.zeros(hu.shape, np.uint8)
    labels[0, :20, :20] = 1  # 400 voxels of 1 x 1 x 5 mm = 2.0 mL
    labels[1, :10, :20] = 2  # 1.0 mL
    labels[1, 20, 20] = 4  # one voxel: 0.005 mL
    fig = qc_figure(hu, labels, (5.0, 1.0, 1.0), direction=IDENTITY, title="P7")
    title = fig.get_suptitle()
    assert title.splitlines()[0] == "P7"
    assert "infarct 3.0 mL" in title
    for part in ("severe 2.0", "intermediate 1.0", "subtle 0", "hemorrhage <0.1"):
        assert part in title
    empty = qc_figure(hu, np.zeros_like(labels), (5.0, 1.0, 1.0), title="P8").get_suptitle()
    assert "no infarct" in empty
    # Measurements passed in are the ones shown (scan.py passes those of volumes.csv).
    given = measure_labels(labels, hu, (5.0, 2.0, 1.0))
    assert "severe 4.0" in qc_figure(hu, labels, (5.0, 1.0, 1.0), measurements=given).get_suptitle()
    assert volume_line(given).startswith("infarct 6.0 mL")


def test_caption_states_slice_rule_and_windows():
    labels = np.zeros((30, 20, 20), np.uint8)
    labels[10:19, 5:15, 5:15] = 2
    labels[2, 0, 0] = labels[27, 0, 0] = 1  # stray voxels at either end
    rule = slice_rule(labels, n=4)
    assert "spread over the labelled extent (slices 11-19" in rule and "2.5% of labelled voxels left out" in rule
    empty = slice_rule(np.zeros((12, 3, 3), np.uint8), n=4)
    assert empty == "Slices: nothing labelled; the 4 nearest the middle of the 12."
    few = np.zeros((12, 3, 3), np.uint8)
    few[3, 0, 0] = few[9, 0, 0] = 1
    assert slice_rule(few, n=4) == "Slices: the 2 labelled slices, then the 2 nearest the middle of the 12."
    caption = " ".join(t.get_text() for t in qc_figure(np.zeros(labels.shape), labels, (5.0, 1.0, 1.0)).texts)
    assert "35/30 HU" in caption and "40/80 HU" in caption and "Slices:" in caption


def test_air_around_the_head_is_cropped_and_the_lesion_kept():
    hu = np.full((3, 100, 100), -1000.0, np.float32)
    hu[:, 30:70, 40:60] = 35.0  # a 40 x 20 mm "head" in a 100 mm field of view
    labels = np.zeros(hu.shape, np.uint8)
    labels[1, 40:50, 45:55] = 3
    fig, rgb = render(hu, labels, (5.0, 1.0, 1.0), direction=IDENTITY)
    ax = fig.axes[1]
    x0, x1 = ax.get_xlim()
    y1, y0 = ax.get_ylim()
    assert (x1 - x0, y1 - y0) == (30.0, 50.0)  # the head plus 5 mm on each side, in mm
    x0, y0, x1, y1 = ax.get_window_extent().extents
    assert abs((y1 - y0) / (x1 - x0) - 50.0 / 30.0) < 0.02  # still drawn at its physical size
    assert near(rgb, LABEL_COLORS[3]).sum() > 100
