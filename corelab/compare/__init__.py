"""Per-patient agreement rows: who is analysed against the manual reads, who is excluded and why,
and the mask metrics (Dice, HD95, lesion detection).
"""

from corelab.compare.metrics import MaskMetrics, dice, hd95, lesion_detection, mask_metrics, reference_mean_hu
from corelab.compare.rows import (
    CompareError,
    automated_rows,
    compare_provenance_info,
    parse_window,
    read_results,
    read_run_json,
    reader_rows,
)

__all__ = [
    "MaskMetrics",
    "dice",
    "hd95",
    "lesion_detection",
    "mask_metrics",
    "reference_mean_hu",
    "CompareError",
    "read_results",
    "read_run_json",
    "automated_rows",
    "reader_rows",
    "parse_window",
    "compare_provenance_info",
]
