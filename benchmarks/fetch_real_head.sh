#!/bin/sh
# Fetch the real normal head CT used by tests/preprocess/test_real_head.py and the benchmarks:
# InVesalius' Cranium.inv3 from the Debian package invesalius-examples, into benchmarks/data/real/
# (gitignored). Needs apt-get and dpkg (Debian or Ubuntu with the universe component).
set -eu
dest="$(cd "$(dirname "$0")" && pwd)/data/real"
mkdir -p "$dest"
[ -f "$dest/Cranium.inv3" ] && { echo "$dest/Cranium.inv3"; exit 0; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download invesalius-examples >/dev/null)
dpkg -x "$work"/invesalius-examples_*.deb "$work/x"
cp "$work/x/usr/share/doc/invesalius-examples/examples/Cranium.inv3" "$dest/"
echo "$dest/Cranium.inv3"
