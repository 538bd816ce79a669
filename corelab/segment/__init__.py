"""Step 3, the networks: their architectures (a registry, named by each model's card), model folders
and cards, dense inference, and `segment()`, which turns a preprocessed scan into labels 0-4 on the
analysis grid.
"""

from corelab.segment.card import NETWORK_NAMES, SINGLE_NAME, record_held_out, save_models
from corelab.segment.dense import dense_probabilities
from corelab.segment.folder import (
    CudaUnavailableError,
    ModelSet,
    default_models_dir,
    load_models,
    resolve_device,
)
from corelab.segment.labels import SegmentInputError, labels_from_probabilities, segment, smooth_probabilities
from corelab.segment.networks import ARCHITECTURES, ArchitectureError, PatchCNN, build_network
from corelab.segment.norm import BRAIN_REFERENCE_HU, InputNorm, brain_median

__all__ = [
    "segment",
    "labels_from_probabilities",
    "smooth_probabilities",
    "SegmentInputError",
    "CudaUnavailableError",
    "ModelSet",
    "resolve_device",
    "default_models_dir",
    "load_models",
    "NETWORK_NAMES",
    "SINGLE_NAME",
    "save_models",
    "record_held_out",
    "InputNorm",
    "BRAIN_REFERENCE_HU",
    "brain_median",
    "PatchCNN",
    "ARCHITECTURES",
    "ArchitectureError",
    "build_network",
    "dense_probabilities",
]
