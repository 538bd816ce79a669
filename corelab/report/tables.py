"""The report's tables: statistics from `corelab.agreement` as rows of text for the template.

Every number goes through `corelab.agreement.rounded` (the one place of rounding) and then through
`corelab.report.format`, which prints "n too small" instead of an interval, limit, SD or ICC for a
group below `corelab.agreement.MIN_N_INTERVAL`.
"""

from __future__ import annotations

import pandas as pd

from corelab.agreement import MIN_N_INTERVAL, rounded
from corelab.report.format import (
    MISSING,
    TOO_SMALL,
    estimate_ci,
    fixed,
    median_iqr,
    p_value,
    too_small,
)

__all__ = ["table", "statistics_tables", "short_table", "patients_table", "flagged_for_review", "review_table",
           "reason_counts", "qc_paragraphs", "SMALL_N_NOTE", "RATIO_NOTE", "mean_sd"]

SMALL_N_NOTE = (f"with fewer than {MIN_N_INTERVAL} values a group gets no interval, limit of agreement, SD, ICC "
                "or slope (Methods, Statistics).")
RATIO_NOTE = ("Zero volumes: a pair in which either volume is 0 mL has no ratio; it is left out of this table "
              "only (counted in brackets after n) and kept in the mL analysis.")


def table(title: str, columns: list[str], rows: list[list[str]], note: str = "", css: str = "") -> dict:
    return {"title": title, "columns": columns, "rows": rows, "note": note, "css": css}


def _group(r: pd.Series) -> str:
    return str(r["group"]) or "(none)"


def _notes(stats: pd.DataFrame, n_key: str, *columns: str) -> str:
    """Why numbers are missing: the groups below the minimum n in one sentence, other reasons per group."""
    small, out = [], []
    for _, r in stats.iterrows():
        n = int(r[n_key]) if n_key in r else 0
        if int(r["n"]) == 0:
            continue
        if too_small(n):
            small.append(f"{_group(r)} (n = {n})")
        reasons = [part for c in columns if r[c] for part in str(r[c]).split("; ") if not part.startswith(TOO_SMALL)]
        if reasons:
            out.append(f"{_group(r)}: {'; '.join(dict.fromkeys(reasons))}.")
    empty = [_group(r) for _, r in stats.iterrows() if int(r["n"]) == 0]
    if empty:
        out.append(f"No patients: {', '.join(empty)}.")
    if small:
        out.insert(0, f"{TOO_SMALL[0].upper()}{TOO_SMALL[1:]}: {', '.join(small)}; {SMALL_N_NOTE}")
    return " ".join(out)


def _ci(r: pd.Series, key: str, digits: int, n_key: str, *, ci_digits: int | None = None,
        interval_only: bool = False) -> str:
    if int(r[n_key]) == 0:
        return MISSING
    return estimate_ci(r[key], r[f"{key}_ci_low"], r[f"{key}_ci_high"], digits, n=r[n_key], ci_digits=ci_digits,
                       interval_only=interval_only)


def _iqr(r: pd.Series, prefix: str, digits: int) -> str:
    return median_iqr(r.get(f"{prefix}_median"), r.get(f"{prefix}_q1"), r.get(f"{prefix}_q3"), digits,
                      n=r.get(f"{prefix}_n", 0))


def _p(r: pd.Series, key: str, n_key: str) -> str:
    return MISSING if int(r[n_key]) == 0 else p_value(r[key], n=r[n_key])


def mean_sd(r: pd.Series, prefix: str = "dice", digits: int = 3, *, with_n: bool = True) -> str:
    """``0.712 ± 0.104 (n = 9)``; below the minimum n ``0.540, SD n too small (n = 2)``."""
    n = int(r.get(f"{prefix}_n", 0) or 0)
    if n == 0:
        return MISSING
    count = f" (n = {n})" if with_n else ""
    if too_small(n):
        return f"{fixed(r[f'{prefix}_mean'], digits)}, SD {TOO_SMALL}" + count
    return f"{fixed(r[f'{prefix}_mean'], digits)} ± {fixed(r[f'{prefix}_sd'], digits)}" + count


def _volume_table(s: pd.DataFrame, stats: pd.DataFrame, labels: tuple[str, str], what: str) -> dict:
    ref, other = labels
    return table(
        f"Volume agreement {what}",
        ["Group", "n", f"{ref} mL, median (IQR)", f"{other} mL, median (IQR)", "ICC(A,1) (95% CI)",
         "ICC(C,1) (95% CI)", "Lin's CCC (95% CI)", "|difference| mL, median (IQR)"],
        [[_group(r), str(r["n"]), _iqr(r, "reference", 1), _iqr(r, "other", 1),
          _ci(r, "icc_a1", 3, "icc_n", ci_digits=2, interval_only=True),
          _ci(r, "icc_c1", 3, "icc_n", ci_digits=2, interval_only=True),
          _ci(r, "ccc", 3, "icc_n", interval_only=True), _iqr(r, "absdiff", 1)] for _, r in s.iterrows()],
        _notes(stats, "icc_n", "icc_note", "ccc_note"))


def _bland_altman_table(s: pd.DataFrame, stats: pd.DataFrame, labels: tuple[str, str], what: str,
                        scale: str) -> dict:
    ref, other = labels
    p, digits = ("ba", 1) if scale == "ml" else ("ratio", 3)
    if scale == "ml":
        title, first = f"Bland-Altman, mL ({other} - {ref}) {what}", ["n", "bias mL (95% CI)"]
        n_cell = lambda r: str(r["ba_n"])
    else:
        title, first = (f"Bland-Altman, ratio {other}/{ref} {what}",
                        ["n (zero pairs left out)", "geometric mean ratio (95% CI)"])
        n_cell = lambda r: f"{r['ratio_n']} ({r['ratio_n_zero']})"
    slope = "proportional bias slope (95% CI)" if scale == "ml" else "slope on ln scale (95% CI)"
    note = _notes(stats, f"{p}_n", f"{p}_note")
    return table(
        title, ["Group", *first, "lower limit (95% CI)", "upper limit (95% CI)", slope, "p (slope)"],
        [[_group(r), n_cell(r), _ci(r, f"{p}_bias", digits, f"{p}_n"),
          _ci(r, f"{p}_loa_low", digits, f"{p}_n", interval_only=True),
          _ci(r, f"{p}_loa_high", digits, f"{p}_n", interval_only=True),
          _ci(r, f"{p}_slope", 3, f"{p}_n", interval_only=True), _p(r, f"{p}_slope_p", f"{p}_n")]
         for _, r in s.iterrows()],
        note if scale == "ml" else f"{RATIO_NOTE} {note}".strip())


def statistics_tables(stats: pd.DataFrame, labels: tuple[str, str], what: str) -> dict[str, dict]:
    """The volume, Bland-Altman (mL and ratio) and overlap tables of `agreement_table` ``stats``."""
    s = rounded(stats)
    return {
        "volume": _volume_table(s, stats, labels, what),
        "bland_altman_ml": _bland_altman_table(s, stats, labels, what, "ml"),
        "bland_altman_ratio": _bland_altman_table(s, stats, labels, what, "ratio"),
        "overlap": table(
            f"Overlap {what}",
            ["Group", "n", "Dice mean ± SD", "Dice median (IQR)", "both masks empty", "HD95 mm, median (IQR)",
             "lesions detected / reference lesions (rate)"],
            [[_group(r), str(r["n"]), mean_sd(r, with_n=r.get("dice_n") != r["n"]), _iqr(r, "dice", 3), str(r["n_both_empty"]), _iqr(r, "hd95", 1),
              f"{r['lesions_detected']} / {r['lesions']} ({fixed(r['detection_rate'], 3)})"] for _, r in s.iterrows()],
            " ".join(filter(None, ["Both masks empty: Dice undefined, left out of the Dice columns and counted.",
                                   _notes(stats, "dice_n")]))),
    }


def short_table(title: str, stats: pd.DataFrame) -> dict:
    """ICC, bias with limits and Dice per group (sites, sensitivity analysis)."""
    s = rounded(stats)

    def bias(r: pd.Series) -> str:
        if int(r["ba_n"]) == 0:
            return MISSING
        limits = (f"limits {TOO_SMALL}" if too_small(r["ba_n"])
                  else f"{fixed(r['ba_loa_low'], 1)} to {fixed(r['ba_loa_high'], 1)}")
        return f"{fixed(r['ba_bias'], 1)} ({limits})"

    return table(
        title,
        ["Group", "n", "ICC(A,1) (95% CI)", "bias mL (95% limits of agreement)", "Dice mean ± SD", "Dice median (IQR)"],
        [[_group(r), str(r["n"]), _ci(r, "icc_a1", 3, "icc_n", ci_digits=2, interval_only=True), bias(r),
          mean_sd(r, with_n=r.get("dice_n") != r["n"]), _iqr(r, "dice", 3)] for _, r in s.iterrows()],
        _notes(stats, "ba_n", "icc_note", "ba_note"))


def reason_counts(per_patient: pd.DataFrame, mode: str) -> pd.DataFrame:
    """Patient flow: listed, each exclusion reason, analysed. A patient counts once under each kind
    of reason it has; reasons are told apart by how they start (`corelab.compare.rows` writes them)."""
    automated = mode == "automated"
    kinds = [("processing failed", ("processing failed",))] if automated else []
    kinds += [
        ("no reference read", ("no reference read",)) if automated else
        ("no read by reader A or by reader B", ("no read by reader",)),
        ("reference read unusable", ("reference read unusable",)) if automated else
        ("read by reader A or B unusable", ("read by reader",)),
        ("outside the imaging window", ("scanned outside",)),
        ("imaging time unknown", ("imaging time unknown",)),
        ("mask missing or unreadable", ("mask unreadable", "automated mask file missing")),
    ]
    reasons = per_patient["excluded_because"].fillna("").astype(str).str.split("; ")
    rows = [{"reason": "listed in the results", "patients": len(per_patient)}]
    rows += [{"reason": name, "patients": int(reasons.map(lambda rs, st=starts: any(r.startswith(st) for r in rs)).sum())}
             for name, starts in kinds]
    rows.append({"reason": "analysed (primary population)", "patients": int(per_patient["in_primary"].sum())})
    return pd.DataFrame(rows)


def flagged_for_review(per_patient: pd.DataFrame) -> pd.DataFrame:
    """The per-patient rows whose automated volume needs review (column ``needs_review``; none
    when the column is absent), with patient_id, site (when present), in_primary and flags."""
    if "needs_review" not in per_patient:
        return per_patient.iloc[0:0][["patient_id"]]
    flagged = per_patient[per_patient["needs_review"].fillna(False).astype(bool)]
    return flagged[[c for c in ("patient_id", "site", "in_primary", "flags") if c in flagged]]


def review_table(per_patient: pd.DataFrame, has_site: bool) -> dict:
    """Scans whose automated volume needs review (volumes.csv ``needs_review``), with their flags."""
    flagged = flagged_for_review(per_patient)
    return table(
        "Scans flagged for review", ["Patient", *(["Site"] if has_site else []), "primary", "Flags"],
        [[r["patient_id"], *([str(r.get("site", ""))] if has_site else []), "yes" if r.get("in_primary") else "no",
          str(r.get("flags", ""))] for _, r in flagged.iterrows()],
        ("A flag says the automated volume must be checked before it is used: an implausible result "
         "(a guard of corelab run tripped), invented or resampled slices, partial coverage or a shifted "
         "brain. These scans are kept in every analysis of this report; look at their QC images and masks "
         "before relying on the numbers." if len(flagged) else
         "No scan is flagged for review in volumes.csv."))


def patients_table(per_patient: pd.DataFrame, labels: tuple[str, str], has_site: bool) -> dict:
    """Appendix A: one row per listed patient; the automated class beside the reference's when the
    rows have one (automated mode)."""
    p = rounded(per_patient)
    auto = "auto_class" in p
    return table(
        "Per-patient results",
        ["Patient", *(["Site"] if has_site else []), "reference class", *([f"{labels[1]} class"] if auto else []),
         "reference mean HU", f"{labels[0]} mL", f"{labels[1]} mL",
         "difference mL", "Dice", "HD95 mm", "lesions found", "primary"],
        [[r["patient_id"], *([str(r["site"])] if has_site else []), r["reference_class"],
          *([str(r["auto_class"]) or MISSING] if auto else []),
          fixed(r["reference_mean_hu"], 1), fixed(r["reference_ml"], 1), fixed(r["other_ml"], 1),
          fixed(r["difference_ml"], 1), "both empty" if r["both_empty"] else fixed(r["dice"], 3),
          fixed(r["hd95_mm"], 1), MISSING if pd.isna(r["lesions"]) else f"{r['lesions_detected']}/{r['lesions']}",
          "yes" if r["in_primary"] else "no"]
         for _, r in p.iterrows()],
        f"Reference class: from the {labels[0]} read's mean HU (hemorrhage left out), 'no infarct' for "
        "an empty read, 'unclassified' for a mean outside every class range, 'unknown' without a readable scan or "
        "reference mask."
        + (f" {labels[1].capitalize()} class: volumes.csv's auto_class, by the same rule on the automated mask."
           if auto else "")
        + " Dice 'both empty': left out of the Dice summaries.", css="nowrap long")


def qc_paragraphs(per_patient: pd.DataFrame, folder: str) -> list[str]:
    """What compare's own QC images show and where they are; the compared patients without one, and
    why (their note). [] when no QC set was drawn (``folder`` "" or no ``qc`` column)."""
    if not folder or "qc" not in per_patient:
        return []
    drawn = int((per_patient["qc"].fillna("") != "").sum())
    text = [f"{folder}/<patient_id>.png, beside this report: {drawn} image{'s' if drawn != 1 else ''}, one per "
            "patient with an automated mask, a reference read and a readable scan. Each shows up to four axial "
            "slices chosen on both masks (stroke window bare and outlined, brain window outlined): the "
            "automated labels as solid outlines in the paper's colours (red severe, orange intermediate, yellow "
            "subtle, blue hemorrhage) and the reference read as a dashed cyan outline; the title gives the "
            "reference volume and class, the automated class and the automated volumes per class (mL)."]
    compared = per_patient.dropna(subset=["reference_ml", "other_ml"])
    missing = compared[compared["qc"].fillna("") == ""]
    if len(missing):
        text.append("No QC image: " + "; ".join(
            f"{r['patient_id']} ({str(r.get('note', '')).strip() or 'reason not recorded'})"
            for _, r in missing.iterrows()) + ".")
    return text
