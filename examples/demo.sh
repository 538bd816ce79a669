#!/usr/bin/env bash
# The demo: a small synthetic trial made by `corelab synth`, the batch (`corelab run`) with two
# workers, then the agreement report (`corelab compare`) against the simulated manual reads.
# Everything lands in examples/demo-trial/ (generated, not committed).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
trial=examples/demo-trial
n=${CORELAB_DEMO_N:-10}

corelab --version
corelab synth "$trial" --n "$n" --seed 20261127 --preview
corelab run "$trial/manifest.xlsx" --out "$trial/corelab-results" --workers 2
corelab compare "$trial/corelab-results" --reference "$trial/manual" --trial "corelab demo (synthetic phantoms)"
echo
echo "demo: volumes   $trial/corelab-results/volumes.xlsx"
echo "demo: QC images $trial/corelab-results/qc/"
echo "demo: report    $trial/corelab-results/agreement.pdf"
