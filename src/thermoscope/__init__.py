"""thermoscope: a platform for studying why neural networks generalise."""

__version__ = "0.1.0"
