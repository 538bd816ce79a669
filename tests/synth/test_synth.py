"""Tests of corelab.synth: phantoms in memory, a small trial on disk read back through corelab.io.

Trials use a 128 (or 64) matrix for speed; the physics and geometry are the same as at 512.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math

import numpy as np
import openpyxl
import pandas as pd
import pydicom
import pytest
from scipy import ndimage as ndi

from corelab.config import CLASS_RANGES_HU, LABELS, hypodensity_class
from corelab.io.read import read_mask, read_scan
from corelab.synth import SynthError, lesions, make_patient, make_trial, physics, preview
from corelab.synth.anatomy import T
from corelab.synth.fields import smooth_noise, upsample2
from corelab.synth.readers import manual_read

N_TRIAL = 5
SEED = 11

# Literature HU ranges (see corelab/synth/anatomy.py) widened by the scanner calibration (+-3 HU,
# +2 at most in a subtle patient's rare last resort) and noise; checked on medians of pure, eroded tissue.
TISSUE_RANGES = {
    T.GM: (35, 52), T.WM: (24, 42), T.CSF: (0, 18), T.BONE: (1000, 2000), T.DIPLOE: (300, 900),
    T.FAT: (-120, -60), T.AIR: (-1030, -960), T.BASAL: (32, 50), T.THALAMUS: (30, 48),
}


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    out = tmp_path_factory.mktemp("trial")
    summary = make_trial(out, n=N_TRIAL, seed=SEED, matrix=128)
    return summary


@pytest.fixture(scope="module")
def truth(trial):
    return pd.read_csv(trial.truth_csv, dtype={"patient_id": str})


@pytest.fixture(scope="module")
def manifest(trial):
    return pd.read_excel(trial.manifest, dtype={"patient_id": str, "series_uid": str})


def _pure(tissue: np.ndarray, code: int) -> np.ndarray:
    # One pixel of in-plane erosion removes the interpolated rim between tissues.
    cross = np.zeros((1, 3, 3), bool)
    cross[0] = [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    return ndi.binary_erosion(tissue == code, structure=cross)


def test_layout_and_summary(trial, truth, manifest):
    assert trial.n_patients == N_TRIAL == len(truth) == len(manifest)
    assert trial.n_nifti >= 1 and trial.n_dicom >= 1 and trial.n_controls >= 1
    for pid, scan in zip(manifest.patient_id, manifest.scan):
        assert (trial.out_dir / scan).exists()
        for sub in ("truth", "manual", "manual_b", "tissue"):
            assert (trial.out_dir / sub / f"{pid}.nii.gz").exists()
    assert set(truth.hypodensity) == {"severe", "intermediate", "subtle", "none"}
    generator = json.loads((trial.out_dir / "synth.json").read_text())
    assert generator["seed"] == SEED and generator["n"] == N_TRIAL and generator["matrix"] == 128
    assert generator["command"].startswith("corelab.synth.make_trial(")  # 128 pixels: not a command-line trial


def test_every_scan_reads_back_with_tissue_hu_in_range(trial, manifest):
    for row in manifest.itertuples():
        scan = read_scan(trial.out_dir / row.scan)
        tissue = read_mask(trial.out_dir / "tissue" / f"{row.patient_id}.nii.gz", like=scan).array
        assert scan.array.shape == tissue.shape and scan.array.shape[1:] == (128, 128)
        assert scan.spacing[0] == pytest.approx(5.0)
        assert 0.8 < scan.spacing[1] * 128 / 512 / 0.45 < 1.2  # 0.42-0.49 mm at 512
        labels = read_mask(trial.out_dir / "truth" / f"{row.patient_id}.nii.gz", like=scan).array
        for code, (lo, hi) in TISSUE_RANGES.items():
            m = _pure(tissue, code) & (labels == 0)
            assert m.sum() > 20, f"{row.patient_id}: too few pure voxels of tissue {code}"
            med = float(np.median(scan.array[m]))
            assert lo <= med <= hi, f"{row.patient_id}: tissue {code} median {med} HU outside [{lo}, {hi}]"
        # Grey matter reads brighter than white matter, and noise in white matter is 2-6 HU.
        wm = scan.array[_pure(tissue, T.WM) & (labels == 0)]
        gm = scan.array[_pure(tissue, T.GM) & (labels == 0)]
        assert np.median(gm) - np.median(wm) > 4
        assert 2.5 < float(np.std(wm)) < 8.0


def test_lesion_mean_hu_in_class_range_and_matches_truth_csv(trial, truth, manifest):
    for row, t in zip(manifest.itertuples(), truth.itertuples()):
        scan = read_scan(trial.out_dir / row.scan)
        labels = read_mask(trial.out_dir / "truth" / f"{row.patient_id}.nii.gz", like=scan).array
        infarct = (labels >= 1) & (labels <= 3)
        if t.hypodensity == "none":
            assert not labels.any() and math.isnan(t.mean_hu)
            continue
        assert set(np.unique(labels)) <= {0, LABELS[t.hypodensity], LABELS["hemorrhage"]}
        mean = float(scan.array[infarct].mean())
        low, high = CLASS_RANGES_HU[t.hypodensity]
        assert low + 0.5 <= mean <= high - 0.5, f"{row.patient_id}: {mean} HU for {t.hypodensity}"
        assert hypodensity_class(mean) == t.hypodensity
        assert mean == pytest.approx(t.mean_hu, abs=0.01)
        # The mean describes the infarct itself, not a few voxels shared with the skull.
        assert abs(float(np.median(scan.array[infarct])) - mean) < 3.0
        assert float(scan.array[infarct].max()) < 150
        assert float((labels > 0).sum()) * scan.voxel_ml == pytest.approx(t.infarct_ml, rel=1e-3)
        if (labels == 4).any():
            assert float(np.median(scan.array[labels == 4])) > 45


def test_manual_reads_follow_truth(trial, truth, manifest):
    for row, t in zip(manifest.itertuples(), truth.itertuples()):
        scan = read_scan(trial.out_dir / row.scan)
        labels = read_mask(trial.out_dir / "truth" / f"{row.patient_id}.nii.gz", like=scan).array > 0
        for sub, column in (("manual", "manual_ml"), ("manual_b", "manual_b_ml")):
            manual = read_mask(trial.out_dir / sub / f"{row.patient_id}.nii.gz", like=scan).array > 0
            assert float(manual.sum()) * scan.voxel_ml == pytest.approx(getattr(t, column), rel=1e-3)
            if not labels.any():
                assert not manual.any()
                continue
            dice = 2 * (manual & labels).sum() / (manual.sum() + labels.sum())
            # 1.8 mm pixels here: a one- or two-pixel border disagreement costs more Dice than at 0.45 mm.
            assert 0.6 < dice < 1.0, f"{row.patient_id} {sub}: Dice {dice:.2f}"
            assert 0.5 < manual.sum() / labels.sum() < 1.6


def test_manifest_columns_dates_and_dicom_tags(trial, truth, manifest):
    assert list(manifest.columns) == ["patient_id", "scan", "onset", "scan_time", "series_uid", "site"]
    sheet = openpyxl.load_workbook(trial.manifest).active
    assert sheet["C2"].is_date and sheet["D2"].is_date  # real date-time cells, not text
    assert manifest.scan_time.isna().sum() == 1
    for row, t in zip(manifest.itertuples(), truth.itertuples()):
        onset = row.onset.to_pydatetime()
        if row.scan.endswith(".nii.gz"):
            assert pd.notna(row.scan_time)
            continue
        scan = read_scan(trial.out_dir / row.scan, series_uid=row.series_uid)
        acquired = scan.meta.acquisition_datetime
        assert acquired == onset + dt.timedelta(hours=t.hours_since_onset)
        if pd.notna(row.scan_time):
            assert row.scan_time.to_pydatetime() == acquired
        first = sorted((trial.out_dir / row.scan).glob("*.dcm"))[0]
        ds = pydicom.dcmread(first)
        assert ds.Modality == "CT" and ds.PatientID == row.patient_id and ds.SeriesInstanceUID == row.series_uid
        assert float(ds.RescaleSlope) == 1.0 and list(ds.ImageOrientationPatient) == [1, 0, 0, 0, 1, 0]
    assert truth.in_window.tolist() == [12 <= h <= 336 for h in truth.hours_since_onset]


def test_window_edge_cases_are_present_for_ten_patients():
    rng = np.random.default_rng(0)
    hours = [make_trial.__globals__["_onset_to_scan_hours"](rng, i) for i in range(10)]
    assert {6.0, 16 * 24.0, 12.0, 14 * 24.0} <= set(hours)
    assert sum(12 <= h <= 336 for h in hours) == 8


def _tree_digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    make_trial(tmp_path / "a", n=2, seed=5, matrix=64)
    make_trial(tmp_path / "b", n=2, seed=5, matrix=64)
    make_trial(tmp_path / "c", n=2, seed=6, matrix=64)
    assert _tree_digest(tmp_path / "a") == _tree_digest(tmp_path / "b")
    assert _tree_digest(tmp_path / "a") != _tree_digest(tmp_path / "c")


def test_preview_png(trial):
    import matplotlib.image

    png = preview(trial.out_dir, trial.out_dir / "mosaic.png")
    image = matplotlib.image.imread(png)
    assert image.shape[0] > 200 and image.shape[1] > 400 and image[..., :3].std() > 0.05


def test_make_patient_control_and_parameters():
    control = make_patient(3, matrix=64, hypodensity="none")
    assert not control.labels.any() and math.isnan(control.truth.mean_hu) and control.truth.infarct_ml == 0
    with pytest.raises(SynthError):
        make_patient(3, matrix=63)
    with pytest.raises(SynthError):
        make_patient(3, matrix=64, hypodensity="mild")
    with pytest.raises(SynthError):
        make_trial("/nonexistent-never-created", n=0)


def test_thin_slices_keep_class_mean():
    p = make_patient(21, matrix=64, thin_slices=True, hypodensity="intermediate")
    assert p.spacing[0] <= 1.5 and p.hu.shape[0] > 100
    assert 22.5 <= p.truth.mean_hu <= 31.5
    assert p.truth.mean_hu == pytest.approx(float(p.hu[(p.labels >= 1) & (p.labels <= 3)].mean()))


def test_volume_distribution_matches_paper():
    # Log-normal per class with the paper's median and IQR (Results): check the sample quantiles.
    rng = np.random.default_rng(1)
    for klass, (median, q1, q3) in lesions.CLASS_VOLUME_ML.items():
        v = np.array([lesions.draw_volume_ml(rng, klass) for _ in range(4000)])
        assert np.median(v) == pytest.approx(median, rel=0.08)
        assert np.percentile(v, 25) == pytest.approx(q1, rel=0.12)
        assert np.percentile(v, 75) == pytest.approx(q3, rel=0.12)


def test_grow_lesion_exact_count_and_empty():
    g = np.mgrid[0:12, 0:12, 0:12].astype(np.float32)
    allowed = np.ones((12, 12, 12), bool)
    m = lesions.grow_lesion(g[2], g[1], g[0], seed=(6, 6, 6), radii=(2, 2, 2), allowed=allowed,
                            noise=np.zeros_like(allowed, float), target_voxels=100)
    assert m.sum() == 100 and m[6, 6, 6]
    none = lesions.grow_lesion(g[2], g[1], g[0], seed=(6, 6, 6), radii=(2, 2, 2), allowed=~allowed,
                               noise=np.zeros_like(allowed, float), target_voxels=100)
    assert not none.any()


def test_partial_volume_averaging_and_upsampling():
    fine = np.zeros((10, 2, 2), np.float32)
    fine[:5] = 40.0
    fine[5:8] = 10.0  # 3 of 5 sub-slices: 3 * 10 / 5 = 6 HU
    out = physics.to_output_grid(fine, sub_z=5, step_xy=2)
    assert out.shape == (2, 4, 4) and np.allclose(out[0], 40.0) and np.allclose(out[1], 6.0)
    assert upsample2(np.array([0.0, 4.0, 8.0]), 0).tolist() == [0.0, 1.0, 3.0, 5.0, 7.0, 8.0]
    # A single slice and a constant image pass through unchanged.
    assert np.allclose(physics.to_output_grid(np.full((5, 3, 3), 7.0, np.float32), sub_z=5, step_xy=1), 7.0)


def test_ct_noise_level_and_correlation():
    n = physics.ct_noise(np.random.default_rng(0), (4, 128, 128), sd_hu=4.0, pixel_mm=0.45)
    centre = n[:, 32:96, 32:96]
    assert 3.5 < centre.std() < 5.0
    # Neighbouring pixels are correlated (filtered back-projection texture), slices are not.
    assert np.corrcoef(n[:, :, :-1].ravel(), n[:, :, 1:].ravel())[0, 1] > 0.4
    assert abs(np.corrcoef(n[0].ravel(), n[1].ravel())[0, 1]) < 0.05


def test_smooth_noise_unit_sd():
    f = smooth_noise(np.random.default_rng(2), (30, 40, 40), (1.0, 0.9, 0.9), corr_mm=10.0)
    assert f.shape == (30, 40, 40) and f.dtype == np.float32
    assert f.std() == pytest.approx(1.0, abs=1e-3) and abs(f.mean()) < 1e-3


def test_manual_read_edge_cases():
    rng = np.random.default_rng(0)
    empty = np.zeros((3, 16, 16), np.uint8)
    assert not manual_read(empty, np.zeros(empty.shape), (5.0, 1.0, 1.0), rng).any()
    one = np.zeros((1, 30, 30), np.uint8)
    one[0, 10:20, 10:20] = 3
    one[0, 14, 14] = 0  # a hole a reader would not leave
    one[0, 2, 2] = 3  # a 1-voxel satellite, always missed with miss_satellite=1
    m = manual_read(one, np.full(one.shape, 30.0), (5.0, 1.0, 1.0), rng, max_shift_px=0, miss_satellite=1.0)
    assert m[0, 14, 14] == 1 and m[0, 2, 2] == 0 and m.sum() == 100
    # Border moves by at most two pixels and never into bone.
    hu = np.full(one.shape, 30.0)
    hu[0, :, 21:] = 1500.0
    m2 = manual_read(one, hu, (5.0, 1.0, 1.0), np.random.default_rng(1), bias=2.0)
    assert not m2[0, :, 21:].any() and m2[0, 8:22, 8:21].sum() >= m2.sum() - 1


def test_box_projection_equals_full_projection():
    from corelab.synth import phantom
    from corelab.synth.fields import FineGrid

    for step in (1, 2):
        grid = FineGrid((4, 16, 16), (5.0, 0.45, 0.45), (0.0, 0.0, 0.0), sub_z=5, step_xy=step)
        mask = np.zeros(grid.shape, bool)
        mask[6:9, 2:4, 3:6] = True
        fine = np.where(mask, np.random.default_rng(0).random(grid.shape), 0).astype(np.float32)
        box = phantom._aligned_box(mask, grid)
        full = physics.to_output_grid(fine, sub_z=5, step_xy=step)
        assert np.array_equal(phantom._project_in_box(fine, box, grid), full)
    assert not phantom._project_in_box(fine, phantom._aligned_box(~np.ones_like(mask), grid), grid).any()


@pytest.mark.slow
def test_full_resolution_patient():
    # The production path: 512 matrix, drawn on a 2x coarser in-plane grid and interpolated.
    p = make_patient(4, matrix=512, hypodensity="severe")
    assert p.hu.shape[1:] == (512, 512) and 0.41 < p.spacing[1] < 0.5 and p.spacing[0] == 5.0
    assert 14.5 <= p.truth.mean_hu <= 21.5
    labels = p.labels
    for code, (lo, hi) in TISSUE_RANGES.items():
        m = _pure(p.tissue, code) & (labels == 0)
        assert lo <= float(np.median(p.hu[m])) <= hi, code
    assert 2.5 < float(np.std(p.hu[_pure(p.tissue, T.WM) & (labels == 0)])) < 8.0


def test_subtle_infarct_loses_grey_white_contrast_without_recalibrating_the_scan():
    # The class must come from the lesion, not from the whole scan's brightness: the written
    # offset stays the site's (plus the per-scan jitter of sd 0.7 HU), and inside the infarct grey
    # matter falls towards white matter, more than white matter falls.
    from dataclasses import replace

    from corelab.synth.scanner import draw_scanner

    scanner = replace(draw_scanner(np.random.default_rng(3), site="S"), hu_offset=0.0)
    p = make_patient(5, matrix=128, hypodensity="subtle", scanner=scanner)
    assert abs(p.truth.hu_offset) < 2.5
    lesion = p.labels == 3
    ring = (ndi.distance_transform_edt(~lesion, sampling=p.spacing) > 3) & ~lesion
    ring &= ndi.binary_dilation(lesion, iterations=12)
    drop = {code: float(p.hu[ring & (p.tissue == code)].mean() - p.hu[lesion & (p.tissue == code)].mean())
            for code in (T.GM, T.WM)}
    assert 32 <= p.truth.mean_hu < 44
    assert drop[T.GM] > drop[T.WM] + 1.0 and drop[T.GM] > 2.0, drop
