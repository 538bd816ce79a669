"""Numbers and values as the report prints them: for people, not Python.

Two kinds of number appear. Parameters in running text (a threshold, a window, a cut-off) are
printed as recorded, without trailing zeros and with their unit: ``160 HU``, ``0.45 mm``,
``12 h to 14 days``. Statistics in tables keep a fixed number of decimals (set by
`corelab.agreement.rounded`) so a column lines up; an estimate whose group is below
`corelab.agreement.MIN_N_INTERVAL` is printed as "n too small", never as a number. No Python
literal (``None``, ``True``, ``[...]``) reaches the page: `plain` turns values into words.
"""

from __future__ import annotations

import math

import pandas as pd

from corelab.agreement import MIN_N_INTERVAL

__all__ = [
    "MISSING",
    "NOT_RECORDED",
    "TOO_SMALL",
    "number",
    "quantity",
    "hours",
    "hour_span",
    "plain",
    "fixed",
    "too_small",
    "estimate_ci",
    "median_iqr",
    "p_value",
]

NOT_RECORDED = "not recorded"
TOO_SMALL = "n too small"
MISSING = "–"  # a value that does not exist for this row (e.g. no HD95 for an empty mask)


def _finite(value: object) -> bool:
    if value is None or value is pd.NA or isinstance(value, (bool, str)):
        return False
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def number(value: object) -> str:
    """A recorded number without trailing zeros (at most 6 decimals); text passes through.

    >>> number(160.0), number(0.45), number(-5), number(1e-7), number("n/a")
    ('160', '0.45', '-5', '0', 'n/a')
    """
    if isinstance(value, bool) or not _finite(value):
        return plain(value)
    text = f"{float(value):.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def quantity(value: object, unit: str) -> str:
    """A number with its unit; a value that is not a number (e.g. "not recorded") is left as words.

    >>> quantity(160.0, "HU"), quantity(5, "mm"), quantity(None, "mm")
    ('160 HU', '5 mm', 'not recorded')
    """
    return f"{number(value)} {unit}" if _finite(value) and not isinstance(value, bool) else plain(value)


def hours(value: object) -> str:
    """A time after onset: hours below 2 days, whole days from there.

    >>> hours(12.0), hours(336.0), hours(48), hours(60.5)
    ('12 h', '14 days', '2 days', '60.5 h')
    """
    if not _finite(value) or isinstance(value, bool):
        return plain(value)
    h = float(value)
    if h >= 48 and h % 24 == 0:
        days = int(h // 24)
        return f"{days} days"
    return quantity(h, "h")


def hour_span(low: object, high: object) -> str:
    """``12 h to 14 days``.

    >>> hour_span(12.0, 336.0)
    '12 h to 14 days'
    """
    return f"{hours(low)} to {hours(high)}"


def plain(value: object) -> str:
    """Any run.json value as words: missing is "not recorded", booleans yes/no, lists joined.

    >>> plain(None), plain(True), plain([1.0, "b"]), plain({"severe": 0.5}), plain(2.50)
    ('not recorded', 'yes', '1, b', 'severe 0.5', '2.5')
    """
    if value is None or value is pd.NA or value == "" or value == [] or value == {}:
        return NOT_RECORDED
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float) and math.isnan(value):
        return NOT_RECORDED
    if isinstance(value, (int, float)):
        return number(value)
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(plain(v) for v in value)
    return str(value)


def fixed(value: object, digits: int) -> str:
    """A table number with a fixed number of decimals; "–" when there is none.

    >>> fixed(12.0, 1), fixed(float("nan"), 3), fixed(None, 1)
    ('12.0', '–', '–')
    """
    return f"{float(value):.{digits}f}" if _finite(value) and not isinstance(value, bool) else MISSING


def too_small(n: object) -> bool:
    """True when a group's n is below the report's one minimum for intervals, limits, SD and ICC.

    >>> too_small(2), too_small(MIN_N_INTERVAL)
    (True, False)
    """
    return not _finite(n) or int(n) < MIN_N_INTERVAL


def estimate_ci(value: object, low: object, high: object, digits: int, *, n: object,
                ci_digits: int | None = None, interval_only: bool = False) -> str:
    """``estimate (low to high)``; below the minimum n the bracket reads "n too small".

    interval_only: the estimate itself is an interval or a spread (a limit of agreement, an ICC,
        a slope), so below the minimum n nothing numeric is printed at all.

    >>> estimate_ci(1.234, 0.5, 2.0, 2, n=10)
    '1.23 (0.50 to 2.00)'
    >>> estimate_ci(1.234, 0.5, 2.0, 2, n=2), estimate_ci(-30.0, -80.0, 20.0, 1, n=2, interval_only=True)
    ('1.23 (n too small)', 'n too small')
    """
    if too_small(n):
        return TOO_SMALL if interval_only or not _finite(value) else f"{fixed(value, digits)} ({TOO_SMALL})"
    if not _finite(value):
        return "undefined"
    ci = ci_digits if ci_digits is not None else digits
    interval = f"{fixed(low, ci)} to {fixed(high, ci)}" if _finite(low) and _finite(high) else "CI undefined"
    return f"{fixed(value, digits)} ({interval})"


def median_iqr(median: object, q1: object, q3: object, digits: int, *, n: object) -> str:
    """``median (q1 to q3)``; below the minimum n the bracket reads "n too small".

    >>> median_iqr(12.0, 8.0, 20.0, 1, n=9), median_iqr(12.0, 8.0, 20.0, 1, n=2), median_iqr(None, 0, 0, 1, n=0)
    ('12.0 (8.0 to 20.0)', '12.0 (n too small)', '–')
    """
    if not _finite(median):
        return MISSING
    if too_small(n):
        return f"{fixed(median, digits)} ({TOO_SMALL})"
    return f"{fixed(median, digits)} ({fixed(q1, digits)} to {fixed(q3, digits)})"


def p_value(value: object, *, n: object) -> str:
    """p to 3 decimals, "< 0.001" below; "n too small" below the minimum n.

    >>> p_value(0.0004, n=10), p_value(0.25, n=10), p_value(0.25, n=3)
    ('< 0.001', '0.250', 'n too small')
    """
    if too_small(n):
        return TOO_SMALL
    if not _finite(value):
        return MISSING
    return "< 0.001" if float(value) < 0.001 else f"{float(value):.3f}"
