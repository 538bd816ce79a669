"""corelab: automated follow-up infarct volumetry on non-contrast head CT for stroke-trial core labs.

The method is the three-CNN approach of Sales Barros et al., J NeuroIntervent Surg 2020;12:848-852.
"""

import os
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("corelab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["ONEDNN_CACHE_VARIABLE", "__version__", "bound_onednn_cache"]

ONEDNN_CACHE_VARIABLE = "ONEDNN_PRIMITIVE_CACHE_CAPACITY"


def bound_onednn_cache(capacity: int = 16) -> str:
    """Cap oneDNN's primitive cache in this process; returns the value in effect.

    oneDNN (torch's CPU convolutions) keeps up to 1024 compiled primitives and their buffers, one
    per input shape, and every tile of the analysis region has its own shape, so without a cap a
    worker's memory grows through a scan; 16 keeps it within the worker's memory bound at no
    measurable speed cost (measured by benchmarks/speed.py).

    oneDNN reads the variable when torch first runs a convolution, so this is called where a process
    that runs the CNNs starts (the `corelab run` and `corelab train` commands, whose local dask
    workers inherit it) and on a dask worker before its first scan (a worker of an outside
    scheduler inherits nothing from the command line), not at import: importing corelab writes no
    environment. A value already in the environment wins.
    """
    return os.environ.setdefault(ONEDNN_CACHE_VARIABLE, str(int(capacity)))
