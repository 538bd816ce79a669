"""The agreement report: statistics tables formatted, figures, methods text, HTML/PDF and workbook,
and `agreement_report`, the workflow of `corelab compare`.
"""

from corelab.report.agreement_report import CompareSummary, compare
from corelab.report.pdf import BuiltReport, build_report, render, write_workbook

__all__ = [
    "CompareSummary",
    "compare",
    "build_report",
    "render",
    "write_workbook",
    "BuiltReport",
]
