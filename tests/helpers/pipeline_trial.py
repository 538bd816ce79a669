"""A tiny synthetic trial for the pipeline tests: head-like phantoms, a random-weight model folder,
and a manifest. Small on purpose (72x72 pixels of 1.5 mm, 15 slices of 5 mm) so a scan runs in about
a second on one core; the method runs on a 1.5 mm analysis grid (`SMALL_METHOD`) for the same reason.

Import from a test as ``from pipeline_trial import make_trial, SMALL_METHOD`` (pyproject's pytest
``pythonpath`` puts ``tests/helpers/`` on ``sys.path``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from corelab.config import GridParams, Method
from corelab.io.volume import Volume, write_image

SMALL_METHOD = Method(grid=GridParams(slice_mm=5.0, pixel_mm=1.5))
SPACING = (5.0, 1.5, 1.5)
LESION_BAND = (48.0, 100.0)  # HU the stub calls lesion: the lesion only (skull 1000, brain 35 +- 2)


def lesion_stub(hu, region, models, *, device="cpu", precision="float32", spacing=None, views=None):
    """`corelab.segment.labels.segment` replaced by a rule with a known answer: label 2 exactly
    where the HU are in `LESION_BAND` (the signature is segment's, so a new keyword shows here once)."""
    return np.where((hu > LESION_BAND[0]) & (hu < LESION_BAND[1]), 2, 0).astype(np.uint8)


def head_phantom(*, shape=(15, 72, 72), lesion_hu: float = 20.0, lesion_side: int = 1, seed: int = 0) -> np.ndarray:
    """HU [z, y, x]: air, a 5 mm skull around brain (35 HU), a CSF ventricle (5 HU), an infarct
    ellipsoid (``lesion_hu``) in one hemisphere, and a narrow brain stem in the lowest slices so
    the foramen magnum rule has something to find. z index 0 is the lowest (caudal) slice."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z = (np.arange(nz) * SPACING[0])[:, None, None]
    y = ((np.arange(ny) - (ny - 1) / 2) * SPACING[1])[None, :, None]
    x = ((np.arange(nx) - (nx - 1) / 2) * SPACING[2])[None, None, :]
    zc = 33.0  # mm above the lowest slice; the skull top (70 mm) is inside the last slice
    inner = (x / 36.0) ** 2 + (y / 42.0) ** 2 + ((z - zc) / 32.0) ** 2 <= 1.0
    outer = (x / 41.0) ** 2 + (y / 47.0) ** 2 + ((z - zc) / 37.0) ** 2 <= 1.0
    stem = (x**2 + y**2 <= 10.0**2) & (z < zc - 20.0)
    hu = np.full(shape, -1000.0, dtype=np.float32)
    hu[outer] = 1000.0
    hu[inner | stem] = 35.0
    ventricle = ((x / 6.0) ** 2 + (y / 14.0) ** 2 + ((z - zc) / 9.0) ** 2 <= 1.0) & inner
    hu[ventricle] = 5.0
    lesion = (((x - lesion_side * 18.0) / 10.0) ** 2 + ((y + 8.0) / 14.0) ** 2 + ((z - zc - 5.0) / 10.0) ** 2 <= 1.0) & inner
    hu[lesion] = lesion_hu
    brain = inner | stem
    hu[brain] += rng.normal(0.0, 2.0, size=int(brain.sum())).astype(np.float32)
    return hu


# Percentiles of each network's probabilities taken as its cut-off (severe, intermediate, subtle,
# hemorrhage). The default labels about 75 mL of the phantom's 200 mL brain, mirrored about its
# midline as random weights on a symmetric head do, so `corelab.pipeline.guards` flags it
# ("Symmetric claim:", needs_review). QUIET_QUANTILES labels about 3 mL, below every guard's floor
# (the random networks' most confident voxels hug the skull), for scans that must need no review.
DEFAULT_QUANTILES = (0.7, 0.8, 0.9, 0.97)
QUIET_QUANTILES = (0.995, 0.995, 0.995, 0.998)


def write_model_folder(folder: Path, *, seed: int = 0, quantiles: tuple[float, ...] = DEFAULT_QUANTILES) -> Path:
    """Four networks with random (seeded) weights, saved with corelab.segment's own writer.

    Each cut-off is a high percentile (``quantiles``) of that network's probabilities inside one
    phantom's brain, so the random networks label some voxels of every class rather than all or none.
    """
    import torch

    from corelab.segment.card import NETWORK_NAMES, save_models
    from corelab.segment.dense import dense_probabilities
    from corelab.segment.barros2020 import PatchCNN
    from corelab.segment.norm import InputNorm

    torch.manual_seed(seed)
    networks = {name: PatchCNN().eval() for name in NETWORK_NAMES}
    hu = head_phantom(seed=99)
    brain = (hu > 0) & (hu < 100)
    probs = dense_probabilities(hu, brain, networks, norm=InputNorm(), device="cpu")
    cutoffs = {name: float(np.quantile(probs[name][brain], q)) for name, q in zip(NETWORK_NAMES, quantiles)}
    save_models(folder, networks, cutoffs,
                grid={"slice_mm": 5.0, "pixel_mm": 1.5}, training={"random": True, "seed": seed}, version="test")
    return folder


@dataclass(frozen=True)
class Trial:
    folder: Path
    manifest: Path
    models: Path
    ids: tuple[str, ...]


def make_trial(folder: Path, *, n: int = 3, rows: list[dict] | None = None, models: Path | None = None) -> Trial:
    """``n`` NIfTI phantom scans in ``folder/scans`` and a manifest.csv with onset and scan time
    (patient i scanned 24 h + i days after onset, so patient 20+ would be out of the window).
    ``rows``: extra manifest rows (dicts with the manifest's columns) appended as given.
    ``models``: an existing model folder to use instead of writing one in ``folder/models``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "scans").mkdir(exist_ok=True)
    onset = dt.datetime(2024, 3, 1, 8, 0)
    lines = ["patient_id,scan,onset,scan_time,site"]
    ids = []
    for i in range(n):
        pid = f"P{i + 1:03d}"
        hu = head_phantom(lesion_hu=18.0 + 8.0 * (i % 3), lesion_side=1 if i % 2 else -1, seed=i)
        write_image(hu, Volume(array=hu, spacing=SPACING), folder / "scans" / f"{pid}.nii.gz")
        scan_time = onset + dt.timedelta(hours=24 + 24 * i)
        lines.append(f"{pid},scans/{pid}.nii.gz,{onset.isoformat()},{scan_time.isoformat()},site{i % 2}")
        ids.append(pid)
    for row in rows or []:
        lines.append(",".join(str(row.get(c, "")) for c in ("patient_id", "scan", "onset", "scan_time", "site")))
        ids.append(str(row.get("patient_id", "")))
    (folder / "manifest.csv").write_text("\n".join(lines) + "\n")
    models = models if models is not None else write_model_folder(folder / "models")
    return Trial(folder=folder, manifest=folder / "manifest.csv", models=models, ids=tuple(ids))
