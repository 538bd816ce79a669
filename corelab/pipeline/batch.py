"""`corelab run MANIFEST`: every manifest row to a row of volumes.csv/.xlsx, a mask and a QC image.

Output folder (DESIGN.md "Outputs of corelab run"):
    volumes.csv, volumes.xlsx   one row per manifest row, manifest order (columns: see
                                `corelab.io.manifest.OUTPUT_COLUMNS`, then the manifest's own columns)
    masks/<patient_id>.nii.gz   uint8 labels in the input scan's geometry
    qc/<patient_id>.png         axial slices with the labels (Figure 3 colours)
    records/<patient_id>.json   one scan's result, written last; a rerun skips a scan whose record,
                                mask and QC image are present and whose input, model and method
                                checksums still match, and redoes the rest
    run.json                    provenance: who (user, host), when (UTC start/end), what (command line,
                                corelab and dependency versions, model, manifest and per-scan input
                                checksums, parameters); see `_provenance` and `_inputs`

A failure in one scan never stops the batch; only an unusable manifest or model folder does
(`ManifestError`, `ModelError`), before any scan is processed.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

from corelab.audit import invocation, package_versions
from corelab.config import Method
from corelab.errors import CorelabError
from corelab.io.manifest import Manifest, ManifestRow, read_manifest
from corelab.pipeline.executors import ExecutorSpec, run_dask, run_serial
from corelab.pipeline.outputs import (
    atomic_write_bytes,
    atomic_write_text,
    file_sha256,
    read_record,
    scan_sha256,
    table_row,
    write_mask,
    write_record,
    write_tables,
)
from corelab.pipeline.scan import ScanJob, ScanResult
from corelab.segment.dense import PrecisionError, precision_dtype

__all__ = ["BatchSummary", "BatchOptionError", "run_batch", "RECORD_VERSION"]

RECORD_VERSION = 1


class BatchOptionError(CorelabError):
    """An option of `run_batch` cannot be used (e.g. fewer than one worker)."""


@dataclass(frozen=True)
class BatchSummary:
    """What a batch did.

    out_dir: the output folder. n_rows: manifest rows. n_ok / n_failed: rows by status.
    n_skipped: ok rows whose outputs were reused from an earlier run. n_out_of_window: rows with
    in_window false; n_window_unknown: rows with in_window empty. seconds: wall time.
    """

    out_dir: Path
    n_rows: int
    n_ok: int
    n_failed: int
    n_skipped: int
    n_out_of_window: int
    n_window_unknown: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.n_rows} scans: {self.n_ok} ok ({self.n_skipped} reused from an earlier run), "
            f"{self.n_failed} failed, {self.n_out_of_window} outside the imaging window, "
            f"{self.n_window_unknown} with unknown timing; results in {self.out_dir} ({self.seconds:.0f} s)."
        )


def run_batch(
    manifest_path: str | Path,
    *,
    out_dir: str | Path | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    device: str = "cpu",
    models_dir: str | Path | None = None,
    method: Method = Method(),
    progress: bool = True,
    threads: int | None = None,
) -> BatchSummary:
    """Segment every scan of the manifest and write the output folder (see the module docstring).

    workers: 1 runs in this process; N > 1 starts a local dask cluster of N processes.
    scheduler: address of a running dask scheduler (e.g. "tcp://host:8786"); scans, models folder
        and corelab must be reachable from its workers under the same paths.
    device: "cpu" or "cuda". models_dir: model folder, default the shipped ``models/``.
    progress: show a progress bar with ETA on stderr.
    threads: torch threads per scan; default every core in this process, ``cpu_count // workers``
        per local dask worker, ``cpu_count // nthreads`` on an outside cluster's workers.
    """
    from corelab.segment.folder import default_models_dir, load_models

    _check_options(workers, threads, method)
    started = dt.datetime.now(dt.timezone.utc)
    clock = time.perf_counter()
    manifest = read_manifest(manifest_path)
    out = Path(out_dir) if out_dir is not None else manifest.path.parent / "corelab-results"
    out = out.expanduser().resolve()
    models_path = Path(models_dir).expanduser().resolve() if models_dir is not None else default_models_dir()
    # Loaded here even for dask runs: a bad model folder stops the batch before any scan, and the
    # checksums decide which earlier results can be reused.
    models = load_models(models_path, device="cpu" if (workers > 1 or scheduler) else device)
    # The analysis grid belongs to the model: networks only work on the grid they were trained on.
    method = replace(method, grid=models.grid)
    params = _parameters(method)
    _prepare_output_folder(out)
    provenance = _provenance(manifest, models, params, device, workers, scheduler, threads, started)
    atomic_write_text(out / "run.json", json.dumps({**provenance, "finished": None}, indent=1) + "\n")

    outcomes, jobs, skipped = _plan_rows(out, manifest, models, params)

    def on_result(result: ScanResult) -> None:
        outcomes[result.index] = _save_result(out, manifest.rows[result.index], result, models, params)

    _execute(jobs, on_result, models=models, models_path=models_path, device=device, method=method,
             workers=workers, scheduler=scheduler, threads=threads, progress=progress)

    rows = [table_row(row, outcomes[i], model_version=models.version, window=method.window)
            for i, row in enumerate(manifest.rows)]
    write_tables(rows, manifest.extra_columns, out)
    summary = _summary(out, rows, skipped, seconds=time.perf_counter() - clock)
    _finish_provenance(out, provenance, summary, _inputs(out, manifest, outcomes))
    return summary


def _check_options(workers: int, threads: int | None, method: Method) -> None:
    """Refuse unusable options with `BatchOptionError`, before anything is read or written."""
    if workers < 1 or (threads is not None and threads < 1):
        raise BatchOptionError(f"Workers and threads must be 1 or more, not {workers} and {threads}.")
    try:  # before any scan: a typo must not fail every row one by one
        precision_dtype(method.precision)
    except PrecisionError as error:
        raise BatchOptionError(str(error)) from error


def _prepare_output_folder(out: Path) -> None:
    """Create masks/, qc/ and records/ under ``out`` and remove what a killed run half wrote."""
    for sub in ("masks", "qc", "records"):
        (out / sub).mkdir(parents=True, exist_ok=True)
        # Half-written files of a killed run; the finished ones were moved into place already.
        for stale in (out / sub).glob(".tmp-*"):
            stale.unlink(missing_ok=True)


def _plan_rows(
    out: Path, manifest: Manifest, models, params: dict[str, Any]
) -> tuple[dict[int, dict[str, Any]], list[ScanJob], int]:
    """Per manifest row, its outcome when it needs no processing (refused by the manifest check, or
    reusable from an earlier run), else a job; returns (outcomes by row index, jobs, reused count)."""
    outcomes: dict[int, dict[str, Any]] = {}
    jobs: list[ScanJob] = []
    skipped = 0
    for index, row in enumerate(manifest.rows):
        if row.error:
            outcomes[index] = {"status": "failed", "error": row.error}
            continue
        record = _reusable_record(out, row, models, params)
        if record is not None:
            outcomes[index] = record
            skipped += 1
        else:
            jobs.append(ScanJob(index, row.patient_id, str(row.scan), row.series_uid))
    return outcomes, jobs, skipped


def _execute(
    jobs: list[ScanJob],
    on_result: Callable[[ScanResult], None],
    *,
    models,
    models_path: Path,
    device: str,
    method: Method,
    workers: int,
    scheduler: str | None,
    threads: int | None,
    progress: bool,
) -> None:
    """Process ``jobs`` in this process or on dask, handing each result to ``on_result`` here."""
    with _Progress(total=len(jobs), enabled=progress) as bar:
        def handle(result: ScanResult) -> None:
            on_result(result)
            bar.advance()

        if workers > 1 or scheduler:
            spec = ExecutorSpec(workers=workers, scheduler=scheduler)
            run_dask(jobs, spec=spec, models_dir=str(models_path), device=device, method=method,
                     on_result=handle, threads=threads)
        else:
            run_serial(jobs, models, device=device, method=method, on_result=handle,
                       threads=threads or os.cpu_count() or 1)


def _summary(out: Path, rows: list[dict[str, Any]], skipped: int, *, seconds: float) -> BatchSummary:
    return BatchSummary(
        out_dir=out,
        n_rows=len(rows),
        n_ok=sum(r["status"] == "ok" for r in rows),
        n_failed=sum(r["status"] == "failed" for r in rows),
        n_skipped=skipped,
        n_out_of_window=sum(r["in_window"] is False for r in rows),
        n_window_unknown=sum(r["in_window"] is None and r["status"] == "ok" for r in rows),
        seconds=seconds,
    )


def _finish_provenance(out: Path, provenance: dict[str, Any], summary: BatchSummary,
                       inputs: list[dict[str, str]]) -> None:
    """Complete run.json (end time, counts, per-row inputs) and write it again."""
    finished = dt.datetime.now(dt.timezone.utc)
    provenance.update(
        finished=finished.isoformat(timespec="seconds"),
        seconds=round(summary.seconds, 1),
        counts={"rows": summary.n_rows, "ok": summary.n_ok, "failed": summary.n_failed,
                "reused": summary.n_skipped},
        inputs=inputs,
    )
    atomic_write_text(out / "run.json", json.dumps(provenance, indent=1) + "\n")


def _parameters(method: Method) -> dict[str, Any]:
    return {"method": asdict(method), "record_version": RECORD_VERSION}


def _params_sha(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def _record_path(out: Path, patient_id: str) -> Path:
    return out / "records" / f"{patient_id}.json"


def _reusable_record(out: Path, row: ManifestRow, models, params: dict[str, Any]) -> dict[str, Any] | None:
    """The earlier record of this row when its outputs are complete and still valid, else None."""
    record = read_record(_record_path(out, row.patient_id))
    if not record or record.get("status") != "ok":
        return None
    same_job = (
        record.get("scan") == str(row.scan)
        and record.get("series_uid_requested", "") == row.series_uid
        and record.get("model_checksums") == dict(models.checksums)
        and record.get("parameters_sha256") == _params_sha(params)
    )
    if not same_job:
        return None
    for key in ("mask", "qc"):
        path = out / record.get(key, "")
        if not path.is_file() or file_sha256(path) != record.get(f"{key}_sha256"):
            return None
    if scan_sha256(row.scan) != record.get("scan_sha256"):
        return None
    return record


def _save_result(out: Path, row: ManifestRow, result: ScanResult, models, params: dict[str, Any]) -> dict[str, Any]:
    """Write one scan's mask, QC image and (last) its record; return the record."""
    record: dict[str, Any] = {
        "record_version": RECORD_VERSION,
        "patient_id": row.patient_id,
        "status": result.status,
        "error": result.error,
        "scan": str(row.scan),
        "series_uid_requested": row.series_uid,
        "model_version": models.version,
        "model_checksums": dict(models.checksums),
        "parameters_sha256": _params_sha(params),
        "seconds": round(result.seconds, 2),
        "scan_sha256": result.scan_sha256,
        "finished": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"),
        "host": socket.gethostname(),
    }
    if result.status == "ok":
        mask_rel, qc_rel = f"masks/{row.patient_id}.nii.gz", f"qc/{row.patient_id}.png"
        # With its meta, so the mask goes back onto the input file's own grid (meta.stored_grid).
        like = result.label_volume()
        write_mask(like.array, like, out / mask_rel)
        atomic_write_bytes(out / qc_rel, result.qc_png)
        m = result.measurements
        record.update(
            series_uid=result.series_uid,
            modality=result.modality,
            mask=mask_rel,
            mask_sha256=file_sha256(out / mask_rel),
            qc=qc_rel,
            qc_sha256=file_sha256(out / qc_rel),
            measurements={**asdict(m), "voxel_counts": list(m.voxel_counts)},
            intracranial_ml=result.intracranial_ml,
            brain_median_hu=result.brain_median_hu,
            acquisition_datetime=result.acquisition_datetime.isoformat() if result.acquisition_datetime else None,
            flags=list(result.flags),
            notes=list(result.notes),
            stage_seconds=dict(result.stage_seconds),
        )
    write_record(_record_path(out, row.patient_id), record)
    return record


def _provenance(manifest: Manifest, models, params, device, workers, scheduler, threads, started) -> dict[str, Any]:
    """run.json's who/when/what, written before the first scan (``finished`` and ``inputs`` follow)."""
    return {
        "tool": "corelab run",
        "versions": package_versions(),
        **invocation(),
        "cpu_count": os.cpu_count(),
        "manifest": str(manifest.path),
        "manifest_sha256": file_sha256(manifest.path),
        "models": {"folder": str(models.folder), "version": models.version, "checksums": dict(models.checksums),
                   "cutoffs": dict(models.cutoffs), "smoothing_mm": models.smoothing_mm,
                   "brain_reference_hu": models.norm.brain_reference_hu},
        "parameters": {**params, "device": device, "workers": workers, "scheduler": scheduler, "threads": threads},
        "started": started.isoformat(timespec="seconds"),
    }


def _inputs(out: Path, manifest: Manifest, outcomes: dict[int, dict[str, Any]]) -> list[dict[str, str]]:
    """Per manifest row, the scan path as given and the checksum of the bytes that were segmented
    ("" when the row failed before its scan was read); the full result is in ``record``."""
    rows = []
    for index, row in enumerate(manifest.rows):
        outcome = outcomes.get(index, {})
        has_record = "record_version" in outcome  # rows refused by the manifest check have none
        rows.append({
            "patient_id": row.patient_id,
            "scan": str(row.scan) if row.scan else "",
            "scan_sha256": outcome.get("scan_sha256", ""),
            "status": outcome.get("status", "failed"),
            "record": _record_path(out, row.patient_id).relative_to(out).as_posix() if has_record else "",
        })
    return rows


class _Progress:
    """A rich progress bar with ETA on stderr (a no-op when disabled)."""

    def __init__(self, *, total: int, enabled: bool) -> None:
        self.total, self.enabled, self._progress, self._task = total, enabled and total > 0, None, None

    def __enter__(self) -> "_Progress":
        if self.enabled:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("segmenting"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True),
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("scans", total=self.total)
        return self

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
