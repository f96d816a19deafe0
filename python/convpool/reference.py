"""Pure-NumPy reference ("oracle") implementations of convpool's operations.

Every function here is a direct transcription of the definitions in
``docs/semantics.md``: pad (conceptually), then loop over the kernel taps, with
everything else (batch, channels, output positions) vectorised by NumPy.  The
code is written to be *obviously* correct rather than fast; the compiled
kernels are tested against it.

This module is standalone: it imports nothing but NumPy, so it can be loaded
on its own (e.g. with ``importlib``) even when convpool's compiled extension
is not built.

Arguments are taken in *normalised* form only -- the public API
(``convpool.functional``) resolves ints, strings such as ``"same"``, ``None``
strides and NHWC layouts before calling the kernels:

* ``x`` is always NCHW, shape ``(N, C, H, W)``;
* ``kernel_size``, ``stride`` and ``dilation`` are ``(h, w)`` int pairs;
* ``padding`` is ``((top, bottom), (left, right))``;
* adaptive ``output_size`` is an ``(oh, ow)`` int pair.

Results always have the dtype of ``x``.  Pool indices are ``int64`` and flat
within each ``(n, c)`` plane: ``ih * W + iw``.
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

import numpy as np

__all__ = [
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "lp_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
    "global_avg_pool2d",
    "global_max_pool2d",
    "output_size",
    "same_padding",
    "conv2d_backward",
    "max_pool2d_backward",
    "avg_pool2d_backward",
    "lp_pool2d_backward",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_backward",
    "global_avg_pool2d_backward",
    "global_max_pool2d_backward",
]

Pair = Tuple[int, int]
Padding = Tuple[Tuple[int, int], Tuple[int, int]]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
_INT_DTYPES = tuple(
    np.dtype(t)
    for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
)


# ----------------------------------------------------------------------------
# Shape arithmetic
# ----------------------------------------------------------------------------


def output_size(
    in_size: int,
    kernel: int,
    stride: int,
    dilation: int,
    pad_before: int,
    pad_after: int,
    ceil_mode: bool = False,
) -> int:
    """Number of windows along one axis.

    ``k_eff = dilation * (kernel - 1) + 1`` and::

        out = floor((in + pad_before + pad_after - k_eff
                     + (stride - 1 if ceil_mode else 0)) / stride) + 1

    In ceil mode the last window must start inside the input or the leading
    padding: if ``(out - 1) * stride >= in + pad_before`` then ``out -= 1``
    (PyTorch's and ONNX's rule).

    Raises ``ValueError`` if the result is < 1 or an argument is out of range
    (``in_size``, ``kernel``, ``stride``, ``dilation`` must be >= 1 and the
    pads >= 0).
    """
    if in_size < 1:
        raise ValueError(f"input size must be >= 1, got {in_size}")
    if kernel < 1:
        raise ValueError(f"kernel size must be >= 1, got {kernel}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    if pad_before < 0 or pad_after < 0:
        raise ValueError(f"padding must be >= 0, got ({pad_before}, {pad_after})")
    k_eff = dilation * (kernel - 1) + 1
    span = in_size + pad_before + pad_after - k_eff
    if ceil_mode:
        span += stride - 1
    out = span // stride + 1  # Python // is floor division, also for negatives
    if ceil_mode and (out - 1) * stride >= in_size + pad_before:
        out -= 1
    if out < 1:
        raise ValueError(
            f"the output would be empty: input size {in_size}, padding "
            f"({pad_before}, {pad_after}), dilated kernel extent {k_eff}, stride {stride}"
        )
    return out


def same_padding(
    in_size: int, kernel: int, stride: int, dilation: int, lower: bool = False
) -> Tuple[int, int]:
    """``(before, after)`` padding for TensorFlow/ONNX ``"same"`` along one axis.

    ``out = ceil(in / stride)``, ``total = max(0, (out - 1) * stride + k_eff - in)``.
    SAME_UPPER (``lower=False``): ``before = total // 2`` (the odd one goes
    after).  SAME_LOWER (``lower=True``): ``before = total - total // 2``.
    """
    if in_size < 1:
        raise ValueError(f"input size must be >= 1, got {in_size}")
    if kernel < 1:
        raise ValueError(f"kernel size must be >= 1, got {kernel}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if dilation < 1:
        raise ValueError(f"dilation must be >= 1, got {dilation}")
    k_eff = dilation * (kernel - 1) + 1
    out = -(-in_size // stride)
    total = max(0, (out - 1) * stride + k_eff - in_size)
    small = total // 2
    large = total - small
    return (large, small) if lower else (small, large)


# ----------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------


def _check_x(x: np.ndarray, allowed: Tuple[np.dtype, ...], op: str) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"{op}: x must be 4-D (N, C, H, W), got shape {x.shape}")
    if x.dtype not in allowed:
        names = ", ".join(str(d) for d in allowed)
        raise TypeError(f"{op}: x dtype must be one of {names}, got {x.dtype}")
    return x


def _window_taps(
    in_size: int, out: int, stride: int, dilation: int, pad_before: int, pad_after: int, i: int
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Tap ``i`` of every window along one axis.

    Returns ``(pos, valid, in_padded)``, each of length ``out``:
    ``pos[o] = o * stride - pad_before + i * dilation`` (input coordinate),
    ``valid = 0 <= pos < in_size``,
    ``in_padded = -pad_before <= pos < in_size + pad_after``.
    """
    pos = np.arange(out, dtype=np.int64) * stride - pad_before + i * dilation
    valid = (pos >= 0) & (pos < in_size)
    in_padded = (pos >= -pad_before) & (pos < in_size + pad_after)
    return pos, valid, in_padded


def _pool_geometry(
    x: np.ndarray,
    kernel_size: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair,
    ceil_mode: bool,
) -> Tuple[int, int]:
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    (pt, pb), (pl, pr) = padding
    H, W = x.shape[2], x.shape[3]
    oh = output_size(H, kh, sh, dh, pt, pb, ceil_mode)
    ow = output_size(W, kw, sw, dw, pl, pr, ceil_mode)
    return oh, ow


def _taps_2d(
    x: np.ndarray,
    oh: int,
    ow: int,
    kernel_size: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair,
):
    """Yield, for every kernel tap ``(i, j)`` in row-major order, a tuple
    ``(values, valid, flat_index)``.

    ``values`` has shape ``(N, C, oh, ow)`` and holds ``x`` at the tap's
    position (garbage where the tap is not valid), ``valid`` is the
    ``(oh, ow)`` mask of valid taps, ``flat_index`` the ``(oh, ow)`` flat input
    index ``ih * W + iw`` (meaningless where not valid).
    """
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    (pt, pb), (pl, pr) = padding
    H, W = x.shape[2], x.shape[3]
    for i in range(kh):
        rows, rvalid, rpad = _window_taps(H, oh, sh, dh, pt, pb, i)
        rclip = np.clip(rows, 0, H - 1)
        for j in range(kw):
            cols, cvalid, cpad = _window_taps(W, ow, sw, dw, pl, pr, j)
            cclip = np.clip(cols, 0, W - 1)
            values = x[:, :, rclip[:, None], cclip[None, :]]
            valid = rvalid[:, None] & cvalid[None, :]
            flat = rows[:, None] * W + cols[None, :]
            yield values, valid, flat


def _lowest(dtype: np.dtype):
    """Value of a window with no valid tap in max pooling."""
    if dtype.kind == "f":
        return -np.inf
    return np.iinfo(dtype).min


def _adaptive_bounds(in_size: int, out_size: int, o: int) -> Tuple[int, int]:
    """Window ``[floor(o*in/out), ceil((o+1)*in/out))`` in exact integer arithmetic."""
    start = (o * in_size) // out_size
    end = -((-(o + 1) * in_size) // out_size)
    return start, end


def _check_adaptive(x: np.ndarray, output_size_: Pair) -> Tuple[int, int]:
    H, W = x.shape[2], x.shape[3]
    if H < 1 or W < 1:
        raise ValueError(f"input spatial size must be >= 1, got ({H}, {W})")
    oh, ow = output_size_
    if oh < 1 or ow < 1:
        raise ValueError(f"output_size must be >= 1, got ({oh}, {ow})")
    return oh, ow


# ----------------------------------------------------------------------------
# Convolution
# ----------------------------------------------------------------------------


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: Optional[np.ndarray] = None,
    stride: Pair = (1, 1),
    padding: Padding = ((0, 0), (0, 0)),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """Grouped, strided, dilated 2-D cross-correlation with zero padding.

    ``x`` is ``(N, C, H, W)``, ``weight`` ``(K, C // groups, kh, kw)``, ``bias``
    ``(K,)`` or ``None``.  With ``Cg = C // groups``, ``Kg = K // groups`` and
    ``g = k // Kg``::

        out[n, k, oh, ow] = bias[k] + sum_{c < Cg, i < kh, j < kw}
            weight[k, c, i, j] * xpad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]

    where ``xpad`` is ``x`` zero-padded by ``padding``.  Accumulates in
    float64 and casts the result back to ``x.dtype`` (float32 or float64).
    """
    x = _check_x(x, _FLOAT_DTYPES, "conv2d")
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"conv2d: weight must be 4-D (K, C // groups, kh, kw), got shape {weight.shape}")
    N, C, H, W = x.shape
    K, Cg, kh, kw = weight.shape
    if groups < 1 or C % groups != 0 or K % groups != 0:
        raise ValueError(f"conv2d: groups={groups} must divide both C={C} and K={K}")
    if Cg != C // groups:
        raise ValueError(f"conv2d: weight.shape[1] must be C // groups = {C // groups}, got {Cg}")
    if bias is not None:
        bias = np.asarray(bias)
        if bias.shape != (K,):
            raise ValueError(f"conv2d: bias must have shape ({K},), got {bias.shape}")
    (sh, sw), (dh, dw) = stride, dilation
    (pt, pb), (pl, pr) = padding
    oh = output_size(H, kh, sh, dh, pt, pb)
    ow = output_size(W, kw, sw, dw, pl, pr)

    G, Kg = groups, K // groups
    xpad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w = weight.astype(np.float64).reshape(G, Kg, Cg, kh, kw)
    acc = np.zeros((N, G, Kg, oh, ow), dtype=np.float64)
    for i in range(kh):
        for j in range(kw):
            # Tap (i, j) of every output position at once: (N, C, oh, ow).
            patch = xpad[
                :,
                :,
                i * dh : i * dh + (oh - 1) * sh + 1 : sh,
                j * dw : j * dw + (ow - 1) * sw + 1 : sw,
            ].reshape(N, G, Cg, oh, ow)
            with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN propagate silently
                acc += np.einsum("ngchw,gkc->ngkhw", patch, w[:, :, :, i, j])
    out = acc.reshape(N, K, oh, ow)
    if bias is not None:
        out = out + bias.astype(np.float64)[None, :, None, None]
    with np.errstate(over="ignore"):
        return out.astype(x.dtype)


# ----------------------------------------------------------------------------
# Window pooling
# ----------------------------------------------------------------------------


def max_pool2d(
    x: np.ndarray,
    kernel_size: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair = (1, 1),
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Max over each window's *valid* taps (padding never wins).

    Taps are visited in row-major window order; a tap replaces the running
    maximum if it is the first valid tap, or if the running maximum is not NaN
    and the tap is greater or NaN.  Hence ties go to the first tap and NaN
    propagates with the index of the *first* NaN (like ``numpy.argmax``).
    A window with no valid tap gives ``-inf`` (floats) or the dtype's minimum
    (integers), index ``-1``.  Indices are int64, ``ih * W + iw``.

    ``x`` may be float32, float64 or any 8/16/32/64-bit (un)signed integer.
    """
    x = _check_x(x, _FLOAT_DTYPES + _INT_DTYPES, "max_pool2d")
    oh, ow = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    N, C = x.shape[:2]
    is_float = x.dtype.kind == "f"
    best = np.full((N, C, oh, ow), _lowest(x.dtype), dtype=x.dtype)
    best_idx = np.full((N, C, oh, ow), -1, dtype=np.int64)
    for values, valid, flat in _taps_2d(x, oh, ow, kernel_size, stride, padding, dilation):
        if is_float:
            best_nan = np.isnan(best)
            better = (values > best) | np.isnan(values)
            take = valid & ((best_idx < 0) | (~best_nan & better))
        else:
            take = valid & ((best_idx < 0) | (values > best))
        best = np.where(take, values, best)
        best_idx = np.where(take, flat, best_idx)
    if return_indices:
        return best, best_idx
    return best


def avg_pool2d(
    x: np.ndarray,
    kernel_size: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair = (1, 1),
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
) -> np.ndarray:
    """Sum of each window's valid taps divided by a divisor.

    Divisor: ``divisor_override`` if given; else, with ``count_include_pad``,
    (row taps inside the padded extent) * (column taps inside the padded
    extent) -- taps hanging past the trailing padding in ceil mode are not
    counted; else (valid row taps) * (valid column taps).  Taps are the
    dilated ones.  A zero divisor gives 0.  Sums in float64, casts back to
    ``x.dtype`` (float32 or float64).
    """
    x = _check_x(x, _FLOAT_DTYPES, "avg_pool2d")
    oh, ow = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    N, C, H, W = x.shape

    total = np.zeros((N, C, oh, ow), dtype=np.float64)
    for values, valid, _ in _taps_2d(x, oh, ow, kernel_size, stride, padding, dilation):
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf -> NaN, silently
            total += np.where(valid, values.astype(np.float64), 0.0)

    divisor = _avg_divisor(
        (H, W), (oh, ow), kernel_size, stride, padding, dilation, count_include_pad, divisor_override
    )
    divisor = np.broadcast_to(divisor, total.shape)
    out = np.zeros_like(total)
    np.divide(total, divisor, out=out, where=divisor != 0)
    with np.errstate(over="ignore"):
        return out.astype(x.dtype)


def lp_pool2d(
    x: np.ndarray,
    norm_type: float,
    kernel_size: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair = (1, 1),
    ceil_mode: bool = False,
) -> np.ndarray:
    """Power-average pooling: ``(sum over valid taps of |x| ** p) ** (1 / p)``.

    Uses the absolute value (ONNX LpPool).  Padding contributes 0, a window
    with no valid tap gives 0.  ``norm_type`` must be a positive finite
    number.  Accumulates in float64, casts back to ``x.dtype`` (float32 or
    float64).
    """
    x = _check_x(x, _FLOAT_DTYPES, "lp_pool2d")
    p = float(norm_type)
    if not (np.isfinite(p) and p > 0):
        raise ValueError(f"lp_pool2d: norm_type must be a positive finite number, got {norm_type}")
    oh, ow = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode)
    N, C = x.shape[:2]
    total = np.zeros((N, C, oh, ow), dtype=np.float64)
    for values, valid, _ in _taps_2d(x, oh, ow, kernel_size, stride, padding, dilation):
        with np.errstate(invalid="ignore", over="ignore"):  # overflow -> inf, silently
            total += np.where(valid, np.abs(values.astype(np.float64)) ** p, 0.0)
    with np.errstate(over="ignore"):  # float32 cast of a huge float64 -> inf
        return (total ** (1.0 / p)).astype(x.dtype)


# ----------------------------------------------------------------------------
# Adaptive and global pooling
# ----------------------------------------------------------------------------


def adaptive_avg_pool2d(x: np.ndarray, output_size: Pair) -> np.ndarray:
    """Mean over adaptive windows.

    Along an axis of input size ``In`` and output size ``Out``, output ``o``
    covers ``[floor(o * In / Out), ceil((o + 1) * In / Out))``.  Every tap is
    valid; the divisor is the window's element count.  Output may be larger
    than the input.  Sums in float64, casts back to ``x.dtype``.
    """
    x = _check_x(x, _FLOAT_DTYPES, "adaptive_avg_pool2d")
    oh, ow = _check_adaptive(x, output_size)
    N, C, H, W = x.shape
    out = np.empty((N, C, oh, ow), dtype=np.float64)
    for a in range(oh):
        hs, he = _adaptive_bounds(H, oh, a)
        for b in range(ow):
            ws, we = _adaptive_bounds(W, ow, b)
            window = x[:, :, hs:he, ws:we].astype(np.float64)
            with np.errstate(invalid="ignore", over="ignore"):
                out[:, :, a, b] = window.sum(axis=(2, 3)) / ((he - hs) * (we - ws))
    with np.errstate(over="ignore"):
        return out.astype(x.dtype)


def adaptive_max_pool2d(
    x: np.ndarray, output_size: Pair, return_indices: bool = False
) -> Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]:
    """Max over adaptive windows (windows as in :func:`adaptive_avg_pool2d`).

    Same tie and NaN rules as :func:`max_pool2d`: first maximum in row-major
    order, first NaN wins.  Indices are int64, ``ih * W + iw``.
    """
    x = _check_x(x, _FLOAT_DTYPES + _INT_DTYPES, "adaptive_max_pool2d")
    oh, ow = _check_adaptive(x, output_size)
    N, C, H, W = x.shape
    out = np.empty((N, C, oh, ow), dtype=x.dtype)
    idx = np.empty((N, C, oh, ow), dtype=np.int64)
    for a in range(oh):
        hs, he = _adaptive_bounds(H, oh, a)
        for b in range(ow):
            ws, we = _adaptive_bounds(W, ow, b)
            ww = we - ws
            window = x[:, :, hs:he, ws:we].reshape(N, C, (he - hs) * ww)
            # numpy.argmax returns the first NaN if there is one, else the
            # first maximum -- exactly the rule.
            local = np.argmax(window, axis=2)
            out[:, :, a, b] = np.take_along_axis(window, local[:, :, None], axis=2)[:, :, 0]
            idx[:, :, a, b] = (hs + local // ww) * W + (ws + local % ww)
    if return_indices:
        return out, idx
    return out


def global_avg_pool2d(x: np.ndarray) -> np.ndarray:
    """Mean over each whole ``(n, c)`` plane, shape ``(N, C, 1, 1)``."""
    return adaptive_avg_pool2d(x, (1, 1))


def global_max_pool2d(x: np.ndarray) -> np.ndarray:
    """Max over each whole ``(n, c)`` plane, shape ``(N, C, 1, 1)``."""
    return adaptive_max_pool2d(x, (1, 1))


# ----------------------------------------------------------------------------
# Backward passes
# ----------------------------------------------------------------------------
#
# The gradients of the functions above, for an upstream gradient ``grad_out``
# (dL/d output).  They are written as *scatters*: loop over the kernel taps (or
# the adaptive windows) and add each output's gradient, times d(output)/d(input),
# into the input position that tap read -- everything else vectorised.  (The
# compiled kernels gather instead, so this is an independent transcription.)
# Within one tap, different output positions read different input positions,
# so a plain fancy-index ``+=`` is a correct scatter there; max pooling, whose
# indices may coincide, uses ``np.add.at``.  Sums are in float64; results have
# ``grad_out``'s dtype.


def _check_grad_out(grad_out: np.ndarray, shape: Tuple[int, ...], op: str) -> np.ndarray:
    grad_out = np.asarray(grad_out)
    if grad_out.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"{op}: grad_out dtype must be float32 or float64, got {grad_out.dtype}")
    if grad_out.shape != tuple(shape):
        raise ValueError(f"{op}: grad_out must have the forward output's shape {tuple(shape)}, got {grad_out.shape}")
    return grad_out


def _check_input_shape(input_shape, op: str) -> Tuple[int, int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or min(shape) < 0 or shape[2] < 1 or shape[3] < 1:
        raise ValueError(f"{op}: input_shape must be (N, C, H, W) with H, W >= 1, got {tuple(input_shape)}")
    return shape  # type: ignore[return-value]


def _valid_positions(
    in_size: int, out: int, stride: int, dilation: int, pad_before: int, pad_after: int, i: int
) -> Tuple[np.ndarray, np.ndarray]:
    """``(outputs, positions)`` of tap ``i`` along one axis, restricted to valid taps:
    output ``outputs[m]`` reads input ``positions[m]``."""
    pos, valid, _ = _window_taps(in_size, out, stride, dilation, pad_before, pad_after, i)
    return np.nonzero(valid)[0], pos[valid]


def conv2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    weight: np.ndarray,
    stride: Pair = (1, 1),
    padding: Padding = ((0, 0), (0, 0)),
    dilation: Pair = (1, 1),
    groups: int = 1,
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients ``(grad_x, grad_weight, grad_bias)`` of :func:`conv2d`.

    For every tap ``(i, j)`` and every output position ``(oh, ow)``, the output
    ``out[n, k, oh, ow]`` read ``xpad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw]``
    with weight ``weight[k, c, i, j]``, so (scatter)::

        grad_xpad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw] += weight[k, c, i, j] * grad_out[n, k, oh, ow]
        grad_weight[k, c, i, j] += xpad[n, g*Cg + c, oh*sh + i*dh, ow*sw + j*dw] * grad_out[n, k, oh, ow]
        grad_bias[k] += grad_out[n, k, oh, ow]

    and ``grad_x`` is ``grad_xpad`` without the padding.
    """
    x = _check_x(x, _FLOAT_DTYPES, "conv2d_backward")
    weight = np.asarray(weight)
    N, C, H, W = x.shape
    K, Cg, kh, kw = weight.shape
    if groups < 1 or C % groups != 0 or K % groups != 0 or Cg != C // groups:
        raise ValueError(f"conv2d_backward: weight {weight.shape} does not fit C={C} in groups={groups}")
    (sh, sw), (dh, dw) = stride, dilation
    (pt, pb), (pl, pr) = padding
    oh = output_size(H, kh, sh, dh, pt, pb)
    ow = output_size(W, kw, sw, dw, pl, pr)
    gy = _check_grad_out(grad_out, (N, K, oh, ow), "conv2d_backward")

    G, Kg = groups, K // groups
    gy64 = gy.astype(np.float64).reshape(N, G, Kg, oh, ow)
    xpad = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    w = weight.astype(np.float64).reshape(G, Kg, Cg, kh, kw)
    gxpad = np.zeros_like(xpad)
    gw = np.zeros((G, Kg, Cg, kh, kw), dtype=np.float64)
    for i in range(kh):
        rows = slice(i * dh, i * dh + (oh - 1) * sh + 1, sh)
        for j in range(kw):
            cols = slice(j * dw, j * dw + (ow - 1) * sw + 1, sw)
            with np.errstate(invalid="ignore", over="ignore"):
                # Scatter into the positions this tap read (distinct within the tap).
                gxpad[:, :, rows, cols] += np.einsum(
                    "ngkhw,gkc->ngchw", gy64, w[:, :, :, i, j]
                ).reshape(N, C, oh, ow)
                patch = xpad[:, :, rows, cols].reshape(N, G, Cg, oh, ow)
                gw[:, :, :, i, j] += np.einsum("ngchw,ngkhw->gkc", patch, gy64)
    gx = gxpad[:, :, pt : pt + H, pl : pl + W]
    gb = gy64.sum(axis=(0, 3, 4)).reshape(K)
    dtype = gy.dtype
    with np.errstate(over="ignore"):
        return gx.astype(dtype), gw.reshape(K, Cg, kh, kw).astype(dtype), gb.astype(dtype)


def max_pool2d_backward(grad_out: np.ndarray, indices: np.ndarray, input_shape) -> np.ndarray:
    """Gradient of :func:`max_pool2d` / :func:`adaptive_max_pool2d` /
    :func:`global_max_pool2d` from the forward's indices.

    Each output's gradient is added to the input at its index (``ih * W + iw``
    within the ``(n, c)`` plane); coinciding indices add up; index ``-1`` (a
    window with no valid tap) sends its gradient nowhere.  Any other index
    outside ``[0, H * W)`` is a ``ValueError``.
    """
    N, C, H, W = _check_input_shape(input_shape, "max_pool2d_backward")
    grad_out = np.asarray(grad_out)
    if grad_out.ndim != 4 or grad_out.shape[:2] != (N, C):
        raise ValueError(
            f"max_pool2d_backward: grad_out must be (N, C, oh, ow) = ({N}, {C}, oh, ow), got {grad_out.shape}"
        )
    gy = _check_grad_out(grad_out, grad_out.shape, "max_pool2d_backward")
    idx = np.asarray(indices)
    if idx.shape != gy.shape:
        raise ValueError(f"max_pool2d_backward: indices must have grad_out's shape {gy.shape}, got {idx.shape}")
    if idx.dtype != np.int64:
        raise TypeError(f"max_pool2d_backward: indices must be int64, got {idx.dtype}")
    if idx.size and (idx.min() < -1 or idx.max() >= H * W):
        raise ValueError(f"max_pool2d_backward: indices must lie in [-1, {H * W}), got [{idx.min()}, {idx.max()}]")
    gx = np.zeros((N, C, H * W), dtype=np.float64)
    flat_idx = idx.reshape(N, C, -1)
    flat_gy = gy.astype(np.float64).reshape(N, C, -1)
    n_i, c_i, o_i = np.nonzero(flat_idx >= 0)
    with np.errstate(invalid="ignore", over="ignore"):
        np.add.at(gx, (n_i, c_i, flat_idx[n_i, c_i, o_i]), flat_gy[n_i, c_i, o_i])
    with np.errstate(over="ignore"):
        return gx.reshape(N, C, H, W).astype(gy.dtype)


adaptive_max_pool2d_backward = max_pool2d_backward


def _avg_divisor(
    in_hw: Pair,
    out_hw: Pair,
    kernel_size: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair,
    count_include_pad: bool,
    divisor_override: Optional[int],
) -> np.ndarray:
    """The ``(oh, ow)`` divisors of :func:`avg_pool2d`: ``divisor_override``, else the
    product of the per-axis tap counts (inside the padded extent with
    ``count_include_pad``, inside the input without it)."""
    if divisor_override is not None:
        return np.full(out_hw, float(divisor_override))
    counts = []
    for a in range(2):
        count = np.zeros(out_hw[a], dtype=np.int64)
        for i in range(kernel_size[a]):
            _, valid, in_padded = _window_taps(
                in_hw[a], out_hw[a], stride[a], dilation[a], padding[a][0], padding[a][1], i
            )
            count += in_padded if count_include_pad else valid
        counts.append(count)
    return (counts[0][:, None] * counts[1][None, :]).astype(np.float64)


def avg_pool2d_backward(
    grad_out: np.ndarray,
    input_shape,
    kernel_size: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair = (1, 1),
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
) -> np.ndarray:
    """Gradient of :func:`avg_pool2d`: every output's gradient divided by its
    divisor is added to each valid tap of its window (padding and ceil-mode
    overhang receive nothing; a zero divisor passes nothing)."""
    N, C, H, W = _check_input_shape(input_shape, "avg_pool2d_backward")
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    (pt, pb), (pl, pr) = padding
    oh = output_size(H, kh, sh, dh, pt, pb, ceil_mode)
    ow = output_size(W, kw, sw, dw, pl, pr, ceil_mode)
    gy = _check_grad_out(grad_out, (N, C, oh, ow), "avg_pool2d_backward")
    divisor = _avg_divisor(
        (H, W), (oh, ow), kernel_size, stride, padding, dilation, count_include_pad, divisor_override
    )
    share = np.zeros((N, C, oh, ow), dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        np.divide(gy.astype(np.float64), divisor, out=share, where=np.broadcast_to(divisor != 0, share.shape))
    gx = np.zeros((N, C, H, W), dtype=np.float64)
    for i in range(kh):
        ro, rpos = _valid_positions(H, oh, sh, dh, pt, pb, i)
        for j in range(kw):
            co, cpos = _valid_positions(W, ow, sw, dw, pl, pr, j)
            with np.errstate(invalid="ignore", over="ignore"):
                gx[:, :, rpos[:, None], cpos[None, :]] += share[:, :, ro[:, None], co[None, :]]
    with np.errstate(over="ignore"):
        return gx.astype(gy.dtype)


def lp_pool2d_backward(
    grad_out: np.ndarray,
    x: np.ndarray,
    norm_type: float,
    kernel_size: Pair,
    stride: Pair,
    padding: Padding,
    dilation: Pair = (1, 1),
    ceil_mode: bool = False,
) -> np.ndarray:
    """Gradient of :func:`lp_pool2d` at ``x``.

    With ``y = (sum |x| ** p) ** (1 / p)`` over a window's valid taps,
    ``dy / dx = sign(x) * |x| ** (p - 1) / y ** (p - 1)``.  An output with
    ``y == 0`` passes no gradient, an input with ``x == 0`` receives none.
    ``y`` is recomputed in float64 from ``x``.
    """
    x = _check_x(x, _FLOAT_DTYPES, "lp_pool2d_backward")
    p = float(norm_type)
    if not (np.isfinite(p) and p > 0):
        raise ValueError(f"lp_pool2d_backward: norm_type must be a positive finite number, got {norm_type}")
    N, C, H, W = x.shape
    (kh, kw), (sh, sw), (dh, dw) = kernel_size, stride, dilation
    (pt, pb), (pl, pr) = padding
    oh = output_size(H, kh, sh, dh, pt, pb, ceil_mode)
    ow = output_size(W, kw, sw, dw, pl, pr, ceil_mode)
    gy = _check_grad_out(grad_out, (N, C, oh, ow), "lp_pool2d_backward")
    if gy.dtype != x.dtype:
        raise TypeError(f"lp_pool2d_backward: grad_out dtype {gy.dtype} does not match x's {x.dtype}")
    x64 = x.astype(np.float64)
    ax = np.abs(x64)
    y = np.zeros((N, C, oh, ow), dtype=np.float64)  # forward, in float64
    for i in range(kh):
        ro, rpos = _valid_positions(H, oh, sh, dh, pt, pb, i)
        for j in range(kw):
            co, cpos = _valid_positions(W, ow, sw, dw, pl, pr, j)
            with np.errstate(over="ignore"):
                y[:, :, ro[:, None], co[None, :]] += ax[:, :, rpos[:, None], cpos[None, :]] ** p
    with np.errstate(over="ignore"):
        y = y ** (1.0 / p)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        out_factor = np.where(y > 0, gy.astype(np.float64) / np.where(y > 0, y, 1.0) ** (p - 1.0), 0.0)
        in_factor = np.where(x64 != 0, np.sign(x64) * np.where(x64 != 0, ax, 1.0) ** (p - 1.0), 0.0)
    gx = np.zeros((N, C, H, W), dtype=np.float64)
    for i in range(kh):
        ro, rpos = _valid_positions(H, oh, sh, dh, pt, pb, i)
        for j in range(kw):
            co, cpos = _valid_positions(W, ow, sw, dw, pl, pr, j)
            r, c = rpos[:, None], cpos[None, :]
            with np.errstate(invalid="ignore", over="ignore"):
                gx[:, :, r, c] += out_factor[:, :, ro[:, None], co[None, :]] * in_factor[:, :, r, c]
    with np.errstate(over="ignore"):
        return gx.astype(x.dtype)


def adaptive_avg_pool2d_backward(grad_out: np.ndarray, input_shape) -> np.ndarray:
    """Gradient of :func:`adaptive_avg_pool2d` (the output size is ``grad_out``'s):
    each output's gradient divided by its window's element count, added to every
    element of the window."""
    N, C, H, W = _check_input_shape(input_shape, "adaptive_avg_pool2d_backward")
    grad_out = np.asarray(grad_out)
    if grad_out.ndim != 4 or grad_out.shape[:2] != (N, C) or min(grad_out.shape[2:]) < 1:
        raise ValueError(
            f"adaptive_avg_pool2d_backward: grad_out must be ({N}, {C}, oh >= 1, ow >= 1), got {grad_out.shape}"
        )
    gy = _check_grad_out(grad_out, grad_out.shape, "adaptive_avg_pool2d_backward")
    oh, ow = gy.shape[2:]
    gy64 = gy.astype(np.float64)
    gx = np.zeros((N, C, H, W), dtype=np.float64)
    for a in range(oh):
        hs, he = _adaptive_bounds(H, oh, a)
        for b in range(ow):
            ws, we = _adaptive_bounds(W, ow, b)
            with np.errstate(invalid="ignore", over="ignore"):
                gx[:, :, hs:he, ws:we] += (gy64[:, :, a, b] / ((he - hs) * (we - ws)))[:, :, None, None]
    with np.errstate(over="ignore"):
        return gx.astype(gy.dtype)


def global_avg_pool2d_backward(grad_out: np.ndarray, input_shape) -> np.ndarray:
    """Gradient of :func:`global_avg_pool2d`: ``grad_out[n, c] / (H * W)`` everywhere."""
    N, C, _, _ = _check_input_shape(input_shape, "global_avg_pool2d_backward")
    _check_grad_out(grad_out, (N, C, 1, 1), "global_avg_pool2d_backward")
    return adaptive_avg_pool2d_backward(grad_out, input_shape)


def global_max_pool2d_backward(grad_out: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient of :func:`global_max_pool2d` at ``x``: each plane's gradient goes to
    its first maximum (first NaN if any)."""
    x = _check_x(x, _FLOAT_DTYPES, "global_max_pool2d_backward")
    N, C = x.shape[:2]
    _check_grad_out(grad_out, (N, C, 1, 1), "global_max_pool2d_backward")
    _, idx = adaptive_max_pool2d(x, (1, 1), return_indices=True)
    return max_pool2d_backward(grad_out, idx, x.shape)
