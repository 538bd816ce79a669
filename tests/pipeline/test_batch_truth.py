"""A batch that tells the truth: exit codes, an end summary naming every failed row, progress a log
can follow, Ctrl-C that keeps what was done, and provenance that is only ever added to."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from pipeline_trial import SMALL_METHOD, make_trial, write_model_folder
from typer.testing import CliRunner

from corelab.cli import app
from corelab.pipeline.batch import run_batch
from corelab.pipeline.executors import _collect
from corelab.pipeline.interrupt import StopRequest
from corelab.pipeline.progress import BatchProgress, scan_line
from corelab.pipeline.scan import ScanResult
from corelab.pipeline.summary import BatchSummary, FailedRow

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """One random-weight model folder for the module (writing one costs a few seconds)."""
    return write_model_folder(tmp_path_factory.mktemp("models") / "models")


def _table(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False)


def _missing_rows(n: int) -> list[dict]:
    return [{"patient_id": f"M{i:03d}", "scan": f"scans/missing{i}.nii.gz"} for i in range(n)]


# --- exit codes and the end summary ----------------------------------------------------------------


def test_every_row_failed_exits_1_and_the_summary_names_each_row(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=0, models=models, rows=_missing_rows(23))
    out = tmp_path / "out"
    result = runner.invoke(app, ["run", str(trial.manifest), "--out", str(out), "--models", str(models)])
    assert result.exit_code == 1, result.output
    assert "23 failed" in result.output
    # The manifest's first scan row is spreadsheet row 2; the first 20 are named, the rest counted.
    assert "  row 2, M000: The scan scans/missing0.nii.gz does not exist" in result.output
    assert "  row 21, M019: " in result.output and "M020" not in result.output
    assert "... and 3 more" in result.output
    table = _table(out)  # the tables are still written, every row
    assert list(table["status"]) == ["failed"] * 23 and (out / "volumes.xlsx").is_file()


def test_a_rerun_removes_what_a_killed_run_half_wrote_in_the_output_folder_and_its_subfolders(tmp_path, models):
    # A kill can land inside any atomic write: a scan's mask or record, or volumes.csv itself, which
    # is rewritten as scans finish (CI once found a kill inside that one).
    trial = make_trial(tmp_path / "trial", n=0, models=models, rows=_missing_rows(2))
    out = tmp_path / "out"
    half_written = [out / ".tmp-0123456789ab-volumes.csv", out / "records" / ".tmp-0123456789ab-M000.json",
                    out / "masks" / ".tmp-0123456789ab-M000_infarct.nii.gz"]
    for path in half_written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    result = runner.invoke(app, ["run", str(trial.manifest), "--out", str(out), "--models", str(models)])
    assert result.exit_code == 1, result.output  # both rows fail: their scans do not exist
    assert not list(out.rglob(".tmp-*"))
    assert list(_table(out)["status"]) == ["failed", "failed"]


@pytest.mark.parametrize("problem", ["manifest", "models", "precision", "workers"])
def test_unusable_input_or_options_exit_2(tmp_path, models, problem):
    trial = make_trial(tmp_path / "trial", n=0, models=models, rows=_missing_rows(1))
    args = ["run", str(trial.manifest), "--out", str(tmp_path / "out"), "--models", str(models)]
    if problem == "manifest":
        (tmp_path / "bad.csv").write_text("name,file\nP1,a.nii.gz\n")
        args[1] = str(tmp_path / "bad.csv")
    elif problem == "models":
        args[-1] = str(tmp_path / "no-models")
    elif problem == "precision":
        args += ["--precision", "float8"]
    else:
        args += ["--workers", "0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert not (tmp_path / "out" / "volumes.csv").exists()


def test_run_help_documents_the_exit_codes():
    result = runner.invoke(app, ["run", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    for words in ("0 every row ok", "1 finished with failed rows", "2 unusable input or options", "130 interrupted"):
        assert words in text, words


def test_summary_lists_the_first_20_failures_then_counts_the_rest():
    failures = tuple(FailedRow(i + 2, f"P{i}", f"Reason {i}.") for i in range(25))
    summary = BatchSummary(Path("out"), 25, 0, 25, 0, 0, 0, 1.0, failures=failures)
    lines = str(summary).splitlines()
    assert lines[2] == "  row 2, P0: Reason 0." and lines[21] == "  row 21, P19: Reason 19."
    assert lines[22].startswith("  ... and 5 more")
    assert summary.exit_code == 1
    assert BatchSummary(Path("out"), 1, 1, 0, 0, 0, 0, 1.0).exit_code == 0
    assert BatchSummary(Path("out"), 1, 0, 1, 0, 0, 0, 1.0, n_not_run=1, interrupted="SIGINT").exit_code == 130


@pytest.mark.slow
def test_all_ok_exits_0_and_prints_one_plain_line_per_scan_without_a_terminal(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=2, models=models)
    out = tmp_path / "out"
    # CliRunner's stdout is not a terminal, as in a log file or a cluster job.
    result = runner.invoke(app, ["run", str(trial.manifest), "--out", str(out), "--models", str(models)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("scan ")]
    assert len(lines) == 2
    pattern = r"scan {}/2  (P001|P002)  ok  infarct \d+\.\d\d mL  \d+\.\d s  ETA \d:\d\d:\d\d"
    for done, line in enumerate(lines, start=1):
        assert re.fullmatch(pattern.format(done), line), line
    assert lines[-1].endswith("ETA 0:00:00")
    assert "Failed rows" not in result.output


# --- progress and stopping, piece by piece ----------------------------------------------------------


def test_plain_line_of_a_failed_scan_says_why():
    result = ScanResult(3, "P004", "failed", "The scan is an MR series, not CT.", seconds=0.25)
    assert scan_line(result, 3, 5, None) == ("scan 3/5  P004  failed  infarct -  0.2 s  ETA -:--:--  "
                                             "(The scan is an MR series, not CT.)")


def test_the_bar_shows_the_patient_and_a_median_eta(capsys):
    with BatchProgress(total=3, mode="bar") as bar:
        bar.started("P001")
        bar.finished(ScanResult(0, "P001", "failed", "x.", seconds=2.0))
        task = bar._bar.tasks[0]
        assert task.completed == 1 and task.fields["eta"] != "-:--:--"
        bar.started("P002")
        assert "P002" in bar._bar.tasks[0].description


def test_a_second_sigint_or_a_sigterm_stops_at_once_only_while_scans_run():
    told = []
    stop = StopRequest(on_first=told.append)
    stop.request(signal.SIGINT)  # outside scans: noted, never raised
    stop.request(signal.SIGINT)
    assert stop() and stop() and told == ["SIGINT"]
    with pytest.raises(KeyboardInterrupt):
        with stop.hard_stop():  # a second signal came before the scans: they do not start
            pass
    stop = StopRequest()
    with stop.hard_stop():
        stop.request(signal.SIGINT)  # the first SIGINT lets the scans in flight finish
    with pytest.raises(KeyboardInterrupt):
        with stop.hard_stop():
            stop.request(signal.SIGTERM)


class _Future:
    def __init__(self, key: str, done: bool) -> None:
        self.key, self._done, self.released = key, done, False

    def done(self) -> bool:
        return self._done

    def result(self) -> ScanResult:
        return ScanResult(int(self.key[-1]), self.key, "ok")

    def release(self) -> None:
        self.released = True


class _Client:
    def __init__(self, processing: list[str]) -> None:
        self._processing, self.cancelled = processing, []

    def run(self, function):
        class Worker:
            class state:
                executing = [type("TaskState", (), {"key": key}) for key in self._processing]

        return {"tcp://worker:1": function(Worker)}

    def cancel(self, futures) -> None:
        self.cancelled += [f.key for f in futures]


def test_a_stopped_dask_batch_cancels_the_scans_no_worker_started():
    finished, running, waiting = _Future("k-0", True), _Future("k-1", False), _Future("k-2", False)
    client = _Client(processing=["k-1"])
    results = []

    def on_result(result):
        results.append(result.patient_id)
        running._done = True  # the scan in flight finishes after the stop

    _collect(client, {finished: "job0", running: "job1", waiting: "job2"}, on_result, stop=lambda: bool(results))
    assert results == ["k-0", "k-1"]
    assert client.cancelled == ["k-2"]


# --- Ctrl-C on a real `corelab run`, then the same command again -------------------------------------


def _finished_records(folder: Path) -> set[str]:
    if not folder.is_dir():
        return set()
    return {p.stem for p in folder.glob("*.json") if not p.name.startswith(".tmp-")}


@pytest.mark.slow
def test_sigint_writes_every_row_exits_130_and_the_same_command_finishes_the_table(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=3, models=models)  # one done, one in flight, one not run
    out = tmp_path / "out"
    args = ["run", str(trial.manifest), "--out", str(out), "--models", str(models)]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen([sys.executable, "-m", "corelab", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and process.poll() is None and not _finished_records(out / "records"):
            time.sleep(0.02)
        assert process.poll() is None, f"the run ended before the interrupt: {process.communicate()}"
        during = _table(out)  # readable while the batch runs: every row, the ones to do not_run
        assert list(during["patient_id"]) == list(trial.ids)
        assert set(during["status"]) <= {"ok", "not_run"} and "not_run" in set(during["status"])
        process.send_signal(signal.SIGINT)
        stdout, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, (stdout, stderr)
    assert "SIGINT received: no new scans will start" in stderr
    assert "To resume: corelab run" in stdout
    table = _table(out)
    assert list(table["patient_id"]) == list(trial.ids)
    ok = set(table.loc[table["status"] == "ok", "patient_id"])
    not_run = table[table["status"] == "not_run"]
    assert ok == _finished_records(out / "records") and len(ok) >= 1 and len(not_run) >= 1
    assert len(ok) + len(not_run) == 3
    assert all("interrupted (SIGINT) before this scan was processed" in e for e in not_run["error"])
    first = json.loads((out / "run.json").read_text())
    assert first["interrupted"] == "SIGINT" and first["counts"]["not_run"] == len(not_run)

    resumed = runner.invoke(app, args)  # the same command again (in this process: same thread count)
    assert resumed.exit_code == 0, resumed.output
    assert f"({len(ok)} reused from an earlier run)" in resumed.output
    clean = tmp_path / "clean"
    assert runner.invoke(app, ["run", str(trial.manifest), "--out", str(clean), "--models", str(models)]).exit_code == 0
    after, reference = _table(out), _table(clean)
    assert set(after["status"]) == {"ok"}
    kept = after.set_index("patient_id")["run_id"]
    assert all(kept[pid] == first["run_id"] for pid in ok)  # reused rows keep the run that computed them
    assert len(set(kept)) == 2
    pd.testing.assert_frame_equal(after.drop(columns="run_id"), reference.drop(columns="run_id"))


@pytest.mark.slow
def test_every_run_adds_a_run_file_and_reused_rows_keep_their_run_id(tmp_path, models):
    trial = make_trial(tmp_path / "trial", n=1, models=models, rows=_missing_rows(1))
    out = tmp_path / "out"

    def run():
        return run_batch(trial.manifest, out_dir=out, models_dir=models, method=SMALL_METHOD, progress=False,
                         threads=1)

    first = run()
    second = run()
    assert (first.exit_code, second.exit_code) == (1, 1) and second.n_skipped == 1
    assert first.run_id != second.run_id
    files = sorted(p.name for p in (out / "runs").iterdir())
    assert files == sorted([first.run_id, second.run_id])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\dZ(-\d+)?\.json", first.run_id)
    latest = json.loads((out / "run.json").read_text())
    assert (out / "run.json").read_bytes() == (out / "runs" / second.run_id).read_bytes()
    from corelab.audit import file_sha256

    assert latest["run_id"] == second.run_id
    assert latest["earlier_runs"] == [{"file": f"runs/{first.run_id}",
                                       "sha256": file_sha256(out / "runs" / first.run_id)}]
    assert json.loads((out / "runs" / first.run_id).read_text())["finished"]  # the first run's file is whole
    table = _table(out).set_index("patient_id")
    assert table.loc["P001", "run_id"] == first.run_id  # computed by the first run, reused by the second
    assert table.loc["M000", "run_id"] == second.run_id  # refused again by this run's manifest check
    assert json.loads((out / "records" / "P001.json").read_text())["run_id"] == first.run_id
    assert list(table.columns).index("run_id") == list(table.columns).index("model_version") + 1
