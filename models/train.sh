#!/usr/bin/env bash
# Regenerates the shipped weights in models/ exactly as they were made: a 100-patient synthetic
# training cohort (`corelab synth --seed 1000`), then `corelab train` with the default recipe
# (12 epochs keeping the one with the lowest validation-patch loss, +-3 HU calibration offsets,
# cut-offs chosen together for the Dice of the union on the validation scans, controls included)
# and the single-CNN baseline. Training is seeded and runs on one CPU thread, so the weights come out
# the same. About 10 minutes for the cohort and 25 minutes of training on a shared 2-core machine.
# CORELAB_COHORT=DIR uses an existing copy of the cohort.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
cohort=${CORELAB_COHORT:-build/train-s1000-n100}
[ -f "$cohort/manifest.xlsx" ] || corelab synth "$cohort" --n 100 --seed 1000
corelab train "$cohort" --out models --single --seed 0
