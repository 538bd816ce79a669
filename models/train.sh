#!/usr/bin/env bash
# Regenerates the shipped weights in models/ exactly as they were made: a 100-patient synthetic
# training cohort (`corelab synth --seed 1000`), then `corelab train` with the default recipe
# (brain-referenced input, 40,000 lesion patches per network, 8 epochs keeping the one with the
# lowest validation-patch loss, +-3 HU calibration offsets; then the smoothing and the cut-offs chosen
# together for the Dice of the union on the dense maps of the validation scans, controls included)
# and the single-CNN baseline. Training is seeded and runs on one CPU thread, so the weights come out
# the same: rerun on 2026-11-28 it gave the shipped weights bit for bit in 48.5 minutes on a 2-core
# machine (9 for the cohort, 23 reading and training, 12 of validation maps, 4 choosing cut-offs).
# CORELAB_COHORT=DIR uses an existing copy of the cohort.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
cohort=${CORELAB_COHORT:-build/train-s1000-n100}
[ -f "$cohort/manifest.xlsx" ] || corelab synth "$cohort" --n 100 --seed 1000
corelab train "$cohort" --out models --single --seed 0
