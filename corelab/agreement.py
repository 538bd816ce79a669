"""Agreement statistics between two sets of infarct volumes (and per-patient mask metrics).

Every function takes a tidy DataFrame (one row per patient) plus column names and returns a
DataFrame with documented columns at full precision; `rounded` is the one place where numbers are
rounded for the report and the workbook. Differences are always ``other - reference`` (automated
minus manual, or reader B minus reader A), so a positive bias means the automated volume is larger.

Definitions (also printed in the report):

- ICC(A,1): two-way random effects, absolute agreement, single measure; ICC(C,1): two-way,
  consistency, single measure (McGraw & Wong 1996); pingouin's ICC2 and ICC3 with their F-based 95%
  CIs. Undefined when fewer than 3 patients or when all volumes are equal.
- Bland-Altman (Bland & Altman 1999, Stat Methods Med Res 8:135): bias = mean difference d;
  limits of agreement d +- 1.96 s. Approximate 95% CIs: bias +- t(n-1) s/sqrt(n); each limit
  +- t(n-1) s sqrt(3/n). On the log scale the differences are ln(other) - ln(reference) and all
  estimates are back-transformed to ratios other/reference; pairs with a zero volume have no ratio
  and are left out of the log analysis (counted in ``n_zero``). Proportional bias: least-squares
  regression of the difference on the pair mean; slope with 95% CI and p (H0: slope 0).
- Lin's concordance correlation coefficient (Lin 1989, Biometrics 45:255) with n denominators; 95%
  CI from Fisher's z with Lin's asymptotic variance.
- Minimum n: the report gives no interval, limit, SD, ICC, CCC or slope for fewer than
  ``MIN_N_INTERVAL`` values (`withhold_small_n`): with 1 to 4 patients a t-based CI spans orders of
  magnitude (t(1) = 12.7) and an SD is noise, so they are left empty and the note says "n too
  small". Point estimates (bias, geometric mean ratio, means, medians) are kept with their n.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "LOA_Z",
    "MIN_N_INTERVAL",
    "icc",
    "bland_altman",
    "concordance",
    "distribution",
    "agreement_row",
    "agreement_table",
    "withhold_small_n",
    "rounded",
]

LOA_Z = 1.96  # limits of agreement: bias +- 1.96 SD (95% of differences, normal approximation)
_ALPHA = 0.05
# The one minimum n of the report: below it no interval (CI, IQR), limit of agreement, SD, ICC, CCC or
# regression slope is given, only "n too small". 5 keeps t(n-1) below 2.8 (t(4) = 2.78).
MIN_N_INTERVAL = 5
# Per statistic: the n that counts, and the columns that are spreads or intervals of it.
_SMALL_N_COLUMNS = {
    "icc_n": ("icc_a1", "icc_a1_ci_low", "icc_a1_ci_high", "icc_c1", "icc_c1_ci_low", "icc_c1_ci_high",
              "ccc", "ccc_ci_low", "ccc_ci_high"),
    "ba_n": ("ba_bias_ci_low", "ba_bias_ci_high", "ba_sd", "ba_loa_low", "ba_loa_low_ci_low", "ba_loa_low_ci_high",
             "ba_loa_high", "ba_loa_high_ci_low", "ba_loa_high_ci_high", "ba_slope", "ba_slope_ci_low",
             "ba_slope_ci_high", "ba_slope_p"),
    "ratio_n": ("ratio_bias_ci_low", "ratio_bias_ci_high", "ratio_sd", "ratio_loa_low", "ratio_loa_low_ci_low",
                "ratio_loa_low_ci_high", "ratio_loa_high", "ratio_loa_high_ci_low", "ratio_loa_high_ci_high",
                "ratio_slope", "ratio_slope_ci_low", "ratio_slope_ci_high", "ratio_slope_p"),
    "dice_n": ("dice_sd", "dice_q1", "dice_q3"),
    "hd95_n": ("hd95_sd", "hd95_q1", "hd95_q3"),
    "absdiff_n": ("absdiff_sd", "absdiff_q1", "absdiff_q3"),
    "reference_n": ("reference_q1", "reference_q3"),
    "other_n": ("other_q1", "other_q3"),
}


def _pairs(df: pd.DataFrame, reference: str, other: str) -> tuple[np.ndarray, np.ndarray]:
    """Both columns as float arrays, rows with a missing value in either dropped."""
    both = df[[reference, other]].apply(pd.to_numeric, errors="coerce").dropna()
    return both[reference].to_numpy(float), both[other].to_numpy(float)


def icc(
    df: pd.DataFrame, *, reference: str, other: str | list[str], alpha: float = _ALPHA
) -> pd.DataFrame:
    """ICC(A,1) and ICC(C,1) of a reference volume column and one (or more) other columns, 95% CIs.

    other: the second rater's column, or a list of columns for more raters.
    Patients with a missing value in any column are left out.

    Returns a DataFrame with rows ``ICC(A,1)``, ``ICC(C,1)`` and columns: measure, n (patients),
    estimate, ci_low, ci_high, note (empty, or why an estimate or its CI is undefined).

    >>> t = pd.DataFrame({"manual": [10.0, 20, 30], "auto": [15.0, 25, 35]})
    >>> icc(t, reference="manual", other="auto")["estimate"].round(4).tolist()
    [0.8889, 1.0]
    """
    if not math.isclose(alpha, 0.05):
        raise ValueError("pingouin's ICC confidence intervals are 95% only; use alpha=0.05")
    columns = [reference] + ([other] if isinstance(other, str) else list(other))
    values = df[columns].apply(pd.to_numeric, errors="coerce").dropna().to_numpy(float)
    n, k = values.shape
    rows = {"ICC(A,1)": [math.nan] * 3, "ICC(C,1)": [math.nan] * 3}
    note = ""
    if n < 3:
        note = f"undefined: needs at least 3 patients (n = {n})"
    elif np.ptp(values) == 0:
        note = "undefined: all volumes are equal, so there is no between-patient variance"
    else:
        import pingouin

        long = pd.DataFrame(
            {"patient": np.tile(np.arange(n), k), "rater": np.repeat(np.arange(k), n),
             "volume": values.T.ravel()}
        )
        with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
            # Perfect agreement divides by a zero residual mean square inside pingouin.
            warnings.simplefilter("ignore")  # also pingouin's pandas deprecation warnings
            table = pingouin.intraclass_corr(long, targets="patient", raters="rater", ratings="volume")
        # pingouin labels its ICC2 / ICC3 rows "ICC(A,1)" / "ICC(C,1)" (McGraw & Wong's names).
        table = table.set_index("Type")
        for name in rows:
            low, high = (float(v) for v in table.loc[name, "CI95"])
            rows[name] = [float(table.loc[name, "ICC"]), low, high]
        if any(math.isnan(v) for r in rows.values() for v in r[1:]):
            note = "CI not defined: no residual variance (volumes agree exactly up to a constant)"
    return pd.DataFrame(
        [{"measure": key, "n": n, "estimate": v[0], "ci_low": v[1], "ci_high": v[2], "note": note}
         for key, v in rows.items()]
    )


def _t(n_df: int, alpha: float) -> float:
    return float(stats.t.ppf(1 - alpha / 2, n_df)) if n_df > 0 else math.nan


def bland_altman(
    df: pd.DataFrame, *, reference: str, other: str, scale: str = "ml", alpha: float = _ALPHA
) -> pd.DataFrame:
    """Bland-Altman bias and limits of agreement with approximate CIs, in mL or as ratios.

    scale: "ml" (differences other - reference in mL) or "ratio" (ln differences, back-transformed:
        bias is the geometric mean ratio other/reference; pairs with a zero volume left out).

    Returns one row with columns: scale, n, n_zero (pairs left out for a zero volume), bias,
    bias_ci_low, bias_ci_high, sd, loa_low, loa_low_ci_low, loa_low_ci_high, loa_high,
    loa_high_ci_low, loa_high_ci_high, slope, slope_ci_low, slope_ci_high, slope_p, note.
    On the ratio scale sd and slope stay in ln units.

    >>> t = pd.DataFrame({"manual": [10.0, 20, 30], "auto": [12.0, 21, 33]})
    >>> round(float(bland_altman(t, reference="manual", other="auto")["bias"][0]), 2)
    2.0
    """
    if scale not in ("ml", "ratio"):
        raise ValueError(f"scale must be 'ml' or 'ratio', not {scale!r}")
    x, y = _pairs(df, reference, other)
    n_zero = 0
    if scale == "ratio":
        keep = (x > 0) & (y > 0)
        n_zero = int((~keep).sum())
        x, y = np.log(x[keep]), np.log(y[keep])
    d, m = y - x, (x + y) / 2
    n = len(d)
    out = {"scale": scale, "n": n, "n_zero": n_zero}
    nan = math.nan
    bias = float(d.mean()) if n else nan
    sd = float(d.std(ddof=1)) if n >= 2 else nan
    t = _t(n - 1, alpha)
    se_bias, se_loa = (sd / math.sqrt(n), sd * math.sqrt(3.0 / n)) if n >= 2 else (nan, nan)
    lo, hi = bias - LOA_Z * sd, bias + LOA_Z * sd
    out.update(
        bias=bias, bias_ci_low=bias - t * se_bias, bias_ci_high=bias + t * se_bias, sd=sd,
        loa_low=lo, loa_low_ci_low=lo - t * se_loa, loa_low_ci_high=lo + t * se_loa,
        loa_high=hi, loa_high_ci_low=hi - t * se_loa, loa_high_ci_high=hi + t * se_loa,
    )
    slope = slope_lo = slope_hi = slope_p = nan
    notes = []
    if n < 2:
        notes.append(f"SD and limits undefined (n = {n})")
    if n >= 3 and np.ptp(m) > 0:
        fit = stats.linregress(m, d)
        t2 = _t(n - 2, alpha)
        slope, slope_p = float(fit.slope), float(fit.pvalue)
        slope_lo, slope_hi = slope - t2 * fit.stderr, slope + t2 * fit.stderr
    else:
        notes.append("proportional bias not tested (needs 3 pairs with different means)")
    out.update(slope=slope, slope_ci_low=slope_lo, slope_ci_high=slope_hi, slope_p=slope_p)
    if scale == "ratio":
        for key in ("bias", "bias_ci_low", "bias_ci_high", "loa_low", "loa_low_ci_low", "loa_low_ci_high",
                    "loa_high", "loa_high_ci_low", "loa_high_ci_high"):
            out[key] = math.exp(out[key]) if math.isfinite(out[key]) else nan
        if n_zero:
            notes.append(f"{n_zero} pair(s) with a zero volume left out (no ratio)")
    out["note"] = "; ".join(notes)
    return pd.DataFrame([out])


def concordance(df: pd.DataFrame, *, reference: str, other: str, alpha: float = _ALPHA) -> pd.DataFrame:
    """Lin's concordance correlation coefficient with a Fisher-z (1 - alpha) CI.

    Returns one row with columns: n, ccc, ci_low, ci_high, pearson_r, note.

    >>> t = pd.DataFrame({"manual": [1.0, 2, 3], "auto": [2.0, 3, 4]})
    >>> round(float(concordance(t, reference="manual", other="auto")["ccc"][0]), 4)  # 4/7
    0.5714
    """
    x, y = _pairs(df, reference, other)
    n = len(x)
    nan = math.nan
    row = {"n": n, "ccc": nan, "ci_low": nan, "ci_high": nan, "pearson_r": nan, "note": ""}
    if n < 3:
        row["note"] = f"undefined: needs at least 3 patients (n = {n})"
        return pd.DataFrame([row])
    sx2, sy2 = x.var(), y.var()  # n denominators, as Lin 1989
    sxy = float(((x - x.mean()) * (y - y.mean())).mean())
    shift2 = (x.mean() - y.mean()) ** 2
    if sx2 + sy2 + shift2 == 0:
        row["note"] = "undefined: all volumes are equal"
        return pd.DataFrame([row])
    ccc = 2 * sxy / (sx2 + sy2 + shift2)
    row["ccc"] = ccc
    if sx2 == 0 or sy2 == 0:
        row["note"] = "CI undefined: one reader's volumes are constant"
        return pd.DataFrame([row])
    r = sxy / math.sqrt(sx2 * sy2)
    row["pearson_r"] = r
    if abs(ccc) >= 1 or r == 0:
        row["ci_low"] = row["ci_high"] = ccc if abs(ccc) >= 1 else nan
        row["note"] = "CI degenerate: perfect concordance" if abs(ccc) >= 1 else "CI undefined: r = 0"
        return pd.DataFrame([row])
    u2 = shift2 / math.sqrt(sx2 * sy2)
    # Lin 1989, eq. for var(z_hat), z = atanh(ccc).
    var_z = (
        (1 - r**2) * ccc**2 / ((1 - ccc**2) * r**2)
        + 2 * ccc**3 * (1 - ccc) * u2 / (r * (1 - ccc**2) ** 2)
        - ccc**4 * u2**2 / (2 * r**2 * (1 - ccc**2) ** 2)
    ) / (n - 2)
    z, half = math.atanh(ccc), float(stats.norm.ppf(1 - alpha / 2)) * math.sqrt(max(var_z, 0.0))
    row["ci_low"], row["ci_high"] = math.tanh(z - half), math.tanh(z + half)
    return pd.DataFrame([row])


def distribution(values: pd.Series | np.ndarray) -> dict[str, float]:
    """n, mean, sd (n - 1), median, q1, q3 (linear interpolation) of the finite values.

    >>> distribution(np.array([1.0, 2, 3, np.nan]))["median"]
    2.0
    """
    v = pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return {"n": 0, "mean": math.nan, "sd": math.nan, "median": math.nan, "q1": math.nan, "q3": math.nan}
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    return {"n": len(v), "mean": float(v.mean()), "sd": float(v.std(ddof=1)) if len(v) > 1 else math.nan,
            "median": float(median), "q1": float(q1), "q3": float(q3)}


def agreement_row(df: pd.DataFrame, *, reference: str, other: str) -> dict[str, object]:
    """All summary numbers of one group of patients, flat (a row of the paper's Table 1, extended).

    Uses the per-patient columns when present: ``dice``, ``both_empty`` (bool), ``hd95_mm``,
    ``lesions``, ``lesions_detected``. Keys: n, icc_a1*, icc_c1*, ba_* (mL), ratio_* (ratio scale),
    ccc*, dice_*, n_both_empty, absdiff_*, hd95_*, lesions, lesions_detected, detection_rate,
    median reference and other volumes; icc_note, ba_note, ratio_note, ccc_note (why a number is
    undefined) and notes (all of them); icc_n, reference_n, other_n (complete values counted).
    Every number is computed whatever n is; `withhold_small_n` applies the report's minimum n.
    """
    row: dict[str, object] = {"n": len(df)}
    table = icc(df, reference=reference, other=other).set_index("measure")
    row["icc_n"] = int(table["n"].iloc[0])
    for key, name in (("icc_a1", "ICC(A,1)"), ("icc_c1", "ICC(C,1)")):
        row[key], row[key + "_ci_low"], row[key + "_ci_high"] = table.loc[name, ["estimate", "ci_low", "ci_high"]]
    row["icc_note"] = table["note"].iloc[0]
    for prefix, scale in (("ba", "ml"), ("ratio", "ratio")):
        ba = bland_altman(df, reference=reference, other=other, scale=scale).iloc[0]
        for key, value in ba.items():
            if key != "scale":
                row[f"{prefix}_{key}"] = value
    cc = concordance(df, reference=reference, other=other).iloc[0]
    row.update(ccc=cc["ccc"], ccc_ci_low=cc["ci_low"], ccc_ci_high=cc["ci_high"], ccc_note=cc["note"])
    notes = [row["icc_note"], row["ba_note"], row["ratio_note"], row["ccc_note"]]
    for name, column in (("reference", reference), ("other", other)):
        row[f"{name}_n"], row[f"{name}_median"], row[f"{name}_q1"], row[f"{name}_q3"] = (
            distribution(df[column])[k] for k in ("n", "median", "q1", "q3"))
    diff = pd.to_numeric(df[other], errors="coerce") - pd.to_numeric(df[reference], errors="coerce")
    for key, value in distribution(diff.abs()).items():
        row[f"absdiff_{key}"] = value
    for column, prefix in (("dice", "dice"), ("hd95_mm", "hd95")):
        if column in df:
            for key, value in distribution(df[column]).items():
                row[f"{prefix}_{key}"] = value
    if "both_empty" in df:
        row["n_both_empty"] = int(df["both_empty"].astype(bool).sum())
    if "lesions" in df and "lesions_detected" in df:
        lesions, hit = int(df["lesions"].fillna(0).sum()), int(df["lesions_detected"].fillna(0).sum())
        row.update(lesions=lesions, lesions_detected=hit, detection_rate=hit / lesions if lesions else math.nan)
    row["notes"] = "; ".join(dict.fromkeys(n for n in notes if n))
    return row


def agreement_table(
    df: pd.DataFrame, *, reference: str, other: str, by: str | None = None, order: list[str] | None = None,
    overall: str = "All",
) -> pd.DataFrame:
    """`agreement_row` for all patients and, with ``by``, for each group; column ``group`` first.

    order: group values in the order to list them (groups with no patients get a row with n = 0);
    other values follow in sorted order.

    >>> t = pd.DataFrame({"manual": [10.0, 20, 30, 5], "auto": [12.0, 19, 33, 6], "cls": ["a", "a", "a", "b"]})
    >>> agreement_table(t, reference="manual", other="auto", by="cls")[["group", "n"]].values.tolist()
    [['All', 4], ['a', 3], ['b', 1]]
    """
    rows = [{"group": overall, **agreement_row(df, reference=reference, other=other)}]
    if by is not None:
        present = [g for g in df[by].dropna().unique()]
        groups = list(order or []) + sorted(str(g) for g in present if g not in (order or []))
        for group in groups:
            part = df[df[by] == group]
            rows.append({"group": group, **agreement_row(part, reference=reference, other=other)})
    return pd.DataFrame(rows)


def withhold_small_n(table: pd.DataFrame, *, min_n: int = MIN_N_INTERVAL) -> pd.DataFrame:
    """A copy of an `agreement_table` in which every interval, limit, SD and coefficient whose n is
    below ``min_n`` is empty (NaN), its note reading "n too small"; column ``withheld`` names, per
    group, the statistics concerned ("" when none). Point estimates and counts are kept.

    >>> t = pd.DataFrame({"manual": [10.0, 20, 30, 40], "auto": [12.0, 19, 33, 40]})
    >>> row = withhold_small_n(agreement_table(t, reference="manual", other="auto")).iloc[0]
    >>> float(row["ba_bias"]), bool(np.isnan(row["ba_loa_low"])), row["ba_note"]
    (1.0, True, 'n too small (n = 4, fewer than 5)')
    """
    out = table.copy()
    withheld = []
    for index, row in table.iterrows():
        small = [key for key in _SMALL_N_COLUMNS if key in row and int(row[key]) < min_n]
        columns = [c for key in small for c in _SMALL_N_COLUMNS[key] if c in out.columns]
        out.loc[index, columns] = math.nan
        for key, note in (("icc_n", "icc_note"), ("icc_n", "ccc_note"), ("ba_n", "ba_note"), ("ratio_n", "ratio_note")):
            if key in small and note in out.columns:
                out.loc[index, note] = f"n too small (n = {row[key]}, fewer than {min_n})"
        if "ratio_n" in small and row.get("ratio_n_zero"):
            out.loc[index, "ratio_note"] += f"; {row['ratio_n_zero']} pair(s) with a zero volume left out (no ratio)"
        if small:
            notes = [out.loc[index, c] for c in ("icc_note", "ba_note", "ratio_note", "ccc_note") if c in out.columns]
            out.loc[index, "notes"] = "; ".join(dict.fromkeys(str(n) for n in notes if n))
        withheld.append(", ".join(key.removesuffix("_n") + f" (n = {row[key]})" for key in small))
    out["withheld"] = withheld
    return out


# Digits per kind of number: coefficients to 2 (as the paper's Table 1) plus one, volumes to 0.1 mL.
_DIGITS = {"icc": 3, "ccc": 3, "dice": 3, "ratio": 3, "slope": 3, "p": 4, "ml": 1, "mm": 1, "rate": 3}


def _digits(column: str) -> int | None:
    if column in ("n", "group") or column.startswith("n_") or column.endswith("_n"):
        return None
    if column.endswith("_p") or column == "p":
        return _DIGITS["p"]
    for prefix in ("icc", "ccc", "dice", "ratio"):
        if column.startswith(prefix):
            return _DIGITS[prefix]
    if "slope" in column:
        return _DIGITS["slope"]
    if column.startswith("hd95") or column.endswith("_mm"):
        return _DIGITS["mm"]
    if column == "detection_rate":
        return _DIGITS["rate"]
    if column.endswith("_hu"):
        return 1
    return _DIGITS["ml"]


def rounded(table: pd.DataFrame) -> pd.DataFrame:
    """A copy of a statistics or per-patient table with every float column rounded for reporting.

    The one place where corelab rounds: ICC, CCC, Dice and ratios to 3 decimals, p to 4, mL, mm and
    HU to 1; counts and text untouched.
    """
    out = table.copy()
    for column in out.columns:
        if pd.api.types.is_float_dtype(out[column]):
            digits = _digits(str(column))
            if digits is not None:
                out[column] = out[column].round(digits)
    return out
