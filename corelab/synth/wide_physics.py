"""The opt-in "wide" scanner physics, applied to a finished `Phantom` (any family).

``physics="default"`` leaves a phantom untouched (the shipped models were trained on that output);
``"wide"`` adds, after rendering, the site's reconstruction-kernel noise, calibration offset and
cupping (`physics.SitePhysics`) and a few posterior-fossa streaks per patient, from random streams
of their own, so the default streams, and so the default output, stay as they were.
"""

from __future__ import annotations

import zlib
from dataclasses import replace

import numpy as np

from corelab.synth import physics


__all__ = ["PHYSICS", "PHYSICS_STREAM", "apply_physics", "site_physics_rng"]

PHYSICS = ("default", "wide")
PHYSICS_STREAM = zlib.crc32(b"physics")  # appended to a seed: a stream no default draw uses


def site_physics_rng(*seeds: int) -> np.random.Generator:
    """The random stream of a site's (or a patient's) wide physics, apart from every default stream."""
    return np.random.default_rng(np.random.SeedSequence([*(int(s) for s in seeds), PHYSICS_STREAM]))


def apply_physics(phantom: "Phantom", name: str, seeds: tuple[int, ...]) -> "Phantom":  # noqa: F821 (phantom.py imports this module)
    """``phantom`` itself for "default" (checked by the makers); for "wide" a copy with the wider physics added (see module).

    The site's `SitePhysics` is its scanner's (`Scanner.physics`, set by `make_trial`) or, for a
    patient made alone, drawn from ``seeds``. Truth follows the written scan: ``hu_offset`` and
    ``noise_sd_hu`` include the additions, ``mean_hu`` is measured again and ``physics`` records them.
    """
    if name != "wide":
        return phantom
    rng = site_physics_rng(*seeds)
    site = phantom.scanner.physics or physics.draw_site_physics(rng)
    hu = phantom.hu
    spacing = phantom.spacing
    scanned = (hu > -1500) & ~physics.outside_fov(hu.shape)[None]
    inside = physics.intracranial_from_hu(hu)
    sd = site.kernel_sd_hu * float(np.sqrt(5.0 / phantom.slice_mm))
    streaks, streak_hu = physics.fossa_streaks(rng, inside, spacing)
    added = (
        site.offset_hu
        + physics.cupping(inside, spacing[1:], rise_hu=site.cupping_hu)
        + streaks
        + physics.kernel_noise(rng, hu.shape, sd_hu=sd, corr_mm=site.kernel_corr_mm, pixel_mm=spacing[1])
    )
    out = np.where(scanned, np.clip(np.rint(hu + added), -3024, 3071), hu).astype(np.float32)
    in_class = (phantom.labels >= 1) & (phantom.labels <= 3)
    t = phantom.truth
    record = physics.AppliedPhysics(
        kernel_sd_hu=sd, kernel_corr_mm=site.kernel_corr_mm, offset_hu=site.offset_hu, cupping_hu=site.cupping_hu,
        streak_hu=streak_hu,
    )
    truth = replace(
        t, mean_hu=float(out[in_class].mean()) if in_class.any() else float("nan"),
        hu_offset=t.hu_offset + site.offset_hu, noise_sd_hu=float(np.hypot(t.noise_sd_hu, sd)), physics=record,
    )
    return replace(phantom, hu=out, truth=truth)
