"""The agreement report: tables and figures into HTML (jinja2, autoescaped), PDF (weasyprint), xlsx.

`build_report` turns the per-patient table of `corelab.compare.rows` into statistics tables
(`corelab.agreement`, with its one minimum n applied by `withhold_small_n`), formatted tables
(`corelab.report.tables`), SVG figures (`corelab.report.plots`), the methods text
(`corelab.report.text`) and the provenance, parameters and validation statement
(`corelab.report.provenance`); `render` writes HTML and PDF; `write_workbook` the xlsx. Numbers are
rounded once, by `corelab.agreement.rounded`, and printed by `corelab.report.format`.
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
from corelab.agreement import agreement_table, rounded, withhold_small_n
from corelab.config import CLASSES
from corelab.errors import CorelabError
from corelab.io.tables import neutralize_frame
from corelab.report import plots
from corelab.report.format import TOO_SMALL, estimate_ci, fixed, plain, too_small
from corelab.report.provenance import (
    compare_provenance,
    parameter_rows,
    run_provenance,
    run_title,
    validation_statement,
)
from corelab.report.tables import (
    flagged_for_review,
    mean_sd,
    patients_table,
    qc_paragraphs,
    reason_counts,
    review_table,
    short_table,
    statistics_tables,
    table,
)
from corelab.report.text import (
    COLUMN_MEANINGS,
    DEFINITIONS,
    SUMMARY_MEANINGS,
    flatten,
    lookup,
    methods_paragraphs,
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


def _figures(primary: pd.DataFrame, by_class: pd.DataFrame, labels: tuple[str, str],
             by_site: pd.DataFrame | None = None) -> list[dict]:
    """The report's figures; with ``by_site`` (the agreement by site) and two sites or more to draw
    (`plots.site_panels`), a Bland-Altman panel per site last, at most `plots.SITES_PER_FIGURE` per figure."""
    # The small Dice figure second: it fits below the scatter plots, the Bland-Altman grid on the next page.
    figures = [
        {"title": f"{labels[1].capitalize()} against {labels[0]} volume, with the identity line (primary population)",
         "src": _svg_uri(plots.scatter_grid(primary, reference_label=labels[0], other_label=labels[1])),
         "css": "scatter"},
        {"title": "Dice per patient (both-empty patients not shown), overall and per class; boxes only where "
                  "the minimum n is reached",
         "src": _svg_uri(plots.dice_plot(primary)), "css": "dice"},
        {"title": "Bland-Altman plots (mL): bias (solid line, its 95% CI shaded) and 95% limits of agreement "
                  "(dashed, their 95% CIs dotted), overall and per reference class; a panel with fewer "
                  f"patients than the minimum n has no limits ('{TOO_SMALL}')",
         "src": _svg_uri(plots.bland_altman_grid(primary, by_class, reference_label=labels[0], other_label=labels[1])),
         "css": "bland-altman"},
    ]
    sites = plots.site_panels(primary, by_site) if by_site is not None else []
    if len(sites) >= 2:
        parts = [sites[i : i + plots.SITES_PER_FIGURE] for i in range(0, len(sites), plots.SITES_PER_FIGURE)]
        for k, part in enumerate(parts, 1):
            figures.append({
                "title": "Bland-Altman plots by site (mL, every patient of the primary population with both "
                         "volumes): each site's own bias and 95% limits, drawn as in the figure above; a shifted "
                         "bias or wider limits at one site points to its scanner or its readers"
                         + (f" (sites {part[0]} to {part[-1]}, part {k} of {len(parts)})" if len(parts) > 1 else ""),
                "src": _svg_uri(plots.bland_altman_by_site(primary, by_site, part, reference_label=labels[0],
                                                           other_label=labels[1])),
                "css": "bland-altman by-site"})
    return figures


def _shown(computed: pd.DataFrame, name: str, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The statistics as the report prints them (`withhold_small_n`); ``tables[name]`` gets the
    computed numbers for the workbook, with the column saying what the report withholds."""
    shown = withhold_small_n(computed)
    tables[name] = computed.assign(withheld=shown["withheld"])
    return shown


def _flow_tables(per_patient: pd.DataFrame, mode: str, has_site: bool, tables: dict) -> dict[str, dict]:
    """Patient flow and exclusions (the unrounded frames go into ``tables`` for the workbook)."""
    tables["exclusion_counts"] = reason_counts(per_patient, mode)
    excluded = per_patient[~per_patient["in_primary"]]
    tables["exclusions"] = excluded[[c for c in ("patient_id", "site", "excluded_because") if c in excluded]]
    return {
        "exclusion_counts": table(
            "Patient flow", ["", "patients"],
            [[r["reason"], str(r["patients"])] for _, r in tables["exclusion_counts"].iterrows()],
            "A patient can have more than one reason; each is listed in the exclusions table.", css="narrow"),
        "exclusions": table(
            "Exclusions from the primary analysis", ["Patient", *(["Site"] if has_site else []), "Reason(s)"],
            [[r["patient_id"], *([str(r["site"])] if has_site else []), r["excluded_because"]]
             for _, r in excluded.iterrows()],
            "" if len(excluded) else "No patient was excluded."),
    }


def build_report(
    per_patient: pd.DataFrame, *, mode: str, run_info: dict, trial_name: str | None = None,
    sources: dict[str, str] | None = None, today: dt.date | None = None, compare_info: dict | None = None,
    model_card: dict | None = None, model_card_problem: str = "", qc_folder: str = "",
) -> BuiltReport:
    """Statistics, formatted tables, figures and text for one report (mode "automated" or "inter-reader").

    run_info: the results' run.json ({} when there is none); compare_info: this comparison's own
    provenance (`corelab.compare.rows.compare_provenance_info`); model_card: the run's model folder's
    card.json (None when unread; model_card_problem says why), whose word on validation the report
    puts on its first page and in every page footer (automated mode); qc_folder: the folder of
    compare's own QC images beside the report ("" when none were drawn), named in the Results.
    """
    labels = ("manual", "automated") if mode == "automated" else ("reader A", "reader B")
    primary = per_patient[per_patient["in_primary"]]
    keys = {"reference": "reference_ml", "other": "other_ml"}
    tables: dict[str, pd.DataFrame] = {}
    # The report shows the statistics with the minimum-n rule applied; the workbook keeps every number
    # as computed, with the column "withheld" naming what the report does not print.
    by_class = _shown(agreement_table(primary, **keys, by="reference_class", order=list(CLASSES)), "overall", tables)
    context_tables = statistics_tables(by_class, labels, "by reference class (primary population)")
    has_site = "site" in per_patient and (per_patient["site"].fillna("") != "").any()
    by_site = None
    if has_site:
        by_site = _shown(agreement_table(primary, **keys, by="site"), "by_site", tables)
        context_tables["site"] = short_table("Agreement by site (primary population)", by_site)
    measured = per_patient.dropna(subset=["reference_ml", "other_ml"])
    sensitivity = _shown(agreement_table(measured, **keys, overall="All measured"), "sensitivity", tables)
    context_tables["sensitivity"] = short_table(
        "Sensitivity analysis: every patient with both volumes, whatever the timing", sensitivity)
    context_tables.update(_flow_tables(per_patient, mode, has_site, tables))
    if mode == "automated":  # the automated volumes' own flags; a second reader's read has none
        tables["review"] = flagged_for_review(per_patient)
        context_tables["review"] = review_table(per_patient, has_site)
    tables["per_patient"] = per_patient
    context_tables["patients"] = patients_table(per_patient, labels, has_site)
    counts = {"total": len(per_patient), "analysed": len(primary), "excluded": len(per_patient) - len(primary)}
    compare_info = compare_info or {}
    tables.update(_provenance_tables(run_info, compare_info))
    flat = flatten(run_info)
    validation = validation_statement(model_card, run_info, model_card_problem) if mode == "automated" else None
    context = {
        "title": "Infarct volume agreement report" if mode == "automated" else "Inter-reader agreement report",
        "trial_name": trial_name or "",
        "date": (today or dt.date.today()).isoformat(),
        "mode": mode,
        "labels": labels,
        "report_version": __version__,
        "results_version": plain(lookup(flat, "corelab", within="version")),
        "model_version": plain(lookup(flat, "model_version", "version", within="model")) if mode == "automated" else "",
        "validation": validation,
        "provenance": [(run_title(run_info), run_provenance(run_info)),
                       ("This report: corelab compare", compare_provenance(compare_info))],
        "sources": [(k, v) for k, v in (sources or {}).items() if v],
        "counts": counts,
        "headline": _headline(by_class.iloc[0], labels),
        "methods": methods_paragraphs(run_info, mode=mode, counts=counts),
        "definitions": DEFINITIONS,
        "tables": context_tables,
        "figures": _figures(primary, by_class, labels, by_site),
        "qc": qc_paragraphs(per_patient, qc_folder) if mode == "automated" else [],
        # `corelab run`'s sentences on sites whose brains read apart (a scanner, not patients).
        "sites_apart": [str(s) for s in run_info.get("sites_apart") or []] if mode == "automated" else [],
        # Per-scan checksums are one row each: they go to the workbook's inputs sheet, not the appendix.
        "parameters": parameter_rows(run_info),
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
    icc = estimate_ci(r["icc_a1"], r["icc_a1_ci_low"], r["icc_a1_ci_high"], 3, n=r["icc_n"], ci_digits=2,
                      interval_only=True)
    bias = estimate_ci(r["ba_bias"], r["ba_bias_ci_low"], r["ba_bias_ci_high"], 1, n=r["ba_n"])
    limits = (TOO_SMALL if too_small(r["ba_n"]) else f"{fixed(r['ba_loa_low'], 1)} to {fixed(r['ba_loa_high'], 1)} mL")
    return (f"{labels[1].capitalize()} vs {labels[0]}, primary population (n = {r['n']}): ICC(A,1) "
            f"{icc}{_icc_word(r['icc_a1'])}; bias {bias} mL; 95% limits of agreement {limits}; "
            f"Dice {mean_sd(r, with_n=False)}.")


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
                      ("exclusion_counts", "patient_flow"), ("exclusions", "exclusions"), ("review", "needs_review")):
        if key in built.tables:
            sheets[name] = built.tables[key]
    sheets["definitions"] = pd.DataFrame(
        [{"term": t, "definition": d} for t, d in DEFINITIONS]
        + [{"term": f"per_patient.{c}", "definition": m} for c, m in COLUMN_MEANINGS.items()]
        + [{"term": f"summary.{c}", "definition": m} for c, m in SUMMARY_MEANINGS.items()])
    sheets["run_parameters"] = pd.DataFrame(built.context["parameters"],
                                            columns=["section", "parameter", "value", "run_json_key"])
    for name in ("provenance", "inputs", "reference_files"):
        if name in built.tables:
            sheets[name] = built.tables[name]
    try:
        with pd.ExcelWriter(path, engine="openpyxl") as writer:
            for name, frame in sheets.items():
                neutralize_frame(rounded(frame)).to_excel(writer, sheet_name=name, index=False)
    except OSError as error:
        raise ReportError(f"The workbook could not be written to {path} ({error}).") from None
