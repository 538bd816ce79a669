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
from typing import Any, Mapping, Sequence

import pandas as pd

from corelab.config import OUTPUT_COLUMNS
from corelab.io.tables import finite_number

__all__ = ["SITE_COLUMNS", "SITE_NAMES", "ALL_SITES", "NO_SITE", "site_column", "site_rows"]

# A manifest column with one of these names (any case) is the site.
SITE_NAMES = ("site", "site_id", "center", "centre")
ALL_SITES = "all scans"
NO_SITE = "(no site)"
BRAIN_SHIFT = "Brain shift:"  # the flag sentence's first words (`corelab.pipeline.scan.brain_shift_flag`)
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


def _summary(site: str, rows: Sequence[Mapping[str, Any]], decimals: int) -> list[Any]:
    status = [r.get("status") for r in rows]
    ok = [r for r in rows if r.get("status") == "ok"]
    medians = [m for m in (finite_number(r.get("brain_median_hu")) for r in ok) if m is not None]
    shifted = sum(BRAIN_SHIFT in str(r.get("flags") or "") for r in ok)
    spread = (statistics.median(medians), min(medians), max(medians)) if medians else (None, None, None)
    return [
        site, len(rows), len(ok), status.count("failed"), status.count("not_run"),
        sum(_true(r.get("needs_review")) for r in ok), shifted,
        *(None if v is None else round(v, decimals) for v in spread),
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
    ['A', 2, 1, 1, 0, 0, 0, 31.0, 31.0, 31.0]
    ['B', 1, 1, 0, 0, 1, 1, 40.0, 40.0, 40.0]
    ['all scans', 3, 2, 1, 0, 1, 1, 35.5, 31.0, 40.0]
    """
    by_site: dict[str, list[Mapping[str, Any]]] = {}
    if column is not None:
        for row in rows:
            by_site.setdefault(_site_name(row.get(column)) or NO_SITE, []).append(row)
    if list(by_site) == [NO_SITE]:
        by_site = {}
    return ([_summary(site, members, decimals) for site, members in by_site.items()]
            + [_summary(ALL_SITES, rows, decimals)])
