"""Scanner and site settings that vary between centres of a trial."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from corelab.synth.physics import SitePhysics

__all__ = ["Scanner", "draw_scanner"]

_MAKERS = ("SYNTH-A Medical", "SYNTH-B Healthcare", "SYNTH-C Systems", "SYNTH-D Imaging")
_KERNELS = ("H30s", "STANDARD", "FC21", "UB", "J40s")


@dataclass(frozen=True)
class Scanner:
    """One site's CT scanner and protocol.

    fov_mm: (low, high) display field of view, giving pixels of fov / matrix mm.
    noise_sd_hu: (low, high) noise SD in brain at 5 mm.
    hu_offset: calibration error added to every HU (water not at exactly 0), HU.
    hu_gain: calibration slope (1 = perfect).
    signed: pixels stored as signed int16 (else unsigned with intercept -1024).
    padding_hu: value outside the circular field of view (-1024 = air, or -2048 padding).
    physics: the site's wider physics when a trial is made with ``physics="wide"`` (None otherwise).
    """

    site: str
    manufacturer: str
    kernel: str
    fov_mm: tuple[float, float]
    noise_sd_hu: tuple[float, float]
    hu_offset: float
    hu_gain: float
    signed: bool
    padding_hu: float
    physics: SitePhysics | None = None


def draw_scanner(rng: np.random.Generator, site: str) -> Scanner:
    """A plausible scanner for ``site``: pixel 0.42-0.49 mm at 512, noise 2-6 HU, offset +-3 HU.

    The noise is the scanner's own, added to the phantom's anatomical texture: with none, the atlas
    family's brain already reads 4.0-4.7 HU of local SD, and the real normal head reads 4.9 HU in all,
    so a floor of 3 HU kept every atlas head above that real scanner (README "Phantom families and the real head").
    """
    lo = float(rng.uniform(215, 235))
    noise_lo = float(rng.uniform(2.0, 4.5))
    signed = bool(rng.random() < 0.5)
    return Scanner(
        site=site,
        manufacturer=str(rng.choice(_MAKERS)),
        kernel=str(rng.choice(_KERNELS)),
        fov_mm=(lo, lo + 15.0),
        noise_sd_hu=(noise_lo, noise_lo + 1.5),
        hu_offset=float(rng.uniform(-3.0, 3.0)),
        hu_gain=float(rng.uniform(0.99, 1.01)),
        signed=signed,
        padding_hu=-2048.0 if signed and rng.random() < 0.5 else -1024.0,
    )
