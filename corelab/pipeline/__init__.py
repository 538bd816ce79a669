"""`corelab run`: the batch (manifest in, volume tables, masks, QC images and run.json out), one
scan's work, the serial and dask executors, and the output files.
"""

from corelab.pipeline.batch import BatchOptionError, BatchSummary, run_batch
from corelab.pipeline.scan import ScanJob, ScanResult, process_scan

__all__ = [
    "run_batch",
    "BatchSummary",
    "BatchOptionError",
    "ScanJob",
    "ScanResult",
    "process_scan",
]
