"""corelab.report: the HTML context holds every table, the PDF renders to non-blank pages, the xlsx is complete."""

import shutil
import subprocess

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from corelab.report import TABLE_KEYS, build_report, render, write_workbook


def per_patient_table(n=9):
    """A per-patient table as corelab.matching returns it: three classes, one both-empty, one excluded."""
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
        "hypodensity_class": classes,
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
    assert "thresholds -5.0 HU to 13.0 HU" in methods
    assert "severe 0.61" in methods and "subtle 0.4" in methods
    assert "not recorded" in methods  # e.g. bone threshold absent from this run.json
    assert built.context["model_version"] == "m-7"
    assert ("models.checksums.severe", "deadbeef") in built.context["provenance"]


def test_small_groups_say_icc_is_undefined_instead_of_crashing():
    rows = per_patient_table(n=3)
    report = build_report(rows, mode="inter-reader", run_info={}, trial_name=None)
    volume = report.context["tables"]["volume"]
    assert volume["rows"][0][4] == "undefined"  # n = 2 after the exclusion
    assert "needs at least 3 patients" in volume["note"]


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
    assert report.context["tables"]["volume"]["rows"][0][4] == "undefined"
