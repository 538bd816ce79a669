"""Where scans are processed: in this process, on a local dask cluster, or on an existing one.

All three executors call `corelab.pipeline.scan.process_scan` and hand each `ScanResult` back to the
caller's ``on_result`` in this process, which writes the outputs; so the output is the same
whichever executor ran.

Threads. The CNNs run on torch's intra-op threads, so a dask worker gets one dask thread (one scan
at a time) and ``cpu_count // workers`` torch threads: the machine's cores are shared between
worker processes rather than oversubscribed. In this process (``workers=1``) torch gets every
core. The thread count is fixed per command line, so a rerun of the same command is bit-identical.

Models are loaded once per worker process and kept for that process's later scans. A worker caps
oneDNN's primitive cache before its first scan (`corelab.bound_onednn_cache`), so its memory stays
bounded on an outside cluster too.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from corelab import bound_onednn_cache
from corelab.audit import file_sha256
from corelab.config import Method
from corelab.errors import CorelabError
from corelab.pipeline.scan import ScanJob, ScanResult, internal_error, process_scan, torch_settings

__all__ = ["ExecutorSpec", "run_serial", "run_dask", "worker_models", "lost_scan"]

# One ModelSet per (folder, device, card) per process: loading re-reads and re-verifies the weights,
# and a dask worker keeps serving scans of the same batch. The card's checksum is in the key, so a
# long-lived worker of an outside scheduler reloads a folder that was retrained in place (its card
# lists the new weights' checksums) instead of serving the old networks under the new card's name.
_MODEL_CACHE: dict[tuple[str, str, str], object] = {}


@dataclass(frozen=True)
class ExecutorSpec:
    """How to run: local processes (``workers``) or an existing scheduler address."""

    workers: int = 1
    scheduler: str | None = None


def worker_models(models_dir: str, device: str):
    """The `ModelSet` of ``models_dir`` for this process, loaded on first use."""
    from corelab.segment.folder import load_models

    card = Path(models_dir) / "card.json"
    key = (str(models_dir), str(device), file_sha256(card) if card.is_file() else "")
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_models(models_dir, device=device)
    return _MODEL_CACHE[key]


def _remote(job: ScanJob, models_dir: str, device: str, method: Method, threads: int | None) -> ScanResult:
    """The task a dask worker runs for one scan."""
    bound_onednn_cache()  # a worker not started by `corelab run` (outside scheduler) did not inherit it
    if threads is None:  # an outside cluster: share this worker machine's cores between its threads
        try:
            from distributed import get_worker

            threads = max(1, (os.cpu_count() or 1) // max(1, get_worker().state.nthreads))
        except (ImportError, ValueError, AttributeError):
            threads = 1
    try:
        models = worker_models(models_dir, device)
    except Exception as error:  # noqa: BLE001 - reported in the row (e.g. models not reachable from this worker)
        message = str(error) if isinstance(error, CorelabError) else internal_error(error)
        return ScanResult(job.index, job.patient_id, "failed", message)
    with torch_settings(threads):
        return process_scan(job, models, device=device, method=method)


def run_serial(
    jobs: Iterable[ScanJob],
    models,
    *,
    device: str,
    method: Method,
    on_result: Callable[[ScanResult], None],
    threads: int = 1,
    stop: Callable[[], bool] | None = None,
    on_start: Callable[[ScanJob], None] | None = None,
) -> None:
    """Process ``jobs`` one after another in this process with the already loaded ``models``.

    ``stop``: asked before each scan; once it returns True no further scan starts.
    ``on_start``: told each job as it starts (e.g. to show the patient being segmented).
    """
    with torch_settings(threads):
        for job in jobs:
            if stop is not None and stop():
                return
            if on_start is not None:
                on_start(job)
            on_result(process_scan(job, models, device=device, method=method))


def lost_scan(job: ScanJob, error: BaseException) -> ScanResult:
    """The failed result of a scan whose dask task raised instead of returning a ScanResult.

    >>> from distributed import KilledWorker
    >>> lost_scan(ScanJob(0, "P1", "p1.nii.gz"), KilledWorker("corelab-x-0", None, 3)).error[:40]
    'The worker processing this scan died on '
    """
    if type(error).__name__ == "KilledWorker":
        # dask retried the scan on fresh workers and each died: out of memory (the nanny kills a
        # worker over its limit) or a crash in a native library. Other scans are not affected.
        return ScanResult(job.index, job.patient_id, "failed",
                          "The worker processing this scan died on every try (out of memory or a crash in a "
                          "native library); the scan was not processed.")
    return ScanResult(job.index, job.patient_id, "failed", internal_error(error))


def run_dask(
    jobs: list[ScanJob],
    *,
    spec: ExecutorSpec,
    models_dir: str,
    device: str,
    method: Method,
    on_result: Callable[[ScanResult], None],
    threads: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Process ``jobs`` on dask: a local cluster of ``spec.workers`` processes (1 thread each), or
    the cluster at ``spec.scheduler``. Results come back here as they finish. Once ``stop()``
    returns True the scans no worker has started are cancelled; the ones in flight still finish."""
    from distributed import Client, LocalCluster

    if not jobs:
        return
    cluster = None
    if spec.scheduler:
        client = Client(spec.scheduler, timeout="30s")
    else:
        with _children_ignore_sigint():
            cluster = LocalCluster(
                n_workers=spec.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
        client = Client(cluster)
        threads = threads or max(1, (os.cpu_count() or 1) // spec.workers)
    try:
        run = uuid.uuid4().hex[:8]
        futures = {
            client.submit(_remote, job, models_dir, device, method, threads, key=f"corelab-{run}-{job.index}", pure=False): job
            for job in jobs
        }
        _collect(client, futures, on_result, stop)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _collect(client, futures: dict, on_result: Callable[[ScanResult], None], stop: Callable[[], bool] | None) -> None:
    """Hand each future's result to ``on_result`` as it finishes. Polled rather than blocking on the
    next result, so a stop request is seen within a tenth of a second, not after the next scan."""
    pending = dict(futures)
    stopping = False
    while pending:
        if not stopping and stop is not None and stop():
            stopping = True
            _cancel_not_started(client, pending)
        done = [future for future in pending if future.done()]
        if not done:
            time.sleep(0.1)
            continue
        for future in done:
            job = pending.pop(future)
            try:
                result = future.result()
            except Exception as error:  # noqa: BLE001 - a lost worker fails this scan only
                result = lost_scan(job, error)
            on_result(result)
            future.release()


def _executing(dask_worker) -> list[str]:
    """Keys of the tasks this worker is executing (run on each worker by `_cancel_not_started`)."""
    return [str(task.key) for task in dask_worker.state.executing]


def _cancel_not_started(client, pending: dict) -> None:
    """Cancel the futures of ``pending`` that no worker is executing, and drop them from it. (The
    scheduler's "processing" also counts tasks queued on a worker behind the running one.)"""
    busy = {key for keys in client.run(_executing).values() for key in keys}
    waiting = [future for future in pending if str(future.key) not in busy]
    if waiting:
        client.cancel(waiting)
    for future in waiting:
        pending.pop(future)


@contextlib.contextmanager
def _children_ignore_sigint() -> Iterator[None]:
    """Processes started inside the block inherit an ignored SIGINT. A terminal's Ctrl-C reaches
    every process of its group: without this it kills the local workers and the scans in flight,
    where `corelab run` means to let them finish (`corelab.pipeline.interrupt`). A SIGINT while the
    workers start (a few seconds) is ignored by this process too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
