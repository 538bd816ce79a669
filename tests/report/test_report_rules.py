"""The report's rules as a reader meets them: one minimum n, zero volumes on the ratio scale, numbers
for people, the weights' validation on every page, a readable provenance table. Checked in the HTML
context and in the text of the rendered PDF (weasyprint, read back with pdftotext)."""

import base64
import json
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from corelab.agreement import MIN_N_INTERVAL, agreement_table
from corelab.report import plots
from corelab.report.agreement_report import read_model_card
from corelab.report.format import hour_span, hours, number, plain, quantity
from corelab.report.pdf import build_report, render
from corelab.report.provenance import parameter_rows

CARD = {"version": "corelab-0.1.0", "validated_on_patients": False,
        "intended_use": "Research use. Not validated on patients.", "training": {"synthetic": True},
        "headline": "**Held-out accuracy on unseen synthetic phantoms is below the targets**: do not use these weights.",
        "weights_sha256": {"severe.pt": "aa"}}
RUN = {"versions": {"corelab": "0.1.0"},
       "command_line": ["corelab", "run", "manifest.xlsx", "--out", "res"],
       "models": {"folder": "/models", "version": "corelab-0.1.0+abc", "checksums": {"severe.pt": "aa"},
                  "cutoffs": {"severe": 0.66, "subtle": 0.7}, "smoothing_mm": 5.0, "brain_reference_hu": 35.0},
       "parameters": {"method": {"grid": {"slice_mm": 5.0, "pixel_mm": 0.45},
                                 "intracranial": {"bone_hu": 160.0, "dilate_mm": 7.0},
                                 "window": {"min_hours": 12.0, "max_hours": 336.0}, "precision": "float32"},
                      "record_version": 1, "device": "cpu", "workers": 1, "scheduler": None, "threads": None},
       "interrupted": None}


def trial(classes: dict[str, int], *, zero_pairs: int = 0, seed: int = 4) -> pd.DataFrame:
    """Per-patient rows as corelab.compare.rows returns them: ``classes`` = patients per class, the
    first ``zero_pairs`` patients with a zero manual volume (an automated false positive)."""
    names = [c for c, k in classes.items() for _ in range(k)]
    n = len(names)
    rng = np.random.default_rng(seed)
    manual = rng.uniform(5, 150, n)
    other = manual * rng.uniform(0.3, 3.0, n)  # ratios far from 1: wide limits on the ratio scale
    manual[:zero_pairs] = 0.0
    rows = pd.DataFrame({
        "patient_id": [f"P{i:02d}" for i in range(n)], "site": "", "in_primary": True, "excluded_because": "",
        "status": "ok", "hours_since_onset": 30.0, "reference_ml": manual, "other_ml": other,
        "dice": rng.uniform(0.2, 0.9, n), "both_empty": False, "hd95_mm": rng.uniform(2, 30, n), "lesions": 1,
        "lesions_detected": 1, "reference_mean_hu": 25.0, "reference_class": names, "note": "",
    })
    rows["difference_ml"] = rows["other_ml"] - rows["reference_ml"]
    rows["abs_difference_ml"] = rows["difference_ml"].abs()
    return rows


def pdf_pages(pdf) -> list[str]:
    """The text of each page, whitespace collapsed (pdftotext wraps long footers)."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext is not installed")
    text = subprocess.run(["pdftotext", "-layout", str(pdf), "-"], check=True, capture_output=True, text=True).stdout
    return [" ".join(page.split()) for page in text.split("\f") if page.strip()]


@pytest.fixture(scope="module")
def small_group(tmp_path_factory):
    """10 severe patients and a group of 2 (intermediate): rendered once."""
    rows = trial({"severe": 10, "intermediate": 2})
    report = build_report(rows, mode="automated", run_info=RUN, model_card=CARD)
    folder = tmp_path_factory.mktemp("small")
    render(report.context, folder / "a.html", folder / "a.pdf")
    return rows, report, folder / "a.pdf", folder / "a.html"


def _unmasked_numbers(rows: pd.DataFrame, group: str) -> list[str]:
    """What the group's limits, SD and ICC would print as without the rule (1 and 3 decimals)."""
    stats = agreement_table(rows, reference="reference_ml", other="other_ml", by="reference_class").set_index("group")
    s = stats.loc[group]
    assert s["ba_n"] == 2 and np.isfinite(s["ba_loa_low"]) and np.isfinite(s["ratio_loa_high"])
    return [f"{s['ba_loa_low']:.1f}", f"{s['ba_loa_high']:.1f}", f"{s['ba_loa_high_ci_high']:.1f}",
            f"{s['ratio_loa_high']:.3f}", f"{s['ratio_bias_ci_high']:.3f}", f"{s['dice_sd']:.3f}"]


def test_a_group_of_two_prints_n_too_small_never_a_number(small_group):
    rows, report, pdf, _ = small_group
    assert MIN_N_INTERVAL == 5
    tables = report.context["tables"]
    for key in ("volume", "bland_altman_ml", "bland_altman_ratio"):
        row = next(r for r in tables[key]["rows"] if r[0] == "intermediate")
        assert row[1].startswith("2")
        coefficients_and_limits = row[4:7] if key == "volume" else row[3:]
        assert all(cell == "n too small" for cell in coefficients_and_limits), (key, row)
        if key == "volume":  # medians are point estimates: kept, their IQR withheld
            assert all(re.fullmatch(r"\d+\.\d \(n too small\)", cell) for cell in (row[2], row[3], row[7])), row
        assert "N too small: intermediate (n = 2)" in tables[key]["note"]
    ml = next(r for r in tables["bland_altman_ml"]["rows"] if r[0] == "intermediate")
    assert re.fullmatch(r"-?\d+\.\d \(n too small\)", ml[2])  # the bias itself is a point estimate: kept
    overlap = next(r for r in tables["overlap"]["rows"] if r[0] == "intermediate")
    assert overlap[2].endswith("SD n too small") and "±" not in overlap[2]
    severe = next(r for r in tables["bland_altman_ml"]["rows"] if r[0] == "severe")
    assert "n too small" not in " ".join(severe)  # 10 patients: everything is estimated
    text = " ".join(pdf_pages(pdf))
    assert "n too small" in text and "fewer than 5" in text
    for number_ in _unmasked_numbers(rows, "intermediate"):
        assert number_ not in text, number_
    assert "Minimum n: a group with fewer than 5 values" in " ".join(report.context["methods"])


def test_the_workbook_keeps_the_computed_numbers_and_says_what_the_report_withholds(small_group):
    _, report, _, _ = small_group
    by_class = report.tables["overall"].set_index("group")
    assert np.isfinite(by_class.loc["intermediate", "ba_loa_low"])
    assert "ba (n = 2)" in by_class.loc["intermediate", "withheld"] and by_class.loc["severe", "withheld"] == ""


def test_zero_volume_pairs_are_left_out_of_the_ratio_analysis_and_counted():
    rows = trial({"severe": 9}, zero_pairs=2)
    report = build_report(rows, mode="automated", run_info=RUN, model_card=CARD)
    ratio = report.context["tables"]["bland_altman_ratio"]
    first = ratio["rows"][0]
    assert first[:2] == ["All", "7 (2)"]  # 9 pairs, 2 with a zero volume
    assert re.fullmatch(r"\d+\.\d{3} \(\d+\.\d{3} to \d+\.\d{3}\)", first[2])
    assert "either volume is 0 mL has no ratio" in ratio["note"] and "All: 2 pair(s) with a zero volume" in ratio["note"]
    ml = report.context["tables"]["bland_altman_ml"]["rows"][0]
    assert ml[1] == "9"  # the mL analysis keeps them
    methods = " ".join(report.context["methods"])
    assert "leaves out every pair in which either volume is 0 mL" in methods and "no offset is added" in methods


def test_number_helpers_print_for_people():
    assert quantity(160.0, "HU") == "160 HU" and quantity(0.45, "mm") == "0.45 mm" and quantity(-5.0, "HU") == "-5 HU"
    assert hours(336.0) == "14 days" and hours(12.0) == "12 h" and hour_span(12.0, 336.0) == "12 h to 14 days"
    assert number(900.0) == "900" and number(0.66) == "0.66"
    assert (plain(None), plain(True), plain(False), plain([1.0, 2.0])) == ("not recorded", "yes", "no", "1, 2")


def test_methods_and_parameters_have_units_and_no_python_literals(small_group):
    _, report, _, html = small_group
    methods = " ".join(report.context["methods"])
    assert "12 h to 14 days after onset" in methods and "bone above 160 HU" in methods
    assert "sigma 5 mm" in methods and "35 HU" in methods and not re.search(r"(?<![\d.])\d+\.0(?![\d.])", methods)
    assert not any(re.search(r"(?<![\d.])\d+\.0(?![\d.])", value) for _, _, value, _ in report.context["parameters"])
    words = re.sub(r"<[^>]+>", " ", html.read_text(encoding="utf-8").split("</style>", 1)[1])
    for literal in (r"\bNone\b", r"\bTrue\b", r"\bFalse\b", r"\bnan\b", r"\[\]", r"\{"):
        assert not re.search(literal, words), (literal, re.search(literal, words))


def test_provenance_is_one_readable_table_without_flattened_keys(small_group):
    pdf = small_group[2]
    rows = parameter_rows(RUN)
    assert ("Intracranial region", "bone threshold", "160 HU", "parameters.method.intracranial.bone_hu") in rows
    assert ("Follow-up window", "latest scan after onset", "14 days", "parameters.method.window.max_hours") in rows
    assert ("Models", "probability cut-offs", "severe 0.66, subtle 0.7", "models.cutoffs") in rows
    assert not any(name in {"device", "workers", "record version"} for _, name, _, _ in rows)  # in provenance
    text = " ".join(pdf_pages(pdf))
    assert not re.search(r"\b[a-z_]+\.\d+\b", text.replace("0.1.0", ""))  # no command_line.0, versions.numpy ...
    assert "command_line" not in text and "parameters.method" not in text
    assert text.count("corelab run manifest.xlsx --out res") == 1  # the command line once
    assert "Appendix B: provenance and run parameters" in text


def test_validation_statement_on_page_one_and_in_every_footer(small_group):
    pdf = small_group[2]
    pages = pdf_pages(pdf)
    assert len(pages) >= 4
    assert "Not validated on patients. The automated volumes in this report come from model weights" in pages[0]
    assert "trained on synthetic phantom CTs only" in pages[0] and "below the targets" in pages[0]
    assert "**" not in pages[0]
    footer = "trained on synthetic phantoms only; not validated on patients: research use only."
    for number_, page in enumerate(pages, 1):
        assert footer in page, f"page {number_} has no validation footer"
        assert f"page {number_} of {len(pages)}" in page


def test_no_statement_for_validated_weights_or_an_inter_reader_report():
    rows = trial({"severe": 6})
    assert build_report(rows, mode="automated", run_info=RUN,
                        model_card={**CARD, "validated_on_patients": True}).context["validation"] is None
    assert build_report(rows, mode="inter-reader", run_info={}).context["validation"] is None
    unread = build_report(rows, mode="automated", run_info=RUN, model_card=None, model_card_problem="no card.json")
    assert "could not be read (no card.json)" in unread.context["validation"].statement


def test_model_card_is_read_from_the_run_s_model_folder_and_must_match_its_weights(tmp_path):
    (tmp_path / "card.json").write_text(json.dumps(CARD))
    run = {"models": {"folder": str(tmp_path), "checksums": {"severe.pt": "aa"}}}
    card, problem = read_model_card(run)
    assert card["intended_use"].startswith("Research use") and problem == ""
    card, problem = read_model_card({"models": {"folder": str(tmp_path), "checksums": {"severe.pt": "bb"}}})
    assert card is None and "other weights" in problem
    card, problem = read_model_card({"models": {"folder": str(tmp_path / "gone")}})
    assert card is None and "card.json" in problem


def test_figures_mark_small_panels_and_fit_their_axes():
    rows = trial({"severe": 8, "intermediate": 2, "subtle": 1})
    stats = agreement_table(rows, reference="reference_ml", other="other_ml", by="reference_class",
                            order=["severe", "intermediate", "subtle"])
    from corelab.agreement import withhold_small_n

    svg = plots.bland_altman_grid(rows, withhold_small_n(stats), reference_label="manual", other_label="automated")
    assert "n = 2: no limits (fewer than 5)" in svg and "n = 1: no limits (fewer than 5)" in svg
    assert "n = 8: no limits" not in svg
    dice = plots.dice_plot(rows)
    assert "n = 2: no box" in dice and "n = 8: no box" not in dice
    assert plots._fit([-3.0, 4.0]) == pytest.approx((-3.84, 4.84))  # points and lines, 12% padding


def test_the_run_s_site_sentences_are_printed_under_the_results(tmp_path):
    rows = trial({"severe": 10})
    rows["site"] = ["A"] * 5 + ["C"] * 5
    sentence = ("Site C: its 5 scans' brain median is 41.0 HU, 6.8 HU above the other sites' 34.2 HU (more than "
                "5 HU is a scanner calibration or protocol difference, not patients): check that site's scanner "
                "before its volumes are used.")
    report = build_report(rows, mode="automated", run_info={**RUN, "sites_apart": [sentence]}, model_card=CARD)
    render(report.context, tmp_path / "a.html", tmp_path / "a.pdf")
    text = " ".join(pdf_pages(tmp_path / "a.pdf"))
    assert sentence in text and "Scanner check of corelab run" in text
    assert text.index("Agreement by site") < text.index(sentence) < text.index("Appendix A")
    quiet = build_report(rows, mode="automated", run_info=RUN, model_card=CARD)  # no sentences, no note
    assert quiet.context["sites_apart"] == []



def test_bland_altman_by_site_draws_each_site_s_own_bias_and_limits(tmp_path):
    rows = trial({"severe": 8, "intermediate": 6})
    rows["site"] = ["A"] * 6 + ["B"] * 6 + ["C"] * 2
    noise = np.random.default_rng(0).normal(0.0, 3.0, len(rows))
    rows["other_ml"] = rows["reference_ml"] + noise + np.where(rows["site"] == "B", 40.0, 0.0)  # B runs high
    report = build_report(rows, mode="automated", run_info=RUN, model_card=CARD)
    figure = next(f for f in report.context["figures"] if f["css"] == "bland-altman by-site")
    svg = base64.b64decode(figure["src"].split(",", 1)[1]).decode()
    by_site = agreement_table(rows, reference="reference_ml", other="other_ml", by="site").set_index("group")
    assert ">A (n = 6)<" in svg and ">B (n = 6)<" in svg and ">C (n = 2)<" in svg
    for site in ("A", "B"):  # each panel writes its own site's bias and limits, as the table prints them
        for key in ("ba_bias", "ba_loa_low", "ba_loa_high"):
            assert f" {by_site.loc[site, key]:.1f}<" in svg
    assert by_site.loc["B", "ba_bias"] > by_site.loc["A", "ba_bias"] + 30.0
    assert "n = 2: no limits (fewer than 5)" in svg and f" {by_site.loc['C', 'ba_bias']:.1f}<" in svg
    render(report.context, tmp_path / "a.html", tmp_path / "a.pdf")
    text = " ".join(pdf_pages(tmp_path / "a.pdf"))
    assert "Bland-Altman plots by site" in text
    one_site = rows.assign(site="A")
    assert all(f["css"] != "bland-altman by-site"
               for f in build_report(one_site, mode="automated", run_info=RUN, model_card=CARD).context["figures"])


def test_many_sites_are_split_over_figures_that_fit_a_page_and_an_undrawable_site_counts_for_none(tmp_path):
    rows = trial({"severe": 30, "intermediate": 10})
    rows["site"] = [f"S{i:02d}" for i in range(20) for _ in range(2)]
    report = build_report(rows, mode="automated", run_info=RUN, model_card=CARD)
    site_figures = [f for f in report.context["figures"] if f["css"] == "bland-altman by-site"]
    assert len(site_figures) == 2 and "part 2 of 2" in site_figures[1]["title"]
    svgs = [base64.b64decode(f["src"].split(",", 1)[1]).decode() for f in site_figures]
    assert sum(f">S{i:02d} (n = 2)<" in svg for i in range(20) for svg in svgs) == 20
    render(report.context, tmp_path / "a.html", tmp_path / "a.pdf")
    pages = pdf_pages(tmp_path / "a.pdf")
    assert sum("Bland-Altman plots by site" in page for page in pages) == 2  # each figure on a page of its own
    # Two sites, one of which has no patient with both volumes: one site to draw, so no by-site figure.
    two = trial({"severe": 6})
    two["site"] = ["A"] * 3 + ["B"] * 3
    two.loc[two["site"] == "B", "other_ml"] = np.nan
    figures = build_report(two, mode="automated", run_info=RUN, model_card=CARD).context["figures"]
    assert all(f["css"] != "bland-altman by-site" for f in figures)


def test_methods_say_where_the_cut_offs_were_chosen():
    rows = trial({"severe": 4})
    where = "48 calibration scans of calib (5 controls), not trained on; a control scored 2 / (2 + mL claimed)"
    calibrated = {**RUN, "models": {**RUN["models"], "cutoffs_chosen_on": where}}
    methods = " ".join(build_report(rows, mode="automated", run_info=calibrated, model_card=CARD).context["methods"])
    assert f"(probability cut-offs chosen on {where})" in methods
    assert ("Models", "cut-offs chosen on", where, "models.cutoffs_chosen_on") in parameter_rows(calibrated)
    older = " ".join(build_report(rows, mode="automated", run_info=RUN, model_card=CARD).context["methods"])
    assert "(probability cut-offs chosen on validation scans)" in older  # run.json of an older corelab



def test_methods_name_corelab_s_additions_to_the_paper_s_csf_when_the_run_records_them():
    rows = trial({"severe": 4})
    method = {**RUN["parameters"]["method"], "csf": {"seed_radius_mm": 15.0, "lower_hu": -5.0, "upper_hu": 13.0,
                                                      "sulcus_depth_mm": 20.0, "dark_floor_hu": -30.0}}
    run = {**RUN, "parameters": {**RUN["parameters"], "method": method}}
    text = " ".join(build_report(rows, mode="automated", run_info=run, model_card=CARD).context["methods"])
    assert "thresholds -5 HU to 13 HU; plus the sulci" in text and "voxels from -30 HU to -5 HU joined" in text
    older = " ".join(build_report(rows, mode="automated", run_info=RUN, model_card=CARD).context["methods"])
    assert "plus the sulci" not in older and "darkest" not in older  # a run from before them says only the paper's
