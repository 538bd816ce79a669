"""The words of the agreement report: methods generated from run.json, and every definition.

Parameters are looked up in run.json by their name (the last key of a nested path, e.g.
``parameters.method.csf.lower_hu`` answers ``lower_hu``) so the text states the values the run
actually used, printed by `corelab.report.format` (``-5 HU``, ``12 h to 14 days``); a value
run.json lacks is written as "not recorded" rather than filled in from today's defaults.
"""

from __future__ import annotations

from corelab.agreement import LOA_Z, MIN_N_INTERVAL
from corelab.config import CLASS_RANGES_HU, HEMORRHAGE_HU, LABELS, NO_INFARCT, UNCLASSIFIED
from corelab.report.format import NOT_RECORDED, TOO_SMALL, hour_span, number, quantity

__all__ = [
    "flatten",
    "lookup",
    "methods_paragraphs",
    "statistics_paragraph",
    "DEFINITIONS",
    "COLUMN_MEANINGS",
    "SUMMARY_MEANINGS",
]


def flatten(tree: object, prefix: str = "") -> dict[str, object]:
    """Nested dicts/lists as {"a.b.0.c": value}.

    >>> flatten({"a": {"b": 1, "c": [2, 3]}})
    {'a.b': 1, 'a.c.0': 2, 'a.c.1': 3}
    """
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        return {prefix: tree}
    out: dict[str, object] = {}
    for key, value in items:
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def lookup(flat: dict[str, object], *names: str, within: str = "") -> object:
    """First value whose last key is one of ``names`` (and whose path contains ``within``)."""
    for key, value in flat.items():
        last = key.rsplit(".", 1)[-1].lower()
        if last in names and within in key.lower():
            return value
    return NOT_RECORDED


def _cutoffs(flat: dict[str, object]) -> str:
    found = []
    for name in LABELS:
        for key, value in flat.items():
            parts = key.lower().split(".")
            if name in parts and any(p in ("cutoff", "cutoffs", "cut_off", "cut_offs", "threshold") for p in parts):
                found.append(f"{name} {number(value)}")
                break
    return ", ".join(found) if found else f"[{NOT_RECORDED} in run.json]"


def _input_and_smoothing(flat: dict[str, object]) -> str:
    """The steps corelab adds to the paper's method, as the model recorded them (run.json "models").

    >>> _input_and_smoothing({"models.brain_reference_hu": 35.0, "models.smoothing_mm": 3.0})
    '; each scan was shifted so that the median HU of its analysis region is 35 HU, and each probability map was smoothed in-plane with a Gaussian of sigma 3 mm over the analysis region (neither step is in the paper)'
    >>> _input_and_smoothing({"models.brain_reference_hu": None, "models.smoothing_mm": 0.0})
    ''
    >>> _input_and_smoothing({"models.brain_reference_hu": None, "models.smoothing_mm": 0.0, "models.contralateral_gate_hu": 2.0})
    '; each connected part of the hypodense claim was kept only when its median HU was at least 2 HU below its mirror across the midline (not in the paper)'
    >>> _input_and_smoothing({"models.brain_reference_hu": None, "models.smoothing_mm": 0.0, "models.hemorrhage_beside_mm": 5.0})
    '; each connected part of the hemorrhage claim was kept only when a hypodense claim lay within 5 mm of it (not in the paper)'
    >>> _input_and_smoothing({"models.brain_reference_hu": 35.0, "models.smoothing_mm": 3.0,
    ...                       "models.contralateral_gate_hu": 2.0}).endswith("below its mirror across the midline (none of these steps is in the paper)")
    True
    """
    reference, sigma = lookup(flat, "brain_reference_hu"), lookup(flat, "smoothing_mm")
    gate = lookup(flat, "contralateral_gate_hu")
    beside = lookup(flat, "hemorrhage_beside_mm")
    steps = []
    if reference is not None:
        steps.append(f"each scan was shifted so that the median HU of its analysis region is {quantity(reference, 'HU')}"
                     if reference != NOT_RECORDED else f"the scan's HU reference {NOT_RECORDED} in run.json")
    if sigma == NOT_RECORDED:
        steps.append(f"probability smoothing {NOT_RECORDED} in run.json")
    elif float(sigma) > 0:
        steps.append(f"each probability map was smoothed in-plane with a Gaussian of sigma {quantity(sigma, 'mm')} over the "
                     "analysis region")
    if gate not in (None, NOT_RECORDED):  # None when off, absent from older run.json files: the paper's method
        steps.append(f"each connected part of the hypodense claim was kept only when its median HU was at least "
                     f"{quantity(gate, 'HU')} below its mirror across the midline")
    if beside not in (None, NOT_RECORDED):  # likewise
        steps.append(f"each connected part of the hemorrhage claim was kept only when a hypodense claim lay within "
                     f"{quantity(beside, 'mm')} of it")
    if not steps:
        return ""
    # Said of every step, not only the last one it follows.
    tail = {1: "not in the paper", 2: "neither step is in the paper"}.get(len(steps), "none of these steps is in the paper")
    return "; " + (", and ".join(steps) if len(steps) <= 2 else "; ".join(steps[:-1]) + "; and " + steps[-1]) + f" ({tail})"


def _architecture(flat: dict[str, object]) -> str:
    """The networks' architecture as run.json names it ("models.architecture"), and how it departs from the paper.

    >>> print(_architecture({"models.architecture": "barros2020-mirror-cnn"})[:59])
    architecture barros2020-mirror-cnn: the paper's 19×19 patch
    """
    name = lookup(flat, "architecture", within="models")
    layers = ("two 5×5 convolutions with 64 and 128 maps each followed by 2×2 max-pooling, two dense layers of 256")
    if name == "barros2020-mirror-cnn":
        return (f"architecture {name}: the paper's 19×19 patch CNN, {layers}, reading 6 channels, the three slices "
                "z-1, z, z+1 of the scan and the same of its mid-sagittal mirror, estimated per scan by a rigid "
                "registration of the scan to its left-right flip; the mirror channels are not in the paper")
    if name in (NOT_RECORDED, "barros2020-patch-cnn"):
        return f"the paper's, 19×19×3 patch, {layers}"
    return f"architecture {name}, recorded in the model card; not the paper's"


def _chosen_on(flat: dict[str, object]) -> str:
    """Where the run's cut-offs were chosen (run.json models.cutoffs_chosen_on; older runs did not
    say, and every model then had them from its validation scans)."""
    value = lookup(flat, "cutoffs_chosen_on", within="models")
    return "validation scans" if value == NOT_RECORDED else str(value)


def _csf_additions(flat: dict, p) -> str:
    """corelab's additions to the paper's CSF grow, as run.json records them ("" for a run from before them)."""
    if lookup(flat, "dark_floor_hu") == NOT_RECORDED:
        return ""
    return (f"; plus the sulci, grown in range from the intracranial region's surface (at most "
            f"{p('sulcus_depth_mm', unit='mm')} deep), and the voxels from {p('dark_floor_hu', unit='HU')} to "
            f"{p('lower_hu', unit='HU')} joined to that CSF (CSF's noise tail, not brain)")


def methods_paragraphs(run_info: dict, *, mode: str, counts: dict[str, int]) -> list[str]:
    """The methods section as plain-text paragraphs (autoescaped by the template)."""
    flat = flatten(run_info)

    def p(*names: str, unit: str = "", within: str = "") -> str:
        value = lookup(flat, *names, within=within)
        if value == NOT_RECORDED:
            return f"[{NOT_RECORDED} in run.json]"
        return quantity(value, unit) if unit else number(value)

    low, high = lookup(flat, "min_hours"), lookup(flat, "max_hours")
    window = (f"{hour_span(low, high)} after onset, bounds inclusive" if NOT_RECORDED not in (low, high)
              else f"bounds {NOT_RECORDED} in run.json; corelab's default is 12 h to 14 days")
    ranges = "; ".join(
        f"{name} [{low:g}, {high:g}{']' if i == len(CLASS_RANGES_HU) - 1 else ')'} HU"
        for i, (name, (low, high)) in enumerate(CLASS_RANGES_HU.items())
    )
    text = [
        f"Population. {counts['total']} patients were listed; the primary analysis population is every "
        f"patient scanned within the follow-up window ({window}), {'processed without error, ' if mode == 'automated' else ''}"
        f"with a reference read: n = {counts['analysed']}. The {counts['excluded']} other patients are "
        "listed with the reason in the exclusions table; none is silently dropped.",
    ]
    if mode == "automated":
        text.append(
            f"Automated segmentation (corelab {p('corelab', within='version')}, models "
            f"{p('model_version', 'version', within='model')}). Scans were reconstructed to axial slices of "
            f"{p('slice_mm', unit='mm')} with pixels of {p('pixel_mm', unit='mm')}. Intracranial region: bone "
            f"above {p('bone_hu', unit='HU')}, dilated by {p('dilate_mm', unit='mm')}, region grown inside the "
            f"skull from the bone's centre of gravity, dilated again; everything below the foramen magnum (first "
            f"slice under the largest one with an area below {p('foramen_area_mm2', unit='mm²')}) removed. "
            f"CSF: region grown from voxels within {p('seed_radius_mm', unit='mm')} of the intracranial "
            f"centroid, thresholds {p('lower_hu', unit='HU')} to {p('upper_hu', unit='HU')}{_csf_additions(flat, p)}. "
            f"Four CNNs of one architecture ({_architecture(flat)}) "
            f"segment severe, intermediate and subtle hypodense infarct and hemorrhage{_input_and_smoothing(flat)}, "
            f"with cut-offs {_cutoffs(flat)} (probability cut-offs chosen on {_chosen_on(flat)}); their union "
            + ("(hemorrhage included) is the automated infarct, as in Sales Barros et al. 2020. "
               if lookup(flat, "hemorrhage_beside_mm") in (None, NOT_RECORDED) else
               "(the hemorrhage kept by the rule above) is the automated infarct; Sales Barros et al. 2020 keep all "
               "of it. ")
            + "The automated volume is volumes.csv's infarct_ml."
        )
        grid = "the automated mask's grid"
        reference = "manual reference masks"
    else:
        text.append(
            "Inter-reader agreement. Reader B's masks are compared with reader A's, which serve as the "
            "reference; no automated masks are used."
        )
        grid = "reader A's grid"
        reference = "reader A's masks"
    text.append(
        f"Reference. Nonzero voxels of the {reference} are infarct (hemorrhage within or beside it "
        f"included). Reference volumes are counted on the mask's own grid; for overlap measures the "
        f"other mask is compared on {grid}, masks on a different grid resampled by nearest neighbour. "
        f"Reads are label images (NIfTI, NRRD, MHA), Slicer segmentations, DICOM SEG, RTSTRUCT or DICOM "
        f"label series; segments are united (names containing 'hemorrhag' are hemorrhage; outlines named as "
        f"normal anatomy, such as Brain or Ventricles, left out), and RTSTRUCT "
        f"contours are filled on the nearest scan slice, a voxel inside when its centre is (even-odd rule "
        f"for holes); the per-patient note says how each read with segments or contours was read."
    )
    exclusion = "voxels the automated mask labels hemorrhage and " if mode == "automated" else ""
    automated = (" The automated class (volumes.csv auto_class) applies the same ranges to the automated "
                 "mask's mean HU, hemorrhage label left out; it is listed beside the reference class and does "
                 "not group the tables.") if mode == "automated" else ""
    text.append(
        f"Reference class. The tables and figures are grouped by the class of the reference read, as the "
        f"paper's Table 1: the mean HU of the scan inside the reference mask, leaving out {exclusion}"
        f"voxels of {HEMORRHAGE_HU:g} HU or more (blood), as the paper excludes hemorrhage; classes {ranges}. "
        f"An empty reference read is '{NO_INFARCT}'; a non-empty read whose mean lies outside these ranges is "
        f"'{UNCLASSIFIED}'; a read whose scan could not be read is 'unknown'.{automated}"
    )
    text.append(statistics_paragraph())
    return text


def statistics_paragraph() -> str:
    """The report's rules for small groups, zero volumes and empty masks, in one paragraph."""
    return (
        f"Statistics. Each table gives n per group. Minimum n: a group with fewer than {MIN_N_INTERVAL} "
        "values of a statistic gets no 95% CI, interquartile range, limit of agreement, SD, ICC, Lin's CCC or "
        f"regression slope; the tables print '{TOO_SMALL}' and the figures draw no lines for it, because with "
        "so few patients a t-based interval spans orders of magnitude. Point estimates (median, mean, bias, "
        "geometric mean ratio) are still given. Zero volumes: the ratio (log-scale) Bland-Altman analysis "
        "leaves out every pair in which either volume is 0 mL (a ratio with zero is undefined and no offset "
        "is added); these pairs are counted in the ratio table ('zero pairs left out') and stay in every mL "
        "analysis, so the ratio analysis can have a smaller n. Dice: patients whose two masks are both empty "
        "are left out of the Dice summaries and counted."
    )


DEFINITIONS: list[tuple[str, str]] = [
    ("Difference", "other minus reference (automated minus manual, or reader B minus reader A), in mL; "
     "a positive bias means larger automated (reader B) volumes."),
    ("ICC(A,1)", "two-way random effects, absolute agreement, single measure (McGraw & Wong 1996; "
     "Shrout & Fleiss ICC(2,1)), 95% CI from the F distribution (pingouin, CI given to 2 decimals). "
     f"Not given for fewer than {MIN_N_INTERVAL} patients ('n too small'); undefined when all volumes are equal. "
     "Interpretation as the paper: "
     "< 0.4 poor, 0.4 to < 0.6 fair, 0.6 to < 0.75 good, >= 0.75 excellent."),
    ("ICC(C,1)", "two-way, consistency, single measure (Shrout & Fleiss ICC(3,1)); ignores a constant "
     "offset, so ICC(C,1) well above ICC(A,1) signals systematic bias."),
    ("Lin's CCC", "concordance correlation coefficient, 2 s_xy / (s_x² + s_y² + (mean_x - mean_y)²) with "
     "n denominators (Lin 1989); 95% CI from Fisher's z with Lin's asymptotic variance."),
    ("Bland-Altman", f"bias = mean difference d̄; limits of agreement (LoA) d̄ ± {LOA_Z} s (s = SD of the "
     "differences). Approximate 95% CIs (Bland & Altman 1999): bias ± t(n-1) s/√n; each limit "
     "± t(n-1) s √(3/n)."),
    ("Bland-Altman, ratio scale", "the same on ln(other) - ln(reference), back-transformed: the bias is "
     "the geometric mean ratio other/reference, the limits are ratios. Pairs with a zero volume have no "
     "ratio and are left out of this analysis only (their number is given)."),
    ("Proportional bias", "least-squares regression of the difference on the pair mean; slope with 95% "
     "CI (t, n-2 df) and p for slope = 0. A small p means the difference grows with infarct size."),
    ("Dice", "2|A∩B| / (|A| + |B|) per patient on one grid. Both masks empty: Dice undefined, the "
     "patient is left out of the Dice summary and counted ('both empty'); one empty: Dice 0."),
    ("HD95", "95th percentile of the pooled surface-to-surface distances in both directions, in mm, "
     "from voxel-spaced distance maps of the mask contours (SimpleITK); undefined if a mask is empty."),
    ("Lesion detection", "each 26-connected component of the reference mask, whatever its size, counts "
     "as detected when at least one of its voxels is in the other mask; rate = detected / all lesions, "
     "pooled over patients."),
    ("|Difference|", "absolute volume difference |other - reference| in mL; median (IQR)."),
    ("Summaries", "mean ± SD (n - 1); median (IQR) with quartiles by linear interpolation."),
]

COLUMN_MEANINGS: dict[str, str] = {
    "patient_id": "patient id as in the manifest (text)",
    "site": "site from the manifest",
    "in_primary": "true when in the primary analysis population",
    "excluded_because": "reasons the patient is not in the primary analysis, '; '-separated",
    "status": "ok / failed, from volumes.csv",
    "hours_since_onset": "hours from onset to the follow-up scan",
    "reference_ml": "reference (manual or reader A) volume, mL, on the reference mask's own grid",
    "other_ml": "automated (volumes.csv infarct_ml) or reader B volume, mL",
    "difference_ml": "other_ml - reference_ml, mL",
    "abs_difference_ml": "|difference_ml|, mL",
    "dice": "Dice coefficient (empty when both masks are empty)",
    "both_empty": "true when reference and other mask are both empty",
    "hd95_mm": "95th percentile symmetric surface distance, mm",
    "lesions": "connected components (26-connectivity) of the reference",
    "lesions_detected": "reference components touched by the other mask",
    "reference_mean_hu": "mean scan HU inside the reference without hemorrhage (HU)",
    "reference_class": "class of the reference read from reference_mean_hu: severe / intermediate / subtle; "
                       "unclassified (a mean outside every range) / no infarct (an empty read) / unknown (no "
                       "readable scan)",
    "auto_class": "class of the automated mask, from volumes.csv auto_class (hypodensity_class in volumes.csv of "
                  "older corelab versions): the same names by the same rule on its mean HU (automated mode only)",
    "qc": "compare's QC image of the patient (scan, automated outlines, reference outline dashed cyan), "
          "relative to the report's folder; empty when none was drawn (the note says why)",
    "needs_review": "true when volumes.csv says the automated volume must be checked before use (a flag: an "
                    "implausible result, invented or resampled slices, partial coverage, a shifted brain)",
    "flags": "volumes.csv flags of a scan that needs review, one sentence each",
    "note": "why a value is missing",
}

SUMMARY_MEANINGS: dict[str, str] = {
    "group": "All, a reference class, or a site",
    "n": "patients in the group",
    "icc_a1, icc_a1_ci_low, icc_a1_ci_high": "ICC(A,1) and its 95% CI",
    "icc_c1, icc_c1_ci_low, icc_c1_ci_high": "ICC(C,1) and its 95% CI",
    "ba_n, ba_bias, ba_sd, ba_loa_low, ba_loa_high (+ _ci_low, _ci_high)":
        "Bland-Altman in mL: pairs, bias, SD of the differences, limits of agreement, 95% CIs",
    "ba_slope, ba_slope_ci_low, ba_slope_ci_high, ba_slope_p": "proportional bias: slope of difference on mean, CI, p",
    "ratio_*": "the same on the ratio scale (bias and limits are ratios other/reference; sd and slope in ln units); "
               "ratio_n_zero = pairs left out for a zero volume",
    "ccc, ccc_ci_low, ccc_ci_high": "Lin's concordance correlation coefficient and 95% CI",
    "reference_median, reference_q1, reference_q3, other_*": "volume medians and quartiles, mL",
    "absdiff_n, _mean, _sd, _median, _q1, _q3": "absolute volume difference, mL",
    "dice_n, _mean, _sd, _median, _q1, _q3; n_both_empty": "Dice summary (both-empty patients left out and counted)",
    "hd95_n, _mean, _sd, _median, _q1, _q3": "HD95 summary, mm",
    "lesions, lesions_detected, detection_rate": "reference lesions, those detected, pooled rate",
    "icc_note, ba_note, ratio_note, ccc_note, notes": "why a number is undefined",
    "icc_n, reference_n, other_n": "patients with both volumes (ICC, CCC); with a reference / other volume",
    "withheld": f"statistics (with their n) whose intervals, limits, SD and coefficients the PDF does not print "
                f"because n < {MIN_N_INTERVAL} ('n too small'); this sheet keeps the computed numbers",
}
