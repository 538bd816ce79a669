"""corelab: automated follow-up infarct volumetry on non-contrast head CT for stroke-trial core labs.

The method is the three-CNN approach of Sales Barros et al., J NeuroIntervent Surg 2020;12:848-852.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("corelab")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
