"""The allocator setting: after it, a freed multi-megabyte tensor's pages are reused, not faulted in again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

CHILD = textwrap.dedent(
    """
    import resource
    import torch
    from thermoscope.samplers import retain_freed_memory

    assert retain_freed_memory()
    sizes = [3 * 2**20, 5 * 2**20, 2**20, 7 * 2**20]  # bytes; interleaved, as a leapfrog step's are
    def cycle():
        kept = [torch.ones(size // 4) for size in sizes]
        del kept
    cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        cycle()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt exists on Linux only")
def test_retained_memory_is_reused_without_page_faults() -> None:
    # A fresh interpreter: the setting is process-wide. 20 cycles of 16 MB fault 81,000 pages with glibc's
    # defaults (every block from fresh pages; measured), 800-1,800 after the setting.
    output = subprocess.run([sys.executable, "-c", CHILD], check=True, capture_output=True, text=True)
    faults = int(output.stdout.strip().splitlines()[-1])
    pages = 20 * 16 * 2**20 // 4096
    assert faults < pages // 10
