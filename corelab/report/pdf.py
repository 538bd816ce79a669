"""The agreement report: tables and figures into HTML (jinja2, autoescaped), PDF (weasyprint), xlsx.

`build_report` turns the per-patient table of `corelab.compare.rows` into statistics tables
(`corelab.agreement`), formatted tables, SVG figures (`corelab.report.plots`) and the methods text
(`corelab.report.text`); `render` writes HTML and PDF; `write_workbook` the xlsx. Numbers are
rounded once, by `corelab.agreement.rounded`, and printed with the same number of decimals.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import pandas as pd

from corelab import __version__
from corelab.agreement import agreement_table, rounded
from corelab.config import CLASSES
from corelab.errors import CorelabError
from corelab.io.tables import neutralize_frame
from corelab.report import plots
from corelab.report.text import (
    COLUMN_MEANINGS,
    DEFINITIONS,
    SUMMARY_MEANINGS,
    compare_provenance,
    flatten,
    lookup,
    methods_paragraphs,
    run_provenance,
)

__all__ = ["BuiltReport", "ReportError", "TEMPLATES", "build_report", "render", "write_workbook"]

# The repository's templates/, installed as the package data corelab.report.templates.
TEMPLATES = Path(str(resources.files("corelab.report.templates")))
TABLE_KEYS = ("volume", "bland_altman_ml", "bland_altman_ratio", "overlap", "site", "sensitivity",
              "exclusion_counts", "exclusions", "patients")


class ReportError(CorelabError):
    """The report cannot be written (template missing, PDF engine failure, file not writable)."""


@dataclass(frozen=True)
class BuiltReport:
    """Everything the report shows. tables: unrounded DataFrames for the workbook; context: the template's."""

    context: dict
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)


def _f(value: object, digits: int) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)) or value is pd.NA:
        return "–"
    return f"{float(value):.{digits}f}"


def _ci(row: pd.Series, key: str, digits: int, ci_digits: int | None = None) -> str:
    if not math.isfinite(row[key]):
        return "undefined"
    low, high = row[f"{key}_ci_low"], row[f"{key}_ci_high"]
    ci = f" ({_f(low, ci_digits or digits)} to {_f(high, ci_digits or digits)})" if math.isfinite(low) else " (CI –)"
    return _f(row[key], digits) + ci


def _iqr(row: pd.Series, prefix: str, digits: int) -> str:
    if not math.isfinite(row.get(f"{prefix}_median", math.nan)):
        return "–"
    return f"{_f(row[f'{prefix}_median'], digits)} ({_f(row[f'{prefix}_q1'], digits)} to {_f(row[f'{prefix}_q3'], digits)})"


def _p(value: float) -> str:
    return "–" if not math.isfinite(value) else ("< 0.001" if value < 0.001 else f"{value:.3f}")


def _table(title: str, columns: list[str], rows: list[list[str]], note: str = "", css: str = "") -> dict:
    return {"title": title, "columns": columns, "rows": rows, "note": note, "css": css}


def _notes(stats: pd.DataFrame, *columns: str) -> str:
    """Why numbers are undefined, per group, from the given note columns ("notes" = all)."""
    out = []
    for _, r in stats.iterrows():
        text = "; ".join(dict.fromkeys(str(r[c]) for c in columns if r[c]))
        if text:
            out.append(f"{r['group'] or '(none)'}: {text}.")
    return " ".join(out)


def _format_tables(stats: pd.DataFrame, labels: tuple[str, str], what: str) -> dict[str, dict]:
    ref, other = labels
    s = rounded(stats)
    rows = list(s.iterrows())
    group = lambda r: str(r["group"]) or "(none)"  # noqa: E731
    return {
        "volume": _table(
            f"Volume agreement {what}",
            ["Group", "n", f"{ref} mL, median (IQR)", f"{other} mL, median (IQR)", "ICC(A,1) (95% CI)",
             "ICC(C,1) (95% CI)", "Lin's CCC (95% CI)", "|difference| mL, median (IQR)"],
            [[group(r), str(r["n"]), _iqr(r, "reference", 1), _iqr(r, "other", 1), _ci(r, "icc_a1", 3, 2),
              _ci(r, "icc_c1", 3, 2), _ci(r, "ccc", 3), _iqr(r, "absdiff", 1)] for _, r in rows],
            _notes(stats, "icc_note", "ccc_note")),
        "bland_altman_ml": _table(
            f"Bland-Altman, mL ({other} - {ref}) {what}",
            ["Group", "n", "bias (95% CI)", "lower limit (95% CI)", "upper limit (95% CI)",
             "proportional bias slope (95% CI)", "p (slope)"],
            [[group(r), str(r["ba_n"]), _ci(r, "ba_bias", 1), _ci(r, "ba_loa_low", 1), _ci(r, "ba_loa_high", 1),
              _ci(r, "ba_slope", 3), _p(r["ba_slope_p"])] for _, r in rows],
            _notes(stats, "ba_note")),
        "bland_altman_ratio": _table(
            f"Bland-Altman, ratio {other}/{ref} {what}",
            ["Group", "n (zero pairs left out)", "geometric mean ratio (95% CI)", "lower limit (95% CI)",
             "upper limit (95% CI)", "slope on ln scale (95% CI)", "p (slope)"],
            [[group(r), f"{r['ratio_n']} ({r['ratio_n_zero']})", _ci(r, "ratio_bias", 3),
              _ci(r, "ratio_loa_low", 3), _ci(r, "ratio_loa_high", 3), _ci(r, "ratio_slope", 3),
              _p(r["ratio_slope_p"])] for _, r in rows],
            _notes(stats, "ratio_note")),
        "overlap": _table(
            f"Overlap {what}",
            ["Group", "n", "Dice mean ± SD (n)", "Dice median (IQR)", "both masks empty", "HD95 mm, median (IQR)",
             "lesions detected / reference lesions (rate)"],
            [[group(r), str(r["n"]),
              f"{_f(r['dice_mean'], 3)} ± {_f(r['dice_sd'], 3)} ({r['dice_n']})" if r["dice_n"] else "–",
              _iqr(r, "dice", 3), str(r["n_both_empty"]), _iqr(r, "hd95", 1),
              f"{r['lesions_detected']} / {r['lesions']} ({_f(r['detection_rate'], 3)})"] for _, r in rows]),
    }


def _short_table(title: str, stats: pd.DataFrame) -> dict:
    s = rounded(stats)
    return _table(
        title,
        ["Group", "n", "ICC(A,1) (95% CI)", "bias mL (95% limits of agreement)", "Dice mean ± SD", "Dice median (IQR)"],
        [[str(r["group"]) or "(none)", str(r["n"]), _ci(r, "icc_a1", 3, 2),
          f"{_f(r['ba_bias'], 1)} ({_f(r['ba_loa_low'], 1)} to {_f(r['ba_loa_high'], 1)})",
          f"{_f(r['dice_mean'], 3)} ± {_f(r['dice_sd'], 3)}", _iqr(r, "dice", 3)] for _, r in s.iterrows()],
        _notes(stats, "icc_note", "ba_note"))


def _reason_counts(per_patient: pd.DataFrame, mode: str) -> pd.DataFrame:
    missing = "no reference read" if mode == "automated" else "no read by reader A or by reader B"
    kinds = [("processing failed", "processing failed")] if mode == "automated" else []
    kinds += [(missing, "no re"), ("outside the imaging window", "outside the 12 h"),
              ("imaging time unknown", "imaging time unknown"), ("mask missing or unreadable", "mask ")]
    reasons = per_patient["excluded_because"].fillna("")
    rows = [{"reason": "listed in the results", "patients": len(per_patient)}]
    rows += [{"reason": name, "patients": int(reasons.str.contains(key, regex=False).sum())} for name, key in kinds]
    rows.append({"reason": "analysed (primary population)", "patients": int(per_patient["in_primary"].sum())})
    return pd.DataFrame(rows)


def _provenance_tables(run_info: dict, compare_info: dict) -> dict[str, pd.DataFrame]:
    """The audit trail as workbook sheets: who/when/what of run and compare, per-scan input checksums,
    per-file reference checksums."""
    sections = (("corelab run", run_provenance(run_info)), ("corelab compare", compare_provenance(compare_info)))
    tables = {"provenance": pd.DataFrame([{"step": step, "item": item, "value": value}
                                          for step, rows in sections for item, value in rows])}
    tables["inputs"] = pd.DataFrame(list(run_info.get("inputs") or []),
                                    columns=["patient_id", "scan", "scan_sha256", "status", "record"])
    files = [{"folder": role, "file": name, "sha256": sha} for role in ("reference", "against")
             for name, sha in dict((compare_info.get(role) or {}).get("files") or {}).items()]
    tables["reference_files"] = pd.DataFrame(files, columns=["folder", "file", "sha256"])
    return tables


def _svg_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def _patients_table(per_patient: pd.DataFrame, labels: tuple[str, str], has_site: bool) -> dict:
    p = rounded(per_patient)
    return _table(
        "Per-patient results",
        ["Patient", *(["Site"] if has_site else []), "Class", "mean HU", f"{labels[0]} mL", f"{labels[1]} mL",
         "difference mL", "Dice", "HD95 mm", "lesions found", "primary"],
        [[r["patient_id"], *([str(r["site"])] if has_site else []), r["hypodensity_class"], _f(r["reference_mean_hu"], 1),
          _f(r["reference_ml"], 1), _f(r["other_ml"], 1), _f(r["difference_ml"], 1),
          "both empty" if r["both_empty"] else _f(r["dice"], 3), _f(r["hd95_mm"], 1),
          "–" if pd.isna(r["lesions"]) else f"{r['lesions_detected']}/{r['lesions']}", "yes" if r["in_primary"] else "no"]
         for _, r in p.iterrows()],
        "Class from the reference's mean HU; 'unknown' without a readable scan or reference mask. "
        "Dice 'both empty': left out of the Dice summaries.", css="nowrap")


def _figures(primary: pd.DataFrame, by_class: pd.DataFrame, labels: tuple[str, str]) -> list[dict]:
    return [
        {"title": f"{labels[1].capitalize()} against {labels[0]} volume, with the identity line (primary population)",
         "src": _svg_uri(plots.scatter_grid(primary, reference_label=labels[0], other_label=labels[1]))},
        {"title": "Bland-Altman plots (mL): bias (solid line, its 95% CI shaded) and 95% limits of agreement "
                  "(dashed, their 95% CIs dotted), overall and per hypodensity class",
         "src": _svg_uri(plots.bland_altman_grid(primary, by_class, reference_label=labels[0], other_label=labels[1]))},
        {"title": "Dice per patient (both-empty patients not shown), overall and per class",
         "src": _svg_uri(plots.dice_plot(primary))},
    ]


def build_report(
    per_patient: pd.DataFrame, *, mode: str, run_info: dict, trial_name: str | None = None,
    sources: dict[str, str] | None = None, today: dt.date | None = None, compare_info: dict | None = None,
) -> BuiltReport:
    """Statistics, formatted tables, figures and text for one report (mode "automated" or "inter-reader").

    run_info: the results' run.json ({} when there is none); compare_info: this comparison's own
    provenance (`corelab.compare.rows.compare_provenance_info`), shown beside run.json's on the title page.
    """
    labels = ("manual", "automated") if mode == "automated" else ("reader A", "reader B")
    primary = per_patient[per_patient["in_primary"]]
    keys = {"reference": "reference_ml", "other": "other_ml"}
    by_class = agreement_table(primary, **keys, by="hypodensity_class", order=list(CLASSES))
    tables: dict[str, pd.DataFrame] = {"overall": by_class}
    context_tables = _format_tables(by_class, labels, "by hypodensity class (primary population)")
    has_site = "site" in per_patient and (per_patient["site"].fillna("") != "").any()
    if has_site:
        tables["by_site"] = agreement_table(primary, **keys, by="site")
        context_tables["site"] = _short_table("Agreement by site (primary population)", tables["by_site"])
    measured = per_patient.dropna(subset=["reference_ml", "other_ml"])
    tables["sensitivity"] = agreement_table(measured, **keys, overall="All measured")
    context_tables["sensitivity"] = _short_table(
        "Sensitivity analysis: every patient with both volumes, whatever the timing", tables["sensitivity"])
    tables["exclusion_counts"] = _reason_counts(per_patient, mode)
    context_tables["exclusion_counts"] = _table(
        "Patient flow", ["", "patients"], [[r["reason"], str(r["patients"])] for _, r in tables["exclusion_counts"].iterrows()],
        "A patient can have more than one reason; each is listed in the exclusions table after the figures.",
        css="narrow")
    excluded = per_patient[~per_patient["in_primary"]]
    tables["exclusions"] = excluded[[c for c in ("patient_id", "site", "excluded_because") if c in excluded]]
    context_tables["exclusions"] = _table(
        "Exclusions from the primary analysis", ["Patient", *(["Site"] if has_site else []), "Reason(s)"],
        [[r["patient_id"], *([str(r["site"])] if has_site else []), r["excluded_because"]] for _, r in excluded.iterrows()],
        "" if len(excluded) else "No patient was excluded.")
    tables["per_patient"] = per_patient
    context_tables["patients"] = _patients_table(per_patient, labels, has_site)
    counts = {"total": len(per_patient), "analysed": len(primary), "excluded": len(excluded)}
    compare_info = compare_info or {}
    tables.update(_provenance_tables(run_info, compare_info))
    flat = flatten(run_info)
    context = {
        "title": "Infarct volume agreement report" if mode == "automated" else "Inter-reader agreement report",
        "trial_name": trial_name or "",
        "date": (today or dt.date.today()).isoformat(),
        "mode": mode,
        "labels": labels,
        "report_version": __version__,
        "results_version": str(lookup(flat, "corelab", within="version")),
        "model_version": str(lookup(flat, "model_version", "version", within="model")) if mode == "automated" else "",
        "provenance": [("Results: corelab run (from run.json)", run_provenance(run_info)),
                       ("This report: corelab compare", compare_provenance(compare_info))],
        "sources": [(k, v) for k, v in (sources or {}).items() if v],
        "counts": counts,
        "headline": _headline(by_class.iloc[0], labels),
        "methods": methods_paragraphs(run_info, mode=mode, counts=counts),
        "definitions": DEFINITIONS,
        "tables": context_tables,
        "figures": _figures(primary, by_class, labels),
        # Per-scan checksums are one row each: they go to the workbook's inputs sheet, not the appendix.
        "parameters": [(k, str(v)) for k, v in flat.items() if not k.startswith("inputs.")],
    }
    return BuiltReport(context=context, tables=tables)


def _icc_word(value: float) -> str:
    """The paper's reading of an ICC (American Psychological Association bands)."""
    if not math.isfinite(value):
        return ""
    word = "poor" if value < 0.4 else "fair" if value < 0.6 else "good" if value < 0.75 else "excellent"
    return f", {word} by the paper's bands"


def _headline(row: pd.Series, labels: tuple[str, str]) -> str:
    r = rounded(pd.DataFrame([row])).iloc[0]
    if r["n"] == 0:
        return "No patient is in the primary analysis population; see the patient flow and the exclusions."
    return (f"{labels[1].capitalize()} vs {labels[0]}, primary population (n = {r['n']}): ICC(A,1) "
            f"{_ci(r, 'icc_a1', 3, 2)}{_icc_word(r['icc_a1'])}; bias {_ci(r, 'ba_bias', 1)} mL; 95% limits of agreement "
            f"{_f(r['ba_loa_low'], 1)} to {_f(r['ba_loa_high'], 1)} mL; Dice "
            f"{_f(r.get('dice_mean', math.nan), 3)} ± {_f(r.get('dice_sd', math.nan), 3)}.")


def render(context: dict, html_path: str | Path, pdf_path: str | Path) -> None:
    """Render ``templates/report.html.j2`` (autoescaped) to ``html_path`` and, with weasyprint, to ``pdf_path``."""
    import jinja2
    import weasyprint

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    try:
        css = (TEMPLATES / "report.css").read_text(encoding="utf-8")
        html = env.get_template("report.html.j2").render(css=css, **context)
    except (OSError, jinja2.TemplateError) as error:
        raise ReportError(f"The report template in {TEMPLATES} could not be used ({error}).") from None
    # weasyprint logs font-subsetting advice as warnings; a core-lab user cannot act on them.
    logger = logging.getLogger("weasyprint")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        Path(html_path).write_text(html, encoding="utf-8")
        weasyprint.HTML(string=html, base_url=str(TEMPLATES)).write_pdf(str(pdf_path))
    except OSError as error:
        raise ReportError(f"The report could not be written to {pdf_path} ({error}).") from None
    finally:
        logger.setLevel(level)


def write_workbook(built: BuiltReport, path: str | Path) -> None:
    """agreement.xlsx: per_patient sheet, one sheet per summary table, definitions, run parameters and
    the audit trail (provenance, per-scan input checksums, per-file reference checksums)."""
    sheets = {"per_patient": built.tables["per_patient"], "summary_by_class": built.tables["overall"]}
    for key, name in (("by_site", "summary_by_site"), ("sensitivity", "sensitivity"),
                      ("exclusion_counts", "patient_flow"), ("exclusions", "exclusions")):
        if key in built.tables:
            sheets[name] = built.tables[key]
    sheets["definitions"] = pd.DataFrame(
        [{"term": t, "definition": d} for t, d in DEFINITIONS]
        + [{"term": f"per_patient.{c}", "definition": m} for c, m in COLUMN_MEANINGS.items()]
        + [{"term": f"summary.{c}", "definition": m} for c, m in SUMMARY_MEANINGS.items()])
    sheets["run_parameters"] = pd.DataFrame(built.context["parameters"], columns=["parameter", "value"])
    for name in ("provenance", "inputs", "reference_files"):
        if name in built.tables:
            sheets[name] = built.tables[name]
    try:
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            for name, frame in sheets.items():
                neutralize_frame(rounded(frame)).to_excel(writer, sheet_name=name, index=False)
    except OSError as error:
        raise ReportError(f"The workbook could not be written to {path} ({error}).") from None
