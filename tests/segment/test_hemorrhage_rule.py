"""The hemorrhage rule (a card's `postprocess.hemorrhage_beside_mm`): a connected hemorrhage claim is
kept only when a hypodense claim lies within that distance, as the reference counts hemorrhage within
or beside the infarct; other bright claims (partial volume against bone) are dropped."""


import numpy as np
import pytest

from corelab.report.provenance import parameter_rows
from corelab.report.text import _input_and_smoothing
from corelab.segment.card import save_models
from corelab.errors import ModelError
from corelab.segment.labels import hemorrhage_beside, segment

from tests.segment.test_segment import plain_and_with, threshold_net

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SPACING = (5.0, 1.0, 1.0)


def head():
    """Five slices of brain (32 HU): a dark infarct (16 HU) with blood (70 HU) inside it, and a lone
    bright spot (70 HU) 30 mm away from anything dark. Returns hu, region and the three masks."""
    z, y, x = np.mgrid[0:5, 0:100, 0:100]
    hu = np.full(z.shape, 32.0, np.float32)
    infarct = (np.hypot(x - 35, y - 50) < 14) & (z >= 1) & (z <= 3)
    blood = (np.hypot(x - 35, y - 50) < 5) & (z == 2)
    lone = (np.hypot(x - 75, y - 50) < 6) & (z >= 1) & (z <= 3)
    hu[infarct], hu[blood], hu[lone] = 16.0, 70.0, 70.0
    region = np.ones(z.shape, bool)
    return hu, region, infarct, blood, lone


def test_a_hemorrhage_claim_with_no_infarct_beside_it_is_dropped():
    labels = np.zeros((1, 1, 12), np.uint8)
    labels[0, 0, [1, 2]] = 4  # blood inside an infarct claim (its others' label below is 2)
    labels[0, 0, 9] = 4  # lone
    others = np.zeros_like(labels)
    others[0, 0, [1, 2, 3]] = 2
    kept = hemorrhage_beside(labels, others, (5.0, 1.0, 1.0), 3.0)
    assert kept[0, 0].tolist() == [0, 4, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert hemorrhage_beside(labels, others, (5.0, 1.0, 1.0), 6.0)[0, 0, 9] == 4  # 6 mm reaches it


def test_a_models_card_turns_the_rule_on_for_segment_and_names_it(tmp_path):
    hu, region, infarct, blood, lone = head()
    nets = {"severe": threshold_net(24.0, above=False), "hemorrhage": threshold_net(50.0, above=True)}
    cutoffs = {"severe": 0.5, "hemorrhage": 0.5}
    plain, rule = plain_and_with(tmp_path, nets, cutoffs, "hemorrhage_beside_mm", 5.0,
                                 "Hemorrhage within or beside the infarct")
    assert plain.hemorrhage_beside_mm is None and rule.hemorrhage_beside_mm == 5.0
    union, kept = segment(hu, region, plain, spacing=SPACING), segment(hu, region, rule, spacing=SPACING)
    core = lambda mask: mask & np.roll(mask, 3, 1) & np.roll(mask, -3, 1) & np.roll(mask, 3, 2) & np.roll(mask, -3, 2)
    assert (union[core(blood)] == 4).all() and (union[core(lone)] == 4).all()  # the paper's union claims both
    assert (kept[core(blood)] == 4).all()  # blood inside the infarct stays
    assert not kept[lone].any()  # the lone bright spot goes
    assert np.array_equal(kept[union != 4], union[union != 4])  # the hypodense claims are untouched
    sentence = _input_and_smoothing({"models.brain_reference_hu": None, "models.smoothing_mm": 0.0,
                                     "models.hemorrhage_beside_mm": rule.hemorrhage_beside_mm})
    assert "hemorrhage claim was kept only when a hypodense claim lay within 5 mm" in sentence
    rows = parameter_rows({"models": {"hemorrhage_beside_mm": rule.hemorrhage_beside_mm, "cutoffs": cutoffs}})
    assert ("Models", "hemorrhage kept within this distance of a hypodense claim", "5 mm",
            "models.hemorrhage_beside_mm") in rows
    assert not [r for r in parameter_rows({"models": {"hemorrhage_beside_mm": None}}) if "hemorrhage" in r[1]]


def test_the_rule_needs_a_hemorrhage_network(tmp_path):
    with pytest.raises(ModelError, match="hemorrhage network"):
        save_models(tmp_path / "m", {"severe": threshold_net(24.0, above=False)}, {"severe": 0.5}, hemorrhage_beside_mm=5.0)
