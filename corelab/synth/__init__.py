"""Synthetic follow-up NCCT trials: phantom heads with infarcts, manifest, truth and manual reads.

`make_patient` builds one patient in memory (for tests and training); `make_trial` writes a whole
trial to disk; `preview` draws a mosaic of it.
"""

from corelab.synth.phantom import Phantom, PatientTruth, SynthError, make_patient
from corelab.synth.preview import preview
from corelab.synth.trial import TrialSummary, make_trial

__all__ = ["make_trial", "preview", "make_patient", "Phantom", "PatientTruth", "TrialSummary", "SynthError"]
