"""How much each phantom family looks like a real head CT: measured side by side with the real head.

    python benchmarks/realism.py --out benchmarks/realism-latest --n 3 [--physics wide] [--scanner-noise-hu 0]

Sources: the real normal head (InVesalius' Cranium.inv3, fetched by benchmarks/fetch_real_head.sh;
left out with a note when absent), `--n` control phantoms of each phantom family (procedural and,
when nilearn's templates are installed, atlas). Every source goes through what `corelab run` does
(read, 5 mm analysis grid, intracranial region, CSF), and is measured on the analysis grid, where
the networks see it:

- intracranial and CSF volume (mL);
- brain (analysis region) HU: a two-component Gaussian mixture between 15 and 55 HU gives the white-
  and grey-matter peaks and their distance; the 5th-95th percentile range;
- noise: SD of the high-pass residual (HU minus its 1.5 mm in-plane Gaussian) inside the eroded
  region, and its correlation length (mm at which the residual's autocorrelation along x drops
  below 0.5);
- skull thickness (mm above 300 HU along 72 rays from the intracranial centre, on the slice of
  largest intracranial area): median and 10th-90th percentiles.

Writes `table.csv` and `mosaic.png` (rows = sources; three axial slices at window 35/30 and 40/80)
into `--out`, and prints the table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk
from matplotlib.figure import Figure
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from corelab.config import GridParams, Method  # noqa: E402
from corelab.io.read import read_scan  # noqa: E402
from corelab.io.volume import Volume  # noqa: E402
from corelab.preprocess import analysis_region, to_analysis_grid  # noqa: E402

WINDOWS = ((35.0, 30.0), (40.0, 80.0))


def two_peaks(values: np.ndarray, *, low: float = 15.0, high: float = 55.0, iterations: int = 60) -> tuple[float, float]:
    """Means of a two-component 1D Gaussian mixture fitted by EM to the values in [low, high]: (lower, higher).

    >>> rng = np.random.default_rng(0)
    >>> [round(m) for m in two_peaks(np.concatenate([rng.normal(27, 2, 4000), rng.normal(38, 2, 3000)]))]
    [27, 38]
    """
    x = np.asarray(values, float)
    x = x[(x >= low) & (x <= high)]
    if x.size < 100:
        return float("nan"), float("nan")
    means = np.percentile(x, [25, 75]).astype(float)
    sds = np.array([x.std() / 2] * 2)
    weights = np.array([0.5, 0.5])
    for _ in range(iterations):
        density = weights * np.exp(-0.5 * ((x[:, None] - means) / sds) ** 2) / sds
        resp = density / np.maximum(density.sum(axis=1, keepdims=True), 1e-300)
        total = resp.sum(axis=0)
        weights = total / x.size
        means = (resp * x[:, None]).sum(axis=0) / total
        sds = np.sqrt((resp * (x[:, None] - means) ** 2).sum(axis=0) / total).clip(0.5)
    return float(means.min()), float(means.max())


def noise(hu: np.ndarray, region: np.ndarray, pixel_mm: float) -> tuple[float, float]:
    """High-pass residual SD (HU) inside the eroded region, and its correlation length along x (mm)."""
    smooth = ndimage.gaussian_filter(hu, (0, 1.5 / pixel_mm, 1.5 / pixel_mm))
    residual = hu - smooth
    inner = ndimage.binary_erosion(region, structure=np.ones((1, 9, 9), bool))
    if inner.sum() < 1000:
        return float("nan"), float("nan")
    sd = float(residual[inner].std())
    lengths = []
    for lag in range(1, 40):
        both = inner[:, :, :-lag] & inner[:, :, lag:]
        a, b = residual[:, :, :-lag][both], residual[:, :, lag:][both]
        if np.corrcoef(a, b)[0, 1] < 0.5:
            lengths.append(lag * pixel_mm)
            break
    return sd, (lengths[0] if lengths else float("nan"))


def skull_thickness(hu: np.ndarray, intracranial: np.ndarray, pixel_mm: float) -> tuple[float, float, float]:
    """Bone (> 300 HU) run length in mm outward along 72 rays from the intracranial centre of the slice of
    largest intracranial area: 10th, 50th and 90th percentiles."""
    z = int(np.argmax(intracranial.sum(axis=(1, 2))))
    cy, cx = ndimage.center_of_mass(intracranial[z])
    runs = []
    for angle in np.linspace(0, 2 * np.pi, 72, endpoint=False):
        steps = np.arange(0, max(hu.shape[1:]), 0.5)
        ys, xs = cy + steps * np.sin(angle), cx + steps * np.cos(angle)
        inside = (ys >= 0) & (ys < hu.shape[1] - 1) & (xs >= 0) & (xs < hu.shape[2] - 1)
        values = ndimage.map_coordinates(hu[z], [ys[inside], xs[inside]], order=1)
        inside_region = ndimage.map_coordinates(intracranial[z].astype(float), [ys[inside], xs[inside]], order=0) > 0
        leave = np.flatnonzero(~inside_region)
        if not leave.size:
            continue
        bone = values[leave[0]:] > 300.0
        first = np.flatnonzero(bone)
        if not first.size:
            continue
        after = bone[first[0]:]
        end = np.flatnonzero(~after)
        runs.append((end[0] if end.size else after.size) * 0.5 * pixel_mm)
    if not runs:
        return (float("nan"),) * 3
    return tuple(float(v) for v in np.percentile(runs, [10, 50, 90]))


def measure(name: str, volume: Volume, grid_params: GridParams = GridParams()) -> tuple[dict, np.ndarray, np.ndarray]:
    """One source's row of the table, and its analysis-grid HU and intracranial mask for the mosaic."""
    grid = to_analysis_grid(volume, grid_params)
    regions = analysis_region(grid.array, grid.spacing, Method())
    hu, voxel_ml = grid.array, float(np.prod(grid.spacing)) / 1000.0
    brain = hu[regions.region]
    white, grey = two_peaks(brain)
    sd, corr_mm = noise(hu, regions.region, grid.spacing[2])
    p10, p50, p90 = skull_thickness(hu, regions.intracranial, grid.spacing[2])
    row = {
        "source": name, "intracranial_ml": regions.intracranial.sum() * voxel_ml, "csf_ml": regions.csf.sum() * voxel_ml,
        "white_hu": white, "grey_hu": grey, "grey_white_hu": grey - white,
        "brain_p5_hu": float(np.percentile(brain, 5)), "brain_p95_hu": float(np.percentile(brain, 95)),
        "noise_sd_hu": sd, "noise_corr_mm": corr_mm,
        "skull_p10_mm": p10, "skull_median_mm": p50, "skull_p90_mm": p90,
        "flags": "; ".join(regions.flags),
    }
    return row, hu, regions.intracranial


def mosaic(sources: list[tuple[str, np.ndarray, np.ndarray]], path: Path) -> None:
    """Rows = sources; columns = three slices (35%, 55%, 75% up the intracranial extent) x two windows."""
    fig = Figure(figsize=(13, 2.3 * len(sources)))
    axes = fig.subplots(len(sources), 6, squeeze=False)
    for r, (name, hu, intracranial) in enumerate(sources):
        zs = np.flatnonzero(intracranial.any(axis=(1, 2)))
        picks = [int(zs[0] + f * (zs[-1] - zs[0])) for f in (0.35, 0.55, 0.75)] if zs.size else [0, 0, 0]
        for c, (z, (center, width)) in enumerate((z, w) for w in WINDOWS for z in picks):
            axis = axes[r, c]
            axis.imshow(hu[z], cmap="gray", vmin=center - width / 2, vmax=center + width / 2)
            axis.set_xticks([]), axis.set_yticks([])
            axis.set_title(f"{name} z{z} {center:g}/{width:g}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def _real_head() -> tuple[str, Volume] | None:
    from real_head import read_inv3, real_head_path

    path = real_head_path()
    if path is None:
        print("real head: Cranium.inv3 not found (run benchmarks/fetch_real_head.sh); left out")
        return None
    with tempfile.TemporaryDirectory() as work:
        nifti = Path(work) / "real.nii.gz"
        sitk.WriteImage(read_inv3(path), str(nifti))
        return "real head", read_scan(nifti)


def _phantoms(n: int, seed: int, physics: str = "default", scanner_noise_hu: float | None = None) -> list[tuple[str, Volume]]:
    """``scanner_noise_hu``: every phantom's scanner noise SD at 5 mm fixed at this (0: none, to
    measure the anatomy's own texture); None: drawn per site as `corelab synth` does."""
    import dataclasses

    from corelab.errors import CorelabError
    from corelab.synth.phantom import make_patient
    from corelab.synth.scanner import draw_scanner

    tag = ", ".join(t for t in ("" if physics == "default" else physics,
                                "" if scanner_noise_hu is None else f"scanner noise {scanner_noise_hu:g} HU") if t)
    tag = f" ({tag})" if tag else ""

    def scanner(i):
        if scanner_noise_hu is None:
            return None
        drawn = draw_scanner(np.random.default_rng([seed, i]), "A")
        return dataclasses.replace(drawn, noise_sd_hu=(scanner_noise_hu, scanner_noise_hu))

    out = [(f"procedural {i}{tag}", make_patient((seed, i), hypodensity="none", physics=physics,
                                                  scanner=scanner(i)).volume()) for i in range(n)]
    try:
        from corelab.synth.atlas import make_atlas_patient

        out += [(f"atlas {i}{tag}", make_atlas_patient((seed, i), hypodensity="none", physics=physics,
                                                        scanner=scanner(i)).volume()) for i in range(n)]
    except (ImportError, CorelabError) as error:
        print(f"atlas family left out: {error}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description="Phantom families beside the real normal head CT.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/realism-latest"))
    parser.add_argument("--n", type=int, default=3, help="control phantoms per family")
    parser.add_argument("--seed", type=int, default=515151)
    parser.add_argument("--physics", choices=("default", "wide"), default="default",
                        help="the phantoms' scanner physics (`corelab synth --physics`)")
    parser.add_argument("--scanner-noise-hu", type=float, default=None,
                        help="fix every phantom's scanner noise SD (HU at 5 mm; 0 = none: the anatomy's own texture)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    sources = ([real] if (real := _real_head()) else []) + _phantoms(args.n, args.seed, args.physics, args.scanner_noise_hu)
    rows, shown = [], []
    for name, volume in sources:
        row, hu, intracranial = measure(name, volume)
        rows.append(row)
        shown.append((name, hu, intracranial))
        print(f"{name}: measured", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "table.csv", index=False)
    mosaic(shown, args.out / "mosaic.png")
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.precision", 1):
        print(table.drop(columns="flags").to_string(index=False))
    print(f"\nwrote {args.out / 'table.csv'} and {args.out / 'mosaic.png'}")


if __name__ == "__main__":
    main()
