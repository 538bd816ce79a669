"""Regenerate docs/review-page.png: review.html of a synthetic 40-scan batch, shot in headless Chromium.

The batch is tests/helpers/review_batch.py's (every status, flags, sites, real QC images of phantoms);
nothing is segmented. Run from the repository root: ``.venv/bin/python scripts/review_screenshot.py``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))

from headless_chromium import Browser
from review_batch import make_results

from corelab.pipeline.review import write_review

OUT = ROOT / "docs" / "review-page.png"


def main() -> None:
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "corelab-results"
        rows = make_results(results)
        page = write_review(rows, results, run_id="2026-12-02T06-30-00Z")
        with Browser() as browser:
            browser.open(page.as_uri()).screenshot(Path(tmp) / "shot.png", width=1400, height=1500)
        # 256 colours: the page is flat colour and grey CT, so the PNG stays small without visible loss.
        Image.open(Path(tmp) / "shot.png").convert("RGB").quantize(256).save(OUT, optimize=True)
    print(f"{OUT} ({OUT.stat().st_size // 1024} kB)")


if __name__ == "__main__":
    main()
