"""corelab.agreement on data with known answers (published datasets or worked by hand)."""

import math

import numpy as np
import pandas as pd
import pytest

from corelab.agreement import (
    LOA_Z,
    MIN_N_INTERVAL,
    agreement_row,
    agreement_table,
    bland_altman,
    concordance,
    distribution,
    icc,
    rounded,
    withhold_small_n,
)

# Shrout & Fleiss 1979, Psychol Bull 86:420, Table 2: 6 targets rated by 4 judges.
SHROUT_FLEISS = pd.DataFrame(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]],
    columns=["j1", "j2", "j3", "j4"],
    dtype=float,
)

# Bland & Altman 1986, Lancet i:307, Table 1: peak expiratory flow (l/min), first reading of the
# large Wright meter and of the mini Wright meter, 17 subjects.
WRIGHT = [494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427]
MINI = [512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451]
PEFR = pd.DataFrame({"mini": MINI, "wright": WRIGHT}, dtype=float)


def test_icc_matches_shrout_fleiss_published_values():
    # R: psych::ICC(SF) -> ICC2 0.29 [0.019, 0.76], ICC3 0.71 [0.34, 0.95]
    table = icc(SHROUT_FLEISS, reference="j1", other=["j2", "j3", "j4"]).set_index("measure")
    assert table.loc["ICC(A,1)", "estimate"] == pytest.approx(0.29, abs=0.005)
    assert table.loc["ICC(C,1)", "estimate"] == pytest.approx(0.71, abs=0.006)
    assert table.loc["ICC(A,1)", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.019, 0.76], abs=0.006)
    assert table.loc["ICC(C,1)", ["ci_low", "ci_high"]].tolist() == pytest.approx([0.34, 0.95], abs=0.006)
    assert (table["n"] == 6).all()


def test_icc_perfect_agreement_is_one_with_undefined_ci_stated():
    t = pd.DataFrame({"manual": [3.0, 10, 25, 60], "auto": [3.0, 10, 25, 60]})
    table = icc(t, reference="manual", other="auto")
    assert table["estimate"].tolist() == pytest.approx([1.0, 1.0])
    assert "no residual variance" in table["note"].iloc[0]


def test_constant_offset_lowers_absolute_but_not_consistency_icc():
    # By hand (McGraw & Wong 1996): MSR = 200, MSC = 37.5, MSE = 0, k = 2, n = 3:
    # ICC(A,1) = 200 / (200 + 2/3 * 37.5) = 0.8889; ICC(C,1) = 1.
    t = pd.DataFrame({"manual": [10.0, 20, 30], "auto": [15.0, 25, 35]})
    table = icc(t, reference="manual", other="auto").set_index("measure")
    assert table.loc["ICC(A,1)", "estimate"] == pytest.approx(200 / 225)
    assert table.loc["ICC(C,1)", "estimate"] == pytest.approx(1.0)
    ba = bland_altman(t, reference="manual", other="auto").iloc[0]
    assert ba["bias"] == pytest.approx(5.0)
    assert ba["sd"] == pytest.approx(0.0)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_icc_with_fewer_than_three_patients_is_undefined_not_an_error(n):
    t = pd.DataFrame({"manual": [10.0, 20][:n], "auto": [11.0, 19][:n]})
    table = icc(t, reference="manual", other="auto")
    assert table["estimate"].isna().all()
    assert f"n = {n}" in table["note"].iloc[0]
    row = agreement_row(t, reference="manual", other="auto")
    assert math.isnan(row["icc_a1"]) and "undefined" in row["notes"]


def test_all_zero_volumes_do_not_crash_and_say_why():
    t = pd.DataFrame({"manual": [0.0, 0, 0, 0], "auto": [0.0, 0, 0, 0]})
    table = icc(t, reference="manual", other="auto")
    assert table["estimate"].isna().all() and "all volumes are equal" in table["note"].iloc[0]
    ml = bland_altman(t, reference="manual", other="auto").iloc[0]
    assert ml["bias"] == 0.0 and ml["loa_low"] == 0.0
    ratio = bland_altman(t, reference="manual", other="auto", scale="ratio").iloc[0]
    assert ratio["n"] == 0 and ratio["n_zero"] == 4 and math.isnan(ratio["bias"])
    assert math.isnan(concordance(t, reference="manual", other="auto")["ccc"].iloc[0])


def test_bland_altman_matches_published_pefr_example():
    # Bland & Altman 1986: mean difference (large minus mini Wright) -2.1 l/min, SD 38.8; 95% CI of
    # the bias -22.0 to 17.8; CI of each limit is the limit +- t(16) * SE = 2.12 * 16.3 = 34.6.
    ba = bland_altman(PEFR, reference="mini", other="wright").iloc[0]
    assert ba["n"] == 17
    assert ba["bias"] == pytest.approx(-2.1, abs=0.05)
    assert ba["sd"] == pytest.approx(38.8, abs=0.05)
    assert [ba["bias_ci_low"], ba["bias_ci_high"]] == pytest.approx([-22.0, 17.8], abs=0.05)
    assert ba["loa_low"] == pytest.approx(ba["bias"] - LOA_Z * ba["sd"])
    assert ba["loa_low_ci_high"] - ba["loa_low"] == pytest.approx(34.6, abs=0.1)
    assert ba["loa_high"] - ba["loa_high_ci_low"] == pytest.approx(34.6, abs=0.1)


def test_proportional_bias_slope_is_found_when_errors_grow_with_volume():
    # auto = 1.2 * manual exactly: difference = 0.2 * manual, mean = 1.1 * manual, slope = 0.2 / 1.1.
    manual = np.array([5.0, 10, 20, 40, 80])
    t = pd.DataFrame({"manual": manual, "auto": 1.2 * manual})
    ba = bland_altman(t, reference="manual", other="auto").iloc[0]
    assert ba["slope"] == pytest.approx(0.2 / 1.1)
    assert ba["slope_p"] < 1e-6
    ratio = bland_altman(t, reference="manual", other="auto", scale="ratio").iloc[0]
    # On the log scale the ratio is constant: bias 1.2, limits 1.2 (SD 0), no slope.
    assert [ratio["bias"], ratio["loa_low"], ratio["loa_high"]] == pytest.approx([1.2, 1.2, 1.2])
    assert ratio["slope"] == pytest.approx(0.0, abs=1e-9)


def test_ratio_scale_leaves_out_zero_volume_pairs_and_counts_them():
    t = pd.DataFrame({"manual": [10.0, 20, 0, 40], "auto": [20.0, 40, 3, 80]})
    ratio = bland_altman(t, reference="manual", other="auto", scale="ratio").iloc[0]
    assert ratio["n"] == 3 and ratio["n_zero"] == 1
    assert ratio["bias"] == pytest.approx(2.0)
    assert "zero volume" in ratio["note"]


def test_lin_ccc_by_hand_and_against_its_product_form():
    # x = 1, 2, 3; y = x + 1: s_x^2 = s_y^2 = s_xy = 2/3, shift^2 = 1 -> CCC = (4/3) / (7/3) = 4/7.
    t = pd.DataFrame({"manual": [1.0, 2, 3], "auto": [2.0, 3, 4]})
    assert concordance(t, reference="manual", other="auto")["ccc"].iloc[0] == pytest.approx(4 / 7)
    # Lin 1989: CCC = r * C_b, C_b = 2 / (v + 1/v + u^2), v = s_x / s_y, u = (mean_x - mean_y) / sqrt(s_x s_y).
    x, y = PEFR["mini"].to_numpy(), PEFR["wright"].to_numpy()
    r = np.corrcoef(x, y)[0, 1]
    v, u = x.std() / y.std(), (x.mean() - y.mean()) / np.sqrt(x.std() * y.std())
    row = concordance(PEFR, reference="mini", other="wright").iloc[0]
    assert row["ccc"] == pytest.approx(r * 2 / (v + 1 / v + u**2))
    assert row["ci_low"] < row["ccc"] < row["ci_high"] < 1
    assert row["pearson_r"] == pytest.approx(r)


def test_distribution_and_agreement_table_groups_dice_and_detection():
    per_patient = pd.DataFrame(
        {
            "manual": [10.0, 20, 30, 0, 50],
            "auto": [12.0, 18, 33, 0, 45],
            "dice": [0.8, 0.6, 0.7, np.nan, 0.9],
            "both_empty": [False, False, False, True, False],
            "hd95_mm": [2.0, 4.0, 3.0, np.nan, 1.0],
            "lesions": [1, 2, 1, 0, 1],
            "lesions_detected": [1, 1, 1, 0, 1],
            "cls": ["severe", "severe", "subtle", "", "subtle"],
        }
    )
    table = agreement_table(
        per_patient, reference="manual", other="auto", by="cls", order=["severe", "intermediate", "subtle"]
    ).set_index("group")
    assert table.index.tolist() == ["All", "severe", "intermediate", "subtle", ""]
    assert table.loc["All", "n"] == 5 and table.loc["intermediate", "n"] == 0
    assert table.loc["All", "dice_n"] == 4 and table.loc["All", "n_both_empty"] == 1
    assert table.loc["All", "dice_mean"] == pytest.approx(0.75)
    assert table.loc["All", "dice_median"] == pytest.approx(0.75)
    assert table.loc["All", "detection_rate"] == pytest.approx(4 / 5)
    assert table.loc["All", "absdiff_median"] == pytest.approx(2.0)  # |2, -2, 3, 0, -5|
    assert table.loc["severe", "dice_sd"] == pytest.approx(np.std([0.8, 0.6], ddof=1))
    d = distribution(np.array([1.0, 2.0, 3.0, 4.0]))
    assert (d["q1"], d["median"], d["q3"]) == (1.75, 2.5, 3.25)  # numpy/R type 7 quartiles


def test_rounded_rounds_coefficients_and_volumes_differently_and_keeps_counts():
    t = pd.DataFrame({"group": ["All"], "n": [4], "icc_a1": [0.912345], "ba_bias": [1.2345], "ba_slope_p": [0.012345]})
    r = rounded(t).iloc[0]
    assert (r["icc_a1"], r["ba_bias"], r["ba_slope_p"], r["n"]) == (0.912, 1.2, 0.0123, 4)


def test_one_minimum_n_empties_intervals_limits_sd_and_icc_but_keeps_point_estimates():
    # 4 pairs (below MIN_N_INTERVAL = 5): differences 2, -1, 3, 0 -> bias 1.0 is kept; with t(3) = 3.18
    # its CI would be 1.0 +- 2.9 and the limits -2.5 to 4.5: none of them is printed.
    t = pd.DataFrame({"manual": [10.0, 20, 30, 40], "auto": [12.0, 19, 33, 40]})
    assert MIN_N_INTERVAL == 5
    computed = agreement_table(t, reference="manual", other="auto")
    assert computed.loc[0, "ba_loa_low"] == pytest.approx(1.0 - 1.96 * np.std([2, -1, 3, 0], ddof=1))
    row = withhold_small_n(computed).iloc[0]
    assert row["ba_bias"] == pytest.approx(1.0) and row["ratio_bias"] > 1
    for key in ("ba_bias_ci_low", "ba_sd", "ba_loa_low", "ba_loa_high_ci_high", "ba_slope", "ba_slope_p",
                "ratio_loa_low", "ratio_sd", "icc_a1", "icc_c1_ci_high", "ccc", "absdiff_sd", "reference_q1"):
        assert math.isnan(row[key]), key
    assert row["ba_note"] == "n too small (n = 4, fewer than 5)" and "n too small" in row["icc_note"]
    assert row["reference_median"] == pytest.approx(25.0)
    # the same four pairs and one more reach the minimum: everything is estimated again
    five = pd.concat([t, pd.DataFrame({"manual": [50.0], "auto": [49.0]})], ignore_index=True)
    row = withhold_small_n(agreement_table(five, reference="manual", other="auto")).iloc[0]
    assert math.isfinite(row["ba_loa_low"]) and math.isfinite(row["icc_a1"]) and "n too small" not in row["notes"]
    assert row["withheld"] == ""


def test_zero_volume_pairs_leave_the_ratio_analysis_and_count_towards_neither_n():
    # 6 pairs, 2 with a zero volume: the ratio analysis has n = 4 (< 5), the mL analysis n = 6.
    t = pd.DataFrame({"manual": [10.0, 20, 0, 40, 5, 8], "auto": [20.0, 40, 3, 80, 0, 16]})
    row = withhold_small_n(agreement_table(t, reference="manual", other="auto")).iloc[0]
    assert (row["ratio_n"], row["ratio_n_zero"], row["ba_n"]) == (4, 2, 6)
    assert row["ratio_bias"] == pytest.approx(2.0) and math.isnan(row["ratio_loa_low"])
    assert "n too small" in row["ratio_note"] and "2 pair(s) with a zero volume left out" in row["ratio_note"]
    assert math.isfinite(row["ba_loa_low"]) and row["withheld"] == "ratio (n = 4)"
