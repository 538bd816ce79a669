"""`corelab train --recalibrate`: cut-offs chosen again for a model folder on a second cohort."""

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from corelab.cli import app
from corelab.config import GridParams, Method
from corelab.segment.barros2020 import PatchCNN
from corelab.segment.card import NETWORK_NAMES, save_models, version_string
from corelab.segment.folder import load_models
from corelab.train.cohort import load_cohort
from corelab.train.cutoffs import choose_cutoffs, choose_smoothing_and_cutoffs, validation_maps
from corelab.train.recalibrate import TrainingScansError, _maps_dir, recalibrate_models
from train_cohort import make_cohort

pytestmark = pytest.mark.usefixtures("one_torch_thread")

KINDS = ["severe", "intermediate", "subtle", "none", "none"]


def model_folder(folder: Path, *, smoothing_mm=1.0, generator=None) -> Path:
    """Untrained networks (seeded) as a three-CNN folder with its single/ baseline, as training writes them."""
    torch.manual_seed(3)
    nets = {name: PatchCNN().eval() for name in NETWORK_NAMES}
    training = {"cohort": "training-cohort", "cohort_generator": generator}
    save_models(folder, nets, dict.fromkeys(nets, 0.5), training=training, smoothing_mm=smoothing_mm,
                scores={"validation_dice": {"severe": 0.4}, "held_out": {"cohort": "old"}})
    save_models(folder / "single", {"single": PatchCNN().eval(), "hemorrhage": nets["hemorrhage"]},
                {"single": 0.5, "hemorrhage": 0.5}, training=training, smoothing_mm=smoothing_mm)
    return folder


def weights(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.glob("*.pt"))}


@pytest.mark.slow  # dense maps of four to five networks on every scan
def test_recalibration_rewrites_the_cards_by_the_training_rule_and_keeps_the_weights(tmp_path):
    models = model_folder(tmp_path / "models")
    before, before_single = weights(models), weights(models / "single")
    old_version = version_string(json.loads((models / "card.json").read_text()))
    cohort = make_cohort(tmp_path / "calibration", KINDS, seed=4, hemorrhage=(0,))
    training_run = models / ".checkpoints" / "train-interrupted"  # another run's checkpoints stay
    training_run.mkdir(parents=True)
    (training_run / "severe.ckpt").write_bytes(b"kept")
    lines = []
    summary = recalibrate_models(cohort, models, control_tolerance_ml=2.0, log=lines.append)

    # The rule, recomputed here from the networks' own dense maps of every cohort scan.
    three, single = load_models(models), load_models(models / "single")
    scans = load_cohort(cohort, method=Method(grid=GridParams()), norm=three.norm, log=lambda _: None)
    nets = {**three.networks, "single": single.networks["single"]}
    maps = [validation_maps(scan, nets, pad_value=three.norm.pad_value) for scan in scans]
    four = ["severe", "intermediate", "subtle", "hemorrhage"]
    sigma, expected, samples = choose_smoothing_and_cutoffs(maps, four, pixel_mm=0.45, log=lambda _: None,
                                                            control_tolerance_ml=2.0)
    expected.update(choose_cutoffs(samples, ["single"], fixed={"hemorrhage": expected["hemorrhage"]},
                                   control_tolerance_ml=2.0))
    assert summary.cutoffs == expected and summary.smoothing_mm == sigma
    assert summary.n_scans == 5 and summary.n_controls == 2
    assert dict(three.cutoffs) == {name: expected[name] for name in four}
    assert dict(single.cutoffs) == {"single": expected["single"], "hemorrhage": expected["hemorrhage"]}
    assert three.smoothing_mm == single.smoothing_mm == sigma

    assert weights(models) == before and weights(models / "single") == before_single  # weights untouched
    card = json.loads((models / "card.json").read_text())
    calibration = card["training"]["calibration"]
    assert calibration["n_scans"] == 5 and calibration["controls"] == 2 and calibration["cohort"] == "calibration"
    assert calibration["control_tolerance_ml"] == 2.0 and calibration["replaces_version"] == old_version
    assert set(calibration["controls_claimed_ml"]) == {"P03", "P04"}
    assert "held_out" not in card["scores"] and "validation_dice" not in card["scores"]  # measured at old cut-offs
    assert card["scores"]["calibration"]["n_scans"] == 5
    assert "re-chosen without retraining on 5 calibration scans" in (models / "MODEL_CARD.md").read_text()
    assert "Calibration (cut-offs chosen again on 5 scans of calibration" in (models / "MODEL_CARD.md").read_text()
    assert three.version != old_version or summary.cutoffs == dict.fromkeys(summary.cutoffs, 0.5)
    assert card["headline"].startswith("**Cut-offs chosen again on 5 calibration scans**")
    assert "do not use these weights to measure infarcts" in card["headline"]  # the warning stays
    assert "calibration scans of calibration" in card["training"]["smoothing_rule"]
    assert [path.name for path in (models / ".checkpoints").iterdir()] == ["train-interrupted"]
    assert (training_run / "severe.ckpt").read_bytes() == b"kept"
    assert any("calibration control P03" in line for line in lines)


@pytest.mark.slow  # dense maps of four to five networks on every scan
def test_an_interrupted_recalibration_resumes_from_its_saved_maps(tmp_path):
    cohort = make_cohort(tmp_path / "calibration", KINDS, seed=4)
    whole = recalibrate_models(cohort, model_folder(tmp_path / "a", smoothing_mm=0.0), log=lambda _: None)

    def stop_after_two_maps(line):
        if line.startswith("calibration maps 2/"):
            raise KeyboardInterrupt

    interrupted = model_folder(tmp_path / "b", smoothing_mm=0.0)
    with pytest.raises(KeyboardInterrupt):
        recalibrate_models(cohort, interrupted, log=stop_after_two_maps)
    assert len(list((interrupted / ".checkpoints").rglob("*.npz"))) == 2
    lines = []
    resumed = recalibrate_models(cohort, interrupted, resume=True, log=lines.append)
    assert sum("kept from the interrupted run" in line for line in lines) == 2
    assert resumed.cutoffs == whole.cutoffs and resumed.smoothing_mm == whole.smoothing_mm


@pytest.mark.slow  # dense maps of four to five networks on every scan
def test_the_paper_folder_keeps_its_per_voxel_cut(tmp_path):
    cohort = make_cohort(tmp_path / "calibration", KINDS, seed=4)
    summary = recalibrate_models(cohort, model_folder(tmp_path / "m", smoothing_mm=0.0), log=lambda _: None)
    assert summary.smoothing_mm == 0.0


def test_resumed_maps_belong_to_the_same_reads_segments_and_weights(tmp_path):
    models = model_folder(tmp_path / "models")
    cohort = make_cohort(tmp_path / "calibration", KINDS[:2], seed=4)
    three, single = load_models(models), load_models(models / "single")
    key = _maps_dir(cohort, three, single, None)
    assert _maps_dir(cohort, three, single, None) == key  # the same run finds its maps again
    assert _maps_dir(cohort, three, single, ("Infarct",)) != key  # other segments read
    assert _maps_dir(cohort, three, None, None) != key  # without the single baseline
    torch.manual_seed(9)  # the single CNN retrained: other weights, other maps
    save_models(models / "single", {"single": PatchCNN().eval(), "hemorrhage": three.networks["hemorrhage"]},
                {"single": 0.5, "hemorrhage": 0.5}, training={"cohort": "training-cohort"}, smoothing_mm=1.0)
    assert _maps_dir(cohort, three, load_models(models / "single"), None) != key
    read = next(path for path in sorted((cohort / "manual").rglob("*")) if path.is_file())
    read.write_bytes(read.read_bytes() + b"\0")  # a read corrected
    assert _maps_dir(cohort, three, single, None) != key


def test_the_training_cohort_is_refused_and_the_cards_stay(tmp_path):
    models = model_folder(tmp_path / "models", generator={"seed": 2000, "n": 60})
    card = (models / "card.json").read_text()
    cohort = make_cohort(tmp_path / "again", KINDS, seed=4)
    (cohort / "synth.json").write_text(json.dumps({"seed": 2000, "n": 20}))
    with pytest.raises(TrainingScansError, match="seed 2000"):
        recalibrate_models(cohort, models, log=lambda _: None)
    named = make_cohort(tmp_path / "training-cohort", KINDS, seed=4)  # not made by synth: the name tells
    with pytest.raises(TrainingScansError, match="training-cohort"):
        recalibrate_models(named, models, log=lambda _: None)
    assert (models / "card.json").read_text() == card


def test_cli_recalibrate_refuses_training_options(tmp_path):
    models = model_folder(tmp_path / "models")
    cohort = make_cohort(tmp_path / "calibration", KINDS[:2], seed=4)
    result = CliRunner().invoke(app, ["train", str(cohort), "--out", str(models), "--recalibrate", "--epochs", "3",
                                      "--single"])
    assert result.exit_code == 2
    assert "--epochs, --single only apply to training" in result.output.replace("\n", " ")
