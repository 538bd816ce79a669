"""The background family: lesions drawn into a given head CT (`corelab.synth.background`).

The fast tests use a procedural phantom written as NIfTI as the "real" background: its HU, noise
and artefacts must survive everywhere except in the drawn lesions. The slow test does the same on
the real head CT (InVesalius' Cranium.inv3) when it is on this machine.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from real_head import read_inv3, real_head_path
from typer.testing import CliRunner

from corelab.cli import app
from corelab.config import CLASS_RANGES_HU, CLASSES, LABELS
from corelab.io.read import read_scan
from corelab.io.volume import write_image
from corelab.preprocess import csf_region, intracranial_region
from corelab.synth import SynthError, make_patient, make_trial
from corelab.synth.atlas_template import template_dir
from corelab.synth.background import load_background, make_background_patient

try:
    template_dir()
    HAVE_TEMPLATE = True
except SynthError:
    HAVE_TEMPLATE = False
pytestmark = pytest.mark.skipif(not HAVE_TEMPLATE, reason="the background family registers nilearn's MNI152 template")


@pytest.fixture(scope="module")
def background_file(tmp_path_factory) -> Path:
    phantom = make_patient(5, matrix=128, hypodensity="none")
    path = tmp_path_factory.mktemp("bg") / "normal_head.nii.gz"
    write_image(phantom.hu.astype(np.int16), phantom.volume(), path)
    return path


@pytest.fixture(scope="module")
def background(background_file):
    return load_background(background_file)


def _regions(volume):
    """Intracranial region and CSF of the background, found independently of the module under test."""
    ic = intracranial_region(volume.array, volume.spacing).mask
    return ic, csf_region(volume.array, volume.spacing, ic)


def _check_patient(ph, volume, ic, csf):
    """Lesion in brain outside CSF; every changed voxel in brain; class mean and volume as stated."""
    lesion = ph.labels > 0
    original = volume.array
    changed = ph.hu != original
    assert lesion.any()
    assert not (lesion & ~ic).any() and not (lesion & csf).any()
    assert not (changed & ~(ic & ~csf)).any()  # mimics too change brain only
    if not ph.truth.mimics:
        # Outside the lesion the scan is the background, voxel for voxel (its noise and artefacts kept).
        np.testing.assert_array_equal(ph.hu[~lesion], original[~lesion])
    in_class = (ph.labels >= 1) & (ph.labels <= 3)
    low, high = CLASS_RANGES_HU[ph.truth.hypodensity]
    mean = float(ph.hu[in_class].mean())
    assert low <= mean < high + (1e-6 if ph.truth.hypodensity == "subtle" else 0.0)
    assert mean == pytest.approx(ph.truth.mean_hu)
    assert ph.truth.infarct_ml == pytest.approx(lesion.sum() * ph.voxel_ml)
    assert ph.truth.family == "background"


@pytest.mark.parametrize("klass", CLASSES)
def test_lesion_in_brain_outside_csf_and_scan_kept_elsewhere(background, klass):
    ic, csf = _regions(background.volume)
    for i in range(3):
        ph = make_background_patient(background, (11, i), hypodensity=klass)
        assert ph.truth.hypodensity == klass
        _check_patient(ph, background.volume, ic, csf)


def test_lesion_keeps_the_scan_noise(background):
    # new HU = original + a smooth deficit: the lesion's voxel-to-voxel differences stay the scan's.
    ph = make_background_patient(background, (2, 0), hypodensity="severe")
    lesion = ph.labels == LABELS["severe"]
    diff = ph.hu - background.volume.array
    step = np.diff(diff, axis=2)[lesion[:, :, 1:] & lesion[:, :, :-1]]
    assert np.std(step) < 0.5 * background.noise_sd


def test_seeds_differ_and_control_is_the_background(background):
    a = make_background_patient(background, (1, 1), hypodensity="intermediate")
    b = make_background_patient(background, (1, 2), hypodensity="intermediate")
    assert not np.array_equal(a.labels, b.labels)
    again = make_background_patient(background, (1, 1), hypodensity="intermediate")
    np.testing.assert_array_equal(a.hu, again.hu)
    control = make_background_patient(background, (1, 3), hypodensity="none")
    assert not control.labels.any() and np.isnan(control.truth.mean_hu)


def test_trial_from_background_same_bytes_and_recorded(background_file, tmp_path):
    # One run through the command line, one through the library: the same seed gives the same bytes.
    result = CliRunner().invoke(app, ["synth", str(tmp_path / "a"), "--n", "2", "--seed", "5", "--background",
                                      str(background_file)])
    assert result.exit_code == 0, result.output
    make_trial(tmp_path / "b", n=2, seed=5, background=background_file)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    for f in files:
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f
    record = json.loads((tmp_path / "a" / "synth.json").read_text())
    assert record["family"] == "background" and record["background"]["path"] == str(background_file.resolve())
    assert len(record["background"]["sha256"]) == 64
    truth = pd.read_csv(tmp_path / "a" / "truth.csv", dtype={"patient_id": str})
    assert set(truth["family"]) == {"background"} and set(truth["background"]) == {background_file.name}
    # SYN001 (a DICOM series, no mimics for this seed) reads back as the background outside its truth.
    assert pd.isna(truth.loc[0, "mimics"]) and truth.loc[0, "format"] == "dicom"
    scan, original = read_scan(tmp_path / "a" / "scans" / "SYN001").array, read_scan(background_file).array
    labels = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "a" / "truth" / "SYN001.nii.gz")))
    np.testing.assert_array_equal(scan[labels == 0], original[labels == 0])
    assert (scan[labels > 0] != original[labels > 0]).mean() > 0.5


@pytest.mark.slow
def test_real_head_background(tmp_path):
    path = real_head_path()
    if path is None:
        pytest.skip("the real head CT (Cranium.inv3, Debian package invesalius-examples) is not on this machine")
    nifti = tmp_path / "cranium.nii.gz"
    sitk.WriteImage(read_inv3(path), str(nifti), useCompression=True)
    bg = load_background(nifti)
    assert bg.dice > 0.85  # the template cavity registered onto the scan's intracranial region
    ic, csf = _regions(bg.volume)
    started = time.perf_counter()
    for i, klass in enumerate(CLASSES):
        _check_patient(make_background_patient(bg, (3, i), hypodensity=klass), bg.volume, ic, csf)
    assert (time.perf_counter() - started) / 3 < 10.0
