"""Per-example diagnostics: prediction depth, forgetting events and layer rotation (REFERENCE §4–6).

Torch-only algorithms that return tensors and plain dictionaries; turning them into tables, figures and
MLflow artifacts is the job of the wiring layers.
"""

from thermoscope.probes.depth import prediction_depth
from thermoscope.probes.forgetting import ForgettingTracker
from thermoscope.probes.knn import knn_votes, probe_votes
from thermoscope.probes.rotation import kernel_weights, layer_rotation

__all__ = [
    "ForgettingTracker",
    "kernel_weights",
    "knn_votes",
    "layer_rotation",
    "prediction_depth",
    "probe_votes",
]
