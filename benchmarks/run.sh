#!/usr/bin/env bash
# corelab's benchmarks (not part of the test suite): speed of each stage and accuracy on held-out
# synthetic patients, realism of the phantom families against a real head. Run with `make benchmark`;
# takes about 30-50 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
models=${CORELAB_MODELS:-models}
echo "== the real normal head CT (Debian's invesalius-examples; used by the realism check and the real-head tests)"
bash benchmarks/fetch_real_head.sh || echo "real head not fetched: the realism check and real-head tests leave it out"
echo "== realism: each phantom family beside the real head (table and mosaic in benchmarks/realism-latest/)"
python benchmarks/realism.py --out benchmarks/realism-latest --n 3
echo "== preprocessing speed (512x512x32 phantom and 3 synth patients)"
python benchmarks/preprocess_speed.py --synth 3
echo "== speed: stages of one 512x512x32 scan, dense vs patch-wise, GFLOP/s vs matmul peak, memory, scans/hour"
python benchmarks/speed.py --models "$models" --threads 2 --trial-scans "${CORELAB_TRIAL_SCANS:-20}" \
    --json benchmarks/speed-latest.json
echo "== accuracy on held-out synthetic patients (seeds never used for training), paper's Table 1 layout"
# The shipped weights were trained on `corelab synth --seed 1000`; the test seed must differ.
python benchmarks/accuracy.py --models "$models" --n-test "${CORELAB_N_TEST:-20}" --test-seed 424242 \
    --csv benchmarks/accuracy-latest.csv
