"""Threads, ISA selection and the build/runtime report."""

from __future__ import annotations

import contextlib
import contextvars
import os
import platform
from typing import Iterator, Optional

import numpy as np

from . import _core
from ._validation import MAX_THREADS, check_int

__all__ = [
    "get_num_threads",
    "set_num_threads",
    "threads",
    "get_flush_denormal",
    "set_flush_denormal",
    "show_config",
    "has_cuda",
]

# A CUDA backend is a separate extension module, built only when nvcc is found.
try:
    from . import _cuda  # type: ignore[attr-defined]  # noqa: F401

    has_cuda = True
except ImportError:
    has_cuda = False

_global_threads: Optional[int] = None
_scoped_threads: contextvars.ContextVar[Optional[int]] = contextvars.ContextVar(
    "convpool_threads", default=None
)


def _check_threads(n: object) -> int:
    value = check_int(n, "n", 1)
    if value > MAX_THREADS:
        raise ValueError(f"n: at most {MAX_THREADS} threads, got {value}")
    return value


def get_num_threads() -> int:
    """Threads the next call will use.

    The innermost ``threads(n)`` block of the current thread or task wins, then
    ``set_num_threads``, then OpenMP's default (``OMP_NUM_THREADS`` if set, else
    the CPUs this process may run on). A build without OpenMP always uses 1.
    """
    if not _core.openmp:
        return 1
    scoped = _scoped_threads.get()
    if scoped is not None:
        return scoped
    if _global_threads is not None:
        return _global_threads
    return int(_core.default_num_threads())


def set_num_threads(n: int) -> None:
    """Set the process-wide number of threads for convpool's kernels."""
    global _global_threads
    _global_threads = _check_threads(n)


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Use ``n`` threads inside a ``with`` block (local to the current thread or task)."""
    token = _scoped_threads.set(_check_threads(n))
    try:
        yield
    finally:
        _scoped_threads.reset(token)


def set_flush_denormal(mode: bool) -> None:
    """Flush denormal numbers to zero in convpool's computing kernels (on by default).

    With ``mode=True`` convolutions, average and Lp pooling and every backward pass
    run with the x86 FTZ and DAZ modes: a result below the smallest normal number
    (about 1.2e-38 in float32, 2.2e-308 in float64) becomes zero, and such inputs
    count as zero. Max pooling only compares and copies: it returns its inputs as
    they are. ``False`` keeps IEEE gradual underflow, as NumPy and PyTorch's default
    do. The mode is set per worker thread for the duration of a call only; the
    caller's floating-point environment is never changed. Process-wide, like
    ``torch.set_flush_denormal``. On CPUs other than x86 it has no effect.
    """
    if not isinstance(mode, (bool, np.bool_)):
        raise TypeError(f"mode: expected a bool, got {type(mode).__name__}")
    _core.set_flush_denormals(bool(mode))


def get_flush_denormal() -> bool:
    """Whether convpool's computing kernels flush denormals to zero (see ``set_flush_denormal``)."""
    return bool(_core.flush_denormals())


def _apply_isa_request() -> None:
    """Honour ``CONVPOOL_ISA`` (a lower SIMD level), rejecting unknown names loudly."""
    requested = os.environ.get("CONVPOOL_ISA")
    if not requested:
        return
    known = ("baseline", "avx2", "avx512")
    if requested not in known:
        raise ImportError(
            f"CONVPOOL_ISA={requested!r} is not one of {', '.join(known)}; unset it to use the best "
            "ISA this CPU supports"
        )


def show_config() -> None:
    """Print the version, the SIMD levels compiled in and in use, threads, OpenMP and CUDA."""
    lines = [
        f"convpool {_core.__version__}",
        f"  platform:        {platform.machine()} / Python {platform.python_version()}",
        f"  ISA in use:      {_core.active_isa()}",
        f"  ISAs compiled:   {', '.join(_core.compiled_isas())}",
        f"  ISAs supported:  {', '.join(_core.supported_isas())}",
        f"  CONVPOOL_ISA:    {os.environ.get('CONVPOOL_ISA', '(not set)')}",
        f"  OpenMP:          {'yes' if _core.openmp else 'no (single-threaded build)'}",
        f"  threads:         {get_num_threads()}",
        f"  flush denormals: {'yes' if get_flush_denormal() else 'no'}",
        f"  CUDA backend:    {'yes' if has_cuda else 'no (not built)'}",
    ]
    print("\n".join(lines))
