"""Quality-control images: a few axial slices with the labels outlined over the scan.

Each chosen slice is shown three times: the stroke window the paper's readers used (center 35 HU,
width 30 HU) bare, the same window with the labels outlined, and a brain window (center 40 HU,
width 80 HU) with the outlines. Outlines, not fills: a fill hides the lesion edge the reader is
judging. Colours follow the paper's Figure 3: red severe, orange intermediate, yellow subtle, blue
hemorrhage; a reference read, when given, is a dashed cyan outline. Slices are drawn in radiological
view (patient's right on the image's left, anterior up) with L/R markers taken from the volume's
direction cosines, cropped to the head, and with their physical pixel size (mm), so an anisotropic
grid is not stretched. The title holds the volumes (mL) per class; a caption says how the slices were chosen and which
windows were used. Everything is pure (arrays in, a matplotlib Figure out; no pyplot); `png_bytes`
renders a figure in memory so that a dask worker can return it.

`reference_qc_png` is the image of `corelab compare`'s own QC set: the same figure with the
reference read's outline and the volumes of both reads in the title. The compare command hands it
to `corelab.report.agreement_report.compare`, which may not import pipeline (DESIGN, module layout).
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass

import numpy as np

from corelab.config import LABEL_NAMES, mask_class
from corelab.measure import Measurements, measure_labels

__all__ = [
    "LABEL_COLORS",
    "REFERENCE_COLOR",
    "QCWindows",
    "choose_slices",
    "edge_letters",
    "head_box",
    "png_bytes",
    "qc_figure",
    "radiological_flips",
    "slice_rule",
    "volume_line",
    "auto_class_title",
    "reference_qc_title",
    "reference_qc_png",
    "window_gray",
]

# RGB per label value (Figure 3 of Sales Barros et al. 2020).
LABEL_COLORS: dict[int, tuple[int, int, int]] = {
    1: (230, 25, 25),  # severe: red
    2: (255, 140, 0),  # intermediate: orange
    3: (255, 230, 0),  # subtle: yellow
    4: (30, 90, 255),  # hemorrhage: blue
}
REFERENCE_COLOR: tuple[int, int, int] = (0, 255, 255)  # cyan, dashed: no label colour is near it
_LINE_PT = 1.2  # outline width in points: 2 px at the PNG's 120 dpi
_DASH = (0, (3.0, 2.5))  # reference outline: dash and gap in line widths, open enough to tell at a glance
_DPI = 120
_TAIL = 0.025
# Patient direction at the negative and positive end of each LPS axis.
_AXIS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))


@dataclass(frozen=True)
class QCWindows:
    """Display windows in HU: (center, width)."""

    stroke: tuple[float, float] = (35.0, 30.0)
    brain: tuple[float, float] = (40.0, 80.0)


def window_gray(hu: np.ndarray, *, center: float, width: float) -> np.ndarray:
    """HU mapped to 0-255 gray through a display window (center and width in HU).

    >>> window_gray(np.array([0.0, 35.0, 50.0, 100.0]), center=35, width=30).tolist()
    [0, 128, 255, 255]
    """
    if not width > 0:
        raise ValueError(f"A display window needs a positive width in HU, not {width}.")
    low = center - width / 2.0
    scaled = (np.asarray(hu, dtype=np.float64) - low) / width
    return np.clip(np.round(scaled * 255.0), 0, 255).astype(np.uint8)


def _spread_extent(per_slice: np.ndarray, n: int, tail: float) -> list[int]:
    """Labelled slice indices to spread ``n`` picks over: all of them, less the end slices that
    together hold at most ``tail`` of the labelled voxels at either end (kept when trimming would
    leave fewer than ``n``)."""
    labelled = [int(i) for i in np.flatnonzero(per_slice)]
    counts = per_slice[labelled]
    low = int(np.searchsorted(np.cumsum(counts), tail * counts.sum(), side="right"))
    high = len(labelled) - int(np.searchsorted(np.cumsum(counts[::-1]), tail * counts.sum(), side="right"))
    return labelled[low:high] if high - low >= n else labelled


def choose_slices(labels: np.ndarray, *, n: int = 4, tail: float = _TAIL) -> list[int]:
    """Up to ``n`` axial slice indices, ascending.

    More than ``n`` labelled slices: ``n`` spread evenly over the labelled extent, always including
    the slice with the most labelled voxels. The extent leaves out end slices that together hold at
    most ``tail`` of the labelled voxels at either end: a few stray voxels at the skull base or
    vertex would otherwise take two of the rows a reviewer needs for the lesion.
    Otherwise: every labelled slice, then the slices nearest the middle of the scan (where the brain
    is) up to ``n``; with nothing labelled, the ``n`` middle slices. `slice_rule` words the choice.

    >>> lab = np.zeros((10, 2, 2), np.uint8); lab[7] = 1; lab[2, 0, 0] = 3
    >>> choose_slices(lab, n=3)
    [2, 4, 7]
    """
    depth = labels.shape[0]
    n = max(1, min(n, depth))
    per_slice = (labels > 0).reshape(depth, -1).sum(axis=1)
    if np.count_nonzero(per_slice) > n:
        extent = _spread_extent(per_slice, n, tail)
        # Spread over the lesion's extent rather than n neighbouring slices of its widest part.
        picks = [extent[int(round(k))] for k in np.linspace(0, len(extent) - 1, n)]
        largest = int(np.argmax(per_slice))
        if largest not in picks:
            picks[int(np.argmin([abs(p - largest) for p in picks]))] = largest
        return sorted(set(picks))
    chosen = [int(i) for i in np.flatnonzero(per_slice)]
    # Fill from the middle outwards: the brain is in the middle slices, skull base and vertex at the ends.
    for i in sorted(range(depth), key=lambda k: (abs(k - (depth - 1) / 2.0), k)):
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen)


def slice_rule(labels: np.ndarray, *, n: int = 4, tail: float = _TAIL) -> str:
    """One sentence saying how `choose_slices` picked the slices of ``labels`` (slice numbers from 1).

    >>> lab = np.zeros((10, 2, 2), np.uint8); lab[7] = 1
    >>> slice_rule(lab, n=3)
    'Slices: the 1 labelled slice, then the 2 nearest the middle of the 10.'
    """
    depth = labels.shape[0]
    n = max(1, min(n, depth))
    per_slice = (labels > 0).reshape(depth, -1).sum(axis=1)
    n_labelled = int(np.count_nonzero(per_slice))
    if n_labelled == 0:
        return f"Slices: nothing labelled; the {n} nearest the middle of the {depth}."
    if n_labelled <= n:
        rest = f", then the {n - n_labelled} nearest the middle of the {depth}" if n_labelled < n else f" of {depth}"
        return f"Slices: the {n_labelled} labelled slice{'s' if n_labelled > 1 else ''}{rest}."
    extent = _spread_extent(per_slice, n, tail)
    trimmed = len(extent) < n_labelled
    return (
        f"Slices: {len(choose_slices(labels, n=n, tail=tail))} of {depth}, spread over the labelled extent"
        f" (slices {extent[0] + 1}-{extent[-1] + 1}"
        + (f"; end slices holding <= {tail:.1%} of labelled voxels left out" if trimmed else "")
        + "), always showing the slice with the most labelled voxels."
    )


def _letter(vector: np.ndarray) -> str:
    axis = int(np.argmax(np.abs(vector)))
    return _AXIS_LETTERS[axis][int(vector[axis] > 0)]


def edge_letters(direction) -> tuple[str, str]:
    """The patient side at the (left, right) edge of an axial slice drawn as stored, column index
    increasing to the right. direction: the 9 direction cosines of `corelab.io.Volume` (LPS,
    row-major as SimpleITK: column k of the matrix is array axis k in x, y, z order).

    >>> edge_letters((1, 0, 0, 0, 1, 0, 0, 0, 1)), edge_letters((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    (('R', 'L'), ('L', 'R'))
    """
    column_axis = np.asarray(direction, dtype=float).reshape(3, 3)[:, 0]
    return _letter(-column_axis), _letter(column_axis)


def radiological_flips(direction) -> tuple[bool, bool]:
    """(flip rows, flip columns) that show a stored axial slice in radiological view: patient's
    right on the image's left, anterior at the top. An axis is flipped only when it runs mainly
    along x (columns) or y (rows) the wrong way; an oblique grid keeps its letters as they are.

    >>> radiological_flips((1, 0, 0, 0, 1, 0, 0, 0, 1)), radiological_flips((-1, 0, 0, 0, -1, 0, 0, 0, 1))
    ((False, False), (True, True))
    """
    matrix = np.asarray(direction, dtype=float).reshape(3, 3)
    column_axis, row_axis = matrix[:, 0], matrix[:, 1]
    flip_columns = int(np.argmax(np.abs(column_axis))) == 0 and column_axis[0] < 0
    flip_rows = int(np.argmax(np.abs(row_axis))) == 1 and row_axis[1] < 0
    return bool(flip_rows), bool(flip_columns)


def _ml(value: float) -> str:
    # "0.0" would read as empty for a few voxels; say how small instead.
    return "0" if value == 0 else "<0.1" if value < 0.05 else f"{value:.1f}"


def volume_line(measurements: Measurements, *, what: str = "infarct") -> str:
    """The volumes (mL) as the title's second line: the union first, then each class.

    what: the union's name ("automated infarct" where a reference read is drawn too).

    >>> m = measure_labels(np.array([[[1, 1, 4, 0]]]), np.zeros((1, 1, 4)), (10.0, 10.0, 10.0))
    >>> volume_line(m)
    'infarct 3.0 mL = severe 2.0 + intermediate 0 + subtle 0 + hemorrhage 1.0 mL'
    """
    if measurements.infarct_ml == 0:
        return f"{what}: none (0 mL in every class)" if what != "infarct" else "no infarct (0 mL in every class)"
    parts = [f"{LABEL_NAMES[v]} {_ml(getattr(measurements, LABEL_NAMES[v] + '_ml'))}" for v in LABEL_COLORS]
    return f"{what} {_ml(measurements.infarct_ml)} mL = " + " + ".join(parts) + " mL"


def _mean(mean_hu: float | None) -> str:
    return f" (mean {mean_hu:.1f} HU)" if mean_hu is not None and np.isfinite(mean_hu) else ""


def auto_class_title(measurements: Measurements) -> str:
    """The automated mask's class as the title names it (volumes.csv ``auto_class``), with the mean
    HU it comes from: the class follows the mean density, not the largest label.

    >>> auto_class_title(measure_labels(np.zeros((1, 1, 2), np.uint8), np.zeros((1, 1, 2)), (1.0, 1.0, 1.0)))
    'automated class: no infarct'
    >>> auto_class_title(measure_labels(np.array([[[1, 2]]], np.uint8), np.array([[[20.0, 26.0]]]), (1.0, 1.0, 1.0)))
    'automated class: intermediate (mean 23.0 HU)'
    """
    cls = mask_class(measurements.infarct_mean_hu, empty=measurements.infarct_ml == 0)
    return f"automated class: {cls}{_mean(measurements.infarct_mean_hu)}"


def _outline(ax, mask: np.ndarray, pixel_mm: tuple[float, float], color, *, dashed: bool = False) -> None:
    """Contour of a 2D mask along its pixel edges, in mm (imshow extent coordinates)."""
    if not mask.any():
        return
    padded = np.pad(mask.astype(np.float32), 1)  # closes the line of a mask touching the border
    ys = (np.arange(padded.shape[0]) - 0.5) * pixel_mm[0]
    xs = (np.arange(padded.shape[1]) - 0.5) * pixel_mm[1]
    ax.contour(xs, ys, padded, levels=[0.5], colors=[np.asarray(color) / 255.0], linewidths=_LINE_PT,
               linestyles=[_DASH] if dashed else "solid", antialiased=True)


def _panel(ax, gray, labels, reference, pixel_mm, letters) -> None:
    """One slice: gray image in mm, outlines (when labels are given), L/R markers."""
    height, width = gray.shape[0] * pixel_mm[0], gray.shape[1] * pixel_mm[1]
    ax.imshow(gray, cmap="gray", vmin=0, vmax=255, extent=(0, width, height, 0), interpolation="antialiased")
    if labels is not None:
        for value, color in LABEL_COLORS.items():
            _outline(ax, labels == value, pixel_mm, color)
        if reference is not None:
            _outline(ax, reference, pixel_mm, REFERENCE_COLOR, dashed=True)
    if letters is not None:
        # Upper corners, inside the panel: head CT corners are air, and a marker at the panel's
        # side would sit next to the neighbouring panel's opposite letter.
        for x, align, letter in ((0.03, "left", letters[0]), (0.97, "right", letters[1])):
            ax.text(x, 0.97, letter, transform=ax.transAxes, ha=align, va="top", color="white",
                    fontsize=11, fontweight="bold", bbox={"facecolor": "black", "alpha": 0.6, "pad": 1.5, "lw": 0})
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():  # a faint frame tells which panel a corner marker belongs to
        spine.set_color("#505050")


def _legend_and_caption(fig, caption: str, reference: bool, bottom_in: float) -> None:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=np.asarray(c) / 255.0, lw=2.5, label=LABEL_NAMES[v])
               for v, c in LABEL_COLORS.items()]
    if reference:
        handles.append(Line2D([], [], color=np.asarray(REFERENCE_COLOR) / 255.0, lw=2.0, ls=_DASH, label="reference"))
    height = fig.get_figheight()
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, (bottom_in - 0.02) / height),
               ncol=len(handles), frameon=False, labelcolor="white", fontsize=10, handlelength=2.2)
    fig.text(0.5, 0.08 / height, caption, ha="center", va="bottom", color="#d0d0d0", fontsize=8.5,
             linespacing=1.35)


def head_box(hu: np.ndarray, labels: np.ndarray, pixel_mm: tuple[float, float], *,
             margin_mm: float = 5.0, body_hu: float = -300.0) -> tuple[slice, slice]:
    """(rows, columns) of the in-plane box that holds the head (HU above ``body_hu``) and every
    label on any of the given [z, y, x] slices, widened by ``margin_mm``; the whole slice when
    nothing is there. Cropping the air around the head gives the brain the QC image's pixels.

    >>> hu = np.full((1, 100, 100), -1000.0); hu[0, 40:60, 30:50] = 35.0
    >>> head_box(hu, np.zeros(hu.shape, np.uint8), (1.0, 1.0))
    (slice(35, 65, None), slice(25, 55, None))
    """
    inside = (hu > body_hu).any(axis=0) | (labels > 0).any(axis=0)
    if not inside.any():
        return slice(0, hu.shape[1]), slice(0, hu.shape[2])
    box = []
    for axis, size, mm in ((1, hu.shape[1], pixel_mm[0]), (0, hu.shape[2], pixel_mm[1])):
        where = np.flatnonzero(inside.any(axis=axis))
        pad = int(np.ceil(margin_mm / mm))
        box.append(slice(max(0, int(where[0]) - pad), min(size, int(where[-1]) + 1 + pad)))
    return box[0], box[1]


def _shown_slices(hu, labels, reference, slices, direction, pixel_mm):
    """The chosen slices as drawn: cropped to the head, turned to radiological view when the
    direction is known; and the (left, right) edge letters (None without a direction)."""
    hu, labels = hu[slices], labels[slices]
    reference = None if reference is None else np.asarray(reference)[slices] != 0
    rows, cols = head_box(hu, labels, pixel_mm)
    hu, labels = hu[:, rows, cols], labels[:, rows, cols]
    reference = None if reference is None else reference[:, rows, cols]
    if direction is None:
        return hu, labels, reference, None
    flips = radiological_flips(direction)
    signs = [-1.0 if flips[1] else 1.0, -1.0 if flips[0] else 1.0, 1.0]  # array axes x, y, z
    shown = np.asarray(direction, dtype=float).reshape(3, 3) * signs
    axes = tuple(a for a, f in zip((1, 2), flips) if f)
    if axes:
        hu, labels = np.flip(hu, axis=axes), np.flip(labels, axis=axes)
        reference = None if reference is None else np.flip(reference, axis=axes)
    return hu, labels, reference, edge_letters(shown.ravel())


def _check(hu, labels, spacing, reference) -> None:
    if hu.shape != labels.shape or hu.ndim != 3:
        raise ValueError(f"Scan {hu.shape} and labels {labels.shape} must be 3D arrays of the same shape.")
    if len(spacing) != 3 or any(not float(s) > 0 for s in spacing):
        raise ValueError(f"Voxel spacing {tuple(spacing)} must give one positive size in mm per axis.")
    if reference is not None and np.shape(reference) != labels.shape:
        raise ValueError(f"The reference mask {np.shape(reference)} must have the labels' shape {labels.shape}.")


def qc_figure(
    hu: np.ndarray,
    labels: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    direction=None,
    reference: np.ndarray | None = None,
    measurements: Measurements | None = None,
    title: str = "",
    volume_label: str = "infarct",
    n_slices: int = 4,
    windows: QCWindows = QCWindows(),
):
    """A matplotlib Figure: rows = chosen axial slices (`choose_slices`); columns = stroke window,
    stroke window with outlines, brain window with outlines.

    hu, labels: [z, y, x] arrays of the same grid; spacing: (z, y, x) mm, the in-plane pair sets
    each pixel's drawn size. direction: the volume's 9 direction cosines (`corelab.io.Volume`); they
    turn slices to radiological view and place the L/R markers; None leaves slices as stored and
    draws no marker. reference: a manual mask (nonzero = infarct) on the same grid, outlined dashed
    cyan; the slices are then chosen on both masks. measurements: the volumes for the title, computed from ``labels`` when None.
    title: the first title line(s) (patient id, class); the volumes (mL) are the last, their union
    named ``volume_label`` (`volume_line`).
    """
    from matplotlib.figure import Figure

    _check(hu, labels, spacing, reference)
    # With a reference read, slices are chosen on both masks: a lesion the automated mask misses
    # must still be shown.
    chosen_on = labels if reference is None else ((labels > 0) | (np.asarray(reference) != 0)).astype(np.uint8)
    slices = choose_slices(chosen_on, n=n_slices)
    if measurements is None:
        measurements = measure_labels(labels, hu, spacing)
    pixel_mm = (float(spacing[1]), float(spacing[2]))
    shown_hu, shown_labels, shown_ref, letters = _shown_slices(hu, labels, reference, slices, direction, pixel_mm)
    stroke, brain = (f"{c:g}/{w:g} HU" for c, w in (windows.stroke, windows.brain))
    columns = [(f"stroke window {stroke}", windows.stroke, False), (f"outlines, {stroke}", windows.stroke, True),
               (f"outlines, brain window {brain}", windows.brain, True)]
    caption = _caption(chosen_on, n_slices, stroke, brain, letters is not None, reference is not None)
    rows, cols = shown_labels.shape[1:]
    heading = "\n".join(line for line in (*title.splitlines(), volume_line(measurements, what=volume_label)) if line)
    # 0.95 in holds two title lines and the column headings; each further line needs 0.25 in
    width_in, bottom_in, gap_in = 10.0, 0.55 + 0.17 * caption.count("\n"), 0.06
    top_in = 0.95 + 0.25 * max(0, heading.count("\n") - 1)
    panel_w = (width_in - 0.5 - 2 * gap_in) / 3
    panel_h = panel_w * (rows * pixel_mm[0]) / (cols * pixel_mm[1])
    height_in = top_in + bottom_in + len(slices) * panel_h + (len(slices) - 1) * gap_in
    fig = Figure(figsize=(width_in, height_in), dpi=_DPI, facecolor="black")
    axes = fig.subplots(len(slices), 3, squeeze=False)
    for row, z in enumerate(slices):
        for col, (name, (center, width), with_labels) in enumerate(columns):
            ax = axes[row][col]
            ax.set_facecolor("black")
            _panel(ax, window_gray(shown_hu[row], center=center, width=width),
                   shown_labels[row] if with_labels else None,
                   None if shown_ref is None else shown_ref[row], pixel_mm, letters)
            if row == 0:
                ax.set_title(name, color="white", fontsize=10)
            if col == 0:
                ax.set_ylabel(f"slice {z + 1}/{hu.shape[0]}", color="white", fontsize=10)
    fig.suptitle(heading, color="white", fontsize=13, y=1 - 0.06 / height_in, va="top", linespacing=1.4)
    _legend_and_caption(fig, caption, reference is not None, bottom_in)
    fig.subplots_adjust(left=0.4 / width_in, right=1 - 0.1 / width_in, top=1 - top_in / height_in,
                        bottom=bottom_in / height_in, wspace=gap_in / panel_w, hspace=gap_in / panel_h)
    return fig


def _caption(labels, n_slices, stroke, brain, oriented: bool, reference: bool) -> str:
    view = ("Radiological view: patient's right on the image's left (R/L from the scan's direction cosines)."
            if oriented else "Orientation not given: slices as stored, no R/L marker.")
    rule = slice_rule(labels, n=n_slices)
    if reference:
        rule += " Labelled: in the automated mask or the reference read."
    lines = [rule, f"Windows (center/width): stroke {stroke} as the paper's readers"
             f" used, brain {brain}. Outlines: automated labels solid in the class colours"
             + ("; reference read dashed cyan." if reference else "."),
             view]
    return "\n".join(textwrap.fill(line, 150) for line in lines)


def png_bytes(fig) -> bytes:
    """The figure rendered as PNG, in memory."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor=fig.get_facecolor())
    return buffer.getvalue()


def _title_ml(value: float) -> str:
    return "–" if not np.isfinite(value) else _ml(float(value))


def reference_qc_title(patient_id: str, *, reference_ml: float, reference_class: str,
                       reference_mean_hu: float = float("nan"), automated: str) -> str:
    """The first two title lines of a compare QC image: the patient with the reference read's volume
    (mL) and class, then the automated class (`auto_class_title`); the automated volumes per class
    are the third line.

    >>> print(reference_qc_title("P01", reference_ml=12.34, reference_class="severe", reference_mean_hu=18.04,
    ...                          automated="automated class: intermediate (mean 23.0 HU)"))
    P01   reference read 12.3 mL, reference class: severe (mean 18.0 HU)
    automated class: intermediate (mean 23.0 HU)
    """
    return (f"{patient_id}   reference read {_title_ml(reference_ml)} mL, reference class: {reference_class}"
            f"{_mean(reference_mean_hu)}\n{automated}")


def reference_qc_png(scan, auto, reference: np.ndarray, *, patient_id: str, reference_ml: float,
                     reference_class: str, reference_mean_hu: float = float("nan")) -> bytes:
    """One patient's compare QC image as PNG bytes: automated labels outlined solid in the class
    colours, the reference read dashed cyan (`REFERENCE_COLOR`), slices chosen on both masks.

    scan: the CT (`corelab.io.Volume`, HU); auto: the automated label map (0-4) on the scan's grid;
    reference: the reference read (nonzero = infarct) resampled onto that grid, [z, y, x];
    reference_ml: the reference volume in mL as the report counts it (on the read's own grid);
    reference_class, reference_mean_hu: its class and the mean HU it comes from (`corelab.compare`).
    The automated class is measured here, from ``auto`` on ``scan``, by the rule of volumes.csv.
    Raises `corelab.measure.MeasureError` for labels outside 0-4, ValueError for arrays of
    different shapes.
    """
    measurements = measure_labels(auto.array, scan.array, scan.spacing)  # refuses values outside 0-4
    labels = np.asarray(auto.array).astype(np.uint8, copy=False)
    title = reference_qc_title(patient_id, reference_ml=reference_ml, reference_class=reference_class,
                               reference_mean_hu=reference_mean_hu, automated=auto_class_title(measurements))
    figure = qc_figure(scan.array, labels, scan.spacing, direction=scan.direction, reference=reference,
                       measurements=measurements, title=title, volume_label="automated infarct")
    return png_bytes(figure)
