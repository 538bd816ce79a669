"""Speed of corelab on one machine: stages, dense vs patch-wise, GFLOP/s vs matmul peak, scans/hour.

    python benchmarks/speed.py [--threads 2] [--trial-scans 20] [--sample 20000] [--models DIR] [--device cpu]

What it measures (issue 9), in this order, with the machine's load average printed first because
wall times on a shared machine grow with it:

1. The machine's float32 matrix-product peak: the best of 5 `torch.mm` of 4096 x 4096 matrices on
   `--threads` threads (GFLOP/s).
2. One synthetic 512 x 512 x 32 head CT (`corelab.synth.make_patient`, 5 mm slices) written as a
   DICOM series, processed as `corelab run` processes a scan (`corelab.pipeline.scan.process_scan`, then
   the mask, QC image and record written as `corelab.pipeline` writes them): seconds per stage,
   median of `--repeat` runs, and the CNN stage's FLOP floor (analysis-region voxels x the four
   dense CNNs' FLOP per voxel) divided by its time, against the matmul peak. Also how many voxel
   positions the convolutions cover per region voxel (box, halo and the region's CSF holes).
3. Dense against patch-wise inference of the same four networks on the same scan: dense over the
   whole region, patch-wise (19x19x3 patches, batches of 4096) over `--sample` random region voxels,
   projected to the region; the ratio, and the max |difference| of the probabilities on the sample.
4. Peak memory of one worker: a fresh process runs `process_scan` on a 512 x 512 x 64 scan (the same
   head with 2.5 mm slices) and reports its peak resident set size.
5. The opt-in bfloat16 arithmetic (`--precision bfloat16`) on the same scan: CNN seconds, max
   |probability difference| and the labels' agreement with float32 (Dice of the infarct, voxels
   whose label changes, volume change).
6. Scans per hour: a `corelab synth` trial of `--trial-scans` patients run by `corelab.pipeline.batch.run_batch`
   with 1 worker x `--threads` torch threads, then `--threads` workers x 1 thread; then the latter
   with bfloat16, and each scan's infarct volume against float32's.

Uses the shipped weights (or `--models`); speed does not depend on the weights' values.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PEAK_SIZE = 4096


def matmul_peak_gflops(threads: int, *, size: int = PEAK_SIZE, repeats: int = 5) -> float:
    """Best float32 `torch.mm` rate of two size x size matrices on `threads` threads, GFLOP/s."""
    torch.set_num_threads(threads)
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best / 1e9


def write_scan(folder: Path, *, seed: int, slices_per_5mm: int = 1) -> Path:
    """The benchmark head as a DICOM series in `folder`; `slices_per_5mm` 2 gives 2.5 mm slices."""
    from corelab.synth.dicom_write import derived_uid, write_dicom_series
    from corelab.synth.phantom import make_patient

    phantom = make_patient(seed, matrix=512, hypodensity="intermediate")
    volume = phantom.volume()
    hu = np.repeat(volume.array, slices_per_5mm, axis=0)
    spacing = (volume.spacing[0] / slices_per_5mm, *volume.spacing[1:])
    write_dicom_series(
        hu, spacing=spacing, origin=tuple(volume.origin), folder=folder, patient_id=f"BENCH{slices_per_5mm}",
        study_uid=derived_uid("bench", seed), series_uid=derived_uid("bench", seed, slices_per_5mm),
        acquired=dt.datetime(2024, 1, 1, 12, 0), slice_mm=spacing[0],
    )
    return folder


def stage_seconds(scan: Path, models, *, threads: int, device: str, out: Path) -> dict[str, float]:
    """One scan through `process_scan` and the pipeline's writes; seconds per stage."""
    from corelab.config import Method
    from corelab.io.volume import Volume
    from corelab.pipeline.outputs import atomic_write_bytes, write_mask, write_record
    from corelab.pipeline.scan import ScanJob, process_scan, torch_settings

    method = dataclasses.replace(Method(), grid=models.grid)
    with torch_settings(threads):
        result = process_scan(ScanJob(0, "BENCH", str(scan)), models, device=device, method=method)
    if result.status != "ok":
        raise SystemExit(f"the benchmark scan failed: {result.error}")
    start = time.perf_counter()
    like = Volume(array=result.labels, spacing=result.spacing, origin=result.origin, direction=result.direction)
    write_mask(result.labels, like, out / "BENCH.nii.gz")
    atomic_write_bytes(out / "BENCH.png", result.qc_png)
    write_record(out / "BENCH.json", {"patient_id": "BENCH", **dataclasses.asdict(result.measurements)})
    return {**result.stage_seconds, "write": time.perf_counter() - start, "total": result.seconds}


def analysis_inputs(scan: Path, models):
    """HU on the analysis grid, the analysis region and the grid's spacing (mm; the mirror input needs
    it) of `scan`, as `corelab run` computes them."""
    from corelab.config import Method
    from corelab.io.read import read_scan
    from corelab.preprocess import analysis_region, to_analysis_grid

    method = dataclasses.replace(Method(), grid=models.grid)
    grid = to_analysis_grid(read_scan(scan), method.grid)
    return grid.array, analysis_region(grid.array, grid.spacing, method).region, grid.spacing


def covered_positions(region: np.ndarray) -> float:
    """conv2 output positions that dense inference computes per region voxel (box, halo, holes)."""
    from corelab.segment.dense import region_tiles

    # conv2 is needed at (h + 2) x (w + 2) positions for an h x w tile (pool2 reads v and v + 2).
    total = sum((t1 - t0 + 2) * (c1 - c0 + 2) for _, t0, t1, c0, c1 in region_tiles(region, tile_voxels=60_000))
    return total / int(region.sum())


def dense_vs_patchwise(hu, region, spacing, models, *, sample: int, device: str, seed: int = 0) -> dict[str, float]:
    """Seconds of dense inference over the region and of patch-wise inference projected to it
    (patches cut from the network's own input volumes: the scan, and its mirror for the mirror CNN)."""
    from corelab.segment.dense import dense_probabilities
    from corelab.segment.folder import resolve_device
    from corelab.segment.inputs import network_input
    from corelab.segment.networks import architecture_inputs
    from corelab.segment.patches import extract_patches

    networks, norm = dict(models.networks), models.norm
    start = time.perf_counter()
    dense = dense_probabilities(hu, region, networks, norm=norm, device=device, spacing=spacing)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    dense_s = time.perf_counter() - start
    voxels = np.argwhere(region)
    voxels = voxels[np.random.default_rng(seed).choice(len(voxels), size=min(sample, len(voxels)), replace=False)]
    inputs = architecture_inputs(type(next(iter(networks.values()))))
    x, torch_device, worst = network_input(hu, region, spacing, norm, inputs), resolve_device(device), 0.0
    start = time.perf_counter()
    with torch.inference_mode():
        for first in range(0, len(voxels), 4096):
            chunk = voxels[first:first + 4096]
            batch = torch.from_numpy(extract_patches(x, chunk, pad_value=norm.pad_value)).to(torch_device)
            for name, net in networks.items():
                prob = net.probability(batch).to("cpu").numpy()
                worst = max(worst, float(np.abs(prob - dense[name][tuple(chunk.T)]).max()))
    patch_s = (time.perf_counter() - start) * int(region.sum()) / len(voxels)
    return {"dense_s": dense_s, "patchwise_s": patch_s, "sampled": len(voxels), "max_diff": worst}


def peak_memory_mib(scan: Path, models_dir: str, *, threads: int, device: str) -> float:
    """Peak RSS (MiB) of a fresh process that loads the models and processes `scan` once."""
    code = (
        "import resource, sys\n"
        "import dataclasses\n"
        "from corelab.config import Method\n"
        "from corelab.segment import load_models\n"
        "from corelab.pipeline.scan import ScanJob, process_scan, torch_settings\n"
        f"models = load_models({models_dir!r}, device={device!r})\n"
        f"with torch_settings({threads}):\n"
        f"    r = process_scan(ScanJob(0, 'MEM', {str(scan)!r}), models, device={device!r}, method=dataclasses.replace(Method(), grid=models.grid))\n"
        "print(r.status, r.error, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    status, *_, kib = done.stdout.split()
    if status != "ok":
        raise SystemExit(f"the memory benchmark scan failed: {done.stdout.strip()}")
    return int(kib) / 1024


def bfloat16_effect(hu, region, spacing, models, *, device: str) -> dict[str, float]:
    """CNN seconds of both precisions on one scan and how much bfloat16 changes probabilities and labels
    (labelled as `corelab.segment.segment` does: the card's smoothing, cut-offs and rules)."""
    from corelab.segment.contralateral import mirror_views
    from corelab.segment.dense import dense_probabilities
    from corelab.segment.labels import model_labels, uses_mirror

    out: dict[str, float] = {}
    labels, probs = {}, {}
    views = mirror_views(hu, region, spacing) if uses_mirror(models) else None  # one registration for both
    for precision in ("float32", "bfloat16"):
        start = time.perf_counter()
        probs[precision] = dense_probabilities(hu, region, dict(models.networks), norm=models.norm, device=device,
                                               precision=precision, spacing=spacing,
                                               mirror_hu=views.hu if views is not None else None)
        out[f"{precision}_s"] = time.perf_counter() - start
        labels[precision] = model_labels(probs[precision], models, region, hu, spacing, views)
    a, b = labels["float32"] > 0, labels["bfloat16"] > 0
    out.update(
        max_prob_diff=max(float(np.abs(probs["float32"][n] - probs["bfloat16"][n]).max()) for n in probs["float32"]),
        infarct_dice=2.0 * float((a & b).sum()) / max(1, int(a.sum() + b.sum())),
        changed_voxels=int((labels["float32"] != labels["bfloat16"]).sum()),
        infarct_voxels_float32=int(a.sum()),
        volume_change_percent=100.0 * (int(b.sum()) - int(a.sum())) / max(1, int(a.sum())),
    )
    return out


def trial_rate(folder: Path, models_dir: str, *, workers: int, threads: int, device: str,
               precision: str = "float32") -> tuple[float, int, Path]:
    """(seconds, ok scans, output folder) for `run_batch` over the trial in `folder`, fresh output folder."""
    from corelab.config import Method
    from corelab.pipeline.batch import run_batch

    out = Path(tempfile.mkdtemp(prefix=f"corelab-speed-w{workers}-{precision}-"))
    start = time.perf_counter()
    summary = run_batch(folder / "manifest.xlsx", out_dir=out, models_dir=models_dir, workers=workers,
                        threads=threads, device=device, progress=False, method=Method(precision=precision))
    return time.perf_counter() - start, summary.n_ok, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the issue's target: 2)")
    parser.add_argument("--trial-scans", type=int, default=20, help="patients in the scans/hour trial; 0 skips it")
    parser.add_argument("--sample", type=int, default=20_000, help="voxels for the patch-wise timing")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the stage timing (median)")
    parser.add_argument("--models", default=None, help="model folder (default: the shipped models/)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args()

    from corelab import __version__, bound_onednn_cache

    bound_onednn_cache()  # as corelab run does; the memory probe's subprocess inherits it
    from corelab.segment.dense import dense_flops_per_voxel
    from corelab.segment.folder import default_models_dir, load_models

    models_dir = str(args.models or default_models_dir())
    models = load_models(models_dir, device=args.device)
    figures: dict[str, object] = {"corelab": __version__, "torch": torch.__version__, "threads": args.threads,
                                  "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()}
    print(f"corelab {__version__}, torch {torch.__version__}, {os.cpu_count()} cores, {args.threads} threads; "
          f"load average {os.getloadavg()[0]:.2f} at start")

    peak = matmul_peak_gflops(args.threads)
    figures["matmul_peak_gflops"] = round(peak, 1)
    print(f"\n1. float32 matmul peak ({PEAK_SIZE}x{PEAK_SIZE}, best of 5): {peak:.0f} GFLOP/s")

    work = Path(tempfile.mkdtemp(prefix="corelab-speed-"))
    scan32 = write_scan(work / "scan32", seed=args.seed)
    hu, region, spacing = analysis_inputs(scan32, models)
    n_region = int(region.sum())
    floor_flop = n_region * dense_flops_per_voxel(len(models.networks))
    runs = [stage_seconds(scan32, models, threads=args.threads, device=args.device, out=work)
            for _ in range(args.repeat)]
    stages = {name: statistics.median(run[name] for run in runs) for name in runs[0]}
    figures["stages_s"] = {name: round(value, 2) for name, value in stages.items()}
    cnn_gflops = floor_flop / stages["cnn"] / 1e9
    covered = covered_positions(region)
    figures.update(region_voxels=n_region, floor_tflop=round(floor_flop / 1e12, 3),
                   cnn_gflops=round(cnn_gflops, 1), cnn_fraction_of_peak=round(cnn_gflops / peak, 3),
                   conv_positions_per_region_voxel=round(covered, 3))
    print(f"\n2. one 512x512x{hu.shape[0]} scan (DICOM, 5 mm slices), median of {args.repeat} runs:")
    print("   " + "  ".join(f"{name} {value:.2f} s" for name, value in stages.items()))
    print(f"   analysis region {n_region:,} voxels; FLOP floor of {len(models.networks)} dense CNNs "
          f"{floor_flop / 1e12:.2f} TFLOP = {floor_flop / peak / 1e9:.1f} s at the matmul peak")
    print(f"   CNN stage {cnn_gflops:.0f} GFLOP/s = {cnn_gflops / peak:.0%} of the matmul peak; whole scan "
          f"{stages['total'] + stages['write']:.1f} s = {(stages['total'] + stages['write']) / (floor_flop / peak / 1e9):.1f}x "
          f"the floor")
    print(f"   the convolutions cover {covered:.2f} positions per region voxel (tile halo and the region's CSF holes)")

    torch.set_num_threads(args.threads)
    ratio = dense_vs_patchwise(hu, region, spacing, models, sample=args.sample, device=args.device, seed=args.seed)
    figures["dense_vs_patchwise"] = {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in ratio.items()}
    print(f"\n3. dense {ratio['dense_s']:.1f} s vs patch-wise {ratio['patchwise_s']:.0f} s (projected from "
          f"{ratio['sampled']} voxels): {ratio['patchwise_s'] / ratio['dense_s']:.1f}x; "
          f"max |difference| {ratio['max_diff']:.1e}")

    scan64 = write_scan(work / "scan64", seed=args.seed, slices_per_5mm=2)
    mib = peak_memory_mib(scan64, models_dir, threads=args.threads, device=args.device)
    figures["peak_memory_mib_512x512x64"] = round(mib)
    print(f"\n4. peak memory of one worker on a 512x512x64 scan: {mib:.0f} MiB")

    torch.set_num_threads(args.threads)
    effect = bfloat16_effect(hu, region, spacing, models, device=args.device)
    figures["bfloat16_scan"] = {k: float(f"{v:.4g}") for k, v in effect.items()}
    print(f"\n5. bfloat16 (opt-in) on the same scan: CNNs {effect['bfloat16_s']:.1f} s vs float32 "
          f"{effect['float32_s']:.1f} s ({effect['float32_s'] / effect['bfloat16_s']:.1f}x); max |probability "
          f"difference| {effect['max_prob_diff']:.3f}; infarct Dice vs float32 {effect['infarct_dice']:.4f}, "
          f"{effect['changed_voxels']} voxels relabelled, volume {effect['volume_change_percent']:+.2f}%")

    if args.trial_scans:
        import pandas as pd

        from corelab.synth import make_trial

        trial = work / "trial"
        make_trial(trial, n=args.trial_scans, seed=20261127)
        print(f"\n6. a {args.trial_scans}-scan synthetic trial (corelab synth --seed 20261127):")
        outs = {}
        for workers, threads, precision in ((1, args.threads, "float32"), (args.threads, 1, "float32"),
                                            (args.threads, 1, "bfloat16")):
            seconds, ok, outs[precision] = trial_rate(trial, models_dir, workers=workers, threads=threads,
                                                      device=args.device, precision=precision)
            rate = 3600 * args.trial_scans / seconds
            figures[f"trial_w{workers}_t{threads}_{precision}"] = {"seconds": round(seconds, 1), "ok": ok,
                                                                   "scans_per_hour": round(rate)}
            print(f"   {workers} worker(s) x {threads} thread(s), {precision}: {seconds:.0f} s, "
                  f"{rate:.0f} scans/hour ({ok} ok)")
        volumes = {p: pd.read_csv(o / "volumes.csv").set_index("patient_id")["infarct_ml"] for p, o in outs.items()}
        change = (volumes["bfloat16"] - volumes["float32"]).abs()
        figures["bfloat16_trial_abs_ml_change"] = {"median": round(float(change.median()), 3),
                                                   "max": round(float(change.max()), 3)}
        print(f"   bfloat16 vs float32 infarct volume per scan: median |change| {change.median():.2f} mL, "
              f"max {change.max():.2f} mL (float32 median volume {volumes['float32'].median():.1f} mL)")
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
