"""`corelab run MANIFEST`: every manifest row to a row of volumes.csv/.xlsx, a mask and a QC image.

Output folder (DESIGN.md "Outputs of corelab run"):
    volumes.csv, volumes.xlsx   one row per manifest row, manifest order (columns: see
                                `corelab.io.manifest.OUTPUT_COLUMNS`, then the manifest's own columns)
    masks/<patient_id>.nii.gz   uint8 labels in the input scan's geometry
    masks/<patient_id>.seg.dcm  the same labels as a DICOM SEG referencing the source series (DICOM
                                inputs with a labelled voxel, unless ``seg=False``; `corelab.io.seg`)
    qc/<patient_id>.png         axial slices with the labels (Figure 3 colours)
    review.html                 the whole batch on one offline page (`corelab.pipeline.review`)
    records/<patient_id>.json   one scan's result, written last; a rerun skips a scan whose record,
                                mask and QC image are present and whose input, model and method
                                checksums still match, and redoes the rest
    runs/<UTC start>.json       provenance of every run, append-only; run.json is the latest
                                (`corelab.pipeline.runs`); each row's ``run_id`` names the run that
                                computed it

volumes.csv is rewritten as scans finish (at most every `TABLE_SECONDS`), with the rows still to do
as ``not_run``, so a long batch can be read while it runs; volumes.xlsx is written when the batch
starts and when it ends. A failure in one scan never stops the batch; only an unusable manifest or
model folder does (`ManifestError`, `ModelError`), before any scan is processed. SIGINT or SIGTERM
stop it early (`corelab.pipeline.interrupt`): every row is still written, the unfinished ones
``not_run``, and the same command resumes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import socket
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

from corelab.config import Method
from corelab.errors import CorelabError
from corelab.io.manifest import Manifest, ManifestRow, read_manifest
from corelab.audit import file_sha256, scan_sha256
from corelab.io.seg import SEG_SUFFIX, SegError, build_seg, write_seg
from corelab.pipeline import runs
from corelab.pipeline.executors import ExecutorSpec, run_dask, run_serial
from corelab.pipeline.interrupt import StopRequest, stop_on_signals
from corelab.pipeline.outputs import (
    atomic_path,
    atomic_write_bytes,
    read_record,
    table_row,
    write_mask,
    write_record,
    write_tables,
)
from corelab.pipeline.progress import BatchProgress, progress_mode
from corelab.pipeline.review import write_review
from corelab.pipeline.scan import ScanJob, ScanResult
from corelab.pipeline.sites import site_column, sites_apart
from corelab.pipeline.summary import BatchSummary, FailedRow
from corelab.segment.dense import PrecisionError, precision_dtype

__all__ = ["BatchSummary", "BatchOptionError", "FailedRow", "run_batch", "RECORD_VERSION", "TABLE_SECONDS"]

# 2: flags name what reading invented (missing slices, resampled spacing) and feed needs_review;
# a version-1 record lacks them, so its scan is done again rather than reused unflagged.
RECORD_VERSION = 2
TABLE_SECONDS = 2.0  # volumes.csv is rewritten at most this often while scans finish


class BatchOptionError(CorelabError):
    """An option of `run_batch` cannot be used (e.g. fewer than one worker)."""


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
    seg: bool = True,
) -> BatchSummary:
    """Segment every scan of the manifest and write the output folder (see the module docstring).

    workers: 1 runs in this process; N > 1 starts a local dask cluster of N processes.
    scheduler: address of a running dask scheduler (e.g. "tcp://host:8786"); scans, models folder
        and corelab must be reachable from its workers under the same paths.
    device: "cpu" or "cuda". models_dir: model folder, default the shipped ``models/``.
    progress: show progress: a bar with ETA on stderr on a terminal, else a line per finished scan
        on stdout (`corelab.pipeline.progress`).
    threads: torch threads per scan; default every core in this process, ``cpu_count // workers``
        per local dask worker, ``cpu_count // nthreads`` on an outside cluster's workers.
    seg: write ``masks/<patient_id>.seg.dcm`` beside the mask of every DICOM input (`corelab.io.seg`);
        written here, from the result and the source headers, so nothing more travels to workers.

    A SIGINT or SIGTERM while it runs stops it early and still returns a summary (``interrupted``
    set, unfinished rows ``not_run``); see `corelab.pipeline.interrupt`.
    """
    from corelab.segment.folder import default_models_dir, load_models

    _check_options(workers, threads, method)
    stop = StopRequest()
    with stop_on_signals(stop):
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
        runs.archive_unlisted_run_json(out)
        run_id = runs.new_run_id(out, started)
        run = runs.provenance(manifest, models, params, device=device, workers=workers, scheduler=scheduler,
                              threads=threads, started=started, run_id=run_id,
                              earlier=runs.earlier_runs(out, run_id))
        run["parameters"]["dicom_seg"] = seg  # an output choice: not in params, so it never forces a rerun
        runs.write_run(out, run)

        outcomes, jobs, skipped = _plan_rows(out, manifest, models, params, stop, seg=seg)
        table = _LiveTable(out, manifest, model_version=models.version, method=method, run_id=run_id,
                           started=started)
        table.write(outcomes, excel=True)

        def on_result(result: ScanResult) -> None:
            outcomes[result.index] = _save_result(out, manifest.rows[result.index], result, models, params, run_id,
                                                  seg=seg)
            table.write(outcomes)

        header = (f"{len(manifest.rows)} rows: {len(jobs)} to segment, {skipped} reused from an earlier run, "
                  f"{sum(bool(r.error) for r in manifest.rows)} refused by the manifest check; "
                  f"{out / 'volumes.csv'} is updated as scans finish.")
        _execute(jobs, on_result, stop=stop, mode=progress_mode(progress), header=header, models=models,
                 models_path=models_path, device=device, method=method, workers=workers, scheduler=scheduler,
                 threads=threads)

        rows = table.rows(outcomes, interrupted=stop.signal_name)
        write_tables(rows, manifest.extra_columns, out)
        write_review(rows, out, run_id=run_id)
        summary = _summary(out, manifest, rows, skipped, seconds=time.perf_counter() - clock,
                           interrupted=stop.signal_name, run_id=run_id)
        _finish_provenance(out, run, summary, runs.inputs(out, manifest, outcomes, _record_path))
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
    """Create masks/, qc/, records/ and runs/ under ``out`` and remove what a killed run half wrote
    there and in ``out`` itself."""
    subfolders = [out / sub for sub in ("masks", "qc", "records", runs.RUNS)]
    for folder in subfolders:
        folder.mkdir(parents=True, exist_ok=True)
    # Half-written files of a killed run, per scan and the batch tables (volumes.csv is rewritten as
    # scans finish, so a kill can land inside its write); the finished ones were moved into place.
    for folder in (out, *subfolders):
        for stale in folder.glob(".tmp-*"):
            stale.unlink(missing_ok=True)


def _plan_rows(
    out: Path, manifest: Manifest, models, params: dict[str, Any], stop: StopRequest, *, seg: bool = True
) -> tuple[dict[int, dict[str, Any]], list[ScanJob], int]:
    """Per manifest row, its outcome when it needs no processing (refused by the manifest check, or
    reusable from an earlier run), else a job; returns (outcomes by row index, jobs, reused count).
    A stop request ends the planning: the rows not looked at yet get neither (they are not run)."""
    outcomes: dict[int, dict[str, Any]] = {}
    jobs: list[ScanJob] = []
    skipped = 0
    for index, row in enumerate(manifest.rows):
        if stop.signal_name:  # checksumming every earlier scan can take a while on a large trial
            break
        if row.error:
            outcomes[index] = {"status": "failed", "error": row.error}
            continue
        record = _reusable_record(out, row, models, params, seg=seg)
        if record is not None:
            outcomes[index] = record
            skipped += 1
        else:
            jobs.append(ScanJob(index, row.patient_id, str(row.scan), row.series_uid))
    return outcomes, jobs, skipped


class _LiveTable:
    """volumes.csv while the batch runs: the rows done so far as they are, the others ``not_run``
    with a sentence saying why (still to do, or the batch was interrupted before them)."""

    def __init__(self, out: Path, manifest: Manifest, *, model_version: str, method: Method, run_id: str,
                 started: dt.datetime) -> None:
        self.out, self.manifest, self.model_version, self.window = out, manifest, model_version, method.window
        self.run_id, self.started = run_id, started
        self._written = -float("inf")

    def rows(self, outcomes: dict[int, dict[str, Any]], *, interrupted: str = "") -> list[dict[str, Any]]:
        if interrupted:
            error = (f"Not run: the batch was interrupted ({interrupted}) before this scan was processed; run "
                     "the same command again to process it.")
        else:
            error = (f"Not run yet: the batch started {self.started:%Y-%m-%d %H:%M} UTC (run {self.run_id}) had "
                     "not processed this scan when this table was written.")
        waiting = {"status": "not_run", "error": error}
        return [table_row(row, outcomes.get(i, waiting), model_version=self.model_version, window=self.window,
                          run_id=self.run_id) for i, row in enumerate(self.manifest.rows)]

    def write(self, outcomes: dict[int, dict[str, Any]], *, excel: bool = False) -> None:
        """Rewrite volumes.csv (and volumes.xlsx with ``excel``); a csv-only rewrite is skipped when
        the last one is less than `TABLE_SECONDS` old."""
        now = time.monotonic()
        if not excel and now - self._written < TABLE_SECONDS:
            return
        write_tables(self.rows(outcomes), self.manifest.extra_columns, self.out, excel=excel)
        self._written = now


def _execute(
    jobs: list[ScanJob],
    on_result: Callable[[ScanResult], None],
    *,
    stop: StopRequest,
    mode: str,
    header: str,
    models,
    models_path: Path,
    device: str,
    method: Method,
    workers: int,
    scheduler: str | None,
    threads: int | None,
) -> None:
    """Process ``jobs`` in this process or on dask, handing each result to ``on_result`` here,
    until they are done or ``stop`` says to take no more (a hard stop abandons the scans in flight)."""
    with BatchProgress(total=len(jobs), mode=mode) as bar:
        bar.note(header)
        stop.on_first = lambda name: bar.note(
            f"corelab: {name} received: no new scans will start; the scans in flight finish first (Ctrl-C "
            "again stops them now). Every row is written to volumes.csv before corelab exits.")

        def handle(result: ScanResult) -> None:
            on_result(result)
            bar.finished(result)

        try:
            with stop.hard_stop():
                if workers > 1 or scheduler:
                    spec = ExecutorSpec(workers=workers, scheduler=scheduler)
                    run_dask(jobs, spec=spec, models_dir=str(models_path), device=device, method=method,
                             on_result=handle, threads=threads, stop=stop)
                else:
                    run_serial(jobs, models, device=device, method=method, on_result=handle,
                               threads=threads or os.cpu_count() or 1, stop=stop,
                               on_start=lambda job: bar.started(job.patient_id))
        except KeyboardInterrupt:
            stop.signal_name = stop.signal_name or "SIGINT"


def _summary(out: Path, manifest: Manifest, rows: list[dict[str, Any]], skipped: int, *, seconds: float,
             interrupted: str, run_id: str) -> BatchSummary:
    failures = tuple(FailedRow(m.row, r["patient_id"], r["error"])
                     for m, r in zip(manifest.rows, rows) if r["status"] == "failed")
    return BatchSummary(
        out_dir=out,
        n_rows=len(rows),
        n_ok=sum(r["status"] == "ok" for r in rows),
        n_failed=len(failures),
        n_skipped=skipped,
        n_out_of_window=sum(r["in_window"] is False for r in rows),
        n_window_unknown=sum(r["in_window"] is None and r["status"] == "ok" for r in rows),
        seconds=seconds,
        n_not_run=sum(r["status"] == "not_run" for r in rows),
        interrupted=interrupted,
        failures=failures,
        run_id=run_id,
        sites_apart=tuple(sites_apart(rows, site_column(manifest.extra_columns))),
    )


def _finish_provenance(out: Path, run: dict[str, Any], summary: BatchSummary,
                       inputs: list[dict[str, str]]) -> None:
    """Complete this run's file (end time, counts, per-row inputs) and write it and run.json again."""
    finished = dt.datetime.now(dt.timezone.utc)
    run.update(
        finished=finished.isoformat(timespec="seconds"),
        seconds=round(summary.seconds, 1),
        interrupted=summary.interrupted or None,
        counts={"rows": summary.n_rows, "ok": summary.n_ok, "failed": summary.n_failed,
                "not_run": summary.n_not_run, "reused": summary.n_skipped},
        sites_apart=list(summary.sites_apart),
        inputs=inputs,
    )
    runs.write_run(out, run)


def _parameters(method: Method) -> dict[str, Any]:
    return {"method": asdict(method), "record_version": RECORD_VERSION}


def _params_sha(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def _record_path(out: Path, patient_id: str) -> Path:
    return out / "records" / f"{patient_id}.json"


def _reusable_record(out: Path, row: ManifestRow, models, params: dict[str, Any], *,
                     seg: bool = True) -> dict[str, Any] | None:
    """The earlier record of this row when its outputs are complete and still valid, else None.

    With ``seg``, a DICOM scan's record made without a SEG (``--no-seg``, or before corelab wrote
    SEGs) is not reused, and a SEG it names must be unchanged."""
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
    if seg and record.get("modality") and not record.get("seg_requested"):
        return None
    for key in ("mask", "qc") + (("seg",) if seg and record.get("seg") else ()):
        path = out / record.get(key, "")
        if not path.is_file() or file_sha256(path) != record.get(f"{key}_sha256"):
            return None
    if scan_sha256(row.scan) != record.get("scan_sha256"):
        return None
    return record


def _save_result(out: Path, row: ManifestRow, result: ScanResult, models, params: dict[str, Any],
                 run_id: str, *, seg: bool = True) -> dict[str, Any]:
    """Write one scan's mask, QC image, DICOM SEG (``seg`` and a DICOM input) and (last) its record,
    which names the run (``run_id``) that computed it; return the record."""
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
        "run_id": run_id,
    }
    if result.status == "ok":
        mask_rel, qc_rel = f"masks/{row.patient_id}.nii.gz", f"qc/{row.patient_id}.png"
        # With its meta, so the mask goes back onto the input file's own grid (meta.stored_grid).
        like = result.label_volume()
        write_mask(like.array, like, out / mask_rel)
        atomic_write_bytes(out / qc_rel, result.qc_png)
        seg_rel, seg_note = _save_seg(out, row.patient_id, like, models.version) if seg else ("", "")
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
            notes=list(result.notes) + ([seg_note] if seg_note else []),
            stage_seconds=dict(result.stage_seconds),
            seg_requested=seg,
            seg=seg_rel,
            seg_sha256=file_sha256(out / seg_rel) if seg_rel else "",
        )
        if not seg_rel:  # an earlier run's SEG would not match this mask
            (out / "masks" / f"{row.patient_id}{SEG_SUFFIX}").unlink(missing_ok=True)
    write_record(_record_path(out, row.patient_id), record)
    return record


def _save_seg(out: Path, patient_id: str, like, model_version: str) -> tuple[str, str]:
    """Write ``masks/<patient_id>.seg.dcm`` for a DICOM input (``like.meta.source_files``); return
    its path relative to ``out`` ("" when none was written) and a sentence for read_notes ("" when
    there is nothing to say): why none was written, or that its frames lie on the mask's own grid."""
    if not like.meta.source_files:
        return "", ""
    try:
        built = build_seg(like, model_version=model_version)
    except SegError as error:  # the scan's volumes stand; the sentence says why there is no SEG
        return "", str(error)
    except Exception as error:  # noqa: BLE001 - a SEG that cannot be made must not stop the batch; named in read_notes
        message = " ".join(str(error).split()).rstrip(".") or "no message"
        return "", f"No DICOM SEG was written: internal error {type(error).__name__}: {message}."
    seg_rel = f"masks/{patient_id}{SEG_SUFFIX}"
    with atomic_path(out / seg_rel) as tmp:
        write_seg(built, tmp)
    return seg_rel, built.note
