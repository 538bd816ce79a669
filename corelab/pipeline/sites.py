"""The ``sites`` sheet of volumes.xlsx: each site's scans, failures, reviews and brain density.

A core lab reads a trial by site: a scanner whose calibration drifted shows as a site whose brain
median HU sits away from the others (every scan's ``brain_median_hu``), long before its volumes
look wrong, and a site whose scans fail or need review more often than the rest wants a call. One
row per site, in the order sites first appear in the manifest, then one row for all scans. The site
is the manifest column `site_column` finds (site, site_id, center, centre); review.html shows it too;
without one, the sheet holds the all-scans row only.
"""

from __future__ import annotations

import statistics
from typing import Any, Mapping, NamedTuple, Sequence

import pandas as pd

from corelab.config import OUTPUT_COLUMNS
from corelab.io.tables import finite_number

__all__ = ["SITE_COLUMNS", "SITE_NAMES", "ALL_SITES", "NO_SITE", "SITE_APART_HU", "SITE_APART_MIN_SCANS",
           "site_column", "site_rows", "sites_apart"]

# A manifest column with one of these names (any case) is the site.
SITE_NAMES = ("site", "site_id", "center", "centre")
ALL_SITES = "all scans"
NO_SITE = "(no site)"
# The first words of the per-scan flag sentence (`corelab.pipeline.scan.brain_shift_flag` builds it
# from this; `corelab.pipeline.outputs.REVIEW_FLAG_KINDS` counts it for needs_review).
BRAIN_SHIFT = "Brain shift:"
# A site whose scans' brain median HU (median over its ok scans) lies more than this far from the
# median of every other site's scans is named in the batch summary. A brain's median barely depends
# on the patient (a few HU between heads of one scanner), so a whole site that far off is a
# calibration or protocol difference (water drift, kernel, kV), the same drift that `Brain shift:`
# flags per scan at 8 HU, seen across a site before any one of its scans reaches that.
SITE_APART_HU = 5.0
SITE_APART_MIN_SCANS = 3  # ok scans with a brain median, at the site and at the other sites together
# Sheet columns, with their meaning (written below the table in the sheet).
SITE_COLUMNS: dict[str, str] = {
    "site": "the manifest's site column; 'all scans' for the whole batch",
    "scans": "manifest rows",
    "ok": "rows segmented (status ok)",
    "failed": "rows that could not be segmented (status failed; volumes.csv error says why)",
    "not_run": "rows not segmented yet (status not_run: the batch is running or was interrupted)",
    "needs_review": "ok rows whose volume must be checked before use (needs_review true)",
    "brain_shift": "ok rows flagged 'Brain shift' (brain median far from the models' reference)",
    "brain_median_hu": "median over the site's ok scans of each scan's brain median HU",
    "brain_median_hu_low": "lowest scan brain median HU at the site",
    "brain_median_hu_high": "highest scan brain median HU at the site",
    "vs_other_sites_hu": "brain_median_hu minus the median over every other site's ok scans "
                         f"(empty with fewer than {SITE_APART_MIN_SCANS} scans either side); beyond "
                         f"+-{SITE_APART_HU:g} HU the batch summary names the site",
}


def site_column(columns: Sequence[str]) -> str | None:
    """The manifest column that names the site: the first of ``columns`` (outside the volumes
    table's own) named as one of `SITE_NAMES`, in any case; None when there is none.

    >>> site_column(["patient_id", "arm", "Site"]), site_column(["patient_id", "arm"])
    ('Site', None)
    """
    for name in columns:
        if name not in OUTPUT_COLUMNS and str(name).strip().lower() in SITE_NAMES:
            return name
    return None


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def _medians(rows: Sequence[Mapping[str, Any]]) -> list[float]:
    """Brain median HU of the ok rows that have one."""
    ok = (finite_number(r.get("brain_median_hu")) for r in rows if r.get("status") == "ok")
    return [m for m in ok if m is not None]


class _Apart(NamedTuple):
    """A site's brain density against the other sites': its ok scans with a brain median, the median
    of those, the median over every other site's, and the difference (site minus others)."""

    scans: int
    median: float
    others: float
    difference: float


def _apart_by_site(by_site: Mapping[str, Sequence[Mapping[str, Any]]]) -> dict[str, _Apart]:
    """Per site (of `_by_site`), its `_Apart`; sites with fewer than `SITE_APART_MIN_SCANS` such scans
    on either side are left out."""
    medians = {site: _medians(members) for site, members in by_site.items()}
    out = {}
    for site, own in medians.items():
        others = [m for other, values in medians.items() if other != site for m in values]
        if len(own) >= SITE_APART_MIN_SCANS and len(others) >= SITE_APART_MIN_SCANS:
            mine, theirs = statistics.median(own), statistics.median(others)
            out[site] = _Apart(len(own), mine, theirs, mine - theirs)
    return out


def _summary(site: str, rows: Sequence[Mapping[str, Any]], decimals: int, apart: float | None = None) -> list[Any]:
    status = [r.get("status") for r in rows]
    ok = [r for r in rows if r.get("status") == "ok"]
    medians = _medians(rows)
    shifted = sum(BRAIN_SHIFT in str(r.get("flags") or "") for r in ok)
    spread = (statistics.median(medians), min(medians), max(medians)) if medians else (None, None, None)
    return [
        site, len(rows), len(ok), status.count("failed"), status.count("not_run"),
        sum(_true(r.get("needs_review")) for r in ok), shifted,
        *(None if v is None else round(v, decimals) for v in (*spread, apart)),
    ]


def _site_name(value: Any) -> str:
    try:
        missing = bool(pd.isna(value))
    except (TypeError, ValueError):  # a list or other container: not a missing value
        missing = False
    return "" if missing else str(value).strip()


def site_rows(rows: Sequence[Mapping[str, Any]], column: str | None, *, decimals: int = 1) -> list[list[Any]]:
    """The ``sites`` sheet's rows (in `SITE_COLUMNS` order) from the volumes table's rows
    (`corelab.pipeline.outputs.table_row` dicts): one per site of ``column`` (`site_column` of the
    manifest's columns; None: no site rows) in manifest order, then all scans. A row without a site
    counts under "(no site)"; a site column empty on every row gives the all-scans row only.
    ``decimals``: the rounding of brain median HU (volumes.csv's).

    >>> rows = [{"site": "A", "status": "ok", "brain_median_hu": 31.0, "flags": "", "needs_review": False},
    ...         {"site": "A", "status": "failed"},
    ...         {"site": "B", "status": "ok", "brain_median_hu": 40.0, "needs_review": True,
    ...          "flags": "Brain shift: the brain's median is 40.0 HU, ..."}]
    >>> for row in site_rows(rows, "site"): print(row)
    ['A', 2, 1, 1, 0, 0, 0, 31.0, 31.0, 31.0, None]
    ['B', 1, 1, 0, 0, 1, 1, 40.0, 40.0, 40.0, None]
    ['all scans', 3, 2, 1, 0, 1, 1, 35.5, 31.0, 40.0, None]
    """
    by_site = _by_site(rows, column)
    apart = _apart_by_site(by_site)
    return ([_summary(site, members, decimals, apart[site].difference if site in apart else None)
             for site, members in by_site.items()]
            + [_summary(ALL_SITES, rows, decimals)])


def _by_site(rows: Sequence[Mapping[str, Any]], column: str | None) -> dict[str, list[Mapping[str, Any]]]:
    by_site: dict[str, list[Mapping[str, Any]]] = {}
    if column is not None:
        for row in rows:
            by_site.setdefault(_site_name(row.get(column)) or NO_SITE, []).append(row)
    return {} if list(by_site) == [NO_SITE] else by_site


def sites_apart(rows: Sequence[Mapping[str, Any]], column: str | None) -> list[str]:
    """One sentence per site whose scans' brain median HU lies more than `SITE_APART_HU` from the
    other sites' (`SITE_APART_MIN_SCANS` ok scans or more on each side), in manifest order of the
    sites; ``rows`` and ``column`` as for `site_rows`. `corelab run` prints them in its summary.

    >>> rows = [{"site": s, "status": "ok", "brain_median_hu": hu}
    ...         for s, hu in [("A", 33.0), ("A", 34.0), ("A", 35.0), ("B", 34.0), ("B", 35.0), ("B", 33.5),
    ...                       ("C", 41.0), ("C", 40.5), ("C", 42.0)]]
    >>> sites_apart(rows, "site")
    ["Site C: its 3 scans' brain median is 41.0 HU, 7.0 HU above the other sites' 34.0 HU (more than 5 HU is a scanner calibration or protocol difference, not patients): check that site's scanner before its volumes are used."]
    >>> sites_apart(rows[:6], "site"), sites_apart(rows, None)
    ([], [])
    """
    return [
        f"Site {site}: its {a.scans} scans' brain median is {a.median:.1f} HU, {abs(a.difference):.1f} HU "
        f"{'above' if a.difference > 0 else 'below'} the other sites' {a.others:.1f} HU (more than "
        f"{SITE_APART_HU:g} HU is a scanner calibration or protocol difference, not patients): check that "
        "site's scanner before its volumes are used."
        for site, a in _apart_by_site(_by_site(rows, column)).items() if abs(a.difference) > SITE_APART_HU
    ]
