"""benchmarks/cuda_check.py on the CPU, small, so the one-shot GPU check cannot rot; and dense's TF32 guard."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from corelab.segment.dense import _ieee_float32
from corelab.segment.norm import InputNorm

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _load_check():
    spec = importlib.util.spec_from_file_location("cuda_check", ROOT / "benchmarks" / "cuda_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file runs
    spec.loader.exec_module(module)
    return module


check = _load_check()


def test_equivalence_passes_on_cpu_with_small_sizes():
    result = check.equivalence("cpu", shape=(2, 40, 48), n_voxels=100, seed=3, tile_voxels=300)
    assert result["passed"], result
    assert result["max_abs_diff"] < 1e-5 and result["outside_nonzero"] == 0
    assert result["min_probability_sd"] > 0.05  # varied probabilities, not a constant ~0.5
    assert result["voxels"] >= 100


def test_random_region_is_not_empty_or_full_on_any_slice():
    hu, region = check.random_case((3, 30, 30), 1)
    assert hu.min() >= -30 and hu.max() <= 110
    per_slice = region.reshape(3, -1).mean(axis=1)
    assert ((per_slice > 0.05) & (per_slice < 0.95)).all()


def _tiny_reference():
    region = np.zeros((1, 2, 3), bool)
    region[0, :, :2] = True  # 4 region voxels; column 2 lies outside
    probs = {"severe": np.array([[[0.9, 0.2, 0.0], [0.6, 0.4, 0.0]]], np.float32),
             "hemorrhage": np.array([[[0.1, 0.99, 0.0], [0.3, 0.2, 0.0]]], np.float32)}
    cutoffs = {"severe": 0.5, "hemorrhage": 0.95}
    sample = np.array([0, 4])  # flat indices (0,0,0) and (0,1,1)
    return probs, region, cutoffs, sample


def test_reference_stats_hand_worked():
    probs, region, cutoffs, sample = _tiny_reference()
    ref = check.reference_stats(probs, region, cutoffs, sample)
    assert int(ref["count_severe"]) == 2 and int(ref["count_hemorrhage"]) == 1  # 0.9, 0.6 >= 0.5; 0.99 >= 0.95
    assert float(ref["sum_severe"]) == pytest.approx(2.1, abs=1e-6)
    assert ref["sample_severe"].tolist() == pytest.approx([0.9, 0.4])
    # labels: severe 1 at (0,0,0) and (0,1,0); hemorrhage 4 wins at (0,0,1)
    assert ref["labels"].tolist() == [[[1, 4, 0], [1, 0, 0]]]


def test_compare_counts_flips_and_differences():
    probs, region, cutoffs, sample = _tiny_reference()
    ref = check.reference_stats(probs, region, cutoffs, sample)
    same, union = check.compare_to_reference(probs, region, cutoffs, ref, sample)
    assert all(row.passed and row.flipped == 0 and row.sample_max_abs_diff == 0 for row in same)
    assert union == {"union_ref": 3, "union": 3, "labels_differ": 0}
    moved = {name: p.copy() for name, p in probs.items()}
    moved["severe"][0, 1, 1] = 0.55   # 0.4 -> 0.55 crosses the 0.5 cut-off (a sampled voxel)
    moved["severe"][0, 0, 0] = 0.8    # 0.9 -> 0.8 stays above it
    moved["severe"][0, 1, 2] = 0.9    # outside the region: never counted
    rows, union = check.compare_to_reference(moved, region, cutoffs, ref, sample)
    severe = next(row for row in rows if row.name == "severe")
    assert (severe.count_ref, severe.count, severe.flipped) == (2, 3, 1)
    assert severe.count_rel_diff == pytest.approx(0.5)
    assert severe.sum_rel_diff == pytest.approx((0.15 - 0.1 + 0.9) / 2.1, rel=1e-5)
    assert severe.sample_max_abs_diff == pytest.approx(0.15, abs=1e-6)
    assert not severe.passed  # the sampled probability moved by 0.15
    assert union == {"union_ref": 3, "union": 4, "labels_differ": 1}


def test_case_file_round_trip_and_case_check_on_cpu(tmp_path):
    nets = check.spread_networks(5, names=("severe", "hemorrhage"))
    hu, region = check.random_case((2, 24, 28), 2)
    hu = np.rint(hu)
    cutoffs = {"severe": 0.5, "hemorrhage": 0.7}

    class Models:  # what build_reference reads from a ModelSet
        networks, norm = nets, InputNorm()

    Models.cutoffs = cutoffs
    reference, sample, _ = check.build_reference(hu, region, Models, samples=50, seed=0)
    path = tmp_path / "case.npz"
    check.save_case(path, hu, region, reference, sample, {"models_version": "test"})
    case = check.load_case(path)
    assert case["hu"].dtype == np.int16 and np.array_equal(case["hu"], hu)
    assert np.array_equal(case["region"], region) and case["meta"] == {"models_version": "test"}
    out = check.case_check(case, nets, cutoffs, norm=InputNorm(), device="cpu", repeats=1)
    f32 = out["precisions"]["float32"]
    assert f32["passed"] and f32["labels_differ"] == 0  # the CPU against itself: identical
    assert all(row["flipped"] == 0 for row in f32["networks"])
    assert out["precisions"]["bfloat16"]["passed"] is None  # reported, not judged
    assert out["region_voxels"] == int(region.sum())


def test_shipped_case_file_matches_shipped_models():
    case = check.load_case(check.CASE_PATH)
    card = json.loads((ROOT / "models" / "card.json").read_text())
    assert case["meta"]["cutoffs"] == card["cutoffs"]
    assert case["hu"].shape == case["region"].shape == case["reference"]["labels"].shape
    assert case["region"].sum() > 100_000 and case["sample"].size == 20_000


def test_script_runs_without_simpleitk_pydicom_pingouin_or_an_installed_corelab(tmp_path):
    # The GPU machine has neither those packages nor an installed corelab: block them, make
    # importlib.metadata say corelab is not installed, then run the script's equivalence part.
    code = (
        "import sys, importlib.metadata as md\n"
        "for name in ('SimpleITK', 'pydicom', 'pingouin', 'scipy'): sys.modules[name] = None\n"
        "def version(name): raise md.PackageNotFoundError(name)\n"
        "md.version = version\n"
        "import runpy\n"
        f"sys.argv = ['cuda_check.py', '--device', 'cpu', '--small', '--skip-shipped', '--out', {str(tmp_path)!r}]\n"
        "runpy.run_path('benchmarks/cuda_check.py', run_name='__main__')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert "1. equivalence" in done.stdout and "PASS" in done.stdout
    result = json.loads((tmp_path / "cuda_check.json").read_text())
    assert result["passed"] and "shipped" not in result and result["tf32"] is None


def test_tf32_guard_turns_conv_and_matmul_tf32_off_and_restores_the_flags():
    backends = torch.backends
    before = (backends.cudnn.conv.fp32_precision, torch.get_float32_matmul_precision())
    torch.set_float32_matmul_precision("high")  # someone asked for TF32 matmuls
    try:
        with _ieee_float32(torch.device("cuda")):  # a device object needs no GPU
            assert backends.cudnn.conv.fp32_precision == "ieee"
            assert torch.get_float32_matmul_precision() == "highest"
        assert backends.cudnn.conv.fp32_precision == before[0]
        assert torch.get_float32_matmul_precision() == "high"
        with _ieee_float32(torch.device("cpu")):  # the CPU path is left alone
            assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.set_float32_matmul_precision(before[1])
