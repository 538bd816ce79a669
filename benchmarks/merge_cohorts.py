"""One training cohort from several `corelab synth` cohorts (for training on some families and testing
on another one, benchmarks/leftout_families.sh).

    python benchmarks/merge_cohorts.py OUT COHORT_A COHORT_B ...

Patient ids repeat between cohorts (each starts at SYN001), so every id is prefixed with its cohort's
folder name ("atlas-s2100-n30_SYN001"). OUT holds a manifest whose scan paths are absolute, and
manual/ and truth/ links to the cohorts' files under the new ids; nothing is copied.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd

from corelab.io.files import find_image
from corelab.io.manifest import find_manifest


def merge(out: Path, cohorts: list[Path]) -> int:
    for sub in ("manual", "truth"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for cohort in cohorts:
        manifest = pd.read_excel(find_manifest(cohort), dtype={"patient_id": str, "series_uid": str})
        for record in manifest.to_dict("records"):
            own_id, pid = record["patient_id"], f"{cohort.name}_{record['patient_id']}"
            record.update(patient_id=pid, scan=str((cohort / record["scan"]).resolve()))
            for sub in ("manual", "truth"):
                source = find_image(cohort / sub, own_id)
                if source is not None:
                    link = out / sub / source.name.replace(own_id, pid, 1)
                    if not link.exists():
                        link.symlink_to(source.resolve())
            rows.append(record)
    pd.DataFrame(rows).to_excel(out / "manifest.xlsx", index=False)
    return len(rows)


if __name__ == "__main__":
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    n = merge(Path(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
    print(f"{sys.argv[1]}: {n} patients from {len(sys.argv) - 2} cohorts")
