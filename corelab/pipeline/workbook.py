"""volumes.xlsx as a statistician opens it: typed cells, fitted widths, a filter, and a `columns` sheet.

Cells keep their type: date-times are Excel date-times, ``in_window`` / ``needs_review`` booleans,
volumes and densities numbers, empty cells unknown or not measured. Text passes through
`corelab.io.tables.neutralize`, so manifest text never becomes a live formula; ``patient_id`` is
stored and formatted as text ("007" stays "007" when the sheet is edited). The second sheet,
``columns``, gives every column's meaning and unit from `corelab.config.COLUMN_MEANINGS`; the third,
``sites``, each site's scans, reviews and brain density (`corelab.pipeline.sites`).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from corelab.config import COLUMN_MEANINGS, OUTPUT_COLUMNS
from corelab.io.tables import neutralize
from corelab.pipeline.sites import SITE_COLUMNS

__all__ = ["write_workbook", "column_meaning", "DATETIME_FORMAT", "MAX_WIDTH"]

DATETIME_FORMAT = "yyyy-mm-dd hh:mm:ss"
MAX_WIDTH = 60  # characters; longer text (flags, notes) is cut off in view, not in the cell
_MIN_WIDTH = 6


def column_meaning(name: str) -> tuple[str, str]:
    """(meaning, unit) of a volumes column; a manifest column is described as from the manifest.

    >>> column_meaning("infarct_ml")[1], column_meaning("site"), column_meaning("manifest_status")[0]
    ('mL', ('From the manifest.', ''), "From the manifest (its column 'status').")
    """
    if name in COLUMN_MEANINGS:
        return COLUMN_MEANINGS[name]
    if name.startswith("manifest_") and name[len("manifest_"):].lower() in OUTPUT_COLUMNS:
        return f"From the manifest (its column '{name[len('manifest_'):]}').", ""
    return "From the manifest.", ""


def _excel_value(value: Any) -> Any:
    """A typed cell value: None, bool, number, naive date-time, or inert text."""
    if isinstance(value, np.generic):  # numpy scalars from a record made in this process
        value = value.item()
    if isinstance(value, dt.datetime):
        # Excel has no time zones: the clock as written at the site; volumes.csv keeps any offset.
        return value.replace(tzinfo=None)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return neutralize(str(value))


def _width(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, dt.datetime):
        return len(DATETIME_FORMAT)
    return len(str(value))


def _fill_sheet(sheet, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, text_columns=()) -> None:
    """Header, typed rows, frozen header, autofilter and widths fitted to content (capped)."""
    from openpyxl.utils import get_column_letter

    sheet.append([neutralize(c) for c in columns])
    widths = [len(str(c)) for c in columns]
    for values in rows:
        cells = [_excel_value(v) for v in values]
        sheet.append(cells)
        widths = [max(w, _width(v)) for w, v in zip(widths, cells)]
    for index, name in enumerate(columns, start=1):
        letter = get_column_letter(index)
        sheet.column_dimensions[letter].width = min(MAX_WIDTH, max(_MIN_WIDTH, widths[index - 1] + 2))
        for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
            if isinstance(cell.value, dt.datetime):
                cell.number_format = DATETIME_FORMAT
            elif name in text_columns:
                cell.number_format = "@"
    sheet.auto_filter.ref = f"A1:{get_column_letter(len(columns))}{len(rows) + 1}"


def write_workbook(path: str | Path, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                   sites: Sequence[Sequence[Any]] = ()) -> None:
    """Write ``rows`` (typed values, already rounded, one sequence per row in ``columns`` order) to
    the xlsx file ``path``: sheet ``volumes`` (frozen header and patient_id column, autofilter),
    sheet ``columns`` (name, meaning, unit of every column of ``volumes``) and, when ``sites`` holds
    rows (`corelab.pipeline.sites.site_rows`), sheet ``sites`` with their meanings below them."""
    from openpyxl import Workbook

    book = Workbook()
    volumes = book.active
    volumes.title = "volumes"
    _fill_sheet(volumes, columns, rows, text_columns=("patient_id",))
    volumes.freeze_panes = "B2"
    described = book.create_sheet("columns")
    _fill_sheet(described, ("name", "meaning", "unit"), [(c, *column_meaning(c)) for c in columns])
    described.freeze_panes = "A2"
    if sites:
        by_site = book.create_sheet("sites")
        _fill_sheet(by_site, tuple(SITE_COLUMNS), sites, text_columns=("site",))
        by_site.append([])
        for name, meaning in SITE_COLUMNS.items():
            by_site.append([_excel_value(name), _excel_value(meaning)])
        by_site.freeze_panes = "B2"
    book.save(str(path))
