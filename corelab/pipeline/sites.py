"""The ``sites`` sheet of volumes.xlsx: each site's scans, failures, reviews and brain density.

A core lab reads a trial by site: a scanner whose calibration drifted shows as a site whose brain
median HU sits away from the others (every scan's ``brain_median_hu``), long before its volumes
look wrong, and a site whose scans fail or need review more often than the rest wants a call. One
row per site, in the order sites first appear in the manifest, then one row for all scans. The site
is the manifest column `site_column` finds (site, site_id, center, centre); review.html shows it too;
without one, the sheet holds the all-scans row only.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Mapping, Sequence

from corelab.config import OUTPUT_COLUMNS

__all__ = ["SITE_COLUMNS", "SITE_NAMES", "ALL_SITES", "site_column", "site_rows"]

# A manifest column with one of these names (any case) is the site.
SITE_NAMES = ("site", "site_id", "center", "centre")
ALL_SITES = "all scans"
BRAIN_SHIFT = "Brain shift:"  # the flag sentence's first words (`corelab.pipeline.scan.brain_shift_flag`)
# Sheet columns, with their meaning (the header's comment in the sheet is this text).
SITE_COLUMNS: dict[str, str] = {
    "site": "the manifest's site column; 'all scans' for the whole batch",
    "scans": "manifest rows",
    "ok": "rows segmented (status ok)",
    "failed": "rows that could not be segmented (status failed or not_run)",
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


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _true(value: Any) -> bool:
    return value is True or str(value).strip().lower() == "true"


def _summary(site: str, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
    ok = [r for r in rows if r.get("status") == "ok"]
    medians = [m for m in (_number(r.get("brain_median_hu")) for r in ok) if m is not None]
    shifted = sum(BRAIN_SHIFT in str(r.get("flags") or "") for r in ok)
    return [
        site, len(rows), len(ok), len(rows) - len(ok), sum(_true(r.get("needs_review")) for r in ok), shifted,
        round(statistics.median(medians), 1) if medians else None,
        round(min(medians), 1) if medians else None,
        round(max(medians), 1) if medians else None,
    ]


def site_rows(rows: Sequence[Mapping[str, Any]]) -> list[list[Any]]:
    """The ``sites`` sheet's rows (in `SITE_COLUMNS` order) from the volumes table's rows
    (`corelab.pipeline.outputs.table_row` dicts): one per site in manifest order, then all scans.

    >>> rows = [{"site": "A", "status": "ok", "brain_median_hu": 31.0, "flags": "", "needs_review": False},
    ...         {"site": "A", "status": "failed"},
    ...         {"site": "B", "status": "ok", "brain_median_hu": 40.0, "needs_review": True,
    ...          "flags": "Brain shift: the brain's median is 40.0 HU, ..."}]
    >>> for row in site_rows(rows): print(row)
    ['A', 2, 1, 1, 0, 0, 31.0, 31.0, 31.0]
    ['B', 1, 1, 0, 1, 1, 40.0, 40.0, 40.0]
    ['all scans', 3, 2, 1, 1, 1, 35.5, 31.0, 40.0]
    """
    column = site_column(list(rows[0]) if rows else [])
    by_site: dict[str, list[Mapping[str, Any]]] = {}
    if column is not None:
        for row in rows:
            value = row.get(column)
            name = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value).strip()
            by_site.setdefault(name or "(no site)", []).append(row)
    return [_summary(site, members) for site, members in by_site.items()] + [_summary(ALL_SITES, rows)]
