"""`make_trial`: a synthetic multi-site trial on disk (scans, manifest, truth, manual reads).

Layout of OUT_DIR (see docs/INTERFACES.md and ../shared/DESIGN.md):
    scans/<patient_id>/IM0001.dcm ...     DICOM series (most patients)
    scans/<patient_id>.nii.gz             NIfTI (every fifth patient, from the second)
    manifest.xlsx                         patient_id, scan, onset, scan_time, series_uid, site
    truth/<patient_id>.nii.gz             uint8 labels 1 severe, 2 intermediate, 3 subtle, 4 haemorrhage
    truth.csv                             one row per patient, columns in `TRUTH_COLUMNS`
    manual/<patient_id>.nii.gz            reader A (0/1, haemorrhage included)
    manual_b/<patient_id>.nii.gz          reader B
    tissue/<patient_id>.nii.gz            uint8 tissue codes of `corelab.synth.anatomy.T` where a voxel
                                          holds one tissue, 255 where mixed (for testing other steps;
                                          all 255 for a real background, whose tissues are not known)
Same seed, same files, byte for byte: nothing depends on the clock.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
import math
import re
import time
import zipfile
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from corelab import __version__
from corelab.config import CLASSES, SYNTH_RECORD_FILE
from corelab.io.volume import write_image
from corelab.synth import lesions
from corelab.synth.atlas import make_atlas_patient
from corelab.synth.background import load_background, make_background_patient
from corelab.synth.dicom_write import derived_uid, write_dicom_series
from corelab.synth.phantom import Phantom, SynthError, check_physics, make_patient
from corelab.synth.physics import draw_site_physics
from corelab.synth.readers import manual_read
from corelab.synth.scanner import draw_scanner
from corelab.synth.tilt import plane_table, tilt_phantom
from corelab.synth.wide_physics import (
    ACQUISITION_STREAM,
    SLICE_STREAM,
    cut_coverage,
    draw_acquisition,
    draw_slice_mm,
    site_physics_rng,
)

__all__ = ["TrialSummary", "make_trial", "TRUTH_COLUMNS", "MANIFEST_COLUMNS", "FAMILIES", "patient_family"]


MANIFEST_COLUMNS = ("patient_id", "scan", "onset", "scan_time", "series_uid", "site")
TRUTH_COLUMNS = (
    "patient_id", "site", "format", "family", "hypodensity", "mean_hu", "target_hu", "infarct_ml", "class_ml",
    "hemorrhage_ml", "manual_ml", "manual_b_ml", "territory", "side", "hemorrhage", "satellites", "mimics",
    "old_infarct_ml", "hours_since_onset", "in_window", "noise_sd_hu", "hu_offset", "pixel_mm", "slice_mm",
    "background",
)
_FIXED_ZIP_TIME = (2020, 1, 1, 0, 0, 0)
# Phantom families: procedural heads (`make_patient`), MNI152 anatomy (`make_atlas_patient`), or both.
FAMILIES = ("procedural", "atlas", "mixed")
_MAKERS = {"procedural": make_patient, "atlas": make_atlas_patient}


@dataclass(frozen=True)
class TrialSummary:
    """What `make_trial` wrote. seconds_per_patient: mean wall time to generate and write one patient."""

    out_dir: Path
    manifest: Path
    truth_csv: Path
    n_patients: int
    n_dicom: int
    n_nifti: int
    n_controls: int
    seconds_per_patient: float

    def __str__(self) -> str:
        return (f"wrote {self.n_patients} patient{'' if self.n_patients == 1 else 's'} ({self.n_dicom} DICOM series, {self.n_nifti} NIfTI, "
                f"{self.n_controls} without infarct) to {self.out_dir}: manifest {self.manifest.name}, truth "
                f"{self.truth_csv.name}, manual reads in manual/ ({self.seconds_per_patient:.1f} s per patient)")


def make_trial(
    out_dir: str | Path, *, n: int = 20, seed: int = 0, thin_slices: bool = False, matrix: int = 512, n_sites: int = 4,
    family: str = "procedural", background: str | Path | None = None, physics: str = "default",
) -> TrialSummary:
    """Write a synthetic trial of ``n`` patients to ``out_dir`` (created), deterministically for ``seed``.

    The first four patients are a severe, an intermediate and a subtle infarct and a control, so a
    small demo shows every class; the rest are drawn (10% controls, classes as the paper's Table 1).
    Onset-to-scan times are 12 h to 14 days, except patients 5 (6 h), 7 (16 days), 8 (exactly 12 h)
    and 9 (exactly 14 days) when n reaches them; patient 3 has no scan_time in the manifest (its
    DICOM AcquisitionDate/Time holds it). matrix: 512 as scanners; smaller for fast tests.
    family: "procedural", "atlas" (MNI152 anatomy, needs nilearn's templates) or "mixed"
    (alternating per patient, see `patient_family`); truth.csv and synth.json say which made each.
    background: a normal head CT (DICOM folder or image file): every patient is then that scan with
    its own lesions drawn in (`corelab.synth.background`; family "background", ``matrix``,
    ``thin_slices`` and ``family`` do not apply); synth.json records its path and sha256.
    physics: "default", or "wide": each site also draws reconstruction-kernel noise (SD 2-7 HU,
    correlation 0.6-2 mm), a calibration offset (+-8 HU) and cupping (2-8 HU), and each patient
    gets a few posterior-fossa streaks, partial coverage (15% vertex cut 10-30 mm, 10% skull base
    cut 10-25 mm, never through a lesion) and, 30% of DICOM series, a gantry tilt of 8-25 degrees
    (`corelab.synth.wide_physics`), and phantom heads an acquired slice thickness of 0.625-5 mm
    (unless ``thin_slices``); synth.json records them per patient ("coverage", "tilt_deg",
    "slice_mm").
    The truth, tissue and manual reads of a tilted series lie on the grid a reader makes of it
    (`corelab.synth.tilt`), and its cuts remove whole tilted planes. "default" output is byte for byte what it was before
    the option existed.

    >>> import tempfile
    >>> s = make_trial(tempfile.mkdtemp(), n=1, matrix=64)
    >>> s.n_patients, s.manifest.name
    (1, 'manifest.xlsx')
    """
    if n < 1:
        raise SynthError(f"A trial needs at least one patient, not {n}.")
    if family not in FAMILIES:
        raise SynthError(f"Unknown phantom family {family!r}; use procedural, atlas or mixed.")
    check_physics(physics)
    out = Path(out_dir)
    for sub in ("scans", "truth", "manual", "manual_b", "tissue"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    bg = load_background(background) if background is not None else None
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 7919]))
    scanners = [draw_scanner(rng, site=f"SITE-{k + 1:02d}") for k in range(max(1, n_sites))]
    if physics == "wide":  # own streams: the default draws above and below stay as they were
        scanners = [replace(s, physics=draw_site_physics(site_physics_rng(seed, 7919, k))) for k, s in enumerate(scanners)]
    first_onset = dt.datetime(2025, 3, 3, 8, 0)
    rows, truth_rows, drawn = [], [], {}
    started = time.perf_counter()
    for i in range(n):
        pid = f"SYN{i + 1:03d}"
        scanner = scanners[i % len(scanners)]
        if i < 4:
            klass = (*CLASSES, "none")[i]
        else:
            klass = "none" if rng.random() < 0.1 else str(rng.choice(CLASSES, p=list(lesions.CLASS_SHARE.values())))
        hours = _onset_to_scan_hours(rng, i)
        onset = first_onset + dt.timedelta(days=2 * i, minutes=int(rng.integers(0, 24 * 60)))
        acquired = onset + dt.timedelta(hours=hours)
        if bg is None:
            maker = functools.partial(_MAKERS[patient_family(family, seed, i)], matrix=matrix, thin_slices=thin_slices)
        else:
            maker = functools.partial(make_background_patient, bg)
        if physics == "wide":
            maker = functools.partial(maker, physics=physics)
            if bg is None and not thin_slices:  # a real background keeps its own slices
                maker = functools.partial(maker, slice_mm=draw_slice_mm(site_physics_rng(seed, i, SLICE_STREAM)))
        ph = maker((int(seed), i), hypodensity=klass, scanner=scanner)
        # The DICOM writer writes axial slices on the identity direction; any other grid goes to NIfTI.
        nifti = i % 5 == 1 or not np.allclose(ph.direction, np.eye(3).ravel())
        series_uid = derived_uid("corelab-synth", seed, pid, "series")
        acquisition = None
        if physics == "wide":  # partial coverage and tilt, from a stream of their own
            acquisition = draw_acquisition(site_physics_rng(seed, i, ACQUISITION_STREAM), ph, dicom=not nifti)
        axial, table = ph, None  # what the DICOM writer samples; a tilted series' truth lies on its reader's grid
        if acquisition is not None and acquisition.tilt_deg:  # cut in the tilted frame: whole planes
            full = plane_table(axial, acquisition.tilt_deg)
            table = plane_table(axial, acquisition.tilt_deg, bottom_cut=acquisition.bottom_cut,
                                top_cut=acquisition.top_cut)
            acquisition = replace(acquisition, bottom_cut=int((full < table[0] - 1e-6).sum()),
                                  top_cut=int((full > table[-1] + 1e-6).sum()))
            ph = tilt_phantom(axial, acquisition.tilt_deg, table)
        elif acquisition is not None:
            axial = ph = cut_coverage(ph, acquisition)
        if nifti:
            scan_rel = f"scans/{pid}.nii.gz"
            write_image(ph.hu.astype(np.int16), ph.volume(), out / scan_rel)
        else:
            scan_rel = f"scans/{pid}"
            write_dicom_series(
                axial.hu, spacing=axial.spacing, origin=axial.origin, folder=out / scan_rel, patient_id=pid,
                study_uid=derived_uid("corelab-synth", seed, pid, "study"), series_uid=series_uid,
                acquired=acquired, slice_mm=ph.slice_mm, signed=scanner.signed or bg is not None,
                manufacturer=scanner.manufacturer, kernel=scanner.kernel, site=scanner.site,
                tilt_deg=acquisition.tilt_deg if acquisition is not None else 0.0, table=table,
            )
        like = ph.volume()
        write_image(ph.labels, like, out / "truth" / f"{pid}.nii.gz")
        write_image(ph.tissue, like, out / "tissue" / f"{pid}.nii.gz")
        reader_rng = np.random.default_rng(np.random.SeedSequence([int(seed), i, 31]))
        manual_a = manual_read(ph.labels, ph.hu, ph.spacing, reader_rng, bias=0.3)
        manual_b = manual_read(ph.labels, ph.hu, ph.spacing, reader_rng, bias=-0.3, miss_satellite=0.3)
        write_image(manual_a, like, out / "manual" / f"{pid}.nii.gz")
        write_image(manual_b, like, out / "manual_b" / f"{pid}.nii.gz")
        missing_time = i == 2 and not nifti
        rows.append({
            "patient_id": pid,
            "scan": scan_rel,
            "onset": onset,
            "scan_time": None if missing_time else acquired,
            "series_uid": "" if nifti else series_uid,
            "site": scanner.site,
        })
        truth_rows.append(_truth_row(pid, ph, nifti, hours, manual_a, manual_b, "" if bg is None else bg.name))
        if ph.truth.physics is not None:
            drawn[pid] = (asdict(ph.truth.physics) | (acquisition.describe() if acquisition is not None else {})
                          | {"slice_mm": ph.slice_mm})
    seconds = (time.perf_counter() - started) / n
    manifest = out / "manifest.xlsx"
    _write_manifest(pd.DataFrame(rows, columns=list(MANIFEST_COLUMNS)), manifest)
    truth_csv = out / "truth.csv"
    pd.DataFrame(truth_rows, columns=list(TRUTH_COLUMNS)).to_csv(truth_csv, index=False, float_format="%.3f")
    n_nifti = sum(1 for r in rows if r["scan"].endswith(".nii.gz"))
    # What made this trial, for whoever trains on it (the model card names it).
    # Without the folder's name: the same seed gives the same bytes wherever the trial is written.
    if bg is not None and n_sites == 4:
        command = f"corelab synth OUT_DIR --n {n} --seed {int(seed)} --background {Path(background).name}"
    elif matrix == 512 and n_sites == 4:  # what the command line can make
        command = f"corelab synth OUT_DIR --n {n} --seed {int(seed)}" + (" --thin-slices" if thin_slices else "")
        command += "" if family == "procedural" else f" --family {family}"
    else:
        command = (f"corelab.synth.make_trial(OUT_DIR, n={n}, seed={int(seed)}, thin_slices={thin_slices}, "
                   f"matrix={matrix}, n_sites={n_sites}" + ("" if family == "procedural" else f", family={family!r}")
                   + ("" if bg is None else f", background={Path(background).name!r}") + ")")
    generator = {"command": command, "n": n, "seed": int(seed), "matrix": matrix, "thin_slices": thin_slices,
                 "n_sites": n_sites, "family": family,
                 "families": {r["patient_id"]: r["family"] for r in truth_rows}, "corelab": __version__}
    if bg is not None:
        generator["family"] = "background"
        generator["background"] = {"path": str(Path(background).resolve()), "sha256": bg.sha256,
                                   "registration_dice": round(bg.dice, 4)}
    if physics == "wide":  # only then: default synth.json stays byte for byte as before
        cli = command.startswith("corelab synth")
        generator["command"] = command + " --physics wide" if cli else command[:-1] + ", physics='wide')"
        generator["physics"] = physics
        generator["physics_drawn"] = drawn
    (out / SYNTH_RECORD_FILE).write_text(json.dumps(generator, indent=2) + "\n")
    return TrialSummary(
        out_dir=out,
        manifest=manifest,
        truth_csv=truth_csv,
        n_patients=n,
        n_dicom=n - n_nifti,
        n_nifti=n_nifti,
        n_controls=sum(1 for r in truth_rows if r["hypodensity"] == "none"),
        seconds_per_patient=seconds,
    )


def patient_family(family: str, seed: int, i: int) -> str:
    """The phantom family of patient ``i`` (0-based): ``family`` itself, or for "mixed" procedural and
    atlas in turn, starting with atlas for odd seeds.

    >>> [patient_family("mixed", 0, i) for i in range(3)], patient_family("atlas", 0, 5)
    (['procedural', 'atlas', 'procedural'], 'atlas')
    """
    if family != "mixed":
        return family
    return ("procedural", "atlas")[(int(seed) + i) % 2]


def _onset_to_scan_hours(rng: np.random.Generator, i: int) -> float:
    """Onset to follow-up scan (h): mostly 12 h .. 14 days (log-uniform 14-300 h), fixed edge cases."""
    special = {4: 6.0, 6: 16 * 24.0, 7: 12.0, 8: 14 * 24.0}
    if i in special:
        return special[i]
    return float(round(math.exp(rng.uniform(math.log(14.0), math.log(300.0))), 2))


def _truth_row(pid: str, ph: Phantom, nifti: bool, hours: float, manual_a, manual_b, background: str) -> dict:
    t = ph.truth
    return {
        "patient_id": pid,
        "site": ph.scanner.site,
        "format": "nifti" if nifti else "dicom",
        "family": t.family,
        "hypodensity": t.hypodensity,
        "mean_hu": t.mean_hu,
        "target_hu": t.target_hu,
        "infarct_ml": t.infarct_ml,
        "class_ml": t.class_ml,
        "hemorrhage_ml": t.hemorrhage_ml,
        "manual_ml": float(manual_a.sum()) * ph.voxel_ml,
        "manual_b_ml": float(manual_b.sum()) * ph.voxel_ml,
        "territory": t.territory,
        "side": t.side,
        "hemorrhage": t.hemorrhage,
        "satellites": t.satellites,
        "mimics": ";".join(t.mimics),
        "old_infarct_ml": t.old_infarct_ml,
        "hours_since_onset": hours,
        "in_window": 12.0 <= hours <= 14 * 24.0,
        "noise_sd_hu": t.noise_sd_hu,
        "hu_offset": t.hu_offset,
        "pixel_mm": ph.spacing[1],
        "slice_mm": ph.slice_mm,
        "background": background,
    }


def _write_manifest(table: pd.DataFrame, path: Path) -> None:
    """Write the manifest as xlsx with real date-time cells, then strip the save time for determinism."""
    with pd.ExcelWriter(path, engine="openpyxl", datetime_format="yyyy-mm-dd hh:mm:ss") as writer:
        table.to_excel(writer, index=False, sheet_name="manifest")
        sheet = writer.sheets["manifest"]
        for column, width in zip("ABCDEF", (10, 22, 20, 20, 60, 10)):
            sheet.column_dimensions[column].width = width
    _freeze_zip(path)


def _freeze_zip(path: Path) -> None:
    """Rewrite an xlsx (zip) with fixed entry times and document dates, so equal content is equal bytes."""
    with zipfile.ZipFile(path) as src:
        entries = [(info.filename, src.read(info.filename)) for info in src.infolist()]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as dst:
        for name, data in entries:
            if name == "docProps/core.xml":
                data = re.sub(rb"(<dcterms:(created|modified)[^>]*>)[^<]*", rb"\g<1>2020-01-01T00:00:00Z", data)
            dst.writestr(zipfile.ZipInfo(name, date_time=_FIXED_ZIP_TIME), data, zipfile.ZIP_DEFLATED)
    path.write_bytes(buffer.getvalue())
