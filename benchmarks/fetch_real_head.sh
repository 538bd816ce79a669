#!/bin/sh
# Fetch the real normal head CT used by tests/preprocess/test_real_head.py and the benchmarks:
# InVesalius' Cranium.inv3 from the Debian package invesalius-examples, into benchmarks/data/real/
# (gitignored). Needs apt-get and dpkg (Debian or Ubuntu with the universe component) to fetch, and
# corelab's Python (.venv, else python3 with SimpleITK and scipy) for what the benchmarks read, written
# each time (a few seconds, through a temporary file): cranium.nii.gz (tests/helpers/real_head.py
# `read_inv3`, axial) and cranium-lesion.nii.gz (`known_lesion`: the right frontal lesion this head
# holds, left out of the benchmarks' figures with `accuracy.py --unscored`).
set -eu
bench="$(cd "$(dirname "$0")" && pwd)"
dest="$bench/data/real"
mkdir -p "$dest"
if [ ! -f "$dest/Cranium.inv3" ]; then
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  (cd "$work" && apt-get download invesalius-examples >/dev/null)
  dpkg -x "$work"/invesalius-examples_*.deb "$work/x"
  cp "$work/x/usr/share/doc/invesalius-examples/examples/Cranium.inv3" "$dest/"
fi
python="$bench/../.venv/bin/python"
[ -x "$python" ] || python=python3
PYTHONPATH="$bench/../tests/helpers" "$python" -c "
import os, sys, SimpleITK as sitk; from real_head import known_lesion, read_inv3
dest = sys.argv[1]
image = read_inv3(os.path.join(dest, 'Cranium.inv3'))
for name, out in (('cranium', image), ('cranium-lesion', known_lesion(image))):
    part = os.path.join(dest, f'.{name}.{os.getpid()}.nii.gz')
    sitk.WriteImage(out, part, useCompression=True)
    os.replace(part, os.path.join(dest, f'{name}.nii.gz'))" "$dest"
echo "$dest/Cranium.inv3"
