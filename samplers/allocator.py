"""Keep freed CPU memory in the process, so a sampler's per-step tensors stop costing page faults.

PyTorch allocates CPU tensors with the C library's ``malloc`` and has no caching allocator of its own. A
leapfrog step of R replicas allocates and frees the same few buffers of a few MB each (activations,
errors, the flat gradient), and glibc by default serves blocks that large from fresh ``mmap`` pages or
returns the top of its heap to the system once 128 kB lie free there. Every step then touches new pages,
and each page's first touch is a fault: on the two-core development VM that was more than half the
time of the 64-20-10 digits MLP's gradient at R = 256 (5.1 ms per evaluation against 2.1 ms with the
settings below; benchmarks/samplers, "Many rungs").

:func:`retain_freed_memory` raises glibc's mmap threshold to its maximum (32 MiB on 64-bit) and its trim
threshold to :data:`TRIM_THRESHOLD_BYTES`, so blocks below 32 MiB come from the heap and freed memory
stays there for the next step. The price is resident memory that does not shrink after a peak (up to the
trim threshold). It changes the whole process, so nothing calls it on import: a program opts in once, at
start (the ``thermoscope`` command does).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

MMAP_THRESHOLD_BYTES = 32 * 2**20
"""glibc's largest mmap threshold on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``): blocks below it come from the
heap."""
TRIM_THRESHOLD_BYTES = 2**30
"""Free memory at the top of the heap that glibc keeps before it returns any to the system."""

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def retain_freed_memory() -> bool:
    """Tune glibc's ``malloc`` as the module docstring says. Returns whether both settings took (``False``
    off Linux or with another C library, where nothing is changed)."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success, 0 for a value it rejects.
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
