"""Shared fixtures and helpers for convpool's tests.

* a hypothesis profile (``convpool``; ``CI`` only makes the runs reproducible, it never
  changes what is checked or how tightly);
* the ``isa`` fixture: every kernel property test runs once per ISA this CPU supports;
* layout helpers, random-array helpers and the tolerance helpers every comparison
  against ``convpool.reference`` goes through.
"""

from __future__ import annotations

import contextlib
import math
import os
from typing import Iterable, Iterator, Optional, Sequence, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

try:
    from convpool import _core
    from convpool import reference as ref
except ImportError:  # compiled module not built: only tests/test_reference.py can run
    import importlib.util
    from pathlib import Path

    _core = None
    _path = Path(__file__).resolve().parents[1] / "python" / "convpool" / "reference.py"
    _spec = importlib.util.spec_from_file_location("_convpool_reference_standalone", _path)
    ref = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(ref)

# ----------------------------------------------------------------------------- hypothesis

# ``function_scoped_fixture`` is suppressed on purpose: the only function-scoped
# fixture used with @given is ``isa``, which sets the ISA once for all examples of a
# test invocation; nothing needs resetting between examples.
settings.register_profile(
    "convpool",
    deadline=None,
    max_examples=int(os.environ.get("CONVPOOL_MAX_EXAMPLES", "100")),
    database=None,  # keep the checkout clean (no .hypothesis/ directory)
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    print_blob=True,
)
# CI: the same examples every run (derandomised), same number and same tolerances.
settings.register_profile("convpool-ci", parent=settings.get_profile("convpool"), derandomize=True)
settings.load_profile("convpool-ci" if os.environ.get("CI") else "convpool")



def examples(fraction: float) -> settings:
    """The loaded profile with a fraction of its max_examples (at least 10), for
    property tests that pytest already parametrizes several ways."""
    current = settings.default
    return settings(current, max_examples=max(10, int(current.max_examples * fraction)))


# ----------------------------------------------------------------------------- constants

LAYOUTS = ("NCHW", "NHWC")
FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT_DTYPES = tuple(
    np.dtype(t)
    for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64)
)
# Sizes just below, at and above the SIMD widths of every ISA (4/8/16 float lanes,
# register tiles of 2x lanes).
SIMD_SIZES = (1, 7, 8, 9, 15, 16, 17, 31, 33)

SUPPORTED_ISAS = tuple(_core.supported_isas()) if _core is not None else ()


# ----------------------------------------------------------------------------- ISA fixture


@pytest.fixture(autouse=True, scope="session")
def small_problems_use_every_thread() -> Iterable[None]:
    """Test shapes are small, and the kernels run small calls on one thread; with a
    grain of 0 they use every requested thread, so the parallel paths (work split,
    per-thread partial sums) are what the tests check."""
    if _core is None:
        yield
        return
    grain = _core.min_parallel_work()
    _core.set_min_parallel_work(0)
    yield
    _core.set_min_parallel_work(grain)


@contextlib.contextmanager
def cache_resident_bytes(nbytes: int) -> Iterator[None]:
    """Run the block with the kernels' cache-resident bound
    (``_core.cache_resident_bytes()``) at ``nbytes``; the bound is restored after,
    also when the block raises."""
    saved = _core.cache_resident_bytes()
    _core.set_cache_resident_bytes(nbytes)
    try:
        yield
    finally:
        _core.set_cache_resident_bytes(saved)


@pytest.fixture(params=SUPPORTED_ISAS, ids=lambda name: f"isa={name}")
def isa(request: pytest.FixtureRequest) -> Iterable[str]:
    """Run the test with the named ISA's kernels, restoring the previous ISA after."""
    previous = _core.active_isa()
    _core.set_isa(request.param)
    assert _core.active_isa() == request.param
    try:
        yield request.param
    finally:
        _core.set_isa(previous)


# ----------------------------------------------------------------------------- layouts


def to_layout(x_nchw: np.ndarray, layout: str) -> np.ndarray:
    """A C-contiguous copy of an NCHW array in ``layout``."""
    if layout == "NHWC":
        return np.array(x_nchw.transpose(0, 2, 3, 1), order="C", copy=True)
    assert layout == "NCHW"
    return np.array(x_nchw, order="C", copy=True)


def from_layout(y: np.ndarray, layout: str) -> np.ndarray:
    """``y`` (in ``layout``) viewed as NCHW."""
    if layout == "NHWC":
        return y.transpose(0, 3, 1, 2)
    assert layout == "NCHW"
    return y


def nchw_shape(shape: Sequence[int], layout: str) -> Tuple[int, int, int, int]:
    n, a, b, c = shape
    return (n, c, a, b) if layout == "NHWC" else (n, a, b, c)


# ----------------------------------------------------------------------------- arguments


def normalise_padding(padding, in_hw, kernel, stride, dilation):
    """((t, b), (l, r)) for any public padding form, derived with the reference's formulas."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        lower = padding == "same_lower"
        return tuple(
            ref.same_padding(in_hw[a], kernel[a], stride[a], dilation[a], lower) for a in range(2)
        )
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if all(isinstance(p, int) for p in padding):
        return ((padding[0], padding[0]), (padding[1], padding[1]))
    return (tuple(padding[0]), tuple(padding[1]))


def output_hw(in_hw, kernel, stride, dilation, pads, ceil_mode=False) -> Optional[Tuple[int, int]]:
    """Reference output size, or None if it would be empty."""
    try:
        return tuple(
            ref.output_size(in_hw[a], kernel[a], stride[a], dilation[a], *pads[a], ceil_mode)
            for a in range(2)
        )
    except ValueError:
        return None



def pair_arg(pair: Tuple[int, int]):
    """The public API's int-or-pair form: an int when both entries agree."""
    return pair[0] if pair[0] == pair[1] else pair


def extent(kernel: int, dilation: int) -> int:
    return dilation * (kernel - 1) + 1


# ----------------------------------------------------------------------------- random data

seeds = st.integers(min_value=0, max_value=2**32 - 1)


def random_array(rng: np.random.Generator, shape, dtype, kind: str = "normal") -> np.ndarray:
    """Random test data.

    kind: "normal" (floats ~ N(0, 1)), "ties" (small integers, so windows have equal
    maxima), "full" (integers over the whole dtype range, with the dtype's minimum and
    maximum planted at random positions).
    """
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        if kind == "ties":
            return rng.integers(-3, 4, size=shape).astype(dtype)
        return rng.standard_normal(shape).astype(dtype)
    info = np.iinfo(dtype)
    if kind == "ties":
        lo, hi = max(info.min, -3), min(info.max, 3)
        return rng.integers(lo, hi, size=shape, endpoint=True).astype(dtype)
    x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    if x.size:
        flat = x.reshape(-1)
        flat[rng.integers(0, x.size, size=max(1, x.size // 8))] = info.min
        flat[rng.integers(0, x.size, size=max(1, x.size // 8))] = info.max
    return x


# ----------------------------------------------------------------------------- input forms


def _sliced(a: np.ndarray) -> np.ndarray:
    """Same values, as a view with stride 2 on every axis into a bigger buffer."""
    big = np.full(tuple(2 * s + 1 for s in a.shape), 99, dtype=a.dtype)
    view = big[tuple(slice(1, None, 2) for _ in a.shape)]
    view[...] = a
    return view


def _read_only(a: np.ndarray) -> np.ndarray:
    a = a.copy()
    a.flags.writeable = False
    return a


# Ways to pass the same values: non-C-contiguous views and read-only arrays.
INPUT_FORMS = {
    "fortran": np.asfortranarray,
    "sliced": _sliced,
    "transposed": lambda a: np.ascontiguousarray(a.T).T,  # transposed view of a transposed copy
    "read_only": _read_only,
}


# ----------------------------------------------------------------------------- tolerances

# Error of a sum of n floating-point terms, accumulated in a format with unit
# roundoff u = eps / 2, in any order, with or without FMA: with probability at least
# 1 - 2n exp(-lambda^2 / 2) it is below lambda * sqrt(n) * u * sum(|term|)
# (Higham & Mary, "A new approach to probabilistic rounding error analysis", 2019).
# TOL_C = 4 means lambda = 8: the bound fails by chance with probability < 1e-11 per
# element for the n < 1000 used here, while a wrong or missing tap is an error of the
# order of one term, sum(|term|) / n, orders of magnitude above it.
TOL_C = 4.0


def eps(dtype) -> float:
    return float(np.finfo(np.dtype(dtype)).eps)


def reduction_atol(out_dtype, n_terms, magnitude, acc_dtype=None) -> np.ndarray:
    """Elementwise absolute tolerance for an output that is a sum of ``n_terms`` terms
    whose absolute values add up to ``magnitude`` (an array), accumulated in
    ``acc_dtype`` (default: the output dtype) and rounded to ``out_dtype``.

    The last term covers the final rounding to ``out_dtype`` of both the tested value
    and the reference (each at most u * |result| <= u * magnitude).
    """
    acc = out_dtype if acc_dtype is None else acc_dtype
    n = max(int(n_terms), 1)
    magnitude = np.asarray(magnitude, dtype=np.float64)
    return TOL_C * eps(acc) * math.sqrt(n) * magnitude + eps(out_dtype) * magnitude


def assert_within(actual: np.ndarray, expected: np.ndarray, atol, what: str = "") -> None:
    """Same shape and dtype, NaN exactly where expected, equal infinities, and
    |actual - expected| <= atol elsewhere."""
    assert actual.shape == expected.shape, f"{what}shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}dtype {actual.dtype} != {expected.dtype}"
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    assert np.array_equal(nan_a, nan_e), f"{what}NaN at {np.argwhere(nan_a != nan_e)[:5].tolist()}"
    inf = np.isinf(a) | np.isinf(e)
    assert np.array_equal(a[inf], e[inf]), f"{what}infinities differ"
    finite = ~(nan_a | inf)
    err = np.abs(a - e)
    tol = np.broadcast_to(np.asarray(atol, dtype=np.float64), a.shape)
    bad = finite & ~(err <= tol)
    if bad.any():
        where = tuple(np.argwhere(bad)[0])
        raise AssertionError(
            f"{what}{int(bad.sum())} of {a.size} elements out of tolerance; first at {where}: "
            f"actual {a[where]!r}, expected {e[where]!r}, |diff| {err[where]:.3e} > tol {tol[where]:.3e}; "
            f"max excess ratio {np.max(err[finite] / np.maximum(tol[finite], 1e-300)):.3g}"
        )


def assert_identical(actual: np.ndarray, expected: np.ndarray, what: str = "") -> None:
    """Bitwise-equal values (NaN == NaN), same shape and dtype."""
    assert actual.shape == expected.shape, f"{what}shape {actual.shape} != {expected.shape}"
    assert actual.dtype == expected.dtype, f"{what}dtype {actual.dtype} != {expected.dtype}"
    same = actual == expected
    if actual.dtype.kind == "f":
        same |= np.isnan(actual) & np.isnan(expected)
    if not same.all():
        diff = ~same
        where = tuple(np.argwhere(diff)[0])
        raise AssertionError(
            f"{what}{int(diff.sum())} of {actual.size} elements differ; first at {where}: "
            f"actual {actual[where]!r}, expected {expected[where]!r}"
        )
