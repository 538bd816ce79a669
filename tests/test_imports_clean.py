"""Importing corelab changes nothing global: no environment variable, no matplotlib backend or rcParams,
no pyplot. The oneDNN cache bound is set where a process that runs the CNNs starts instead."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from typer.testing import CliRunner

from corelab import ONEDNN_CACHE_VARIABLE, bound_onednn_cache
from corelab.cli import app
from corelab.config import Method
from corelab.pipeline.executors import _remote
from corelab.pipeline.scan import ScanJob
from corelab.pipeline.summary import BatchSummary


def _python(code: str, **env: str) -> dict:
    """Run ``code`` in a fresh interpreter with an almost empty environment; its last stdout line is JSON."""
    clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"), **env}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=clean, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def _without_variable(monkeypatch) -> None:
    """Remove the variable for this test; setenv first so that monkeypatch also undoes a later write."""
    monkeypatch.setenv(ONEDNN_CACHE_VARIABLE, "placeholder")
    monkeypatch.delenv(ONEDNN_CACHE_VARIABLE)


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_importing_corelab_leaves_the_environment_unchanged():
    changed = _python("""
        import json, os
        before = dict(os.environ)
        import corelab, corelab.cli, corelab.pipeline.batch, corelab.pipeline.executors
        print(json.dumps(sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))))
    """)
    assert changed == []


def test_a_value_already_in_the_environment_wins(monkeypatch):
    monkeypatch.setenv(ONEDNN_CACHE_VARIABLE, "64")
    assert bound_onednn_cache() == "64"
    assert os.environ[ONEDNN_CACHE_VARIABLE] == "64"


def test_a_dask_worker_bounds_the_cache_before_its_first_scan(monkeypatch, tmp_path):
    # The task a worker runs, with a model folder that does not exist: it fails before any CNN runs.
    _without_variable(monkeypatch)
    result = _remote(ScanJob(0, "P1", str(tmp_path / "p1.nii.gz")), str(tmp_path / "no-models"), "cpu", Method(), 1)
    assert result.status == "failed" and "card.json" in result.error
    assert os.environ[ONEDNN_CACHE_VARIABLE] == "16"


def test_corelab_run_bounds_the_cache_before_the_batch_starts(monkeypatch, tmp_path):
    _without_variable(monkeypatch)
    seen = []

    def fake_run_batch(*args, **kwargs):
        seen.append(os.environ.get(ONEDNN_CACHE_VARIABLE))
        return BatchSummary(tmp_path, 0, 0, 0, 0, 0, 0, 0.0)

    monkeypatch.setattr("corelab.pipeline.batch.run_batch", fake_run_batch)
    result = CliRunner().invoke(app, ["run", str(tmp_path / "manifest.xlsx")])
    assert result.exit_code == 0, result.output
    assert seen == ["16"]


def _tiny_trial(folder):
    """One patient as `corelab synth` lays it out: a 3-slice scan of 20 HU with a 4 x 4 "infarct"."""
    hu = np.full((3, 16, 16), 20, np.int16)
    labels = np.zeros(hu.shape, np.uint8)
    labels[1, 6:10, 6:10] = 1
    (folder / "truth").mkdir(parents=True)
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(folder / "P1.nii.gz"))
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(folder / "truth" / "P1.nii.gz"))
    pd.DataFrame({"patient_id": ["P1"], "scan": ["P1.nii.gz"]}).to_excel(folder / "manifest.xlsx", index=False)
    pd.DataFrame({"patient_id": ["P1"], "hypodensity": ["severe"], "mean_hu": [20.0], "infarct_ml": [0.016]}).to_csv(
        folder / "truth.csv", index=False)


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_figures_touch_no_matplotlib_global_state(tmp_path):
    _tiny_trial(tmp_path)
    # MPLBACKEND=svg: a backend the modules would not pick themselves, and get_backend() then reads it
    # without importing pyplot to resolve a default.
    state = _python(f"""
        import json, sys
        import matplotlib
        before = matplotlib.rcParams.copy()
        import pandas as pd
        from corelab.report import plots
        from corelab.synth import preview
        svg = plots.dice_plot(pd.DataFrame({{"dice": [0.5, 0.9], "reference_class": ["severe", "subtle"]}}))
        png = preview({str(tmp_path)!r})
        print(json.dumps({{
            "pyplot": "matplotlib.pyplot" in sys.modules,
            "backend": matplotlib.get_backend(),
            "changed": sorted(k for k in before if before[k] != matplotlib.rcParams[k]),
            "svg": "<svg" in svg and "</svg>" in svg,
            "png": png.read_bytes()[:8].hex(),
        }}))
    """, MPLBACKEND="svg")
    assert state == {"pyplot": False, "backend": "svg", "changed": [], "svg": True, "png": "89504e470d0a1a0a"}
