"""Training data for `corelab train`: a cohort read into memory, split by patient, patches sampled.

Each scan goes through `read_scan` -> `to_analysis_grid` -> `analysis_region`, its manual mask
through `read_mask` -> `mask_to_analysis_grid`, as in docs/INTERFACES.md. Only the region's bounding
box (plus a margin for the patches) is kept, as float16 network input.

Hemorrhage: where `truth/<id>.nii.gz` exists, its label-4 voxels are the hemorrhage. Without it, the
reference voxels at or above `hemorrhage_hu` (50 HU: fresh blood is 50-90 HU, every infarct class
is below 44 HU) are taken as hemorrhage; the card records how many scans used each rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from corelab.config import CLASS_RANGES_HU, HEMORRHAGE_HU, Method, hypodensity_class
from corelab.errors import CohortError, CorelabError
from corelab.io.files import find_image
from corelab.io.manifest import MANIFEST_NAMES, find_manifest, read_manifest
from corelab.segment.inputs import needs_mirror, network_input
from corelab.segment.norm import InputNorm

__all__ = [
    "PreparedScan",
    "CohortSplit",
    "MissingManifestError",
    "MissingMaskError",
    "GridMismatchError",
    "CohortScanError",
    "TooFewScansError",
    "load_cohort",
    "prepare_scan",
    "split_cohort",
]

CROP_MARGIN = 16  # in-plane voxels kept around the region: covers the 31x31 augmentation window


class MissingManifestError(CohortError):
    """The cohort folder has no manifest.xlsx or manifest.csv."""


class MissingMaskError(CohortError):
    """A cohort patient has no manual reference mask."""


class GridMismatchError(CohortError):
    """A reference or truth mask is not on its scan's grid."""


class CohortScanError(CohortError):
    """A cohort scan or mask cannot be read or preprocessed."""


class TooFewScansError(CohortError):
    """A network has too few scans with its kind of lesion to train and choose a cut-off."""


@dataclass(frozen=True, eq=False)
class PreparedScan:
    """One cohort scan on the analysis grid, cropped to its region's bounding box plus a margin.

    x: float16 network input (`corelab.segment.inputs.network_input`), `[z, y, x]`, or
        `[F, z, y, x]` for architectures reading several input volumes (the scan and its mirror).
    region: analysis region (intracranial minus CSF). reference: manual mask (hemorrhage included).
    infarct: reference minus hemorrhage. hemorrhage: hemorrhage voxels (see module docstring).
    spacing: (z, y, x) mm. mean_hu: mean HU of `infarct` (nan when empty); hypodensity: its class.
    hemorrhage_source: "truth" or "threshold".
    opposite: voxels whose mirror across the midline is reference lesion (the mirror of `reference`
        by the same registration that makes the mirror input); None for inputs without the mirror.
    """

    patient_id: str
    x: np.ndarray
    region: np.ndarray
    reference: np.ndarray
    infarct: np.ndarray
    hemorrhage: np.ndarray
    spacing: tuple[float, float, float]
    mean_hu: float
    hypodensity: str
    hemorrhage_source: str
    opposite: np.ndarray | None = None


@dataclass(frozen=True)
class CohortSplit:
    """Patient ids per network: `train[name]` (foreground donors) and `val[name]` (cut-off scans).

    background: training patients whose non-lesion region may serve as extra background.
    controls: validation patients without any reference lesion; they belong to no network, so
        every network's cut-off counts what it claims on them as false positive.
    """

    train: dict[str, tuple[str, ...]]
    val: dict[str, tuple[str, ...]]
    background: tuple[str, ...]
    controls: tuple[str, ...] = ()


def prepare_scan(
    patient_id: str,
    hu: np.ndarray,
    spacing: tuple[float, float, float],
    region: np.ndarray,
    reference: np.ndarray,
    hemorrhage: np.ndarray | None,
    *,
    norm: InputNorm = InputNorm(),
    hemorrhage_hu: float = HEMORRHAGE_HU,
    inputs: tuple[str, ...] = ("hu",),
) -> PreparedScan:
    """Arrays on the analysis grid -> a cropped `PreparedScan` (pure step; no file I/O).

    hemorrhage: bool label-4 mask from truth, or None to use the `hemorrhage_hu` rule.
    inputs: the architecture's input volumes (the mirror is computed on the whole grid, then cropped).
    """
    hu = np.asarray(hu, dtype=np.float32)
    reference = np.asarray(reference, bool)
    region = np.asarray(region, bool)
    source = "truth"
    if hemorrhage is None:
        hemorrhage, source = reference & (hu >= hemorrhage_hu), "threshold"
    hemorrhage = np.asarray(hemorrhage, bool)
    infarct = reference & ~hemorrhage
    mean_hu = float(hu[infarct].mean()) if infarct.any() else float("nan")
    box = _crop_box(region)
    mirror_hu = opposite = None
    if needs_mirror(tuple(inputs)):  # one registration for the mirror input and the opposite voxels
        from corelab.preprocess.midline import estimate_mirror, mirror_image

        mirror = estimate_mirror(hu, spacing)
        mirror_hu = mirror_image(hu, spacing, mirror, default=-1000.0)
        opposite = (mirror_image(reference.astype(np.float32), spacing, mirror, default=0.0) >= 0.5)[box]
    return PreparedScan(
        patient_id=patient_id,
        x=network_input(hu, region, spacing, norm, inputs, mirror_hu=mirror_hu)[(Ellipsis, *box)].astype(np.float16),
        region=region[box],
        reference=reference[box],
        infarct=infarct[box],
        hemorrhage=hemorrhage[box],
        spacing=tuple(float(s) for s in spacing),
        mean_hu=mean_hu,
        hypodensity=hypodensity_class(mean_hu),
        hemorrhage_source=source,
        opposite=opposite,
    )


def _crop_box(region: np.ndarray) -> tuple[slice, slice, slice]:
    if not region.any():
        return (slice(0, 0),) * 3
    z, y, x = (np.flatnonzero(region.any(axis=axes)) for axes in ((1, 2), (0, 2), (0, 1)))
    return (
        slice(max(0, z[0] - 1), min(region.shape[0], z[-1] + 2)),
        slice(max(0, y[0] - CROP_MARGIN), min(region.shape[1], y[-1] + 1 + CROP_MARGIN)),
        slice(max(0, x[0] - CROP_MARGIN), min(region.shape[2], x[-1] + 1 + CROP_MARGIN)),
    )


def _find_manifest(cohort_dir: Path) -> Path:
    found = find_manifest(cohort_dir)
    if found is None:
        raise MissingManifestError(f"The cohort folder {cohort_dir} has no {' or '.join(MANIFEST_NAMES)}.")
    return found


def load_cohort(
    cohort_dir: str | Path,
    *,
    method: Method = Method(),
    norm: InputNorm = InputNorm(),
    hemorrhage_hu: float = HEMORRHAGE_HU,
    log: Callable[[str], None] = print,
    inputs: tuple[str, ...] = ("hu",),
    segments: tuple[str, ...] | None = None,
    purpose: str = "training",
) -> list[PreparedScan]:
    """Read every manifest row's scan, manual mask and (when present) truth labels, preprocessed
    into the input volumes `inputs` of the architecture to train (`corelab.segment.inputs`);
    `purpose` names the use in the error for a scan that cannot be used ("training", "calibration").

    Manual reads are found and read as `compare` reads them (`corelab.io.reference`: any format,
    ``segments`` the segment names to keep), reads and truth labels on another grid put on the
    scan's by nearest neighbour (`corelab.io.mask_onto`)."""
    from corelab.io.errors import MaskGridError, MaskOutsideScanError
    from corelab.io.read import mask_onto, read_mask, read_scan
    from corelab.io.reference import find_reference, read_reference
    from corelab.preprocess import (
        analysis_region,
        mask_to_analysis_grid,
        to_analysis_grid,
    )

    cohort_dir = Path(cohort_dir)
    manifest = read_manifest(_find_manifest(cohort_dir))
    scans = []
    for number, row in enumerate(manifest.rows, start=1):
        pid = row.patient_id
        if row.error or row.scan is None:
            raise CohortScanError(f"Cohort row {row.row} ({pid}) cannot be used: {row.error or 'no scan path'}")
        try:
            manual = find_reference(cohort_dir / "manual", pid)
            truth_path = find_image(cohort_dir / "truth", pid)
        except CorelabError as error:
            raise CohortScanError(f"Patient {pid} cannot be used for {purpose}: {error}") from error
        if manual is None:
            raise MissingMaskError(f"Patient {pid} has no manual reference mask in {cohort_dir / 'manual'}.")
        try:
            volume = read_scan(row.scan, series_uid=row.series_uid or None)
            reads = {"manual": read_reference(manual, grid=volume, segments=segments).volume,
                     "truth": read_mask(truth_path) if truth_path else None}
            for name, mask in reads.items():
                try:
                    reads[name] = mask_onto(mask, volume) if mask is not None else None
                except (MaskGridError, MaskOutsideScanError) as error:
                    raise GridMismatchError(f"The {name} mask of patient {pid} cannot be put on its scan: {error}") \
                        from error
            reference, truth = reads["manual"], reads["truth"]
            analysis = to_analysis_grid(volume, method.grid)
            regions = analysis_region(analysis.array, analysis.spacing, method)
            ref_a = mask_to_analysis_grid(reference, analysis) > 0
            hem_a = mask_to_analysis_grid(truth, analysis) == 4 if truth is not None else None
        except CohortError:
            raise
        except CorelabError as error:
            raise CohortScanError(f"Patient {pid} cannot be used for {purpose}: {error}") from error
        scan = prepare_scan(pid, analysis.array, analysis.spacing, regions.region, ref_a, hem_a,
                            norm=norm, hemorrhage_hu=hemorrhage_hu, inputs=inputs)
        log(f"read {number}/{len(manifest.rows)} {pid}: mean {scan.mean_hu:.1f} HU "
            f"({scan.hypodensity or 'no class'}), {int(scan.hemorrhage.sum())} hemorrhage voxels")
        scans.append(scan)
    return scans


def split_cohort(
    scans: list[PreparedScan], *, val_scans: int = 20, rng: np.random.Generator
) -> CohortSplit:
    """Patient split per network, seeded.

    Per infarct class: n patients, of which min(val_scans, max(1, n // 4)) validate (the paper's 20
    per CNN; a quarter in small cohorts) and the rest train; at least 2 are required. Hemorrhage:
    patients with hemorrhage among the validation patients validate it (at least one is moved there
    from training when none is), the others train it. The single CNN trains on all infarct training
    patients and validates on up to `val_scans` of the validation patients.

    Controls (no reference lesion at all): a quarter of them (at least one, at most `val_scans`)
    validate every network, the rest give training background. A network run on every trial scan
    must stay quiet on a normal brain, and only a scan with nothing to find measures that.
    """
    by_class = {name: sorted(s.patient_id for s in scans if s.hypodensity == name) for name in CLASS_RANGES_HU}
    train: dict[str, tuple[str, ...]] = {}
    val: dict[str, tuple[str, ...]] = {}
    for name, ids in by_class.items():
        low, high = CLASS_RANGES_HU[name]
        if len(ids) < 2:
            raise TooFewScansError(
                f"The cohort has {len(ids)} scan(s) with a {name} hypodense infarct (mean {low:g}-{high:g} HU); "
                f"the {name} CNN needs at least 2 (one to train, one to choose its cut-off)."
            )
        order = [ids[i] for i in rng.permutation(len(ids))]
        n_val = min(val_scans, max(1, len(ids) // 4))
        val[name], train[name] = tuple(order[:n_val]), tuple(order[n_val:])
    control_ids = sorted(s.patient_id for s in scans if not s.reference.any())
    control_order = [control_ids[i] for i in rng.permutation(len(control_ids))]
    controls = tuple(control_order[:min(val_scans, max(1, len(control_ids) // 4))]) if control_ids else ()
    val_all = [pid for name in by_class for pid in val[name]]
    train_all = [s.patient_id for s in scans if s.patient_id not in set(val_all) | set(controls)]
    bleeding = {s.patient_id for s in scans if (s.hemorrhage & s.region).any()}
    hem_val = [pid for pid in val_all if pid in bleeding][:val_scans]
    hem_train = [pid for pid in train_all if pid in bleeding]
    if len(hem_val) + len(hem_train) < 2:
        raise TooFewScansError(
            f"The cohort has {len(hem_val) + len(hem_train)} scan(s) with hemorrhage inside the analysis region; "
            f"the hemorrhage CNN needs at least 2 (truth/<id>.nii.gz label 4, or reference voxels >= {HEMORRHAGE_HU:g} HU)."
        )
    if not hem_val:
        hem_val, hem_train = [hem_train[-1]], hem_train[:-1]
    if not hem_train:
        hem_val, hem_train = hem_val[:-1], [hem_val[-1]]
    train["hemorrhage"], val["hemorrhage"] = tuple(hem_train), tuple(hem_val)
    train["single"] = tuple(pid for name in by_class for pid in train[name])
    val["single"] = tuple(val_all[:val_scans])
    return CohortSplit(train=train, val=val, background=tuple(train_all), controls=controls)
