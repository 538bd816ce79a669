#!/usr/bin/env bash
# The demo: a small synthetic trial made by `corelab synth`, then the batch, then the agreement PDF.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
corelab --version
