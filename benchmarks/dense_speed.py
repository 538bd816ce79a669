"""Dense versus patch-wise inference speed of the four CNNs on one synthetic 512x512 head CT.

    python benchmarks/dense_speed.py [--seed 0] [--threads 2] [--sample 20000] [--device cpu|cuda] [--models DIR]

Steps: a `corelab.synth.make_patient` scan (512 matrix, 5 mm slices) -> analysis grid -> analysis
region; the four networks (the shipped weights when `--models` or models/card.json exists, random
ones otherwise: speed does not depend on the values) run densely over every region voxel, and
patch-wise (19x19x3 patches, batches of 4096) over a random sample of region voxels. Prints both
rates, the patch-wise time projected to the whole region, the ratio, and the max |difference| of
the two on the sample (must be < 1e-5).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from corelab.dense import dense_probabilities
from corelab.model import NETWORK_NAMES, InputNorm, PatchCNN, default_models_dir, load_models, resolve_device
from corelab.patches import extract_patches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sample", type=int, default=20_000, help="voxels for the patch-wise timing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--models", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from corelab.preprocess import analysis_region, to_analysis_grid
    from corelab.synth.phantom import make_patient

    t0 = time.time()
    phantom = make_patient(args.seed, matrix=512, hypodensity="intermediate")
    grid = to_analysis_grid(phantom.volume())
    regions = analysis_region(grid.array, grid.spacing)
    hu, region = grid.array, regions.region
    print(f"scan {phantom.hu.shape} -> analysis grid {hu.shape} spacing {grid.spacing} mm "
          f"({time.time() - t0:.1f} s to make and preprocess)")
    n_region = int(region.sum())
    print(f"analysis region: {n_region} voxels on {int(region.any(axis=(1, 2)).sum())} slices")

    folder = args.models or default_models_dir()
    if Path(folder, "card.json").is_file():
        models = load_models(folder, device=args.device)
        networks, norm, source = dict(models.networks), models.norm, f"weights from {folder}"
    else:
        torch.manual_seed(args.seed)
        device = resolve_device(args.device)
        networks = {name: PatchCNN().to(device).eval() for name in NETWORK_NAMES}
        norm, source = InputNorm(), "random weights"
    print(f"networks: {', '.join(networks)} ({source}); device {args.device}; {args.threads} CPU threads")

    t0 = time.time()
    dense = dense_probabilities(hu, region, networks, norm=norm, device=args.device)
    if args.device.startswith("cuda"):
        torch.cuda.synchronize()
    dense_s = time.time() - t0

    rng = np.random.default_rng(args.seed)
    voxels = np.argwhere(region)
    voxels = voxels[rng.choice(len(voxels), size=min(args.sample, len(voxels)), replace=False)]
    x = norm.apply(hu)
    device = resolve_device(args.device)
    t0 = time.time()
    worst = 0.0
    with torch.inference_mode():
        for start in range(0, len(voxels), 4096):
            chunk = voxels[start:start + 4096]
            batch = torch.from_numpy(extract_patches(x, chunk, pad_value=norm.pad_value)).to(device)
            for name, net in networks.items():
                prob = net.probability(batch).to("cpu").numpy()
                worst = max(worst, float(np.abs(prob - dense[name][tuple(chunk.T)]).max()))
    patch_s = time.time() - t0
    projected = patch_s * n_region / len(voxels)
    print(f"dense:      {dense_s:8.1f} s for {n_region} voxels x 4 CNNs ({n_region / dense_s:,.0f} voxels/s)")
    print(f"patch-wise: {patch_s:8.1f} s for {len(voxels)} voxels x 4 CNNs ({len(voxels) / patch_s:,.0f} voxels/s), "
          f"projected {projected:.0f} s for the region")
    print(f"ratio patch-wise / dense: {projected / dense_s:.1f}x; max |dense - patch-wise| = {worst:.2e}")


if __name__ == "__main__":
    main()
