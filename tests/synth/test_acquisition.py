"""The "wide" acquisition of `corelab synth`: gantry-tilted DICOM series and partial coverage.

A tilted series is written as a scanner writes it (sheared stack, tilted orientation); corelab's
reader must find the tilt, and the truth written beside it (on the reader's grid, `tilt_phantom`)
must lie on what the reader shows: the same grid, and the lesion's mean HU as the truth says. A
phantom cut at the vertex must read as partial coverage, never as an open skull, and a cut never
takes a slice holding a lesion.
"""

from __future__ import annotations

import datetime
import json

import numpy as np
import pytest

from corelab.io import read_mask, read_scan, same_geometry, write_image
from corelab.preprocess import analysis_region, to_analysis_grid
from corelab.synth import make_patient, make_trial
from corelab.synth.dicom_write import write_dicom_series
from corelab.synth.tilt import tilt_phantom
from corelab.synth.wide_physics import (
    SLICE_MM_CHOICES,
    Acquisition,
    cut_coverage,
    draw_acquisition,
    site_physics_rng,
)


@pytest.fixture(scope="module")
def patient():
    return make_patient(11, matrix=128, hypodensity="severe")


def _write(phantom, folder, tilt_deg=0.0):
    return write_dicom_series(phantom.hu, spacing=phantom.spacing, origin=phantom.origin, folder=folder,
                              patient_id="T1", study_uid="2.25.1", series_uid="2.25.2",
                              acquired=datetime.datetime(2025, 3, 3, 8, 0), slice_mm=phantom.slice_mm,
                              tilt_deg=tilt_deg)


@pytest.mark.slow  # two heads through reading and preprocessing: make test runs them
@pytest.mark.parametrize("tilt", [12.0, 22.0])
def test_a_tilted_series_reads_back_with_its_tilt_and_its_truth_on_the_readers_grid(patient, tmp_path, tilt):
    _write(patient, tmp_path / "ct", tilt)
    scan = read_scan(tmp_path / "ct")
    assert scan.meta.tilt_deg == pytest.approx(tilt, abs=0.05)
    tilted = tilt_phantom(patient, tilt)
    write_image(tilted.labels, tilted.volume(), tmp_path / "truth.nii.gz")
    truth = read_mask(tmp_path / "truth.nii.gz")
    assert same_geometry(truth, scan), (truth.spacing, scan.spacing, truth.origin, scan.origin)
    lesion = (truth.array >= 1) & (truth.array <= 3)
    assert lesion.sum() > 100
    assert float(scan.array[lesion].mean()) == pytest.approx(tilted.truth.mean_hu, abs=1.5)
    assert tilted.truth.class_ml == pytest.approx(float(lesion.sum()) * scan.voxel_ml, rel=1e-6)
    # The head is all there: the reader's intracranial volume within 5% of the axial phantom's.
    icv = [analysis_region(v.array, v.spacing).intracranial.sum() * float(np.prod(v.spacing)) / 1000
           for v in (to_analysis_grid(scan), to_analysis_grid(patient.volume()))]
    assert icv[0] == pytest.approx(icv[1], rel=0.05)


def test_a_vertex_cut_reads_as_partial_coverage_not_an_open_skull(patient, tmp_path):
    head = np.flatnonzero((patient.hu > -500).reshape(len(patient.hu), -1).any(axis=1))
    top = len(patient.hu) - 1 - (int(head[-1]) - 4)  # 20 mm below the top of the head
    lesion = np.flatnonzero(patient.labels.reshape(len(patient.labels), -1).any(axis=1))
    assert lesion.max() < len(patient.hu) - top
    cut = cut_coverage(patient, Acquisition(bottom_cut=0, top_cut=top, tilt_deg=0.0))
    assert np.array_equal(cut.labels, patient.labels[: len(patient.hu) - top])
    _write(cut, tmp_path / "ct")
    scan = to_analysis_grid(read_scan(tmp_path / "ct"))
    flags = analysis_region(scan.array, scan.spacing).flags
    assert any(f.startswith("Partial coverage") for f in flags), flags
    assert not any("craniectomy" in f.lower() or "open" in f.lower() for f in flags), flags


def test_cuts_never_take_a_lesion_slice(patient):
    for k in range(40):
        acquisition = draw_acquisition(site_physics_rng(7, k, 1), patient, dicom=True)
        kept = cut_coverage(patient, acquisition).labels
        assert int((kept > 0).sum()) == int((patient.labels > 0).sum())
        assert acquisition.tilt_deg == 0.0 or 8.0 <= acquisition.tilt_deg <= 25.0
    assert draw_acquisition(site_physics_rng(7, 0, 1), patient, dicom=False).tilt_deg == 0.0


def test_a_wide_trial_records_each_patients_coverage_tilt_and_slice_thickness(tmp_path):
    import pandas as pd

    make_trial(tmp_path, n=4, seed=3, matrix=64, n_sites=1, physics="wide")
    drawn = json.loads((tmp_path / "synth.json").read_text())["physics_drawn"]
    truth = pd.read_csv(tmp_path / "truth.csv").set_index("patient_id")
    for pid, record in drawn.items():
        assert record["coverage"] == "full" or "cut" in record["coverage"], pid
        assert record["tilt_deg"] == 0.0 or 8.0 <= record["tilt_deg"] <= 25.0, pid
        assert record["slice_mm"] in SLICE_MM_CHOICES and truth.loc[pid, "slice_mm"] == record["slice_mm"], pid
        scan = read_scan(tmp_path / "scans" / (pid + (".nii.gz" if truth.loc[pid, "format"] == "nifti" else "")))
        # The slices as acquired (a tilted series' slices are its planes, thinner along z by cos(tilt)).
        assert scan.spacing[0] == pytest.approx(record["slice_mm"] * np.cos(np.radians(record["tilt_deg"])),
                                                rel=0.02), pid
    assert drawn["SYN002"]["tilt_deg"] == 0.0  # patient 2 is a NIfTI scan: never tilted
    assert len({record["slice_mm"] for record in drawn.values()}) > 1  # seed 3 draws more than one thickness


@pytest.mark.slow  # make test runs it; the quick loop does not
def test_a_thinner_acquisition_keeps_the_patient_and_reads_back_on_the_analysis_grid(patient, tmp_path):
    """The same seed at 2.5 mm: the same infarct (class, volume within its partial volume) on a
    scan with twice the slices, which corelab reconstructs to the same 5 mm analysis grid."""
    thin = make_patient(11, matrix=128, hypodensity="severe", slice_mm=2.5)
    assert thin.spacing[0] == 2.5 and len(thin.hu) >= 2 * len(patient.hu) - 2
    assert thin.truth.hypodensity == patient.truth.hypodensity == "severe"
    assert thin.truth.class_ml == pytest.approx(patient.truth.class_ml, rel=0.15)
    _write(thin, tmp_path / "ct")
    grids = [to_analysis_grid(read_scan(tmp_path / "ct")), to_analysis_grid(patient.volume())]
    assert grids[0].spacing == pytest.approx(grids[1].spacing)
    icv = [analysis_region(g.array, g.spacing).intracranial.sum() * float(np.prod(g.spacing)) / 1000 for g in grids]
    assert icv[0] == pytest.approx(icv[1], rel=0.05)


def test_a_tilted_series_cut_at_the_vertex_reads_as_partial_coverage(patient, tmp_path):
    """Cuts of a tilted series remove whole tilted planes (the scanner stops the table early), so the
    reader sees the skull cut by a slice, as at 0 degrees, and the lesion is all there."""
    from corelab.synth.tilt import plane_table

    full = plane_table(patient, 20.0)
    table = plane_table(patient, 20.0, top_cut=5)
    assert len(table) == len(full) - 5 and table[0] == full[0]
    write_dicom_series(patient.hu, spacing=patient.spacing, origin=patient.origin, folder=tmp_path / "ct",
                       patient_id="T1", study_uid="2.25.1", series_uid="2.25.2", acquired=datetime.datetime(2025, 3, 3),
                       slice_mm=patient.slice_mm, tilt_deg=20.0, table=table)
    read = read_scan(tmp_path / "ct")
    assert read.array.shape[0] == len(table)
    scan = to_analysis_grid(read)
    flags = analysis_region(scan.array, scan.spacing).flags
    assert any(f.startswith("Partial coverage") for f in flags), flags
    tilted = tilt_phantom(patient, 20.0, table)
    assert tilted.truth.class_ml == pytest.approx(tilt_phantom(patient, 20.0).truth.class_ml, rel=1e-6)
