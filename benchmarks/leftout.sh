#!/usr/bin/env bash
# The left-out benchmark of the candidate networks: each trained with one small recipe (the same for
# all) on the procedural and atlas families, then tested on a family none of them saw, the real-CT
# family (lesions and mimics drawn into a real normal head), and on that normal head itself.
#
#   bash benchmarks/leftout.sh            # about 1.5-2 h on 2 cores; writes build/leftout/
#
# Candidates: the paper's patch CNN (barros2020-patch-cnn) and the same CNN with the scan's
# mid-sagittal mirror as three more channels (barros2020-mirror-cnn); both with the single-CNN
# baseline. Recipe: 60 mixed phantoms (corelab synth --family mixed --seed 2000), 20,000 lesion
# patches per network, 6 epochs, 8 validation scans per network, seed 0, one thread each (the two
# run side by side). Test: 24 background phantoms (stratified: 6 severe, 6 intermediate, 6 subtle,
# 6 controls; keys (424242, i)) and the normal head.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
out=build/leftout
cohort=${CORELAB_COHORT:-build/mixed-s2000-n60}
mkdir -p "$out"
bash benchmarks/fetch_real_head.sh >/dev/null
head=benchmarks/data/real/cranium.nii.gz
lesion=benchmarks/data/real/cranium-lesion.nii.gz  # its own right frontal lesion, left out of every figure
[ -f "$cohort/manifest.xlsx" ] || corelab synth "$cohort" --n 60 --seed 2000 --family mixed
for arch in barros2020-patch-cnn barros2020-mirror-cnn; do
  [ -f "$out/$arch/card.json" ] || corelab train "$cohort" --out "$out/$arch" --single --seed 0 \
      --patches-per-class 20000 --epochs 6 --val-scans 8 --architecture "$arch" --resume > "$out/train-$arch.log" 2>&1 &
done
wait
# Test patients split over two processes (one thread each); the tables join them.
for part in 0 12; do
  python benchmarks/accuracy.py --models "$out/barros2020-patch-cnn" "$out/barros2020-mirror-cnn" --family background \
      --background "$head" --unscored "$lesion" --schedule stratified --n-test 12 --first "$part" --threads 1 \
      --csv "$out/background-$part.csv" > "$out/test-background-$part.log" 2>&1 &
done
python benchmarks/accuracy.py --models "$out/barros2020-patch-cnn" "$out/barros2020-mirror-cnn" --n-test 0 \
    --normal-head "$head" --unscored "$lesion" --threads 1 --csv "$out/normal-head.csv" > "$out/test-normal-head.log" 2>&1
wait
python benchmarks/accuracy.py --from-csv "$out"/background-*.csv "$out/normal-head.csv" \
    --paired barros2020-mirror-cnn barros2020-patch-cnn \
    --paired barros2020-patch-cnn barros2020-patch-cnn/single | tee "$out/table.txt"
