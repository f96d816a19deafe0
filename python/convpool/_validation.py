"""Argument normalisation and checks shared by the public functions.

Every error names the argument at fault and the form that was expected. Shape
arithmetic (output sizes, "same" padding) is asked of ``_core``, which implements
it once in ``csrc/include/convpool/shape.hpp``.
"""

from __future__ import annotations

import functools
import operator
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, TypeVar, Union

import numpy as np

from . import _core

Pair = Tuple[int, int]
Padding2d = Tuple[Pair, Pair]
IntOrPair = Union[int, Sequence[int]]
PaddingArg = Union[int, str, Sequence[int], Sequence[Sequence[int]]]

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
INT_DTYPES = tuple(
    np.dtype(t)
    for t in (np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64)
)
LAYOUTS = {"NCHW": 0, "NHWC": 1}
PADDING_STRINGS = ("valid", "same", "same_lower")

# Sizes and parameters beyond this are rejected before any arithmetic, so that the
# 64-bit index math in the kernels cannot overflow.
MAX_EXTENT = 2**62 // 4
MAX_THREADS = 1024


# Checked geometries kept by ``memoize_plain`` (per function), dropped all at once
# when this many have accumulated.
MEMO_LIMIT = 4096

F = TypeVar("F", bound=Callable[..., Any])


def _is_plain(value: Any) -> bool:
    """Whether ``value`` is an exact int, str or None, or a tuple of such values or such tuples.

    Two plain values that compare equal are the same argument to every check here:
    unlike ``2 == 2.0 == True`` or ``(1, 2) == np.array([1, 2])``, no check accepts
    one and rejects the other.
    """
    t = type(value)
    if t is int or t is str or value is None:
        return True
    if t is tuple:
        for e in value:
            if type(e) is not int and not (type(e) is tuple and _is_plain(e)):
                return False
        return True
    return False


_PLAIN_SCALARS = frozenset((int, str, type(None)))


def memoize_plain(shapes: int) -> Callable[[F], F]:
    """Remember a geometry check's results for arguments that are all plain.

    For the checks that small networks repeat on every call with the same few layer
    shapes. The first ``shapes`` arguments must be ``ndarray.shape`` tuples (plain by
    construction, so not inspected); the others are remembered when each is plain
    (see ``_is_plain``). Bools are not plain (``True == 1``, and ``stride=True`` is
    an error): pass a checked flag as 0 or 1. Errors are raised again on every call,
    never remembered; other arguments (NumPy integers, lists) are checked every time.
    """

    def decorate(fn: F) -> F:
        cache: Dict[Tuple[Any, ...], Any] = {}

        @functools.wraps(fn)
        def wrapper(*args: Any) -> Any:
            for a in args[shapes:]:
                if type(a) not in _PLAIN_SCALARS and not (type(a) is tuple and _is_plain(a)):
                    return fn(*args)
            try:
                return cache[args]
            except KeyError:
                pass
            result = fn(*args)
            if len(cache) >= MEMO_LIMIT:
                cache.clear()
            cache[args] = result
            return result

        return wrapper  # type: ignore[return-value]

    return decorate


def layout_code(layout: Any) -> int:
    if not isinstance(layout, str):
        raise TypeError(f"layout: expected 'NCHW' or 'NHWC', got {type(layout).__name__}")
    try:
        return LAYOUTS[layout]
    except KeyError:
        raise ValueError(f"layout: expected 'NCHW' or 'NHWC', got {layout!r}") from None


def as_array(value: Any, name: str, dtypes: Sequence[np.dtype]) -> np.ndarray:
    """``value`` as an ndarray of one of ``dtypes`` (native byte order), never cast."""
    if type(value) is np.ndarray:  # the common case: an array of a canonical dtype
        dtype = value.dtype
        for d in dtypes:
            if dtype is d:
                return value
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if arr.dtype not in dtypes and arr.dtype.newbyteorder("=") in dtypes:
        # Non-native byte order: convert to the machine's order (a copy).
        arr = arr.astype(arr.dtype.newbyteorder("="))
    if arr.dtype not in dtypes:
        expected = ", ".join(str(d) for d in dtypes)
        raise TypeError(f"{name}: unsupported dtype {arr.dtype}; expected one of {expected}")
    canonical = dtypes[list(dtypes).index(arr.dtype)]
    if arr.dtype is not canonical:
        # An equal but distinct dtype object (metadata, long vs long long, a
        # converted byte order): the compiled module matches dtypes by identity.
        arr = arr.view(canonical)
    return arr


def require_4d(x: np.ndarray, name: str, layout: str) -> Tuple[int, int, int, int]:
    """(N, C, H, W) of a 4-D input in ``layout``."""
    return require_4d_shape(x.shape, name, layout)


def require_4d_shape(shape: Tuple[int, ...], name: str, layout: str) -> Tuple[int, int, int, int]:
    """(N, C, H, W) of the shape of a 4-D input in ``layout``."""
    if len(shape) != 4:
        raise ValueError(
            f"{name}: expected a 4-D array in {layout} layout, got shape {shape}"
            + (" (add a batch axis with x[None])" if len(shape) == 3 else "")
        )
    if layout == "NHWC":
        n, h, w, c = shape
    else:
        n, c, h, w = shape
    if h < 1 or w < 1:
        raise ValueError(f"{name}: spatial size must be at least 1x1, got {h}x{w}")
    return n, c, h, w


def check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected True or False, got {value!r}")
    return bool(value)


def check_int(value: Any, name: str, minimum: int) -> int:
    if type(value) is int and minimum <= value <= MAX_EXTENT:  # the common case
        return value
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name}: expected an int, got {value!r}")
    try:
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}") from None
    if v < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {v}")
    if v > MAX_EXTENT:
        raise ValueError(f"{name}: {v} is too large (limit {MAX_EXTENT})")
    return v


def check_pair(value: Any, name: str, minimum: int = 1) -> Pair:
    """An int or a pair of ints, as (h, w)."""
    if type(value) is int:
        v = check_int(value, name, minimum)
        return (v, v)
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name}: expected an int or a pair (h, w), got {value!r}")
        return (check_int(value[0], name, minimum), check_int(value[1], name, minimum))
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return check_pair(value.tolist(), name, minimum)
    v = check_int(value, name, minimum)
    return (v, v)


def resolve_padding(
    padding: Any,
    in_hw: Pair,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
) -> Padding2d:
    """((top, bottom), (left, right)) for every accepted form of ``padding``."""
    if type(padding) is int and 0 <= padding <= MAX_EXTENT:  # the common case
        return ((padding, padding), (padding, padding))
    expected = (
        "expected an int, (ph, pw), ((top, bottom), (left, right)), "
        "'valid', 'same' or 'same_lower'"
    )
    if isinstance(padding, str):
        if padding not in PADDING_STRINGS:
            raise ValueError(f"padding: {expected}, got {padding!r}")
        if padding == "valid":
            return ((0, 0), (0, 0))
        lower = padding == "same_lower"
        return tuple(  # type: ignore[return-value]
            tuple(_core.same_padding(in_hw[a], kernel[a], stride[a], dilation[a], lower))
            for a in range(2)
        )
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise ValueError(f"padding: {expected}, got {padding!r}")
        if all(isinstance(p, (tuple, list)) for p in padding):
            if any(len(p) != 2 for p in padding):
                raise ValueError(f"padding: {expected}, got {padding!r}")
            return tuple(  # type: ignore[return-value]
                (check_int(p[0], "padding", 0), check_int(p[1], "padding", 0)) for p in padding
            )
        ph, pw = check_pair(padding, "padding", 0)
        return ((ph, ph), (pw, pw))
    try:
        p = check_int(padding, "padding", 0)
    except TypeError:
        raise TypeError(f"padding: {expected}, got {type(padding).__name__}") from None
    return ((p, p), (p, p))


def output_hw(
    in_hw: Pair,
    kernel: Pair,
    stride: Pair,
    dilation: Pair,
    padding: Padding2d,
    ceil_mode: bool,
    kernel_name: str,
) -> Pair:
    """Output (h, w), with an error naming the arguments when a side would be empty."""
    sizes = []
    for a, axis in enumerate(("height", "width")):
        try:
            sizes.append(
                _core.output_size(
                    in_hw[a], kernel[a], stride[a], dilation[a], padding[a][0], padding[a][1], ceil_mode
                )
            )
        except ValueError as exc:
            raise ValueError(
                f"{kernel_name}: the output would be empty along the {axis}: input {axis} {in_hw[a]} "
                f"with padding {padding[a][0]}+{padding[a][1]}, kernel {kernel[a]}, dilation "
                f"{dilation[a]} and stride {stride[a]} ({exc})"
            ) from None
    return (sizes[0], sizes[1])


def check_pool_padding(padding: Padding2d, kernel: Pair, dilation: Pair) -> None:
    for a, axis in enumerate(("height", "width")):
        extent = _core.dilated_extent(kernel[a], dilation[a])
        if max(padding[a]) >= extent:
            raise ValueError(
                f"padding: {padding[a]} along the {axis} must be smaller than the dilated kernel "
                f"extent {extent} on each side"
            )


def shape_in_layout(layout: str, n: int, c: int, h: int, w: int) -> Tuple[int, int, int, int]:
    return (n, h, w, c) if layout == "NHWC" else (n, c, h, w)


def check_size(shape: Sequence[int], itemsize: int, name: str = "output") -> None:
    total = itemsize
    for s in shape:
        total *= s
    if total > MAX_EXTENT:
        raise ValueError(f"{name}: shape {tuple(shape)} is too large ({total} bytes)")


def prepare_out(
    out: Any,
    shape: Tuple[int, ...],
    dtype: np.dtype,
    inputs: Sequence[Optional[np.ndarray]],
    name: str = "out",
) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """(array the kernel writes, user array to copy into afterwards or None).

    A user ``out`` that overlaps an input is written through a temporary, as NumPy's
    ufuncs do, so the kernel never reads what it has already overwritten.
    """
    check_size(shape, dtype.itemsize, name)
    if out is None:
        return np.empty(shape, dtype=dtype), None
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name}: expected a numpy.ndarray, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{name}: expected dtype {dtype}, got {out.dtype}")
    if out.shape != tuple(shape):
        raise ValueError(f"{name}: expected shape {tuple(shape)}, got {out.shape}")
    if not out.flags.writeable:
        raise ValueError(f"{name}: array is read-only")
    if not out.flags.c_contiguous:
        raise ValueError(f"{name}: expected a C-contiguous array")
    if any(a is not None and np.may_share_memory(out, a) for a in inputs):
        return np.empty(shape, dtype=dtype), out
    return out, None


def finish_out(result: np.ndarray, user_out: Optional[np.ndarray]) -> np.ndarray:
    if user_out is None:
        return result
    np.copyto(user_out, result)
    return user_out
