"""Tests of the atlas phantom family (MNI152 anatomy from nilearn's installed files).

Building the template head takes several seconds once per process, so every test that draws an
atlas patient is marked slow; the locator, the option checks and the deformation are fast.
Trials use a 128 (or 64) matrix for speed, as in test_synth.py.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi

from corelab.config import CLASS_RANGES_HU, LABELS, hypodensity_class
from corelab.io.read import read_mask, read_scan
from corelab.synth import SynthError, atlas_template, make_atlas_patient, make_trial
from corelab.synth.anatomy import T
from corelab.synth.atlas_territories import ATLAS_TERRITORIES, atlas_territory_mask
from corelab.synth.atlas_warp import template_coordinates
from corelab.synth.fields import smooth_noise
from corelab.synth.trial import patient_family

try:
    atlas_template.template_dir()
    HAVE_TEMPLATES = True
except SynthError:
    HAVE_TEMPLATES = False
needs_templates = pytest.mark.skipif(
    not HAVE_TEMPLATES, reason="nilearn's MNI152 templates are not installed (pip install --no-deps nilearn)"
)
SEED = 13


def _tree_digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _pure(tissue: np.ndarray, code: int) -> np.ndarray:
    cross = np.zeros((1, 3, 3), bool)
    cross[0] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    return ndi.binary_erosion(tissue == code, structure=cross)


def test_missing_nilearn_is_one_clear_synth_error(monkeypatch, tmp_path):
    monkeypatch.setattr(atlas_template, "_nilearn_location", lambda: None)
    with pytest.raises(SynthError, match=r"needs nilearn's MNI152 templates: pip install"):
        make_atlas_patient(1, matrix=64)
    with pytest.raises(SynthError, match="pip install"):
        make_trial(tmp_path / "t", n=1, matrix=64, family="atlas")
    # A nilearn without the data files says which file is missing.
    monkeypatch.setattr(atlas_template, "_nilearn_location", lambda: tmp_path)
    with pytest.raises(SynthError, match="is missing"):
        atlas_template.template_dir()


def test_family_option_and_mixed_alternation(tmp_path):
    with pytest.raises(SynthError, match="Unknown phantom family"):
        make_trial(tmp_path, n=1, matrix=64, family="real")
    assert [patient_family("mixed", 0, i) for i in range(4)] == ["procedural", "atlas"] * 2
    assert [patient_family("mixed", 1, i) for i in range(2)] == ["atlas", "procedural"]
    assert {patient_family("procedural", 3, i) for i in range(5)} == {"procedural"}


def test_deformation_is_non_linear_and_differs_between_seeds():
    # The same head position maps to different template points for two seeds, and not by an affine map.
    g = np.mgrid[-60:60:6, -80:80:6, -50:70:6].astype(np.float32)
    hx, hy, hz = g[0], g[1], g[2]
    qs = []
    for seed in (1, 2):
        rng = np.random.default_rng(seed)
        warp = [4.0 * smooth_noise(rng, hx.shape, (6.0, 6.0, 6.0), corr_mm=45.0) for _ in range(3)]
        qs.append(np.stack(template_coordinates(hx, hy, hz, (0.92,) * 3, warp, None), axis=-1).reshape(-1, 3))
    design = np.column_stack([np.stack([hx, hy, hz], axis=-1).reshape(-1, 3), np.ones(hx.size)])
    for q in qs:
        coef, *_ = np.linalg.lstsq(design, q, rcond=None)
        residual = np.sqrt(((design @ coef - q) ** 2).sum(axis=1).mean())
        assert 1.0 < residual < 8.0  # mm: a smooth warp of a few mm, beyond any affine fit
    assert np.sqrt(((qs[0] - qs[1]) ** 2).sum(axis=1).mean()) > 2.0


def test_mass_effect_pushes_tissue_away_from_the_infarct():
    hx = np.array([[[44.0 * 0.92 + 6.0]]], np.float32)  # 6 mm lateral of the MCA seed (left side)
    hy, hz = np.full_like(hx, -8.0 * 0.92), np.full_like(hx, 8.0 * 0.92)
    zero = [np.zeros_like(hx)] * 3
    plain = template_coordinates(hx, hy, hz, (0.92,) * 3, zero, None)[0]
    pushed = template_coordinates(hx, hy, hz, (0.92,) * 3, zero, ((44.0, -8.0, 8.0), 3.0, 30.0))[0]
    # The voxel shows template tissue closer to the infarct's centre: the tissue there was pushed outwards.
    assert 0 < (plain - pushed).item() < 3.0


def test_territory_rules_are_one_sided_and_disjoint():
    x, y, z = np.meshgrid(np.arange(-70, 71, 4.0), np.arange(-100, 71, 4.0), np.arange(-40, 80, 4.0), indexing="ij")
    for name in ATLAS_TERRITORIES:
        left = atlas_territory_mask(name, x, y, z, 1)
        assert left.any() and not (left & (x <= 0)).any(), name
        assert np.array_equal(atlas_territory_mask(name, -x, y, z, -1), left), name  # mirror image
    aca, pca, mca = (atlas_territory_mask(n, x, y, z, 1) for n in ("ACA", "PCA", "MCA"))
    assert not (aca & pca).any() and not (aca & mca).any() and not (pca & mca).any()


@pytest.fixture(scope="module")
def atlas_trial(tmp_path_factory):
    out = tmp_path_factory.mktemp("atlas_trial")
    return make_trial(out, n=4, seed=SEED, matrix=128, family="atlas")


@needs_templates
@pytest.mark.slow
def test_atlas_trial_reads_back_with_class_hu_and_volumes(atlas_trial):
    truth = pd.read_csv(atlas_trial.truth_csv, dtype={"patient_id": str})
    manifest = pd.read_excel(atlas_trial.manifest, dtype={"patient_id": str, "series_uid": str})
    assert set(truth.family) == {"atlas"} and set(truth.hypodensity) == {"severe", "intermediate", "subtle", "none"}
    record = json.loads((atlas_trial.out_dir / "synth.json").read_text())
    assert record["family"] == "atlas" and set(record["families"].values()) == {"atlas"}
    for row, t in zip(manifest.itertuples(), truth.itertuples()):
        scan = read_scan(atlas_trial.out_dir / row.scan)
        assert scan.array.shape[1:] == (128, 128) and scan.spacing[0] == pytest.approx(5.0)
        labels = read_mask(atlas_trial.out_dir / "truth" / f"{row.patient_id}.nii.gz", like=scan).array
        tissue = read_mask(atlas_trial.out_dir / "tissue" / f"{row.patient_id}.nii.gz", like=scan).array
        gm = float(np.median(scan.array[_pure(tissue, T.GM) & (labels == 0)]))
        wm = float(np.median(scan.array[_pure(tissue, T.WM) & (labels == 0)]))
        csf = float(np.median(scan.array[_pure(tissue, T.CSF) & (labels == 0)]))
        bone = float(np.median(scan.array[_pure(tissue, T.BONE)]))
        assert 30 < gm < 52 and 20 < wm < 42 and gm - wm > 3 and -2 < csf < 20 and bone > 900, (gm, wm, csf, bone)
        if t.hypodensity == "none":
            assert not labels.any() and math.isnan(t.mean_hu)
            continue
        infarct = (labels >= 1) & (labels <= 3)
        assert set(np.unique(labels)) <= {0, LABELS[t.hypodensity], LABELS["hemorrhage"]}
        mean = float(scan.array[infarct].mean())
        low, high = CLASS_RANGES_HU[t.hypodensity]
        assert low + 0.5 <= mean <= high - 0.5 and hypodensity_class(mean) == t.hypodensity
        assert mean == pytest.approx(t.mean_hu, abs=0.01)
        assert float((labels > 0).sum()) * scan.voxel_ml == pytest.approx(t.infarct_ml, rel=1e-3)
        assert t.territory in ATLAS_TERRITORIES and t.side in ("left", "right")


@needs_templates
@pytest.mark.slow
def test_mixed_trial_alternates_families(tmp_path):
    summary = make_trial(tmp_path, n=2, seed=4, matrix=64, family="mixed")
    truth = pd.read_csv(summary.truth_csv, dtype={"patient_id": str})
    assert truth.family.tolist() == ["procedural", "atlas"]
    for scan in pd.read_excel(summary.manifest, dtype={"patient_id": str}).scan:
        assert read_scan(tmp_path / scan).array.shape[1:] == (64, 64)


@needs_templates
@pytest.mark.slow
def test_atlas_same_seed_same_bytes(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        make_trial(tmp_path / name, n=1, seed=seed, matrix=64, family="atlas")
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


@needs_templates
@pytest.mark.slow
def test_atlas_mimics_and_deep_grey_nuclei_appear():
    seen: set[str] = set()
    for seed in range(12):
        p = make_atlas_patient(seed, matrix=64, hypodensity="none")
        seen |= set(p.truth.mimics)
        if seed == 0:
            codes = set(np.unique(p.tissue).tolist())
            assert {T.GM, T.WM, T.CSF, T.BONE, T.THALAMUS, T.CEREBELLUM} <= codes, codes
        if seen == {"atrophy", "leukoaraiosis", "old infarct"}:
            break
    assert seen == {"atrophy", "leukoaraiosis", "old infarct"}


def test_cli_synth_family_option(tmp_path):
    from typer.testing import CliRunner

    from corelab.cli import app

    result = CliRunner().invoke(app, ["synth", str(tmp_path / "t"), "--n", "1", "--family", "real"])
    assert result.exit_code != 0 and "Unknown phantom family 'real'" in result.output
    assert "--family" in CliRunner().invoke(app, ["synth", "--help"]).output
