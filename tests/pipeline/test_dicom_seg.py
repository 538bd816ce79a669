"""`corelab run` writes masks/<patient_id>.seg.dcm beside the mask of every DICOM input, and
`--no-seg` turns it off.

Four rows, through the command line with `corelab.segment.labels.segment` replaced by a rule with a
known answer (label 2 where the HU are the lesion's), so a run takes seconds:

    STRAIGHT   DICOM series of the pipeline trial's head with a 60 HU lesion: a SEG on the source slices
    TILTED     the same head with a 15 degree gantry tilt: a SEG on the mask's own grid, said in read_notes
    EMPTY      DICOM series of a head without lesion: no SEG (a SEG needs a segment), said in read_notes
    NIFTI      the lesion head as a NIfTI file: no SEG and nothing said about one
"""

import json

import numpy as np
import pandas as pd
import pydicom
import pytest
from dicom_factory import write_ct_series
from pipeline_trial import SMALL_METHOD, SPACING, head_phantom, lesion_stub, write_model_folder
from typer.testing import CliRunner

from corelab.cli import app
from corelab.pipeline.batch import run_batch
from corelab.io import mask_onto, read_mask
from corelab.io.seg import read_seg
from corelab.io.volume import Volume, write_image

pytestmark = pytest.mark.slow  # batches writing DICOM SEG: make test runs them, the quick loop does not

LESION_HU = 60.0
DICOM_ROWS = ("STRAIGHT", "TILTED", "EMPTY")
runner = CliRunner()


@pytest.fixture(scope="module")
def trial(tmp_path_factory):
    import torch

    from corelab.segment.card import NETWORK_NAMES, save_models
    from corelab.segment.networks import PatchCNN

    folder = tmp_path_factory.mktemp("dicom_seg")
    lesion = np.round(head_phantom(lesion_hu=LESION_HU, seed=5))
    write_ct_series(folder / "STRAIGHT", lesion, SPACING)
    write_ct_series(folder / "TILTED", lesion, SPACING, tilt_deg=15.0)
    write_ct_series(folder / "EMPTY", np.round(head_phantom(lesion_hu=35.0, seed=5)), SPACING)
    write_image(lesion.astype(np.int16), Volume(array=lesion, spacing=SPACING), folder / "NIFTI.nii.gz")
    manifest = folder / "manifest.csv"
    manifest.write_text("patient_id,scan\nSTRAIGHT,STRAIGHT\nTILTED,TILTED\nEMPTY,EMPTY\nNIFTI,NIFTI.nii.gz\n")
    torch.manual_seed(0)  # a model folder run_batch accepts; the stub replaces its networks
    save_models(folder / "models", {name: PatchCNN().eval() for name in NETWORK_NAMES},
                dict.fromkeys(NETWORK_NAMES, 0.5), grid={"slice_mm": 5.0, "pixel_mm": 1.5})
    return {"folder": folder, "manifest": manifest, "models": folder / "models"}


def _run(trial, out, *extra):
    result = runner.invoke(app, ["run", str(trial["manifest"]), "--out", str(out), "--models", str(trial["models"]),
                                 *extra])
    assert result.exit_code == 0, result.output
    return json.loads((out / "run.json").read_text())


def _notes(out) -> dict[str, str]:
    table = pd.read_csv(out / "volumes.csv", dtype=str, keep_default_na=False)
    return dict(zip(table["patient_id"], table["read_notes"]))


def test_run_writes_a_seg_beside_each_labelled_dicom_mask_and_no_seg_turns_it_off(trial, tmp_path, monkeypatch):
    monkeypatch.setattr("corelab.segment.labels.segment", lesion_stub)
    out = tmp_path / "out"
    run = _run(trial, out)
    masks = out / "masks"
    assert {p.name for p in masks.glob("*.seg.dcm")} == {"STRAIGHT.seg.dcm", "TILTED.seg.dcm"}
    assert run["parameters"]["dicom_seg"] is True and run["versions"]["highdicom"]
    for pid in ("STRAIGHT", "TILTED"):
        nifti = read_mask(masks / f"{pid}.nii.gz")
        assert np.count_nonzero(nifti.array == 2) > 100  # the lesion, labelled 2 by the stub
        assert np.array_equal(mask_onto(read_seg(masks / f"{pid}.seg.dcm"), nifti).array, nifti.array), pid
        record = json.loads((out / "records" / f"{pid}.json").read_text())
        assert record["seg"] == f"masks/{pid}.seg.dcm" and record["seg_sha256"]
    segment = pydicom.dcmread(masks / "STRAIGHT.seg.dcm").SegmentSequence[0]
    algorithm = segment.SegmentationAlgorithmIdentificationSequence[0]
    assert run["models"]["version"] in algorithm.AlgorithmParameters
    notes = _notes(out)
    assert "DICOM SEG" not in notes["STRAIGHT"] and "SEG" not in notes["NIFTI"]
    assert "The DICOM SEG lies on the mask's own grid" in notes["TILTED"] and "gantry tilt" in notes["TILTED"]
    assert "No DICOM SEG was written: the mask labels no voxel" in notes["EMPTY"]

    # The same command again reuses every scan and leaves the SEGs as they were.
    before = {p.name: p.read_bytes() for p in masks.glob("*.seg.dcm")}
    assert _run(trial, out)["counts"]["reused"] == 4
    assert {p.name: p.read_bytes() for p in masks.glob("*.seg.dcm")} == before

    # --no-seg writes none; asking for SEGs afterwards redoes the DICOM scans (the NIfTI row is reused).
    bare = tmp_path / "bare"
    assert _run(trial, bare, "--no-seg")["parameters"]["dicom_seg"] is False
    assert not list((bare / "masks").glob("*.seg.dcm"))
    assert all("SEG" not in note for note in _notes(bare).values())
    assert _run(trial, bare)["counts"]["reused"] == 1
    assert {p.name for p in (bare / "masks").glob("*.seg.dcm")} == {"STRAIGHT.seg.dcm", "TILTED.seg.dcm"}


@pytest.mark.slow
def test_a_local_dask_cluster_writes_the_same_seg(trial, tmp_path):
    """The SEG is made here from the result that comes back from a worker (its meta names the files)."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"patient_id,scan\nSTRAIGHT,{trial['folder'] / 'STRAIGHT'}\n")
    models = write_model_folder(tmp_path / "models")  # random networks that label something
    outputs = {}
    for name, workers in (("serial", 1), ("dask", 2)):
        summary = run_batch(manifest, out_dir=tmp_path / name, models_dir=models, method=SMALL_METHOD,
                            workers=workers, progress=False, threads=1)
        assert summary.n_ok == 1
        outputs[name] = read_seg(tmp_path / name / "masks" / "STRAIGHT.seg.dcm").array
    nifti = read_mask(tmp_path / "dask" / "masks" / "STRAIGHT.nii.gz")
    assert np.count_nonzero(nifti.array) and np.array_equal(outputs["serial"], outputs["dask"])
