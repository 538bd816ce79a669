"""Quality-control images: a few axial slices with the labels over the scan.

Colours follow the paper's Figure 3: red severe, orange intermediate, yellow subtle, blue
hemorrhage. Each chosen slice is shown three times: the stroke window the paper's readers used
(center 35 HU, width 30 HU) without labels, the same window with the labels, and a brain window
(center 40 HU, width 80 HU) with the labels. Everything here is pure (arrays in, arrays or a
matplotlib Figure out); `png_bytes` renders a figure in memory so that a dask worker can return it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

__all__ = ["LABEL_COLORS", "QCWindows", "window_gray", "overlay_labels", "choose_slices", "qc_figure", "png_bytes"]

# RGB per label value (Figure 3 of Sales Barros et al. 2020).
LABEL_COLORS: dict[int, tuple[int, int, int]] = {
    1: (230, 25, 25),  # severe: red
    2: (255, 140, 0),  # intermediate: orange
    3: (255, 230, 0),  # subtle: yellow
    4: (30, 90, 255),  # hemorrhage: blue
}
_NAMES = {1: "severe", 2: "intermediate", 3: "subtle", 4: "hemorrhage"}


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


def overlay_labels(gray: np.ndarray, labels: np.ndarray, *, alpha: float = 0.5) -> np.ndarray:
    """RGB image: gray with each label's colour blended in at ``alpha`` (0 = invisible, 1 = opaque).

    >>> overlay_labels(np.array([[100, 100]], np.uint8), np.array([[0, 1]]), alpha=1.0)[0].tolist()
    [[100, 100, 100], [230, 25, 25]]
    """
    if gray.shape != labels.shape:
        raise ValueError(f"Gray image {gray.shape} and labels {labels.shape} must have the same shape.")
    rgb = np.repeat(gray[..., None].astype(np.float64), 3, axis=-1)
    for value, color in LABEL_COLORS.items():
        where = labels == value
        if where.any():
            rgb[where] = (1.0 - alpha) * rgb[where] + alpha * np.asarray(color, dtype=np.float64)
    return np.clip(np.round(rgb), 0, 255).astype(np.uint8)


def choose_slices(labels: np.ndarray, *, n: int = 4, tail: float = 0.025) -> list[int]:
    """Up to ``n`` axial slice indices, ascending: spread over the labelled slices (always
    including the one with the most labelled voxels), then evenly spaced slices through the middle
    of the scan when fewer slices carry labels.

    The spread leaves out end slices that together hold at most ``tail`` of the labelled voxels at
    either end: a few stray voxels at the skull base or vertex would otherwise take two of the
    rows a reviewer needs for the lesion.

    >>> lab = np.zeros((10, 2, 2), np.uint8); lab[7] = 1; lab[2, 0, 0] = 3
    >>> choose_slices(lab, n=3)
    [2, 4, 7]
    """
    depth = labels.shape[0]
    n = max(1, min(n, depth))
    per_slice = (labels > 0).reshape(depth, -1).sum(axis=1)
    labelled = [int(i) for i in np.flatnonzero(per_slice)]
    if len(labelled) > n:
        counts = per_slice[labelled]
        low = int(np.searchsorted(np.cumsum(counts), tail * counts.sum(), side="right"))
        high = len(labelled) - int(np.searchsorted(np.cumsum(counts[::-1]), tail * counts.sum(), side="right"))
        if high - low >= n:
            labelled = labelled[low:high]
        # Spread over the lesion's extent rather than n neighbouring slices of its widest part.
        picks = [labelled[int(round(k))] for k in np.linspace(0, len(labelled) - 1, n)]
        largest = int(np.argmax(per_slice))
        if largest not in picks:
            picks[int(np.argmin([abs(p - largest) for p in picks]))] = largest
        return sorted(set(picks))
    chosen = list(labelled)
    # Fill from the middle outwards: the brain is in the middle slices, skull base and vertex at the ends.
    for i in sorted(range(depth), key=lambda k: (abs(k - (depth - 1) / 2.0), k)):
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted(chosen)


def qc_figure(
    hu: np.ndarray,
    labels: np.ndarray,
    spacing: tuple[float, float, float],
    *,
    title: str = "",
    n_slices: int = 4,
    windows: QCWindows = QCWindows(),
    alpha: float = 0.5,
):
    """A matplotlib Figure: rows = chosen axial slices; columns = stroke window, stroke window with
    labels, brain window with labels. Pixels are drawn with the in-plane spacing (mm) as aspect.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if hu.shape != labels.shape or hu.ndim != 3:
        raise ValueError(f"Scan {hu.shape} and labels {labels.shape} must be 3D arrays of the same shape.")
    slices = choose_slices(labels, n=n_slices)
    aspect = float(spacing[1]) / float(spacing[2])
    columns = [
        (f"window {windows.stroke[0]:g}/{windows.stroke[1]:g}", windows.stroke, False),
        (f"labels, window {windows.stroke[0]:g}/{windows.stroke[1]:g}", windows.stroke, True),
        (f"labels, window {windows.brain[0]:g}/{windows.brain[1]:g}", windows.brain, True),
    ]
    fig = Figure(figsize=(9.0, 3.0 * len(slices) * aspect + 0.8), dpi=100, facecolor="black")
    axes = fig.subplots(len(slices), 3, squeeze=False)
    for row, z in enumerate(slices):
        for col, (name, (center, width), with_labels) in enumerate(columns):
            gray = window_gray(hu[z], center=center, width=width)
            image = overlay_labels(gray, labels[z], alpha=alpha) if with_labels else np.repeat(gray[..., None], 3, -1)
            ax = axes[row][col]
            ax.imshow(image, aspect=aspect, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, color="white", fontsize=9)
            if col == 0:
                ax.set_ylabel(f"slice {z + 1}/{hu.shape[0]}", color="white", fontsize=9)
    handles = [Patch(color=np.asarray(c) / 255.0, label=_NAMES[v]) for v, c in LABEL_COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=4, frameon=False, labelcolor="white", fontsize=9)
    if title:
        fig.suptitle(title, color="white", fontsize=11)
    fig.subplots_adjust(left=0.04, right=0.99, top=0.93 if title else 0.97, bottom=0.06, wspace=0.02, hspace=0.04)
    return fig


def png_bytes(fig) -> bytes:
    """The figure rendered as PNG, in memory."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", facecolor=fig.get_facecolor())
    return buffer.getvalue()
