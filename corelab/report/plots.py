"""Figures of the agreement report, as SVG text (embedded in the HTML, vector in the PDF).

Every function takes the per-patient table (see `corelab.compare.rows`) and, for Bland-Altman, the
statistics already computed by `corelab.agreement`, so the lines drawn are the numbers printed.
Panels follow the paper's Figure 2: all patients, then severe, intermediate and subtle. Each
panel's axes are fitted to its own points (and the lines drawn on it); legends sit above the panels,
outside the data; a panel below `corelab.agreement.MIN_N_INTERVAL` shows its points without limits
or boxes and says so.
"""

from __future__ import annotations

import functools
import io
import math

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from corelab.agreement import MIN_N_INTERVAL
from corelab.config import CLASSES

__all__ = ["CLASS_COLORS", "scatter_grid", "bland_altman_grid", "bland_altman_by_site", "site_panels", "dice_plot"]

# The paper's Figure 3 colours: red severe, orange intermediate, yellow (darkened to print) subtle.
CLASS_COLORS = {"severe": "#d62728", "intermediate": "#ff7f0e", "subtle": "#bfa100",
                "unclassified": "#7f7f7f", "no infarct": "#c7c7c7", "unknown": "#7f7f7f"}
CLASS_COLUMN = "reference_class"  # the panels and colours are the reference read's class (paper, Figure 2)
PANELS = ("All", *CLASSES)

# The report's look, applied only while a figure is drawn and saved: rcParams are read when text and
# axes are created and when the SVG is written, and the caller's settings are left as they were.
_STYLE = {"font.size": 7, "axes.titlesize": 8, "svg.fonttype": "none", "axes.grid": True, "grid.alpha": 0.3}


def _styled(draw):
    @functools.wraps(draw)
    def drawn_with_style(*args, **kwargs):
        with matplotlib.rc_context(_STYLE):
            return draw(*args, **kwargs)
    return drawn_with_style


def _svg(figure: Figure) -> str:
    """The figure as SVG text; a Figure made directly (no pyplot) has no window to close."""
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    return buffer.getvalue()


def _panel_rows(per_patient: pd.DataFrame, panel: str) -> pd.DataFrame:
    rows = per_patient.dropna(subset=["reference_ml", "other_ml"])
    return rows if panel == "All" else rows[rows[CLASS_COLUMN] == panel]


def _colors(rows: pd.DataFrame) -> list[str]:
    return [CLASS_COLORS.get(c, "#1f77b4") for c in rows[CLASS_COLUMN]]


_LINE = "#1f4e79"


def _legend(figure: Figure, rows: pd.DataFrame, lines: list) -> None:
    """One legend for the whole figure, above the panels (never over a point): classes, then lines."""
    present = [c for c in CLASS_COLORS if c in set(rows[CLASS_COLUMN])]
    handles = [Line2D([], [], marker="o", linestyle="", color=CLASS_COLORS[c], markeredgecolor="black",
                      markeredgewidth=0.3, markersize=4, label=c) for c in present] + lines
    if handles:
        figure.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8), fontsize=6.5,
                      frameon=False, bbox_to_anchor=(0.5, 1.0))


def _too_few(axis: Axes, n: int, what: str) -> None:
    """Mark a panel whose n is below the report's minimum: points only."""
    axis.text(0.03, 0.97, f"n = {n}: {what} (fewer than {MIN_N_INTERVAL})", transform=axis.transAxes, ha="left",
              va="top", fontsize=6.5, color="#8b0000",
              bbox={"boxstyle": "round,pad=0.25", "facecolor": "white", "edgecolor": "#8b0000", "linewidth": 0.5})


def _empty(axis: Axes, title: str) -> None:
    axis.set_title(f"{title} (n = 0)")
    axis.text(0.5, 0.5, "no patients", ha="center", va="center", transform=axis.transAxes)
    axis.set_xticks([])
    axis.set_yticks([])


@_styled
def scatter_grid(per_patient: pd.DataFrame, *, reference_label: str, other_label: str) -> str:
    """Automated (or reader B) vs reference volume, mL, with the identity line; 2 x 2 panels."""
    figure = Figure(figsize=(6.6, 6.2))
    axes = figure.subplots(2, 2)
    for axis, panel in zip(axes.ravel(), PANELS):
        rows = _panel_rows(per_patient, panel)
        if rows.empty:
            _empty(axis, panel)
            continue
        high = max(float(rows[["reference_ml", "other_ml"]].to_numpy().max()), 1.0) * 1.05
        axis.plot([0, high], [0, high], color="black", linewidth=0.8, label="identity")
        axis.scatter(rows["reference_ml"], rows["other_ml"], s=14, c=_colors(rows), edgecolors="black",
                     linewidths=0.3, zorder=3)
        axis.set_xlim(0, high)
        axis.set_ylim(0, high)
        axis.set_aspect("equal")
        axis.set_title(f"{panel} (n = {len(rows)})")
        axis.set_xlabel(f"{reference_label} volume (mL)")
        axis.set_ylabel(f"{other_label} volume (mL)")
    _legend(figure, _panel_rows(per_patient, "All"), [Line2D([], [], color="black", linewidth=0.8, label="identity")])
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return _svg(figure)


def _limit_lines(axis: Axes, s: pd.Series, right: float) -> list[float]:
    """Bias (CI shaded), limits (CIs dotted) with their values written at the right; the values drawn."""
    drawn = []
    for key, style in (("ba_bias", "-"), ("ba_loa_low", "--"), ("ba_loa_high", "--")):
        value = s[key]
        if not math.isfinite(value):
            continue
        drawn.append(float(value))
        axis.axhline(value, color=_LINE, linestyle=style, linewidth=0.9)
        low, high = s[f"{key}_ci_low"], s[f"{key}_ci_high"]
        if math.isfinite(low) and math.isfinite(high) and high > low:
            if key == "ba_bias":  # shade only the bias CI; wide limit CIs would cover the points
                axis.axhspan(low, high, color=_LINE, alpha=0.12, linewidth=0)
            else:
                for bound in (low, high):
                    axis.axhline(bound, color=_LINE, linestyle=":", linewidth=0.6)
        axis.text(right, value, f" {value:.1f}", va="center", fontsize=6, color=_LINE, clip_on=False)
    return drawn


def _fit(values: list[float], *, pad: float = 0.12, include_zero: bool = True) -> tuple[float, float]:
    """Axis range around the values (and 0), padded; never zero-width."""
    low, high = min(values + ([0.0] if include_zero else [])), max(values + ([0.0] if include_zero else []))
    span = max(high - low, 1.0)
    return low - pad * span, high + pad * span


def _bland_altman_panel(axis: Axes, rows: pd.DataFrame, s: pd.Series, title: str, *, reference_label: str,
                        other_label: str) -> None:
    """One Bland-Altman panel: ``rows``' points coloured by class, ``s``'s bias and limits (an
    `agreement_table` row), axes fitted to both."""
    mean = (rows["reference_ml"] + rows["other_ml"]) / 2
    diff = rows["other_ml"] - rows["reference_ml"]
    axis.scatter(mean, diff, s=14, c=_colors(rows), edgecolors="black", linewidths=0.3, zorder=3)
    right = max(float(mean.max()), 1.0) * 1.08
    drawn = _limit_lines(axis, s, right)
    if int(s["ba_n"]) < MIN_N_INTERVAL:
        _too_few(axis, int(s["ba_n"]), "no limits")
    axis.axhline(0, color="black", linewidth=0.5)
    axis.set_xlim(0, right)
    axis.set_ylim(*_fit([float(v) for v in diff] + drawn, pad=0.25 if len(drawn) < 3 else 0.12))
    axis.set_title(f"{title} (n = {len(rows)})")
    axis.set_xlabel(f"mean of {reference_label} and {other_label} (mL)")
    axis.set_ylabel(f"{other_label} - {reference_label} (mL)")


def _bland_altman_legend(figure: Figure, rows: pd.DataFrame) -> None:
    lines = [Line2D([], [], color=_LINE, linestyle="-", linewidth=0.9, label="bias"),
             Patch(color=_LINE, alpha=0.12, linewidth=0, label="95% CI of the bias"),
             Line2D([], [], color=_LINE, linestyle="--", linewidth=0.9, label="95% limits"),
             Line2D([], [], color=_LINE, linestyle=":", linewidth=0.6, label="95% CI of a limit")]
    _legend(figure, rows, lines)


@_styled
def bland_altman_grid(
    per_patient: pd.DataFrame, stats: pd.DataFrame, *, reference_label: str, other_label: str
) -> str:
    """Bland-Altman plots (difference other - reference vs mean, mL) with bias, limits and their CIs.

    stats: `corelab.agreement.agreement_table` by class (columns group, ba_n, ba_bias, ba_loa_low, ...);
    a group below the minimum n has no limits there, and its panel says so. The y axis spans the
    points, the bias and the limits (the limits' CIs may run off it).
    """
    by_group = stats.set_index("group")
    figure = Figure(figsize=(6.6, 5.8))
    axes = figure.subplots(2, 2)
    for axis, panel in zip(axes.ravel(), PANELS):
        rows = _panel_rows(per_patient, panel)
        if rows.empty or panel not in by_group.index:
            _empty(axis, panel)
            continue
        _bland_altman_panel(axis, rows, by_group.loc[panel], panel, reference_label=reference_label,
                            other_label=other_label)
    _bland_altman_legend(figure, _panel_rows(per_patient, "All"))
    figure.tight_layout(rect=(0, 0, 1, 0.95))
    return _svg(figure)


SITE_COLUMNS = 3  # panels per row of a by-site figure
SITES_PER_FIGURE = 12  # four rows of three: what fits an A4 page at the report's 150 mm width


def site_panels(per_patient: pd.DataFrame, stats: pd.DataFrame) -> list[str]:
    """The sites of an `agreement_table` by site that a by-site figure draws: each site (not the "All"
    row, not an empty site) with at least one patient holding both volumes, in the table's order."""
    rows = per_patient.dropna(subset=["reference_ml", "other_ml"])
    present = set(rows["site"].astype(str))
    return [str(g) for g in stats["group"] if str(g) not in ("All", "") and str(g) in present]


@_styled
def bland_altman_by_site(
    per_patient: pd.DataFrame, stats: pd.DataFrame, sites: list[str], *, reference_label: str, other_label: str
) -> str:
    """Bland-Altman plots of all patients with both volumes, one panel per site of ``sites`` (from
    `site_panels`), each with its own site's bias and limits: a site whose scanner or readers differ
    shows as a shifted bias or wider limits.

    stats: `corelab.agreement.agreement_table` by site (its "All" row is not drawn here: the class
    figure holds it). A site below the minimum n shows its points without limits and says so.
    """
    by_group = stats.set_index("group")
    rows = per_patient.dropna(subset=["reference_ml", "other_ml"])
    columns = max(1, min(SITE_COLUMNS, len(sites)))
    lines = max(1, math.ceil(len(sites) / columns))
    figure = Figure(figsize=(2.25 * columns, 2.35 * lines + 0.35))
    axes = np.atleast_1d(figure.subplots(lines, columns, squeeze=False).ravel())
    for axis, site in zip(axes, sites):
        _bland_altman_panel(axis, rows[rows["site"].astype(str) == site], by_group.loc[site], site,
                            reference_label=reference_label, other_label=other_label)
    for axis in axes[len(sites):]:
        axis.set_visible(False)
    _bland_altman_legend(figure, rows[rows["site"].astype(str).isin(sites)])
    figure.tight_layout(rect=(0, 0, 1, 1.0 - 0.35 / (2.35 * lines + 0.35)))
    return _svg(figure)


@_styled
def dice_plot(per_patient: pd.DataFrame, *, classes: tuple[str, ...] = PANELS) -> str:
    """Dice per patient: every patient as a dot, for all patients and per class; a box plot where the
    group reaches the minimum n."""
    figure = Figure(figsize=(6.0, 2.5))
    axis = figure.subplots()
    data, labels, colors = [], [], []
    for panel in classes:
        rows = per_patient.dropna(subset=["dice"])
        rows = rows if panel == "All" else rows[rows[CLASS_COLUMN] == panel]
        data.append(rows["dice"].to_numpy(float))
        small = 0 < len(rows) < MIN_N_INTERVAL
        labels.append(f"{panel}\n(n = {len(rows)}{': no box' if small else ''})")
        colors.append(_colors(rows))
    positions = np.arange(1, len(data) + 1)
    boxed = [i for i, d in enumerate(data) if len(d) >= MIN_N_INTERVAL]
    if boxed:
        axis.boxplot([data[i] for i in boxed], positions=positions[boxed], widths=0.5, showfliers=False)
    jitter = np.random.default_rng(0)  # fixed seed: the same report twice is the same picture
    for position, values, color in zip(positions, data, colors):
        if len(values):
            axis.scatter(position + jitter.uniform(-0.12, 0.12, len(values)), values, s=10, c=color,
                         edgecolors="black", linewidths=0.3, zorder=3)
    axis.set_xticks(positions, labels)
    axis.set_xlim(0.4, len(data) + 0.6)
    axis.set_ylim(-0.03, 1.03)
    axis.set_ylabel("Dice")
    figure.tight_layout()
    return _svg(figure)
