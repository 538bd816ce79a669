"""A batch that behaves: killed midway and rerun, and run on a 2-worker local dask cluster.

Both compare against a clean serial run of the same trial: same table, bit-identical masks.
"""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from pipeline_trial import SMALL_METHOD, make_trial, write_model_folder

from corelab.pipeline.batch import run_batch

HELPERS = Path(__file__).resolve().parents[1] / "helpers"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One random-weight model folder for the module (writing one costs a few seconds)."""
    return write_model_folder(tmp_path_factory.mktemp("models") / "models")


def _outputs(out: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    # run_id names the run that computed a row: it differs between two runs by design.
    table = pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False).drop(columns="run_id")
    masks = {p.name: sitk.GetArrayFromImage(sitk.ReadImage(str(p))) for p in sorted((out / "masks").iterdir())}
    return table, masks


def _assert_same_outputs(a: Path, b: Path) -> None:
    table_a, masks_a = _outputs(a)
    table_b, masks_b = _outputs(b)
    pd.testing.assert_frame_equal(table_a, table_b)
    assert masks_a.keys() == masks_b.keys()
    for name in masks_a:
        assert np.array_equal(masks_a[name], masks_b[name]), name


@pytest.mark.slow
def test_killed_run_resumes_without_redoing_finished_scans(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=5, models=models)
    out = tmp_path / "killed"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(HELPERS)!r})
        from pipeline_trial import SMALL_METHOD
        from corelab.pipeline.batch import run_batch
        run_batch({str(trial.manifest)!r}, out_dir={str(out)!r}, models_dir={str(trial.models)!r},
                  method=SMALL_METHOD, progress=False, threads=1)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    records = out / "records"

    def finished(folder):
        """Per-scan records that were completely written (a temporary file is a write in flight)."""
        return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()
                if p.suffix == ".json" and not p.name.startswith(".tmp-")}

    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and process.poll() is None:
            if records.is_dir() and len(finished(records)) >= 2:
                break
            time.sleep(0.02)
        assert process.poll() is None, f"the run ended before it could be killed: {process.stderr.read()!r}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL
    done_before = finished(records)
    assert 2 <= len(done_before) < 5, "the kill did not land midway"
    # volumes.csv is rewritten as scans finish: after a kill it lists every row, the unfinished ones
    # not_run, and never a row as ok whose scan did not finish.
    partial = pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False)
    assert len(partial) == 5 and set(partial["status"]) <= {"ok", "not_run"}
    assert {f"{pid}.json" for pid in partial.loc[partial["status"] == "ok", "patient_id"]} <= set(done_before)

    summary = run_batch(trial.manifest, out_dir=out, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    assert summary.n_rows == 5 and summary.n_ok == 5
    assert summary.n_skipped == len(done_before)
    after = finished(records)
    assert len(after) == 5
    assert not list(out.rglob(".tmp-*"))  # half-written files of the killed scan are cleaned up
    assert all(after[name] == stamp for name, stamp in done_before.items())  # not done twice

    clean = tmp_path / "clean"
    run_batch(trial.manifest, out_dir=clean, models_dir=trial.models, method=SMALL_METHOD, progress=False, threads=1)
    _assert_same_outputs(out, clean)


@pytest.mark.slow
def test_two_worker_dask_cluster_gives_the_serial_output(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=2, models=models)
    serial = run_batch(trial.manifest, out_dir=tmp_path / "serial", models_dir=trial.models,
                       method=SMALL_METHOD, progress=False, threads=1)
    parallel = run_batch(trial.manifest, out_dir=tmp_path / "dask", models_dir=trial.models,
                         method=SMALL_METHOD, workers=2, progress=False)
    assert serial.n_ok == parallel.n_ok == 2
    _assert_same_outputs(tmp_path / "serial", tmp_path / "dask")


def test_a_worker_reloads_a_model_folder_retrained_in_place(tmp_path):
    from corelab.pipeline.executors import worker_models

    folder = write_model_folder(tmp_path / "models", seed=1)
    first = worker_models(str(folder), "cpu")
    assert worker_models(str(folder), "cpu") is first  # the same folder and card: served from the cache
    write_model_folder(folder, seed=2)  # retrained into the same folder: new weights, new card
    second = worker_models(str(folder), "cpu")
    assert second is not first and second.checksums != first.checksums
