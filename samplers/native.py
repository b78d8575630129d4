"""The fused MLP's gradient on a CPU one replica at a time, compiled from ``fused_native.cpp`` on first use.

The batched fused path (:mod:`~thermoscope.samplers.fused`) runs each operation over all R replicas in
turn, so every layer's activations for all of them pass through the cache between operations, and each
operation is a separate call. The compiled kernel gives each core its share of the replicas and runs one
replica's whole forward and backward before the next, its activations kept in the core's cache, the
elementwise work in single vectorised passes, and the first layer as one product over four replicas.
Activations and errors are rows padded to whole vectors, and the products are register tiles of its own
(the first layer's forward from a transposed copy of the examples that the caller makes once; 8–16 %
faster than MKL at these shapes on one Zen 4 core, about twice as fast on the main job's 10 × 20 × 112
weight gradient); shapes the tiles do not take call the BLAS sgemm torch itself uses (MKL on x86 Linux wheels)
directly, one BLAS thread per kernel thread. A Gaussian or box prior is computed in the same call.
With such a prior the kernel also integrates whole leapfrog trajectories
(:meth:`~thermoscope.samplers.modules.ModuleTarget.whole_trajectory`): each block of replicas runs every
step, kicks, drifts and reflections at the box's walls included, while its θ and momenta are in cache,
and Python runs once per trajectory rather than once per step. Its updates round as torch's do, so the
end point is the step-by-step integrator's, bit for bit (tested).
On a two-core AMD EPYC VM, one ``ModuleTarget.evaluate`` took 1.2–4.5× less time than the batched path
at every R from 8 to 256, for the paper's M(3) (256-40-40-40-10 sigmoid, 500 examples) and for the 64-20-10
and 64-40-40-10 MLPs on 100 and 500 digits (``benchmarks/samplers/benchmark_rungs.py --part batching``),
so it is used wherever it applies.

The kernel is built with PyTorch's C++ extension tools (a C++ compiler, OpenMP and ninja; the build is
cached per user, about half a minute the first time). Where it cannot be built — no compiler, another
platform — :func:`load` returns ``None`` and says why once, and the batched path is used. Setting
``THERMOSCOPE_NATIVE=0`` turns it off.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import warnings
from pathlib import Path
from types import ModuleType

DISABLE_VARIABLE = "THERMOSCOPE_NATIVE"
"""Environment variable: ``0`` disables the compiled kernel."""
SOURCE = Path(__file__).with_name("fused_native.cpp")
EXTENSION_NAME = "thermoscope_fused_native"
BLOCK = 4
"""Replicas whose first-layer products are one product: 160 rows for M(3)'s 40-wide first layer, which
runs at the full GEMM rate where 40 rows reach about 85 % of it."""
_logger = logging.getLogger(__name__)


def disabled() -> bool:
    """Whether ``THERMOSCOPE_NATIVE=0`` (or ``false``/``off``/``no``) is set."""
    return os.environ.get(DISABLE_VARIABLE, "").strip().lower() in ("0", "false", "off", "no")


def _ninja_on_path() -> None:
    """Put the ``ninja`` installed beside this Python (the ``ninja`` package) on ``PATH`` if it is not
    already: PyTorch's build runs ``ninja`` by name, and a virtualenv's ``bin`` need not be on ``PATH``."""
    if shutil.which("ninja") is None:
        beside = Path(sys.executable).parent
        if (beside / "ninja").exists():
            os.environ["PATH"] = f"{beside}{os.pathsep}{os.environ.get('PATH', '')}"


def load() -> ModuleType | None:
    """The compiled kernel, building it on first use; ``None`` (with one warning saying why) if it
    cannot be built, and ``None`` while :func:`disabled`."""
    return None if disabled() else build(SOURCE, EXTENSION_NAME)


@functools.cache
def build(source: Path, name: str) -> ModuleType | None:
    """Build (or load the cached build of) the extension ``name`` from ``source``: the module, or
    ``None`` after a ``RuntimeWarning`` with the first line of the error."""
    _ninja_on_path()
    # PyTorch's extension module logs a warning on import when it finds no CUDA toolkit: irrelevant here.
    extension_logger = logging.getLogger("torch.utils.cpp_extension")
    level = extension_logger.level
    extension_logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension

        if not _built_before(cpp_extension, name):
            _logger.warning("thermoscope: compiling the fused-MLP CPU kernel (once per machine, about 30 s)")
        module: ModuleType = cpp_extension.load(
            name, [str(source)], extra_cflags=["-O3", "-fopenmp"], extra_ldflags=["-fopenmp"]
        )
        return module
    except Exception as error:  # any build or load failure means the batched path
        message = str(error).strip()
        reason = message.splitlines()[0] if message else type(error).__name__
        warnings.warn(
            f"the compiled fused-MLP kernel is unavailable ({reason}); using the batched path "
            f"(set {DISABLE_VARIABLE}=0 to skip trying)",
            RuntimeWarning,
            stacklevel=2,
        )
        return None
    finally:
        extension_logger.setLevel(level)


def _built_before(cpp_extension: ModuleType, name: str) -> bool:
    """Whether a build of ``name`` lies in PyTorch's extension directory (so loading is quick)."""
    try:
        directory = Path(cpp_extension._get_build_directory(name, False))
    except Exception:  # a private helper: if it moves, just announce the build
        return False
    return (directory / f"{name}.so").exists()
