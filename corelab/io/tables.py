"""Text cells that cannot act: spreadsheet formula neutralization for every table corelab writes.

A manifest cell such as ``=HYPERLINK("http://...")`` copied into volumes.xlsx would be stored by
openpyxl as a live formula, and a csv opened in a spreadsheet evaluates it too. Following the OWASP
CSV-injection guidance, text that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return
is written with a leading apostrophe; `restore` undoes it when corelab reads its own tables back.
Numbers are never touched (a negative number is a number, not text).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

__all__ = ["FORMULA_STARTS", "finite_number", "neutralize", "neutralize_frame", "restore"]

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralize(value: Any) -> Any:
    """Text that a spreadsheet would run as a formula, made inert; anything else unchanged.

    >>> neutralize('=1+1'), neutralize('-3 h'), neutralize(-3.0), neutralize('P007')
    ("'=1+1", "'-3 h", -3.0, 'P007')
    """
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def restore(value: Any) -> Any:
    """The original text of a neutralized cell (inverse of `neutralize`).

    >>> restore("'=1+1"), restore("'plain"), restore('P007')
    ('=1+1', "'plain", 'P007')
    """
    if isinstance(value, str) and value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def neutralize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` with every text cell (and column name) passed through `neutralize`."""
    out = frame.copy()
    for column in out.columns:
        if out[column].dtype == object:
            out[column] = out[column].map(neutralize)
    out.columns = [neutralize(str(c)) for c in out.columns]
    return out


def finite_number(value: Any) -> float | None:
    """A table cell as a finite number, else None (empty, text, booleans, NaN: not measured).

    >>> finite_number("12.5"), finite_number(""), finite_number(True), finite_number(float("nan"))
    (12.5, None, None, None)
    """
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
