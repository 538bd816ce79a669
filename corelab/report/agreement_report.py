"""`corelab compare`: agreement of automated results (or a second reader) with manual reads, as a PDF.

The workflow of the command: per-patient rows from `corelab.compare`, statistics from
`corelab.agreement`, and the report (HTML, PDF, workbook) from `corelab.report`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from corelab.agreement import withhold_small_n
from corelab.compare.rows import (
    CompareError,
    QCDrawer,
    automated_rows,
    compare_provenance_info,
    read_results,
    read_run_json,
    reader_rows,
)
from corelab.report.pdf import build_report, render, write_workbook

__all__ = ["CompareSummary", "compare", "read_model_card"]


@dataclass(frozen=True)
class CompareSummary:
    """What `compare` wrote and the headline numbers (overall primary population)."""

    pdf: Path
    xlsx: Path
    html: Path
    mode: str  # "automated" or "inter-reader"
    qc_folder: Path | None  # compare's own QC images (automated mode, when drawn), else None
    n_qc: int
    n_patients: int
    n_analysed: int
    n_excluded: int
    icc_a1: float
    dice_mean: float

    def __str__(self) -> str:
        icc = f"{self.icc_a1:.2f}" if math.isfinite(self.icc_a1) else "not given (n too small or undefined)"
        dice = f"{self.dice_mean:.2f}" if math.isfinite(self.dice_mean) else "not given"
        wrote = [str(self.pdf), str(self.xlsx), str(self.html)]
        if self.qc_folder is not None:
            wrote.append(f"{self.n_qc} QC image{'s' if self.n_qc != 1 else ''} in {self.qc_folder}")
        return (
            f"{self.mode} agreement: {self.n_analysed} of {self.n_patients} patients analysed "
            f"({self.n_excluded} excluded), ICC(A,1) {icc}, mean Dice {dice}; "
            f"wrote {', '.join(wrote[:-1])} and {wrote[-1]}"
        )


def read_model_card(run_info: dict) -> tuple[dict | None, str]:
    """(card.json of the model folder that run.json names, ""), or (None, why it cannot be used).

    The card is read now, at compare time (run.json names the folder, not the card's words), so it
    is only believed when its weights checksums are the ones the run recorded.
    """
    models = dict(run_info.get("models") or {})
    if not models.get("folder"):
        return None, "run.json names no model folder"
    path = Path(str(models["folder"])) / "card.json"
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return None, f"{path}: {error.__class__.__name__}"
    if not isinstance(card, dict):
        return None, f"{path} holds no card"
    recorded, carded = dict(models.get("checksums") or {}), dict(card.get("weights_sha256") or {})
    if recorded and carded != recorded:
        return None, f"{path} now describes other weights than the run used"
    return card, ""


def compare(
    results_dir: str | Path | None,
    reference_dir: str | Path,
    *,
    against: str | Path | None = None,
    out_pdf: str | Path | None = None,
    trial_name: str | None = None,
    draw_qc: QCDrawer | None = None,
    segments: tuple[str, ...] | None = None,
) -> CompareSummary:
    """Agreement of ``results_dir``'s automated masks (or of reader ``against``) with ``reference_dir``.

    Writes agreement.pdf, agreement.html and agreement.xlsx (default: in ``results_dir``; beside
    ``out_pdf`` when given). In inter-reader mode ``results_dir`` is optional and only supplies the
    scans (for the reference classes), imaging-window flags and sites.

    draw_qc: in automated mode, draws compare's own QC set, ``<pdf folder>/<pdf stem>-qc/<patient_id>.png``
    (agreement-qc/ beside agreement.pdf; not qc/, which holds corelab run's images of the same names),
    for every patient with both masks and a readable scan: `corelab.pipeline.qc.reference_qc_png`,
    which the command passes in (this module may not import pipeline). None draws no QC set.
    segments: names of the segments / ROIs of the reads to keep (`corelab.io.reference`); None keeps all.
    """
    reference_dir = Path(reference_dir)
    if not reference_dir.is_dir():
        raise CompareError(f"The reference folder {reference_dir} does not exist.")
    results = Path(results_dir) if results_dir is not None else None
    has_results = results is not None and (results / "volumes.csv").is_file()
    if against is None and not has_results:
        raise CompareError(f"{results} holds no volumes.csv; run `corelab run` first or give a results folder.")
    if against is not None and not Path(against).is_dir():
        raise CompareError(f"The second reader's folder {against} does not exist.")
    run_info = read_run_json(results) if has_results else {}
    table = read_results(results) if has_results else None
    pdf = Path(out_pdf) if out_pdf is not None else (results if results is not None and results.is_dir()
                                                      else Path.cwd()) / "agreement.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    qc_folder = pdf.parent / f"{pdf.stem}-qc" if against is None and draw_qc is not None else None
    if against is None:
        per_patient = automated_rows(table, results, reference_dir, run_info, qc_folder=qc_folder, draw_qc=draw_qc,
                                     segments=segments)
    else:
        per_patient = reader_rows(table, results, reference_dir, Path(against), run_info, segments=segments)
    if per_patient.empty:
        raise CompareError("There are no patients to compare: the results table and reference folders are empty.")
    mode = "automated" if against is None else "inter-reader"
    # the weights' validation is the model card's word; an inter-reader report involves no model
    card, card_problem = read_model_card(run_info) if against is None else (None, "")
    built = build_report(
        per_patient, mode=mode, run_info=run_info, trial_name=trial_name,
        sources={"results": str(results) if has_results else "", "reference": str(reference_dir),
                 "against": str(against) if against is not None else ""},
        compare_info=compare_provenance_info(results if has_results else None, reference_dir, against,
                                             table=table, run_info=run_info),
        model_card=card, model_card_problem=card_problem,
        qc_folder=qc_folder.name if qc_folder is not None else "",
    )
    html, xlsx = pdf.with_suffix(".html"), pdf.with_suffix(".xlsx")
    render(built.context, html, pdf)
    write_workbook(built, xlsx)
    primary = per_patient[per_patient["in_primary"]]
    overall = withhold_small_n(built.tables["overall"]).iloc[0]  # the numbers as the report prints them
    n_qc = int((per_patient["qc"] != "").sum()) if "qc" in per_patient else 0
    return CompareSummary(
        pdf=pdf, xlsx=xlsx, html=html, mode=mode, qc_folder=qc_folder, n_qc=n_qc,
        n_patients=len(per_patient), n_analysed=len(primary),
        n_excluded=len(per_patient) - len(primary), icc_a1=float(overall["icc_a1"]),
        dice_mean=float(overall.get("dice_mean", math.nan)),
    )

