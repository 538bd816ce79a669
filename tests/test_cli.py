"""The command line end to end: real files in, real files out, exit codes and messages."""

import shutil

import pandas as pd
import pytest
from typer.testing import CliRunner

from corelab import __version__
from corelab.cli import app
from pipeline_trial import make_trial

runner = CliRunner()


def test_version_prints_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip() == f"corelab {__version__}"


def test_help_lists_every_command():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("run", "compare", "train", "synth"):
        assert command in result.output


@pytest.mark.slow
def test_run_then_compare_from_the_command_line(tmp_path):
    trial = make_trial(tmp_path / "trial", n=2)
    out = tmp_path / "results"
    result = runner.invoke(app, ["run", str(trial.manifest), "--out", str(out), "--models", str(trial.models)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "volumes.csv", dtype={"patient_id": str})
    assert list(table["patient_id"]) == ["P001", "P002"]
    assert set(table["status"]) == {"ok"}
    assert (out / "volumes.xlsx").is_file() and (out / "run.json").is_file()

    # The automated masks as "manual reads": perfect agreement, so the report must say Dice 1.
    reference = tmp_path / "manual"
    reference.mkdir()
    for pid in table["patient_id"]:
        shutil.copy(out / "masks" / f"{pid}.nii.gz", reference / f"{pid}.nii.gz")
    result = runner.invoke(app, ["compare", str(out), "--reference", str(reference), "--trial", "CLI-TEST"])
    assert result.exit_code == 0, result.output
    assert "mean Dice 1.00" in result.output
    assert (out / "agreement.pdf").stat().st_size > 10_000
    assert (out / "agreement.xlsx").is_file() and (out / "agreement.html").is_file()
    # compare's own QC set, beside the report and apart from corelab run's qc/
    assert {p.name for p in (out / "agreement-qc").iterdir()} == {"P001.png", "P002.png"}
    assert "2 QC images in" in result.output


def test_help_shows_flags_as_flags_defaults_and_examples():
    for command in ("run", "compare", "train", "synth"):
        text = runner.invoke(app, [command, "--help"]).output
        assert "<bool>" not in text and "Examples:" in text, command
    synth_help = runner.invoke(app, ["synth", "--help"]).output
    assert "corelab synth demo-trial/ --n 10 --seed 1 --preview\n" in synth_help  # examples keep their lines


def test_train_help_shows_the_recipe_defaults():
    from corelab.cli import TRAIN_DEFAULTS
    from corelab.train.recipe import TrainOptions

    defaults = TrainOptions()
    assert {name: str(getattr(defaults, name)) for name in TRAIN_DEFAULTS} == TRAIN_DEFAULTS
    text = " ".join(runner.invoke(app, ["train", "--help"]).output.split())
    assert all(f"[default: ({value})" in text for value in TRAIN_DEFAULTS.values())


def test_missing_manifest_is_one_sentence_and_exit_code_2(tmp_path):
    result = runner.invoke(app, ["run", str(tmp_path / "nope.xlsx")])
    assert result.exit_code == 2
    assert "corelab:" in result.output and "nope.xlsx" in result.output


def test_train_on_a_folder_without_a_manifest_is_a_named_failure(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "models")])
    assert result.exit_code == 2
    assert "corelab:" in result.output
    assert not (tmp_path / "models" / "card.json").exists()


def test_train_names_an_unknown_architecture_and_lists_the_known_ones(tmp_path):
    result = runner.invoke(app, ["train", str(tmp_path), "--out", str(tmp_path / "m"), "--architecture", "unet-9"])
    assert result.exit_code == 2
    text = " ".join(result.output.split())
    assert "unknown architecture 'unet-9'" in text and "barros2020-mirror-cnn" in text


@pytest.mark.slow
def test_synth_writes_a_readable_trial(tmp_path):
    result = runner.invoke(app, ["synth", str(tmp_path / "trial"), "--n", "1", "--seed", "5"])
    assert result.exit_code == 0, result.output
    manifest = pd.read_excel(tmp_path / "trial" / "manifest.xlsx", dtype={"patient_id": str})
    assert len(manifest) == 1
    assert (tmp_path / "trial" / "truth.csv").is_file()
    assert "wrote 1 patient (" in result.output and "TrialSummary(" not in result.output
