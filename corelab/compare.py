"""`corelab compare`: match automated results (or a second reader) to manual reads, per patient.

Per-patient mask metrics are pure functions on arrays plus spacing (mm); `compare` does the file
work: it reads DIR/volumes.csv, DIR/masks/, DIR/run.json and REFDIR/<patient_id>.*, decides who is
in the primary analysis population (in window, processed, with a reference) and why everyone else
is excluded, then hands tables to `corelab.report`.

Rules (printed in the report's methods):
- Dice = 2|A and B| / (|A| + |B|) on the automated mask's grid (reference resampled by nearest
  neighbour when its geometry differs). Both masks empty: Dice undefined, the patient is left out of
  the Dice summary and counted; one empty and the other not: Dice 0.
- HD95: 95th percentile of the pooled distances, in mm, from each surface voxel of one mask to the
  nearest surface voxel of the other, both directions (as medpy's ``hd95``); undefined when either
  mask is empty. Surfaces are SimpleITK label contours; distances use the voxel spacing.
- Lesion-wise detection: each 26-connected component of the reference, whatever its size, is
  detected when at least one of its voxels is nonzero in the automated mask.
- Reference mean HU (for the hypodensity class): mean scan HU inside the reference, leaving out
  voxels the automated mask labels hemorrhage (4) and voxels >= 50 HU (blood), as the paper excludes
  hemorrhage before classifying.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from corelab import scans
from corelab.checksums import file_sha256
from corelab.config import LABELS
from corelab.errors import CorelabError

__all__ = [
    "HEMORRHAGE_HU",
    "MaskMetrics",
    "CompareSummary",
    "CompareError",
    "dice",
    "hd95",
    "lesion_detection",
    "mask_metrics",
    "reference_mean_hu",
    "find_reference",
    "compare_provenance_info",
    "compare",
]

HEMORRHAGE_HU = 50.0  # voxels at or above are treated as blood when classifying the reference infarct
_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".mha")


class CompareError(CorelabError):
    """A results or reference folder cannot be compared (missing volumes.csv, empty folders)."""


@dataclass(frozen=True)
class MaskMetrics:
    """Overlap of one patient's reference and other (automated or second reader) mask.

    dice: 0..1, NaN when both masks are empty (see ``both_empty``).
    hd95_mm: 95th percentile symmetric surface distance in mm, NaN when either mask is empty.
    lesions: connected components of the reference; lesions_detected: those the other mask touches.
    """

    dice: float
    both_empty: bool
    hd95_mm: float
    lesions: int
    lesions_detected: int


def dice(reference: np.ndarray, other: np.ndarray) -> float:
    """Dice coefficient of two masks (nonzero = foreground); NaN when both are empty.

    >>> dice(np.array([1, 1, 0, 0]), np.array([0, 1, 1, 0]))
    0.5
    """
    a, b = np.asarray(reference) != 0, np.asarray(other) != 0
    total = int(a.sum()) + int(b.sum())
    return math.nan if total == 0 else 2.0 * int((a & b).sum()) / total


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """Distances in mm from each surface voxel of ``a`` to the nearest surface voxel of ``b``."""
    def image(mask: np.ndarray) -> sitk.Image:
        return scans.to_sitk(scans.Volume(array=mask.astype(np.uint8), spacing=spacing))

    surface_a = sitk.GetArrayFromImage(sitk.LabelContour(image(a))) != 0
    to_b = sitk.SignedMaurerDistanceMap(
        sitk.LabelContour(image(b)), insideIsPositive=False, squaredDistance=False, useImageSpacing=True
    )
    # Surface voxels of b have distance <= 0 to b's contour; clamp to 0.
    return np.maximum(sitk.GetArrayFromImage(to_b)[surface_a], 0.0)


def hd95(reference: np.ndarray, other: np.ndarray, spacing: tuple[float, float, float]) -> float:
    """95th percentile symmetric surface distance in mm (z, y, x spacing in mm); NaN if a mask is empty.

    >>> a = np.zeros((1, 1, 8), np.uint8); b = a.copy(); a[0, 0, 1] = 1; b[0, 0, 4] = 1
    >>> hd95(a, b, (5.0, 0.5, 0.5))
    1.5
    """
    a, b = np.asarray(reference) != 0, np.asarray(other) != 0
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} and {b.shape}")
    if not a.any() or not b.any():
        return math.nan
    # Crop to both masks plus one voxel: contours and nearest-contour distances are unchanged, and a
    # 512 x 512 scan costs a fraction of the time.
    box = ndimage.find_objects((a | b).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    a, b = a[box], b[box]
    pooled = np.concatenate([_surface_distances(a, b, spacing), _surface_distances(b, a, spacing)])
    return float(np.percentile(pooled, 95))


def lesion_detection(reference: np.ndarray, other: np.ndarray) -> tuple[int, int]:
    """(reference lesions, lesions detected): 26-connected reference components touched by ``other``.

    >>> ref = np.zeros((1, 1, 7), np.uint8); ref[0, 0, [1, 2, 5]] = 1
    >>> auto = np.zeros_like(ref); auto[0, 0, 2] = 3
    >>> lesion_detection(ref, auto)
    (2, 1)
    """
    components, count = ndimage.label(np.asarray(reference) != 0, structure=np.ones((3, 3, 3)))
    if count == 0:
        return 0, 0
    touched = np.unique(components[(np.asarray(other) != 0) & (components > 0)])
    return int(count), int(len(touched))


def mask_metrics(reference: np.ndarray, other: np.ndarray, spacing: tuple[float, float, float]) -> MaskMetrics:
    """Dice, HD95 (mm) and lesion detection of two masks on the same grid (spacing z, y, x in mm)."""
    if np.shape(reference) != np.shape(other):
        raise ValueError(f"mask shapes differ: {np.shape(reference)} and {np.shape(other)}")
    lesions, hit = lesion_detection(reference, other)
    d = dice(reference, other)
    return MaskMetrics(
        dice=d, both_empty=math.isnan(d), hd95_mm=hd95(reference, other, spacing), lesions=lesions,
        lesions_detected=hit,
    )


def reference_mean_hu(
    hu: np.ndarray, reference: np.ndarray, *, labels: np.ndarray | None = None, max_hu: float = HEMORRHAGE_HU
) -> float:
    """Mean HU inside the reference without hemorrhage: voxels labelled 4 in ``labels`` and >= max_hu out.

    NaN when no voxel is left (empty reference, or all blood).

    >>> hu = np.array([[[20.0, 30.0, 70.0, 25.0]]]); ref = np.array([[[1, 1, 1, 1]]])
    >>> reference_mean_hu(hu, ref, labels=np.array([[[0, 0, 0, 4]]]))
    25.0
    """
    keep = (np.asarray(reference) != 0) & (np.asarray(hu) < max_hu)
    if labels is not None:
        keep &= np.asarray(labels) != LABELS["hemorrhage"]
    return float(np.asarray(hu)[keep].mean()) if keep.any() else math.nan


def find_reference(folder: Path, patient_id: str) -> Path | None:
    """REFDIR/<patient_id>.nii.gz, .nii, .nrrd, .mha or a DICOM folder <patient_id>/; None if absent."""
    for suffix in _SUFFIXES:
        path = folder / f"{patient_id}{suffix}"
        if path.is_file():
            return path
    folder_path = folder / patient_id
    return folder_path if folder_path.is_dir() else None


@dataclass(frozen=True)
class CompareSummary:
    """What `compare` wrote and the headline numbers (overall primary population)."""

    pdf: Path
    xlsx: Path
    html: Path
    mode: str  # "automated" or "inter-reader"
    n_patients: int
    n_analysed: int
    n_excluded: int
    icc_a1: float
    dice_mean: float

    def __str__(self) -> str:
        return (
            f"{self.mode} agreement: {self.n_analysed} of {self.n_patients} patients analysed "
            f"({self.n_excluded} excluded), ICC(A,1) {self.icc_a1:.2f}, mean Dice {self.dice_mean:.2f}; "
            f"wrote {self.pdf}, {self.xlsx} and {self.html}"
        )


def compare(
    results_dir: str | Path | None,
    reference_dir: str | Path,
    *,
    against: str | Path | None = None,
    out_pdf: str | Path | None = None,
    trial_name: str | None = None,
) -> CompareSummary:
    """Agreement of ``results_dir``'s automated masks (or of reader ``against``) with ``reference_dir``.

    Writes agreement.pdf, agreement.html and agreement.xlsx (default: in ``results_dir``; beside
    ``out_pdf`` when given). In inter-reader mode ``results_dir`` is optional and only supplies the
    scans (for hypodensity classes), imaging-window flags and sites.
    """
    from corelab import matching, report

    reference_dir = Path(reference_dir)
    if not reference_dir.is_dir():
        raise CompareError(f"The reference folder {reference_dir} does not exist.")
    results = Path(results_dir) if results_dir is not None else None
    has_results = results is not None and (results / "volumes.csv").is_file()
    if against is None and not has_results:
        raise CompareError(f"{results} holds no volumes.csv; run `corelab run` first or give a results folder.")
    if against is not None and not Path(against).is_dir():
        raise CompareError(f"The second reader's folder {against} does not exist.")
    run_info = _read_run_json(results) if has_results else {}
    table = matching.read_results(results) if has_results else None
    if against is None:
        per_patient = matching.automated_rows(table, results, reference_dir, run_info)
    else:
        per_patient = matching.reader_rows(table, results, reference_dir, Path(against), run_info)
    if per_patient.empty:
        raise CompareError("There are no patients to compare: the results table and reference folders are empty.")
    pdf = Path(out_pdf) if out_pdf is not None else (results if results is not None and results.is_dir()
                                                      else Path.cwd()) / "agreement.pdf"
    pdf.parent.mkdir(parents=True, exist_ok=True)
    mode = "automated" if against is None else "inter-reader"
    built = report.build_report(
        per_patient, mode=mode, run_info=run_info, trial_name=trial_name,
        sources={"results": str(results) if has_results else "", "reference": str(reference_dir),
                 "against": str(against) if against is not None else ""},
        compare_info=compare_provenance_info(results if has_results else None, reference_dir, against),
    )
    html, xlsx = pdf.with_suffix(".html"), pdf.with_suffix(".xlsx")
    report.render(built.context, html, pdf)
    report.write_workbook(built, xlsx)
    primary = per_patient[per_patient["in_primary"]]
    overall = built.tables["overall"].iloc[0]
    return CompareSummary(
        pdf=pdf, xlsx=xlsx, html=html, mode=mode, n_patients=len(per_patient), n_analysed=len(primary),
        n_excluded=len(per_patient) - len(primary), icc_a1=float(overall["icc_a1"]),
        dice_mean=float(overall.get("dice_mean", math.nan)),
    )


def compare_provenance_info(results: Path | None, reference_dir: Path, against: str | Path | None = None) -> dict:
    """This comparison's audit trail: who, when (UTC), the command line, and checksums of what was read.

    Returns ``{"tool", "corelab_version", "written", "command_line", "cwd", "user", "host", "platform",
    "python_executable", "results": {"folder", "volumes_csv_sha256", "run_json_sha256"} (when a results
    folder is used), "reference": `corelab.provenance.folder_checksums`, "against": the same or absent}``.
    """
    from corelab import __version__
    from corelab.provenance import folder_checksums, invocation, utc_now

    info: dict = {"tool": "corelab compare", "corelab_version": __version__, "written": utc_now(), **invocation()}
    if results is not None:
        run_json = results / "run.json"
        info["results"] = {
            "folder": str(results),
            "volumes_csv_sha256": file_sha256(results / "volumes.csv"),
            "run_json_sha256": file_sha256(run_json) if run_json.is_file() else "",
        }
    info["reference"] = folder_checksums(reference_dir)
    if against is not None:
        info["against"] = folder_checksums(against)
    return info


def _read_run_json(results: Path) -> dict:
    path = results / "run.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise CompareError(f"{path} is not readable JSON ({error}).") from None
