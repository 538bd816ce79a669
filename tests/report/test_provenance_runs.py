"""The report cites the runs whose rows it uses by their append-only runs/<run_id>.json, never by run.json
(which every run overwrites), and says how many rows each run computed (a resumed batch has several)."""

import hashlib
import json

import pandas as pd

from corelab.compare.rows import compare_provenance_info, read_results, runs_used
from corelab.report.pdf import build_report, render
from corelab.report.provenance import compare_provenance, run_title

FIRST, SECOND = "2026-12-01T08-00-00Z", "2026-12-02T09-30-00Z"


def _sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def resumed_results(root):
    """A results folder of two runs: the first computed P1, P2 and P4 (whose row names no run, its
    record does), the second was interrupted after P3 and left P5 not run."""
    results, reference = root / "results", root / "manual"
    for folder in (results / "runs", results / "records", reference):
        folder.mkdir(parents=True)
    for run_id, started in ((FIRST, "2026-12-01T08:00:00+00:00"), (SECOND, "2026-12-02T09:30:00+00:00")):
        (results / "runs" / f"{run_id}.json").write_text(json.dumps({"run_id": f"{run_id}.json", "started": started}))
    (results / "run.json").write_text((results / "runs" / f"{SECOND}.json").read_text())
    (results / "records" / "P4.json").write_text(json.dumps({"run_id": f"{FIRST}.json"}))
    rows = [("P1", "ok", FIRST), ("P2", "ok", FIRST), ("P3", "failed", SECOND), ("P4", "ok", ""), ("P5", "not_run", SECOND)]
    pd.DataFrame([{"patient_id": p, "status": s, "run_id": f"{r}.json" if r else ""} for p, s, r in rows]).to_csv(
        results / "volumes.csv", index=False)
    return results, reference


def test_each_run_is_cited_by_its_own_file_with_the_rows_it_computed(tmp_path):
    results, reference = resumed_results(tmp_path)
    run_info = json.loads((results / "run.json").read_text())
    used = runs_used(results, read_results(results), run_info)
    assert [(u["run_id"], u["file"], u["rows"], u["ok"]) for u in used] == [
        (FIRST, f"runs/{FIRST}.json", 3, 3),  # P4 through its record
        (SECOND, f"runs/{SECOND}.json", 1, 0),  # P5 was not run: computed by no run
    ]
    assert used[0]["sha256"] == _sha(results / "runs" / f"{FIRST}.json")

    info = compare_provenance_info(results, reference, run_info=run_info)
    rows = dict(compare_provenance(info))
    assert rows[f"run {FIRST}"] == (f"runs/{FIRST}.json sha256 {_sha(results / 'runs' / f'{FIRST}.json')}; "
                                    "computed 3 of the 5 rows of volumes.csv (3 ok)")
    assert rows[f"run {SECOND}"].startswith(f"runs/{SECOND}.json sha256 {_sha(results / 'runs' / f'{SECOND}.json')};")
    assert rows["results volumes.csv sha256"] == _sha(results / "volumes.csv")
    assert not any("run.json sha256" in item or "run.json sha256" in value for item, value in rows.items())

    # The latest run's own rows are headed by its id; the PDF's HTML holds both runs' citations.
    assert run_title(run_info) == f"Results: the latest corelab run, {SECOND} (run.json, a copy of runs/{SECOND}.json)"
    per_patient = pd.DataFrame({
        "patient_id": ["P1"], "in_primary": [True], "excluded_because": [""], "status": ["ok"],
        "hours_since_onset": [30.0], "reference_ml": [10.0], "other_ml": [12.0], "difference_ml": [2.0],
        "abs_difference_ml": [2.0], "dice": [0.8], "both_empty": [False], "hd95_mm": [3.0], "lesions": [1],
        "lesions_detected": [1], "reference_mean_hu": [20.0], "reference_class": ["severe"], "note": [""]})
    built = build_report(per_patient, mode="automated", run_info=run_info, compare_info=info)
    render(built.context, tmp_path / "a.html", tmp_path / "a.pdf")
    html = (tmp_path / "a.html").read_text(encoding="utf-8")
    assert f"run {FIRST}" in html and f"runs/{SECOND}.json sha256" in html


def test_a_missing_run_file_and_rows_that_name_no_run_are_said_so(tmp_path):
    results, reference = resumed_results(tmp_path)
    (results / "runs" / f"{FIRST}.json").unlink()
    (results / "records" / "P4.json").unlink()  # P4 now names no run at all
    info = compare_provenance_info(results, reference, run_info={})
    rows = dict(compare_provenance(info))
    assert rows[f"run {FIRST}"].startswith(f"runs/{FIRST}.json is missing, so no checksum can be given; computed 2")
    # an older corelab's rows: only run.json is left to cite, and the report says why that is weak
    assert rows["run not named"].startswith(f"run.json sha256 {_sha(results / 'run.json')}; computed 1 of the 5 rows")
    assert "overwritten by every run" in rows["run not named"]
