"""corelab: automated follow-up infarct volumetry on non-contrast head CT for stroke-trial core labs.

The method is the three-CNN approach of Sales Barros et al., J NeuroIntervent Surg 2020;12:848-852.
"""

import os
from importlib.metadata import PackageNotFoundError, version

# oneDNN (torch's CPU convolutions) caches up to 1024 compiled primitives, one per tile shape, and
# their buffers: about 300 MiB per worker by the end of a scan, since every tile of the analysis
# region has its own shape. 16 keeps a worker's peak memory within its 3 GiB bound
# (benchmarks/speed.py) at no measurable speed cost. Set before torch first uses oneDNN; a value
# already in the environment wins.
os.environ.setdefault("ONEDNN_PRIMITIVE_CACHE_CAPACITY", "16")

try:
    __version__ = version("corelab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
