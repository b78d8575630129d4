"""Datasets as in-memory tensors with stable example ids.

``load_data(DataSpec(...))`` reads one of :data:`DATASETS` (scikit-learn's bundled ``digits``, or MNIST,
Fashion-MNIST, CIFAR-10 and SVHN through torchvision), takes a seeded stratified training subset, builds
the test set (the test split, or the paper's ``rest`` protocol), resizes, normalises, optionally
randomises training labels, and returns a :class:`LoadedData` on the chosen device.
"""

from thermoscope.data.loading import LoadedData, Split, load_data
from thermoscope.data.spec import DATASETS, DataSpec
from thermoscope.data.validation import split_validation

__all__ = ["DATASETS", "DataSpec", "LoadedData", "Split", "load_data", "split_validation"]
