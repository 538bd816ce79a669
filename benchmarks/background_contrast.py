"""How far below the brain each class of the real-CT family is drawn: the class voxels' mean HU after
the drop against the same voxels before it, per patient.

    python benchmarks/background_contrast.py benchmarks/data/real/cranium.nii.gz --n 6

The classes are the paper's absolute HU ranges, so on a scanner whose brain reads dark the
intermediate class sits close to normal tissue; this prints by how much (keys (424242, 100 + i)).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from corelab.config import CLASSES
from corelab.synth.background import load_background, make_background_patient


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("background", type=Path, help="the normal head CT the family draws into")
    parser.add_argument("--n", type=int, default=6, help="patients per class")
    args = parser.parse_args()
    bg = load_background(args.background)
    before = np.asarray(bg.volume.array, dtype=np.float32)
    print(f"{args.background.name}: white / grey {bg.wm_hu:.1f} / {bg.gm_hu:.1f} HU, CSF {bg.csf_hu:.1f} HU, "
          f"noise SD {bg.noise_sd:.1f} HU")
    for klass in CLASSES:
        rows = []
        for i in range(args.n):
            p = make_background_patient(bg, (424242, 100 + i), hypodensity=klass)
            voxels = (p.labels >= 1) & (p.labels <= 3)
            rows.append((voxels.sum() * p.voxel_ml, float(p.hu[voxels].mean()), float(before[voxels].mean())))
        ml, after, was = (np.array(c) for c in zip(*rows))
        print(f"{klass:<13} {ml.min():6.1f}-{ml.max():6.1f} mL  mean {after.min():5.1f}-{after.max():5.1f} HU  "
              f"below the tissue replaced by {(was - after).min():4.1f}-{(was - after).max():4.1f} HU")


if __name__ == "__main__":
    main()
