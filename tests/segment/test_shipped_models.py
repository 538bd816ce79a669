"""The weights shipped in models/ load, verify their checksums and say what they are."""

import json

import pytest

from corelab.segment.card import NETWORK_NAMES, ChecksumError
from corelab.segment.folder import default_models_dir, load_models

SHIPPED = default_models_dir()


def test_shipped_models_load_with_verified_checksums():
    models = load_models(SHIPPED)
    assert set(NETWORK_NAMES) <= set(models.networks)
    assert all(0.0 < cutoff < 1.0 for cutoff in models.cutoffs.values())
    assert models.grid.slice_mm == 5.0


def test_shipped_card_states_synthetic_training_and_no_patient_validation():
    card = json.loads((SHIPPED / "card.json").read_text())
    text = json.dumps(card).lower()
    assert "synthetic" in text
    assert "not validated on patients" in text


def test_single_cnn_baseline_is_shipped_beside_them():
    single = load_models(SHIPPED / "single")
    assert single.is_single


def test_a_tampered_weights_file_is_refused(tmp_path):
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(SHIPPED, copy)
    weights = next(p for p in copy.iterdir() if p.suffix in (".pt", ".pth"))
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ChecksumError):
        load_models(copy)
