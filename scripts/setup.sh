#!/usr/bin/env bash
# Set up corelab on a fresh machine: system libraries, a virtual environment in .venv, torch (CPU
# build, pinned), then corelab itself in editable mode with its test extras. Safe to run again: it
# does nothing when .venv is already up to date with pyproject.toml.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pdftoppm >/dev/null 2>&1 || need_apt+=(poppler-utils)
ldconfig -p 2>/dev/null | grep -q libpango-1.0 || need_apt+=(libpango-1.0-0 libpangoft2-1.0-0)
ldconfig -p 2>/dev/null | grep -q libharfbuzz-subset || need_apt+=(libharfbuzz-subset0)
# headless Chromium for the review page's browser tests (tests/pipeline/test_review.py; DevTools over a pipe)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: installing system packages: ${need_apt[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
stamp=.venv/.corelab-setup
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned: the CPU build lies on this machine's disk; letting pip resolve a newer
# torch would download a CUDA build of several GB.
.venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -e ".[test]"
# nilearn only for the MNI152 templates in its wheel (the atlas phantom family reads the files, never
# imports nilearn): --no-deps, so pip does not pull its scikit-learn stack (or resolve torch again).
.venv/bin/python -m pip install -q --no-deps "nilearn==0.14.1"
echo "$want" > "$stamp"
echo "setup: ready ($(.venv/bin/corelab --version))"
