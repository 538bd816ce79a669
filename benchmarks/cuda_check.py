"""GPU check of corelab's dense inference: equals patch-wise on CUDA, shipped weights, speed.

    PYTHONPATH=. python3 benchmarks/cuda_check.py --device cuda --out OUTDIR     # on a GPU machine
    python benchmarks/cuda_check.py --device cpu --small                         # same checks, small
    python benchmarks/cuda_check.py --make-case      # rebuild benchmarks/data/cuda_case.npz (SimpleITK)

Needs numpy and torch only (plus corelab's light modules: model, dense, segment, patches), so it runs
from a source tree that is not installed, on machines without SimpleITK or pydicom.

1. Equivalence: four seeded random-weight PatchCNNs, random HU in [-30, 110] on a (4, 96, 96) grid
   with a random region (discs with holes); `dense_probabilities` on `--device` against patch-wise
   inference (`corelab.segment.patches.extract_patches` + `PatchCNN.probability`) on the CPU in float32 at
   500 random region voxels plus the region's corners. Passes when max |difference| < 1e-5 and
   every voxel outside the region is 0.
2. Shipped weights on a realistic scan: `benchmarks/data/cuda_case.npz` holds a synthetic
   512 x 512 x 32 head (`corelab.synth.make_patient`, seed and class in the file) preprocessed as
   `corelab run` does it (`to_analysis_grid` with the models' grid, `analysis_region`), HU rounded
   to int16, and what the CPU computed from exactly that input in float32 with the shipped models:
   per network the voxels at or above its cut-off (as packed bits), the probability sums, the
   probabilities at 20 000 sampled region voxels, and the label map (`corelab.segment` rules,
   unsmoothed: the model card's smoothing runs on the CPU after the networks, whatever the device).
   The device run times four-network dense inference (one warm-up, median of 3, synchronized) in
   float32 and bfloat16 and compares each to the CPU float32 reference. float32 passes when, per
   network, the sampled probabilities differ by < 1e-4, the sums by < 1e-5 (relative) and at most
   max(10, 1e-4 x count) voxels change side of the cut-off; bfloat16 is reported, not judged.
3. On CUDA, how far cuDNN's default (TF32) convolution is from the CPU's, next to corelab's setting.

Writes `cuda_check.json` into `--out`; exits 1 when a judged check fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from corelab.segment.card import NETWORK_NAMES
from corelab.segment.dense import _ieee_float32, dense_probabilities
from corelab.segment.folder import load_models, resolve_device
from corelab.segment.inputs import mirror_of, needs_mirror
from corelab.segment.networks import architecture_inputs, architecture_of
from corelab.segment.labels import labels_from_probabilities
from corelab.segment.barros2020 import PatchCNN
from corelab.segment.norm import InputNorm
from corelab.segment.patches import extract_patches

CASE_PATH = Path(__file__).resolve().parent / "data" / "cuda_case.npz"
EQUIVALENCE_TOL = 1e-5
SAMPLE_TOL = 1e-4
SUM_REL_TOL = 1e-5


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def spread_networks(seed: int, names=NETWORK_NAMES) -> dict[str, PatchCNN]:
    """Seeded random PatchCNNs whose probabilities spread over (0, 1) (logit SD ~2 on random input)."""
    nets = {}
    for i, name in enumerate(names):
        torch.manual_seed(seed + i)
        net = PatchCNN()
        with torch.no_grad():
            for module in (net.conv1, net.conv2, net.fc1, net.fc2, net.out):
                module.weight.normal_(0.0, float(np.sqrt(2.0 / module.weight[0].numel())))
                module.bias.normal_(0.0, 0.05)
            logits = net(torch.randn(256, 3, 19, 19))
            scale = 2.0 / float(logits.std())
            net.out.weight.mul_(scale)
            net.out.bias.copy_((net.out.bias - logits.mean()) * scale)
        nets[name] = net.eval()
    return nets


def random_case(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Random HU in [-30, 110] (some voxels clipped by the input window) and a region of discs with holes."""
    rng = np.random.default_rng(seed)
    hu = rng.uniform(-30.0, 110.0, size=shape).astype(np.float32)
    z, y, x = shape
    yy, xx = np.mgrid[:y, :x]
    region = np.zeros(shape, bool)
    for k in range(z):
        cy, cx = rng.uniform(0.3, 0.7) * y, rng.uniform(0.3, 0.7) * x
        radius = rng.uniform(0.3, 0.6) * min(y, x)
        region[k] = ((yy - cy) ** 2 + (xx - cx) ** 2 < radius**2) & (rng.random((y, x)) > 0.15)
    return hu, region


def equivalence(device: str, *, shape=(4, 96, 96), n_voxels: int = 500, seed: int = 0, tile_voxels: int = 2000,
                cudnn: bool = True) -> dict:
    """Dense inference on `device` against patch-wise inference on the CPU (float32) at random region voxels.

    cudnn False: CUDA convolutions by PyTorch's own kernels, to tell a cuDNN algorithm's rounding apart
    from an error in corelab's dense form when the check fails.
    """
    nets = spread_networks(seed)
    norm = InputNorm()
    hu, region = random_case(shape, seed)
    torch_device = resolve_device(device)
    on_device = {name: PatchCNN().to(torch_device).eval() for name in nets}
    for name, net in nets.items():
        on_device[name].load_state_dict(net.state_dict())
    start = time.perf_counter()
    saved_cudnn = torch.backends.cudnn.enabled
    torch.backends.cudnn.enabled = cudnn and saved_cudnn
    try:
        # small tiles: several per slice, so tile seams are inside the comparison
        probs = dense_probabilities(hu, region, on_device, norm=norm, device=device, tile_voxels=tile_voxels)
    finally:
        torch.backends.cudnn.enabled = saved_cudnn
    seconds = time.perf_counter() - start
    rng = np.random.default_rng(seed + 1)
    inside = np.argwhere(region)
    corners = np.array([inside.min(axis=0), inside.max(axis=0)])
    corners = corners[region[tuple(corners.T)]]  # the bounding box's corners, where they lie in the region
    voxels = np.concatenate([inside[rng.choice(len(inside), min(n_voxels, len(inside)), replace=False)], corners])
    patches = torch.from_numpy(extract_patches(norm.apply(hu, region), voxels, pad_value=norm.pad_value))
    worst, outside_nonzero, spread = 0.0, 0, []
    with torch.no_grad():
        for name, net in nets.items():
            expected = net.probability(patches).numpy()
            worst = max(worst, float(np.abs(probs[name][tuple(voxels.T)] - expected).max()))
            outside_nonzero += int(np.count_nonzero(probs[name][~region]))
            spread.append(float(expected.std()))
    return {"shape": list(shape), "voxels": int(len(voxels)), "max_abs_diff": worst, "outside_nonzero": outside_nonzero,
            "min_probability_sd": min(spread), "seconds": seconds,
            "passed": worst < EQUIVALENCE_TOL and outside_nonzero == 0}


def tf32_effect(device: str, *, seed: int = 0) -> dict | None:
    """conv2-sized convolution on CUDA with PyTorch's default flags and with corelab's, vs the CPU.

    Max |difference| relative to max |output|; None on the CPU (no TF32 there).
    """
    if not device.startswith("cuda"):
        return None
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 64, 120, 120, generator=gen)
    w = torch.randn(128, 64, 5, 5, generator=gen) / 40.0
    expected = torch.nn.functional.conv2d(x, w, dilation=2)
    scale = float(expected.abs().max())
    gx, gw = x.to(device), w.to(device)
    default = torch.nn.functional.conv2d(gx, gw, dilation=2).cpu()
    with _ieee_float32(torch.device(device)):
        ieee = torch.nn.functional.conv2d(gx, gw, dilation=2).cpu()
    return {"default_rel_diff": float((default - expected).abs().max()) / scale,
            "corelab_rel_diff": float((ieee - expected).abs().max()) / scale}


def reference_stats(probabilities: dict[str, np.ndarray], region: np.ndarray, cutoffs: dict[str, float],
                    sample: np.ndarray) -> dict[str, np.ndarray]:
    """What a device run is compared with: per network the voxels at/above its cut-off (packed bits),
    their count, the probability sum (float64), and the probabilities at flat indices `sample`;
    plus the label map (`corelab.segment.labels.labels_from_probabilities`).

    >>> r = np.ones((1, 1, 2), bool); p = {"a": np.array([[[0.2, 0.7]]], np.float32)}
    >>> s = reference_stats(p, r, {"a": 0.5}, np.array([1]))
    >>> int(s["count_a"]), float(s["sum_a"]), s["sample_a"].tolist()
    (1, 0.8999999910593033, [0.699999988079071])
    """
    stats: dict[str, np.ndarray] = {}
    for name, prob in probabilities.items():
        mask = region & (prob >= cutoffs[name])
        stats[f"mask_{name}"] = np.packbits(mask.reshape(-1))
        stats[f"count_{name}"] = np.int64(mask.sum())
        stats[f"sum_{name}"] = np.float64(prob.sum(dtype=np.float64))
        stats[f"sample_{name}"] = prob.reshape(-1)[sample].astype(np.float32)
    stats["labels"] = labels_from_probabilities(probabilities, dict(cutoffs), region)
    return stats


@dataclass(frozen=True)
class NetworkComparison:
    """One network on the device against the CPU reference: voxel counts at its cut-off, probability
    sums, voxels whose side of the cut-off changed, and max |probability difference| at the sample."""

    name: str
    count_ref: int
    count: int
    count_rel_diff: float
    sum_rel_diff: float
    flipped: int
    sample_max_abs_diff: float

    @property
    def passed(self) -> bool:
        """The float32 criterion (module docstring)."""
        return (self.sample_max_abs_diff < SAMPLE_TOL and abs(self.sum_rel_diff) < SUM_REL_TOL
                and self.flipped <= max(10, 1e-4 * self.count_ref))


def compare_to_reference(probabilities: dict[str, np.ndarray], region: np.ndarray, cutoffs: dict[str, float],
                         reference: dict[str, np.ndarray], sample: np.ndarray) -> tuple[list[NetworkComparison], dict]:
    """Per-network comparisons, and the label maps' agreement (voxels whose label differs, union sizes)."""
    mine = reference_stats(probabilities, region, cutoffs, sample)
    rows = []
    for name in probabilities:
        count_ref, count = int(reference[f"count_{name}"]), int(mine[f"count_{name}"])
        sum_ref = float(reference[f"sum_{name}"])
        flipped = int(np.unpackbits(reference[f"mask_{name}"] ^ mine[f"mask_{name}"]).sum())
        rows.append(NetworkComparison(
            name=name, count_ref=count_ref, count=count, count_rel_diff=(count - count_ref) / max(count_ref, 1),
            sum_rel_diff=(float(mine[f"sum_{name}"]) - sum_ref) / max(abs(sum_ref), 1e-12), flipped=flipped,
            sample_max_abs_diff=float(np.abs(mine[f"sample_{name}"] - reference[f"sample_{name}"]).max(initial=0.0))))
    labels_ref, labels = reference["labels"], mine["labels"]
    union = {"union_ref": int((labels_ref > 0).sum()), "union": int((labels > 0).sum()),
             "labels_differ": int((labels_ref != labels).sum())}
    return rows, union


def timed_dense(hu, region, networks, *, norm: InputNorm, device: str, precision: str, repeats: int, mirror_hu=None):
    """Median seconds of `repeats` dense runs after one warm-up (synchronized), the runs' seconds, and the last result.
    mirror_hu: the stored mirror, for networks that read one (this machine may lack SimpleITK to compute it)."""
    dense_probabilities(hu, region, networks, norm=norm, device=device, precision=precision, mirror_hu=mirror_hu)
    times, probs = [], None
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        probs = dense_probabilities(hu, region, networks, norm=norm, device=device, precision=precision,
                                    mirror_hu=mirror_hu)
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, probs


def case_check(case: dict, networks, cutoffs: dict[str, float], *, norm: InputNorm, device: str, repeats: int = 3) -> dict:
    """Time float32 and bfloat16 dense inference of `networks` on `case` and compare both to its CPU reference."""
    hu = case["hu"].astype(np.float32)
    mirror_hu = case["mirror_hu"].astype(np.float32) if case.get("mirror_hu") is not None else None
    region = case["region"]
    out = {"shape": list(hu.shape), "region_voxels": int(region.sum()), "precisions": {}}
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    for precision in ("float32", "bfloat16"):
        try:
            median, times, probs = timed_dense(hu, region, networks, norm=norm, device=device, precision=precision,
                                               repeats=repeats, mirror_hu=mirror_hu)
        except Exception as error:  # noqa: BLE001 - one precision failing must not hide the other's numbers
            out["precisions"][precision] = {"error": f"{type(error).__name__}: {error}",
                                            "passed": False if precision == "float32" else None}
            continue
        rows, union = compare_to_reference(probs, region, cutoffs, case["reference"], case["sample"])
        out["precisions"][precision] = {
            "median_s": median, "times_s": times, "voxels_per_s": int(region.sum()) / median, **union,
            "networks": [{**asdict(row), "passed": row.passed} for row in rows],
            "passed": all(row.passed for row in rows) if precision == "float32" else None}
    if device.startswith("cuda"):
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def save_case(path: Path, hu: np.ndarray, region: np.ndarray, reference: dict, sample: np.ndarray, meta: dict,
              mirror_hu: np.ndarray | None = None) -> None:
    """Write a case file: HU as int16 (rounded), region as packed bits, the reference, `meta` as JSON, and
    for networks that read the scan's mirror, the mirror's HU as int16 (the reference is computed from it)."""
    extra = {} if mirror_hu is None else {"mirror_hu": np.rint(mirror_hu).clip(-32768, 32767).astype(np.int16)}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, hu=np.rint(hu).clip(-32768, 32767).astype(np.int16), region=np.packbits(region.reshape(-1)),
                        shape=np.array(region.shape), sample=sample, meta=np.array(json.dumps(meta)),
                        **extra, **{f"ref_{key}": value for key, value in reference.items()})


def load_case(path: Path) -> dict:
    """Read a case file written by `save_case`: hu (int16), region (bool), sample, reference, meta."""
    with np.load(path) as data:
        shape = tuple(int(v) for v in data["shape"])
        region = np.unpackbits(data["region"], count=int(np.prod(shape))).astype(bool).reshape(shape)
        reference = {key[4:]: data[key] for key in data.files if key.startswith("ref_")}
        return {"hu": data["hu"], "region": region, "sample": data["sample"], "reference": reference,
                "meta": json.loads(str(data["meta"])), "mirror_hu": data["mirror_hu"] if "mirror_hu" in data.files else None}


def build_reference(hu: np.ndarray, region: np.ndarray, models, *, samples: int, seed: int,
                    mirror_hu: np.ndarray | None = None) -> tuple[dict, np.ndarray, float]:
    """CPU float32 dense probabilities of `models` -> reference stats, the sample (flat indices), seconds."""
    rng = np.random.default_rng(seed)
    flat = np.flatnonzero(region)
    sample = np.sort(rng.choice(flat, min(samples, flat.size), replace=False))
    start = time.perf_counter()
    probs = dense_probabilities(hu.astype(np.float32), region, models.networks, norm=models.norm, device="cpu",
                                mirror_hu=None if mirror_hu is None else mirror_hu.astype(np.float32))
    seconds = time.perf_counter() - start
    return reference_stats(probs, region, dict(models.cutoffs), sample), sample, seconds


def make_case(path: Path, *, models_dir: Path | None, seed: int, hypodensity: str) -> dict:
    """Build the realistic case here (needs SimpleITK): synthetic head, corelab preprocessing, CPU reference."""
    import dataclasses

    from corelab.config import Method
    from corelab.preprocess import analysis_region, to_analysis_grid
    from corelab.synth import make_patient

    models = load_models(models_dir, device="cpu")
    volume = make_patient(seed, matrix=512, hypodensity=hypodensity).volume()
    grid = to_analysis_grid(volume, models.grid)
    region = analysis_region(grid.array, grid.spacing, dataclasses.replace(Method(), grid=models.grid)).region
    hu = np.rint(grid.array).astype(np.int16)  # the stored input; the reference is computed from it
    mirror_hu = None
    if needs_mirror(architecture_inputs(architecture_of(models.networks.values()))):
        mirror_hu = np.rint(mirror_of(hu.astype(np.float32), grid.spacing)).clip(-32768, 32767).astype(np.int16)
    reference, sample, seconds = build_reference(hu, region, models, samples=20_000, seed=seed, mirror_hu=mirror_hu)
    meta = {"made_by": "benchmarks/cuda_check.py --make-case", "seed": seed, "hypodensity": hypodensity,
            "spacing_mm": list(grid.spacing), "models_version": models.version, "cutoffs": dict(models.cutoffs),
            "cpu_float32_seconds": seconds, "torch": torch.__version__, "threads": torch.get_num_threads()}
    save_case(path, hu, region, reference, sample, meta, mirror_hu=mirror_hu)
    return meta


def small_case(models, *, seed: int = 0) -> dict:
    """--small: the central 2 slices and 160 x 160 voxels of the case, its reference recomputed on the CPU."""
    case = load_case(CASE_PATH)
    z0 = case["hu"].shape[0] // 2 - 1
    centre = np.argwhere(case["region"][z0]).mean(axis=0).astype(int)
    y0, x0 = (max(0, int(c) - 80) for c in centre)
    crop = (slice(z0, z0 + 2), slice(y0, y0 + 160), slice(x0, x0 + 160))
    hu, region = case["hu"][crop], case["region"][crop]
    mirror_hu = case["mirror_hu"][crop] if case.get("mirror_hu") is not None else None  # each voxel keeps its counterpart
    reference, sample, _ = build_reference(hu, region, models, samples=2000, seed=seed, mirror_hu=mirror_hu)
    return {"hu": hu, "region": region, "sample": sample, "reference": reference, "meta": case["meta"],
            "mirror_hu": mirror_hu}


def environment(device: str) -> dict:
    env = {"python": platform.python_version(), "torch": torch.__version__, "device": device}
    if device.startswith("cuda"):
        env.update(gpu=torch.cuda.get_device_name(), cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version())
    return env


def print_report(result: dict) -> None:
    env = result["environment"]
    print("environment: " + ", ".join(f"{k} {v}" for k, v in env.items()))
    eq = result["equivalence"]
    if "error" in eq:
        print(f"1. equivalence: ERROR {eq['error']}")
    else:
        print(f"1. equivalence {tuple(eq['shape'])}, {eq['voxels']} voxels: max |dense - patch-wise| {eq['max_abs_diff']:.2e} "
              f"(< {EQUIVALENCE_TOL:g}), outside region nonzero {eq['outside_nonzero']}, min prob SD "
              f"{eq['min_probability_sd']:.2f} -> {'PASS' if eq['passed'] else 'FAIL'}")
    plain = result.get("equivalence_no_cudnn")
    if plain:
        print("   without cuDNN (informative): " + (f"ERROR {plain['error']}" if "error" in plain else
              f"max |dense - patch-wise| {plain['max_abs_diff']:.2e}, outside nonzero {plain['outside_nonzero']}"))
    case = result.get("shipped")
    if case and "error" in case:
        print(f"2. shipped weights: ERROR {case['error']}")
    elif case:
        print(f"2. shipped weights on {tuple(case['shape'])} ({case['region_voxels']} region voxels), models {case['models_version']}"
              + (f", peak GPU {case['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in case else ""))
        print(f"   {'precision':9} {'network':12} {'count_ref':>9} {'count':>9} {'rel':>9} {'sum rel':>9} {'flipped':>7} {'max|dp|':>9}")
        for precision, p in case["precisions"].items():
            if "error" in p:
                print(f"   {precision}: ERROR {p['error']}")
                continue
            for row in p["networks"]:
                print(f"   {precision:9} {row['name']:12} {row['count_ref']:9d} {row['count']:9d} {row['count_rel_diff']:9.1e} "
                      f"{row['sum_rel_diff']:9.1e} {row['flipped']:7d} {row['sample_max_abs_diff']:9.1e}")
            verdict = {True: "PASS", False: "FAIL", None: "reported"}[p["passed"]]
            print(f"   {precision}: median {p['median_s']:.3f} s ({p['voxels_per_s'] / 1e6:.2f} M region voxels/s), union "
                  f"{p['union']} vs {p['union_ref']} voxels, labels differ {p['labels_differ']} -> {verdict}")
    tf32 = result.get("tf32")
    if tf32 and "error" in tf32:
        print(f"3. TF32 effect: ERROR {tf32['error']}")
    elif tf32:
        print(f"3. conv2 vs CPU, relative: PyTorch default {tf32['default_rel_diff']:.1e}, corelab's float32 {tf32['corelab_rel_diff']:.1e}")
    print(f"total {result['seconds']:.1f} s -> {'PASS' if result['passed'] else 'FAIL'}")


def run(device: str, *, small: bool, models_dir: Path | None, skip_shipped: bool = False, repeats: int = 3) -> dict:
    """All checks; each part's failure is recorded in the result so the others still run."""
    start = time.perf_counter()
    result: dict = {"environment": environment(device)}
    try:
        result["equivalence"] = equivalence(device, shape=(2, 40, 48) if small else (4, 96, 96), n_voxels=100 if small else 500)
    except Exception as error:  # noqa: BLE001 - a one-shot GPU run must report every part, not stop at the first
        result["equivalence"] = {"error": f"{type(error).__name__}: {error}", "passed": False}
    if device.startswith("cuda"):
        try:
            result["equivalence_no_cudnn"] = equivalence(device, cudnn=False)
        except Exception as error:  # noqa: BLE001 - as above
            result["equivalence_no_cudnn"] = {"error": f"{type(error).__name__}: {error}"}
    if not skip_shipped:
        try:
            models = load_models(models_dir, device=device)
            case = small_case(load_models(models_dir)) if small else load_case(CASE_PATH)
            if not small and case["meta"]["models_version"] != models.version:
                raise RuntimeError(f"the case's reference used models {case['meta']['models_version']}, not {models.version}")
            result["shipped"] = {"models_version": models.version, "case_meta": case["meta"], **case_check(
                case, models.networks, dict(models.cutoffs), norm=models.norm, device=device, repeats=repeats)}
        except Exception as error:  # noqa: BLE001 - as above
            result["shipped"] = {"error": f"{type(error).__name__}: {error}"}
    try:
        result["tf32"] = tf32_effect(device)
    except Exception as error:  # noqa: BLE001 - as above
        result["tf32"] = {"error": f"{type(error).__name__}: {error}"}
    shipped = result.get("shipped", {})
    result["passed"] = bool(result["equivalence"]["passed"]) and (
        skip_shipped or ("error" not in shipped and bool(shipped["precisions"]["float32"]["passed"])))
    result["seconds"] = time.perf_counter() - start
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--out", type=Path, help="folder for cuda_check.json")
    parser.add_argument("--small", action="store_true", help="small sizes (a crop of the case, reference recomputed)")
    parser.add_argument("--models", type=Path, default=None, help="model folder (default: the repository's models/)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per precision after one warm-up")
    parser.add_argument("--skip-shipped", action="store_true", help="only the random-weight equivalence")
    parser.add_argument("--make-case", action="store_true", help=f"rebuild {CASE_PATH.name} here (needs SimpleITK)")
    parser.add_argument("--seed", type=int, default=11, help="--make-case: the synthetic patient's seed")
    args = parser.parse_args(argv)
    if args.make_case:
        print(json.dumps(make_case(CASE_PATH, models_dir=args.models, seed=args.seed, hypodensity="intermediate"), indent=1))
        return 0
    result = run(args.device, small=args.small, models_dir=args.models, skip_shipped=args.skip_shipped, repeats=args.repeats)
    if args.out:  # written before the table, so the numbers survive a failure while printing
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "cuda_check.json").write_text(json.dumps(result, indent=1) + "\n")
    print_report(result)
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
