"""corelab.report: the HTML context holds every table, the PDF renders to non-blank pages, the xlsx is complete."""

import shutil
import subprocess

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from corelab.report.pdf import TABLE_KEYS, build_report, render, write_workbook


def per_patient_table(n=9):
    """A per-patient table as corelab.compare.rows returns it: three classes, one both-empty, one excluded."""
    rng = np.random.default_rng(1)
    manual = rng.uniform(5, 120, n)
    classes = (["severe", "intermediate", "subtle"] * n)[:n]
    rows = pd.DataFrame({
        "patient_id": [f"P{i:02d}" for i in range(n)],
        "site": ["Leiden", "Lyon", "Calgary"] * (n // 3),
        "in_primary": [True] * (n - 1) + [False],
        "excluded_because": [""] * (n - 1) + ["no reference read"],
        "status": "ok",
        "hours_since_onset": 30.0,
        "reference_ml": manual,
        "other_ml": manual * 1.1 + 2,
        "dice": rng.uniform(0.4, 0.9, n),
        "both_empty": False,
        "hd95_mm": rng.uniform(2, 15, n),
        "lesions": 1,
        "lesions_detected": 1,
        "reference_mean_hu": 20.0,
        "reference_class": classes,
        "note": "",
    })
    rows.loc[0, ["reference_ml", "other_ml", "dice", "hd95_mm", "lesions", "lesions_detected"]] = [0, 0, np.nan, np.nan, 0, 0]
    rows.loc[0, "both_empty"] = True
    rows.loc[1, "patient_id"] = "<b>P01</b>"  # ids are text: must come out escaped, not as markup
    rows.loc[n - 1, ["reference_ml", "other_ml", "dice"]] = np.nan
    rows["difference_ml"] = rows["other_ml"] - rows["reference_ml"]
    rows["abs_difference_ml"] = rows["difference_ml"].abs()
    return rows


RUN = {"versions": {"corelab": "0.1.0"}, "models": {"version": "m-7", "checksums": {"severe": "deadbeef"},
                                                      "cutoffs": {"severe": 0.61, "subtle": 0.4}},
       "parameters": {"method": {"csf": {"lower_hu": -5.0, "upper_hu": 13.0}}}}


@pytest.fixture(scope="module")
def built():
    return build_report(per_patient_table(), mode="automated", run_info=RUN, trial_name="MR CLEAN-LATE")


def test_context_holds_every_table_with_rows(built):
    tables = built.context["tables"]
    assert set(TABLE_KEYS) <= set(tables)
    for key in TABLE_KEYS:
        assert tables[key]["columns"] and tables[key]["title"], key
    volume = tables["volume"]
    assert [row[0] for row in volume["rows"]] == ["All", "severe", "intermediate", "subtle"]
    assert volume["rows"][0][1] == "8"  # primary population: 9 listed, 1 excluded
    assert [row[0] for row in tables["site"]["rows"]] == ["All", "Calgary", "Leiden", "Lyon"]
    assert tables["exclusions"]["rows"] == [["P08", "Calgary", "no reference read"]]
    assert len(tables["patients"]["rows"]) == 9
    assert tables["overlap"]["rows"][0][4] == "1"  # one both-empty patient counted


def test_methods_state_the_run_parameters_and_say_what_is_missing(built):
    methods = " ".join(built.context["methods"])
    assert "thresholds -5 HU to 13 HU" in methods  # as recorded, without ".0"
    assert "severe 0.61" in methods and "subtle 0.4" in methods
    assert "not recorded" in methods  # e.g. bone threshold absent from this run.json
    assert built.context["model_version"] == "m-7"
    (run_title, run_rows), (compare_title, compare_rows) = built.context["provenance"]
    assert "run.json" in run_title and "compare" in compare_title
    assert dict(run_rows)["model sha256: severe"] == "deadbeef"
    assert dict(run_rows)["user"] == "not recorded"  # this run.json predates the audit fields
    assert compare_rows == [("compare", "not recorded")]


def test_small_groups_say_n_too_small_instead_of_crashing():
    rows = per_patient_table(n=3)
    report = build_report(rows, mode="inter-reader", run_info={}, trial_name=None)
    volume = report.context["tables"]["volume"]
    assert volume["rows"][0][4] == "n too small"  # n = 2 after the exclusion
    assert "N too small: All (n = 2)" in volume["note"]


def test_pdf_renders_and_first_pages_are_not_blank(built, tmp_path):
    html, pdf = tmp_path / "agreement.html", tmp_path / "agreement.pdf"
    render(built.context, html, pdf)
    text = html.read_text(encoding="utf-8")
    assert "&lt;b&gt;P01&lt;/b&gt;" in text and "<b>P01</b>" not in text
    assert text.count("<table") >= 10 and "MR CLEAN-LATE" in text
    assert pdf.read_bytes().startswith(b"%PDF")
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm is not installed")
    subprocess.run(["pdftoppm", "-png", "-r", "30", "-f", "1", "-l", "4", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) == 4
    for page in pages:
        pixels = matplotlib.image.imread(page)[..., :3]
        assert (pixels < 0.5).mean() > 0.002, f"{page.name} looks blank"


def test_workbook_has_per_patient_summary_and_definition_sheets(built, tmp_path):
    path = tmp_path / "agreement.xlsx"
    write_workbook(built, path)
    sheets = pd.read_excel(path, sheet_name=None)
    assert {"per_patient", "summary_by_class", "summary_by_site", "exclusions", "definitions", "run_parameters"} <= set(sheets)
    assert len(sheets["per_patient"]) == 9
    assert sheets["summary_by_class"]["group"].tolist() == ["All", "severe", "intermediate", "subtle"]
    assert "ICC(A,1)" in sheets["definitions"]["term"].tolist()


def test_report_with_nobody_in_the_primary_population_still_builds():
    rows = per_patient_table()
    rows["in_primary"] = False
    rows["excluded_because"] = "imaging time unknown (onset or scan time missing)"
    report = build_report(rows, mode="automated", run_info={})
    assert report.context["headline"].startswith("No patient is in the primary analysis population")
    flow = dict(report.context["tables"]["exclusion_counts"]["rows"])
    assert flow["imaging time unknown"] == "9" and flow["analysed (primary population)"] == "0"
    assert report.context["tables"]["volume"]["rows"][0][4] == "–"  # nobody: no number, no "n too small"


FULL_RUN = {
    **RUN,
    "versions": {"python": "3.11.9", "corelab": "0.1.0", "numpy": "2.1.0", "SimpleITK": "2.5.0", "torch": ""},
    "command_line": ["/opt/bin/corelab", "run", "my trial/manifest.xlsx", "--workers", "2"],
    "cwd": "/data", "user": "reader1", "host": "lab-ws-3", "platform": "Linux-6.1-x86_64",
    "manifest": "/data/my trial/manifest.xlsx", "manifest_sha256": "ab" * 32,
    "started": "2026-11-27T10:00:00+00:00", "finished": "2026-11-27T10:30:00+00:00",
    "inputs": [
        {"patient_id": "P00", "scan": "/s/P00", "scan_sha256": "cd" * 32, "status": "ok", "record": "records/P00.json"},
        {"patient_id": "P01", "scan": "/s/P01", "scan_sha256": "", "status": "failed", "record": ""},
    ],
}
COMPARE = {"corelab_version": "0.2.0", "written": "2026-11-28T09:00:00+00:00", "user": "stat2",
           "command_line": ["corelab", "compare", "res", "--reference", "manual"],
           "results": {"volumes_csv_sha256": "ef" * 32, "run_json_sha256": "01" * 32},
           "reference": {"folder": "/data/manual", "n_files": 2, "bytes": 3072, "sha256": "99" * 32,
                         "files": {"P00.nii.gz": "aa" * 32, "P01.nii.gz": "bb" * 32}}}


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_provenance_block_states_who_when_what_of_run_and_compare(tmp_path):
    report = build_report(per_patient_table(), mode="automated", run_info=FULL_RUN, compare_info=COMPARE)
    run_rows, compare_rows = (dict(rows) for _, rows in report.context["provenance"])
    assert run_rows["user"] == "reader1" and run_rows["host"] == "lab-ws-3"
    assert run_rows["started (UTC)"] == "2026-11-27T10:00:00+00:00"
    # the command line is quoted as a shell needs it, so a path with a space reads unambiguously
    assert run_rows["command line"] == "/opt/bin/corelab run 'my trial/manifest.xlsx' --workers 2"
    assert run_rows["dependencies"] == "numpy 2.1.0, SimpleITK 2.5.0"  # torch not installed: left out
    assert run_rows["manifest sha256"] == "ab" * 32
    assert run_rows["scan checksums"].startswith("1 of 2 scans")
    assert compare_rows["user"] == "stat2" and compare_rows["written (UTC)"] == "2026-11-28T09:00:00+00:00"
    assert compare_rows["reference files"] == "2 files, 3.0 KiB"
    assert compare_rows["reference sha256 (all files)"] == "99" * 32
    assert compare_rows["results volumes.csv sha256"] == "ef" * 32
    # per-scan checksums go to the workbook, not one appendix row each
    assert not any(key.startswith("inputs.") for *_, key in report.context["parameters"])

    html, pdf = tmp_path / "a.html", tmp_path / "a.pdf"
    render(report.context, html, pdf)
    text = html.read_text(encoding="utf-8")
    assert "This report: corelab compare" in text and "&#39;my trial/manifest.xlsx&#39;" in text

    write_workbook(report, tmp_path / "a.xlsx")
    sheets = pd.read_excel(tmp_path / "a.xlsx", sheet_name=None, dtype=str, keep_default_na=False)
    prov = sheets["provenance"]
    assert set(prov["step"]) == {"corelab run", "corelab compare"}
    assert prov.loc[(prov["step"] == "corelab run") & (prov["item"] == "user"), "value"].tolist() == ["reader1"]
    assert sheets["inputs"]["scan_sha256"].tolist() == ["cd" * 32, ""]
    assert sheets["reference_files"]["file"].tolist() == ["P00.nii.gz", "P01.nii.gz"]
    assert sheets["reference_files"]["sha256"].tolist() == ["aa" * 32, "bb" * 32]
