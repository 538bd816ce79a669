#!/usr/bin/env bash
# Regenerates the shipped weights in models/ exactly as they were made: a 72-patient synthetic
# training cohort (`corelab synth --seed 1000`), then `corelab train` with the default recipe and
# the single-CNN baseline. About 10 minutes for the cohort and 20-30 minutes of training on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
cohort=${CORELAB_COHORT:-build/train-s1000}
[ -f "$cohort/manifest.xlsx" ] || corelab synth "$cohort" --n 72 --seed 1000
corelab train "$cohort" --out models --single --seed 0
