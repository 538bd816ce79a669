"""Synthetic follow-up NCCT trials: phantom heads with infarcts, manifest, truth and manual reads.

`make_patient` builds one patient in memory (for tests and training) on a procedural head,
`make_atlas_patient` on real anatomy (the MNI152 templates shipped in nilearn's wheel); `make_trial`
writes a whole trial to disk from either family or both, or from a real normal head CT with lesions
drawn in (`load_background`, `make_background_patient`); `preview` draws a mosaic of it.
"""

from corelab.synth.atlas import make_atlas_patient
from corelab.synth.background import Background, load_background, make_background_patient
from corelab.synth.phantom import Phantom, PatientTruth, SynthError, make_patient
from corelab.synth.preview import preview
from corelab.synth.trial import TrialSummary, make_trial

__all__ = [
    "make_trial", "preview", "make_patient", "make_atlas_patient", "Phantom", "PatientTruth", "TrialSummary",
    "SynthError", "Background", "load_background", "make_background_patient",
]
