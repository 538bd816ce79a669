"""`corelab train`: the paper's training recipe (cohort, patches, networks, smoothing and cut-offs).
"""

from corelab.train.cohort import load_cohort
from corelab.train.recipe import TrainOptions, TrainSummary, train_models

__all__ = [
    "train_models",
    "TrainOptions",
    "TrainSummary",
    "load_cohort",
]
