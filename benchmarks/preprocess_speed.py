"""Time all preprocessing of one scan: analysis grid, intracranial region, CSF (2 cores are enough).

    python benchmarks/preprocess_speed.py                 # built-in phantom, 512 x 512, 5 mm and 1 mm inputs
    python benchmarks/preprocess_speed.py --synth 3       # also 3 corelab.synth patients, if available

The built-in phantom is an ellipsoidal head (cavity 1380.0 mL) with skull, foramen magnum and
canal, scalp, ventricles and 3 HU noise on a 512 x 512 matrix of 0.45 mm pixels, 160 mm high: as 32
slices of 5 mm, and as 160 slices of 1 mm that the analysis grid averages into the same 32 slabs.
Prints one line per case: wall seconds per step (median of --repeat runs), CPU seconds (on a
shared machine wall time grows with the load average, printed first) and the volumes found.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from corelab.config import Method
from corelab.io.volume import Volume
from corelab.preprocess import analysis_region, to_analysis_grid

CAVITY = (80.0, 0.0, 0.0, 57.0, 85.0, 68.0)  # centre z, y, x and semi-axes z, y, x in mm


def head(slice_mm: float, *, pixel_mm: float = 0.45, matrix: int = 512, height_mm: float = 160.0, seed: int = 0) -> Volume:
    """The benchmark phantom as a `Volume` (HU) with ``slice_mm`` slices."""
    cz, cy, cx, az, ay, ax = CAVITY
    half = matrix * pixel_mm / 2
    y = (-half + pixel_mm * (np.arange(matrix) + 0.5))[:, None]
    x = (-half + pixel_mm * (np.arange(matrix) + 0.5))[None, :]
    nz = int(round(height_mm / slice_mm))
    hu = np.empty((nz, matrix, matrix), np.float32)
    for k in range(nz):
        z = (k + 0.5) * slice_mm

        def inside(pad, vz=z):
            return ((vz - cz) / (az + pad)) ** 2 + ((y - cy) / (ay + pad)) ** 2 + ((x - cx) / (ax + pad)) ** 2 <= 1

        ring = np.hypot(y - 10.0, x)
        s = np.full((matrix, matrix), -1000.0, np.float32)
        s[inside(11.0)] = 30.0
        s[inside(6.0)] = 1000.0
        s[inside(0.0)] = 32.0
        if z < cz:
            s[inside(6.0) & ~inside(0.0) & (ring < 16.0)] = 35.0  # foramen magnum
        if z < cz - az:
            s[(ring < 55.0) & ~inside(11.0)] = 45.0
            s[ring < 22.0] = 1000.0
            s[ring < 14.0] = 35.0
        for vx in (-13.0, 13.0):
            s[((z - 85.0) / 16.0) ** 2 + ((y - 5.0) / 32.0) ** 2 + ((x - vx) / 11.0) ** 2 <= 1] = 5.0
        hu[k] = s
    hu += np.random.default_rng(seed).normal(0.0, 3.0 * np.sqrt(slice_mm / 5.0) if slice_mm < 5 else 3.0, hu.shape).astype(np.float32)
    return Volume(array=hu, spacing=(slice_mm, pixel_mm, pixel_mm))


def time_case(name: str, volume: Volume, repeat: int, method: Method) -> None:
    grid_s, region_s, cpu_s = [], [], []
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        grid = to_analysis_grid(volume, method.grid)
        t1 = time.perf_counter()
        regions = analysis_region(grid.array, grid.spacing, method)
        t2, c2 = time.perf_counter(), time.process_time()
        grid_s.append(t1 - t0)
        region_s.append(t2 - t1)
        cpu_s.append(c2 - c0)
    g, r, c = statistics.median(grid_s), statistics.median(region_s), statistics.median(cpu_s)
    print(
        f"{name:28s} input {'x'.join(map(str, volume.array.shape))} -> grid {'x'.join(map(str, grid.array.shape))}: "
        f"grid {g:5.2f} s + regions {r:5.2f} s = {g + r:5.2f} s wall ({c:5.2f} s CPU, all threads); intracranial {regions.intracranial.sum() * grid.voxel_ml:7.1f} mL, "
        f"CSF {regions.csf.sum() * grid.voxel_ml:5.1f} mL, foramen slice {regions.foramen_slice}, flags {len(regions.flags)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--synth", type=int, default=0, help="also time this many corelab.synth patients")
    args = parser.parse_args()
    method = Method()
    print(f"built-in phantom: cavity 1380.0 mL, ventricles 47.2 mL; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    time_case("phantom 5 mm", head(5.0), args.repeat, method)
    time_case("phantom 1 mm (thin slices)", head(1.0), args.repeat, method)
    if args.synth:
        try:
            from corelab.synth.phantom import make_patient
        except ImportError:
            print("corelab.synth is not available; skipped")
            return
        for seed in range(args.synth):
            patient = make_patient(seed)
            time_case(f"synth patient {seed}", patient.volume(), args.repeat, method)


if __name__ == "__main__":
    main()
