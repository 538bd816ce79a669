"""One scan through the method: read -> analysis grid -> regions -> CNNs -> labels -> measurements.

`process_scan` runs wherever the scan is processed (this process, or a dask worker) and writes no
file: it returns a `ScanResult` holding the label map, the input's geometry and `ScanMeta` (not its
HU), the QC image as PNG bytes and the measurements, so that outputs are written in one place
(`corelab.pipeline`) whichever way the batch runs. Every failure becomes a failed `ScanResult` with
one sentence; nothing is raised.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np

from corelab.config import Method
from corelab.errors import CorelabError
from corelab.measure import Measurements, measure_labels
from corelab.pipeline.guards import guard_flags
from corelab.pipeline.sites import BRAIN_SHIFT

if TYPE_CHECKING:
    from corelab.io.volume import ScanMeta, Volume

__all__ = ["ScanJob", "ScanResult", "process_scan", "torch_settings", "internal_error", "brain_shift_flag",
           "BRAIN_SHIFT_FLAG_HU", "reading_flags"]


@dataclass(frozen=True)
class ScanJob:
    """What a worker needs to process one manifest row (picklable, paths as text)."""

    index: int
    patient_id: str
    scan: str
    series_uid: str = ""


@dataclass(frozen=True, eq=False)
class ScanResult:
    """The outcome for one scan.

    status: "ok" or "failed"; error: "" or one sentence.
    labels: uint8 [z, y, x] on the input scan's grid as read (superior-up); spacing (mm), origin,
    direction: that grid; meta: the input's `ScanMeta`, whose ``stored_grid`` is the file's own grid
    when reading reoriented it. `label_volume` puts the four together for the mask writer; the
    scan's HU do not travel back.
    measurements: volumes (mL) and density (HU) of `labels`; intracranial_ml on the analysis grid.
    flags: sentences from reading (`reading_flags`) and preprocessing, the brain-shift flag, and the
    guards' flags on implausible results (`corelab.pipeline.guards.guard_flags`);
    qc_png: the QC image.
    brain_median_hu: median HU of the analysis region (intracranial minus CSF) on the analysis
    grid, the level brain-referenced models shift to their reference; across a site's scans it shows
    the scanner's calibration.
    scan_sha256: checksum of the input file(s); seconds: processing time; stage_seconds: that time
    per stage (read, preprocess, cnn, measure, qc), in the order they ran.
    acquisition_datetime, notes (sentences from reading: series choice, resampling), modality and
    series_uid are read from ``meta`` (None, (), "" and "" without it).
    """

    index: int
    patient_id: str
    status: str
    error: str = ""
    labels: np.ndarray | None = None
    spacing: tuple[float, float, float] | None = None
    origin: tuple[float, ...] | None = None
    direction: tuple[float, ...] | None = None
    meta: ScanMeta | None = None
    measurements: Measurements | None = None
    intracranial_ml: float | None = None
    brain_median_hu: float | None = None
    flags: tuple[str, ...] = ()
    qc_png: bytes = b""
    scan_sha256: str = ""
    seconds: float = 0.0
    stage_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def acquisition_datetime(self) -> dt.datetime | None:
        return self.meta.acquisition_datetime if self.meta is not None else None

    @property
    def notes(self) -> tuple[str, ...]:
        return tuple(self.meta.notes) if self.meta is not None else ()

    @property
    def modality(self) -> str:
        return self.meta.modality if self.meta is not None else ""

    @property
    def series_uid(self) -> str:
        return self.meta.series_uid if self.meta is not None else ""

    def label_volume(self) -> Volume:
        """`labels` as a `Volume` on the input's grid, meta included, so that
        `corelab.io.write_image` writes it onto the input file's own grid (``meta.stored_grid``).

        Raises ValueError for a failed result, which has no labels.
        """
        from corelab.io.volume import ScanMeta, Volume

        if self.labels is None or self.spacing is None:
            raise ValueError(f"The result for {self.patient_id} has no labels (status {self.status}).")
        return Volume(array=self.labels, spacing=self.spacing, origin=self.origin, direction=self.direction,
                      meta=self.meta if self.meta is not None else ScanMeta())


# A scan whose brain median lies further than this from the models' brain reference is flagged: the
# networks see it shifted by that much (normal brains on calibrated scanners lie within about 5 HU).
BRAIN_SHIFT_FLAG_HU = 8.0


def brain_shift_flag(norm, median: float | None) -> str | None:
    """A flag sentence when brain-referenced input shifts this scan by more than `BRAIN_SHIFT_FLAG_HU`.

    `median`: the scan's `corelab.segment.norm.brain_median`, the level `norm` shifts to its reference.

    >>> from corelab.segment import InputNorm
    >>> brain_shift_flag(InputNorm(brain_reference_hu=35.0), 46.0)
    "Brain shift: the brain's median is 46.0 HU, 11.0 HU above the models' reference of 35 HU (the networks saw the scan shifted by that much): check the scanner's calibration and this volume."
    >>> brain_shift_flag(InputNorm(), 46.0) is None  # absolute-HU models shift nothing
    True
    """
    if norm.brain_reference_hu is None or median is None:
        return None
    shift = norm.brain_reference_hu - median
    if abs(shift) <= BRAIN_SHIFT_FLAG_HU:
        return None
    return (f"{BRAIN_SHIFT} the brain's median is {median:.1f} HU, {abs(shift):.1f} HU "
            f"{'above' if shift < 0 else 'below'} the models' reference of {norm.brain_reference_hu:g} HU (the networks "
            "saw the scan shifted by that much): check the scanner's calibration and this volume.")


def reading_flags(volume: Volume) -> tuple[str, ...]:
    """Flag sentences for what reading invented: slices filled in a gap of the series, or uneven
    spacing resampled onto an even grid (``volume.meta.interpolated_slices``, ``resampled_spacing``,
    ``slice_gaps_mm``; slice spacing ``volume.spacing[0]`` in mm).

    >>> from corelab.io.volume import ScanMeta, Volume
    >>> meta = ScanMeta(interpolated_slices=1, resampled_spacing=True, slice_gaps_mm=(5.0, 10.0))
    >>> reading_flags(Volume(array=np.zeros((3, 1, 1)), spacing=(5.0, 1.0, 1.0), meta=meta))[0][:60]
    'Missing slices: 1 slice of the even 5.00 mm grid lay in a ga'
    """
    meta = volume.meta
    lo, hi = meta.slice_gaps_mm or (float(volume.spacing[0]),) * 2
    spacing = f"{float(volume.spacing[0]):.2f} mm"
    if meta.interpolated_slices:
        n = meta.interpolated_slices
        return (f"Missing slices: {n} slice{'s' if n > 1 else ''} of the even {spacing} grid lay in a gap of the series "
                f"(slices {lo:.2f}-{hi:.2f} mm apart) and {'were' if n > 1 else 'was'} invented by interpolating the "
                "neighbours: check this volume on the QC image.",)
    if meta.resampled_spacing:
        return (f"Uneven slice spacing: slices {lo:.2f}-{hi:.2f} mm apart were resampled onto an even {spacing} grid, "
                "so the volume is measured on interpolated slices: check this volume on the QC image.",)
    return ()


def internal_error(error: BaseException) -> str:
    """The error-column sentence for an exception corelab did not expect."""
    # One line whatever the exception held (some carry tracebacks or multi-line details).
    message = " ".join(str(error).split()).rstrip(".") or "no message"
    return f"Internal error while processing this scan: {type(error).__name__}: {message}."


class _Stopwatch:
    """Wall seconds per named stage: `lap(name)` closes the stage that ran since the last lap."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.stages: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.stages[name] = round(now - self.last, 4)
        self.last = now

    @property
    def total(self) -> float:
        return time.perf_counter() - self.start


@contextlib.contextmanager
def torch_settings(threads: int) -> Iterator[None]:
    """Deterministic torch with a fixed number of intra-op threads, restored afterwards.

    Fixed threads and deterministic algorithms make a rerun give bit-identical probabilities, hence
    bit-identical masks.
    """
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(max(1, int(threads)))
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)


def process_scan(job: ScanJob, models, *, device: str = "cpu", method: Method = Method()) -> ScanResult:
    """Run one scan through read_scan -> to_analysis_grid -> analysis_region -> segment ->
    labels_to_input_grid -> measure_labels, and render its QC image.

    Volumes are measured on the label map in the input geometry, the map that is written as the
    mask, so they equal mask voxel counts times voxel volume.
    """
    from corelab.io.read import read_scan
    from corelab.audit import scan_sha256
    from corelab.pipeline.qc import auto_class_title, png_bytes, qc_figure
    from corelab.preprocess import analysis_region, labels_to_input_grid, to_analysis_grid
    from corelab.segment.contralateral import mirror_views
    from corelab.segment.labels import segment, uses_mirror
    from corelab.segment.norm import brain_median

    clock = _Stopwatch()
    sha = ""  # kept for failed scans too: the audit trail names the exact input that failed
    try:
        sha = scan_sha256(job.scan)
        vol = read_scan(job.scan, series_uid=job.series_uid or None)
        clock.lap("read")
        grid = to_analysis_grid(vol, method.grid)
        regions = analysis_region(grid.array, grid.spacing, method)
        clock.lap("preprocess")
        # One midline registration for the mirror networks' input, the gate and the symmetry guard.
        views = mirror_views(grid.array, regions.region, grid.spacing) if uses_mirror(models) else None
        labels_grid = segment(grid.array, regions.region, models, device=device, precision=method.precision,
                              spacing=grid.spacing, views=views)
        brain_median_hu = brain_median(grid.array, regions.region)
        shift_flag = brain_shift_flag(models.norm, brain_median_hu)
        clock.lap("cnn")
        labels = np.ascontiguousarray(labels_to_input_grid(labels_grid, grid, vol), dtype=np.uint8)
        measurements = measure_labels(labels, vol.array, vol.spacing)
        # Guards on the claim (corelab.pipeline.guards), inside the try so that no scan raises; timed
        # with "measure". Without the segmentation's mirror, the registration (about 3 s) runs only for
        # claims of 10 mL or more.
        guards = guard_flags(labels_grid, grid.array, regions.region, grid.spacing,
                             mirror=views.mirror if views is not None else None)
        intracranial_ml = float(np.count_nonzero(regions.intracranial)) * grid.voxel_ml
        clock.lap("measure")
        # volumes.csv's auto_class, named as such: "class" alone would read as the reference's in a report
        title = f"{job.patient_id}   {auto_class_title(measurements)}"
        qc = png_bytes(qc_figure(vol.array, labels, vol.spacing, direction=vol.direction,
                                 measurements=measurements, title=title))
        clock.lap("qc")
    except CorelabError as error:
        return ScanResult(job.index, job.patient_id, "failed", str(error), seconds=clock.total,
                          stage_seconds=clock.stages, scan_sha256=sha)
    except Exception as error:  # noqa: BLE001 - any other failure is named in its row; the batch goes on
        return ScanResult(
            job.index, job.patient_id, "failed", internal_error(error), seconds=clock.total,
            stage_seconds=clock.stages, scan_sha256=sha,
        )
    return ScanResult(
        index=job.index,
        patient_id=job.patient_id,
        status="ok",
        labels=labels,
        spacing=tuple(float(s) for s in vol.spacing),
        origin=tuple(float(o) for o in vol.origin),
        direction=tuple(float(d) for d in vol.direction),
        meta=vol.meta,
        measurements=measurements,
        intracranial_ml=intracranial_ml,
        brain_median_hu=brain_median_hu,
        flags=(reading_flags(vol) + tuple(getattr(regions, "flags", ()) or ()) + ((shift_flag,) if shift_flag else ())
               + guards),
        qc_png=qc,
        scan_sha256=sha,
        seconds=clock.total,
        stage_seconds=clock.stages,
    )
