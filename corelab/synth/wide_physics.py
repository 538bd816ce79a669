"""The opt-in "wide" scanner physics, applied to a finished `Phantom` (any family).

``physics="default"`` leaves a phantom untouched (the shipped models were trained on that output);
``"wide"`` adds, after rendering, the site's reconstruction-kernel noise, calibration offset and
cupping (`physics.SitePhysics`) and a few posterior-fossa streaks per patient, from random streams
of their own, so the default streams, and so the default output, stay as they were. When a trial
is written (`corelab.synth.trial`), "wide" also draws each patient's acquisition (`Acquisition`):
partial coverage (the vertex or the skull base cut) and, for DICOM series, a gantry tilt, which
`corelab.synth.dicom_write` applies by sampling the head on the tilted planes, and, for phantom
heads, the acquired slice thickness (`draw_slice_mm`: 0.625-5 mm, reconstructed to 5 mm by corelab's
own analysis grid as any scan is).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from corelab.synth import physics

__all__ = ["PHYSICS", "PHYSICS_STREAM", "apply_physics", "site_physics_rng", "Acquisition", "draw_acquisition",
           "cut_coverage", "ACQUISITION_STREAM", "SLICE_MM_CHOICES", "SLICE_STREAM", "draw_slice_mm"]

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


# --- acquisition: partial coverage and gantry tilt (trial writing, "wide" only) -------------------------

VERTEX_CUT_SHARE = 0.15  # scans whose top stops 10-30 mm below the top of the head (skull vertex cut)
BASE_CUT_SHARE = 0.10  # scans that start 10-25 mm above the lowest slice of the head (skull base cut)
TILT_SHARE = 0.30  # DICOM series acquired with a gantry tilt of 8-25 degrees
ACQUISITION_STREAM = 104729  # appended to (seed, patient): the stream of these draws


# Acquired slice thicknesses (mm) of "wide" phantom heads and how often each is drawn: thin
# reconstructions (0.625-1.25) as CT perfusion-era scanners keep, intermediate (1.5-3) as many sites
# archive, and the 5 mm of a classic follow-up NCCT most often.
SLICE_MM_CHOICES = (0.625, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0)
SLICE_MM_WEIGHTS = (0.06, 0.06, 0.06, 0.08, 0.08, 0.1, 0.1, 0.46)
SLICE_STREAM = 7919  # appended to (seed, patient): the stream of the slice thickness draw


def draw_slice_mm(rng: np.random.Generator) -> float:
    """One "wide" patient's acquired slice thickness (mm), from `SLICE_MM_CHOICES`.

    >>> sorted({draw_slice_mm(np.random.default_rng(k)) for k in range(200)}) == list(SLICE_MM_CHOICES)
    True
    """
    return float(rng.choice(SLICE_MM_CHOICES, p=SLICE_MM_WEIGHTS))


@dataclass(frozen=True)
class Acquisition:
    """How one "wide" patient was acquired: slices cut at the bottom and top (none: full coverage),
    and the gantry tilt of its DICOM series in degrees (0: none; NIfTI scans are never tilted)."""

    bottom_cut: int
    top_cut: int
    tilt_deg: float

    def describe(self) -> dict:
        return {"coverage": ("full" if not (self.bottom_cut or self.top_cut) else
                             "; ".join(s for s in (f"skull base cut ({self.bottom_cut} slices)" if self.bottom_cut
                                                   else "", f"vertex cut ({self.top_cut} slices)" if self.top_cut
                                                   else "") if s)),
                "tilt_deg": round(self.tilt_deg, 2)}


def draw_acquisition(rng: np.random.Generator, phantom: "Phantom", *, dicom: bool) -> Acquisition:  # noqa: F821
    """Partial coverage and tilt for one patient. A cut never removes a slice holding a lesion label,
    so the truth volumes stay those of the written scan (old infarcts, unlabelled, may lose a slice)."""
    u_top, mm_top, u_base, mm_base, u_tilt, tilt = (rng.random(), rng.uniform(10.0, 30.0), rng.random(),
                                                    rng.uniform(10.0, 25.0), rng.random(), rng.uniform(8.0, 25.0))
    hu, labels, slice_mm = phantom.hu, phantom.labels, phantom.spacing[0]
    head = np.flatnonzero((hu > -500).reshape(len(hu), -1).any(axis=1))
    lesion = np.flatnonzero(labels.reshape(len(labels), -1).any(axis=1))
    top = bottom = 0
    if head.size and u_top < VERTEX_CUT_SHARE:
        keep_to = max(int(head[-1]) - round(mm_top / slice_mm), int(lesion.max()) if lesion.size else 0)
        top = len(hu) - 1 - keep_to
    if head.size and u_base < BASE_CUT_SHARE:
        bottom = min(int(head[0]) + round(mm_base / slice_mm), int(lesion.min()) if lesion.size else len(hu))
    bottom = min(bottom, len(hu) - top - 4)  # at least 4 slices stay
    return Acquisition(bottom_cut=max(bottom, 0), top_cut=max(top, 0),
                       tilt_deg=float(tilt) if dicom and u_tilt < TILT_SHARE else 0.0)


def cut_coverage(phantom: "Phantom", acquisition: Acquisition) -> "Phantom":  # noqa: F821
    """The phantom less the slices ``acquisition`` cuts (scan, labels and tissue alike)."""
    if not (acquisition.bottom_cut or acquisition.top_cut):
        return phantom
    keep = slice(acquisition.bottom_cut, len(phantom.hu) - acquisition.top_cut)
    origin = (phantom.origin[0], phantom.origin[1], phantom.origin[2] + acquisition.bottom_cut * phantom.spacing[0])
    return replace(phantom, hu=phantom.hu[keep], labels=phantom.labels[keep], tissue=phantom.tissue[keep],
                   origin=origin)
