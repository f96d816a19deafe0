"""Backward passes: the gradient of each forward function with respect to its inputs.

Arguments mirror the forward functions (same forms, same checks); ``input_shape``
is the shape of the forward input ``x`` in the given layout. Every function returns
new arrays of ``grad_out``'s dtype. Windows that overlap add up their
contributions; windows entirely in the padding contribute nothing.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Tuple

import numpy as np

from . import _core
from . import _validation as v
from ._config import get_num_threads
from .functional import (
    adaptive_max_pool2d,
    conv_geometry,
    lp_pool2d,
    window_geometry,
)

__all__ = [
    "conv2d_backward",
    "max_pool2d_backward",
    "avg_pool2d_backward",
    "lp_pool2d_backward",
    "adaptive_avg_pool2d_backward",
    "adaptive_max_pool2d_backward",
    "global_avg_pool2d_backward",
    "global_max_pool2d_backward",
]


def _grad_out(grad_out: Any, dtype: Optional[np.dtype], shape: Optional[Tuple[int, ...]]) -> np.ndarray:
    g = v.as_array(grad_out, "grad_out", v.FLOAT_DTYPES)
    if dtype is not None and g.dtype != dtype:
        raise TypeError(f"grad_out: dtype {g.dtype} does not match the forward input's dtype {dtype}")
    if shape is not None and g.shape != tuple(shape):
        raise ValueError(f"grad_out: expected the forward output's shape {tuple(shape)}, got {g.shape}")
    return np.ascontiguousarray(g)


def _input_shape(input_shape: Any, layout: str) -> Tuple[Tuple[int, int, int, int], Tuple[int, int, int, int]]:
    """(shape in layout, (N, C, H, W)) of the forward input."""
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 4:
        raise ValueError(f"input_shape: expected the 4 sizes of the forward input x, got {input_shape!r}")
    shape = tuple(v.check_int(s, "input_shape", 0) for s in input_shape)
    if layout == "NHWC":
        n, h, w, c = shape
    else:
        n, c, h, w = shape
    if h < 1 or w < 1:
        raise ValueError(f"input_shape: spatial size must be at least 1x1, got {h}x{w}")
    v.check_size(shape, 8, "input_shape")
    return shape, (n, c, h, w)  # type: ignore[return-value]


def _pooled_grad_out(grad_out: Any, n: int, c: int, layout: str) -> np.ndarray:
    """grad_out of a pooling whose output size it defines: 4-D, with x's batch and channels."""
    gy = _grad_out(grad_out, None, None)
    _, gc, _, _ = v.require_4d(gy, "grad_out", layout)
    if gy.shape[0] != n or gc != c:
        raise ValueError(
            f"grad_out: batch and channels ({gy.shape[0]}, {gc}) do not match input_shape's ({n}, {c})"
        )
    return gy


def conv2d_backward(
    grad_out: Any,
    x: Any,
    weight: Any,
    *,
    stride: v.IntOrPair = 1,
    padding: v.PaddingArg = 0,
    dilation: v.IntOrPair = 1,
    groups: int = 1,
    layout: str = "NCHW",
    input_grad: bool = True,
    weight_grad: bool = True,
    bias_grad: bool = True,
) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], Optional[np.ndarray]]:
    """Gradients of :func:`convpool.conv2d` for ``grad_out`` = dL/d(output).

    Returns ``(grad_x, grad_weight, grad_bias)``, each None where not asked for.
    """
    code = v.layout_code(layout)
    input_grad = v.check_bool(input_grad, "input_grad")
    weight_grad = v.check_bool(weight_grad, "weight_grad")
    bias_grad = v.check_bool(bias_grad, "bias_grad")
    x, weight, g = conv_geometry(x, weight, stride, padding, dilation, groups, layout)
    gy = _grad_out(grad_out, x.dtype, g.out_shape)
    args = (g.stride, g.flat_padding, g.dilation, g.groups, code, get_num_threads())
    weight_c = np.ascontiguousarray(weight)

    grad_x = grad_w = grad_b = None
    if input_grad:
        grad_x = np.empty(x.shape, dtype=x.dtype)
        _core.conv2d_backward_input(gy, weight_c, grad_x, *args)
    if weight_grad:
        grad_w = np.empty(weight.shape, dtype=x.dtype)
        grad_b = np.empty((g.out_channels,), dtype=x.dtype) if bias_grad else None
        _core.conv2d_backward_weight(gy, np.ascontiguousarray(x), grad_w, grad_b, *args)
    elif bias_grad:
        axes = (0, 1, 2) if layout == "NHWC" else (0, 2, 3)
        grad_b = gy.sum(axis=axes, dtype=np.float64).astype(x.dtype)
    return grad_x, grad_w, grad_b


def max_pool2d_backward(
    grad_out: Any, indices: Any, input_shape: Sequence[int], *, layout: str = "NCHW"
) -> np.ndarray:
    """Gradient of max pooling (any kind: window, adaptive, global) from its indices.

    ``indices`` are those returned with ``return_indices=True`` (h * W + w within each
    plane, -1 for an empty window); each output gradient goes to its index, and
    gradients that meet at one input add up.
    """
    code = v.layout_code(layout)
    shape, (n, c, _, _) = _input_shape(input_shape, layout)
    gy = _pooled_grad_out(grad_out, n, c, layout)
    idx = v.as_array(indices, "indices", (np.dtype(np.int64),))
    if idx.shape != gy.shape:
        raise ValueError(f"indices: expected grad_out's shape {gy.shape}, got {idx.shape}")
    grad_x = np.empty(shape, dtype=gy.dtype)
    if grad_x.size == 0:
        return grad_x
    _core.max_pool2d_backward(gy, np.ascontiguousarray(idx), grad_x, code, get_num_threads())
    return grad_x


adaptive_max_pool2d_backward = max_pool2d_backward


def _window_backward(
    reduction: str,
    grad_out: Any,
    shape: Tuple[int, int, int, int],
    nchw: Tuple[int, int, int, int],
    x: Optional[np.ndarray],
    y: Optional[np.ndarray],
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
    layout: str,
    count_include_pad: bool = True,
    divisor_override: int = 0,
    norm_type: float = 2.0,
) -> np.ndarray:
    code = v.layout_code(layout)
    n, c, h, w = nchw
    g = window_geometry((h, w), kernel_size, stride, padding, dilation, ceil_mode)
    out_shape = v.shape_in_layout(layout, n, c, g.out_hw[0], g.out_hw[1])
    gy = _grad_out(grad_out, None if x is None else x.dtype, out_shape)
    grad_x = np.empty(shape, dtype=gy.dtype)
    if grad_x.size == 0:  # no window tables for an empty batch (their size is unbounded by it)
        return grad_x
    _core.pool2d_backward(
        reduction, gy, x, y, grad_x, g.kernel, g.stride, g.flat_padding, g.dilation,
        g.ceil_mode, count_include_pad, divisor_override, norm_type, code, get_num_threads(),
    )
    return grad_x


def avg_pool2d_backward(
    grad_out: Any,
    input_shape: Sequence[int],
    kernel_size: v.IntOrPair,
    stride: Optional[v.IntOrPair] = None,
    padding: v.PaddingArg = 0,
    dilation: v.IntOrPair = 1,
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
    layout: str = "NCHW",
) -> np.ndarray:
    """Gradient of :func:`convpool.avg_pool2d`: each output's gradient / its divisor,
    spread over the window's taps inside the input."""
    v.layout_code(layout)
    shape, nchw = _input_shape(input_shape, layout)
    count_include_pad = v.check_bool(count_include_pad, "count_include_pad")
    override = 0 if divisor_override is None else v.check_int(divisor_override, "divisor_override", 1)
    return _window_backward(
        "avg", grad_out, shape, nchw, None, None, kernel_size, stride, padding, dilation, ceil_mode,
        layout, count_include_pad=count_include_pad, divisor_override=override,
    )


def lp_pool2d_backward(
    grad_out: Any,
    x: Any,
    norm_type: float,
    kernel_size: v.IntOrPair,
    stride: Optional[v.IntOrPair] = None,
    padding: v.PaddingArg = 0,
    dilation: v.IntOrPair = 1,
    *,
    ceil_mode: bool = False,
    layout: str = "NCHW",
) -> np.ndarray:
    """Gradient of :func:`convpool.lp_pool2d` at ``x``.

    d y / d x = sign(x) |x|^(p-1) / y^(p-1); outputs with y == 0 and inputs with
    x == 0 pass no gradient (the derivative is undefined or infinite there).
    """
    y = lp_pool2d(x, norm_type, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode, layout=layout)
    xa = np.ascontiguousarray(v.as_array(x, "x", v.FLOAT_DTYPES))
    nchw = v.require_4d(xa, "x", layout)
    return _window_backward(
        "lp", grad_out, xa.shape, nchw, xa, y, kernel_size, stride, padding, dilation, ceil_mode,
        layout, norm_type=float(norm_type),
    )


def adaptive_avg_pool2d_backward(
    grad_out: Any, input_shape: Sequence[int], *, layout: str = "NCHW"
) -> np.ndarray:
    """Gradient of :func:`convpool.adaptive_avg_pool2d` (the output size is grad_out's)."""
    code = v.layout_code(layout)
    shape, (n, c, _, _) = _input_shape(input_shape, layout)
    gy = _pooled_grad_out(grad_out, n, c, layout)
    grad_x = np.empty(shape, dtype=gy.dtype)
    if grad_x.size == 0:
        return grad_x
    _core.adaptive_avg_pool2d_backward(gy, grad_x, code, get_num_threads())
    return grad_x


def global_avg_pool2d_backward(
    grad_out: Any, input_shape: Sequence[int], *, layout: str = "NCHW"
) -> np.ndarray:
    """Gradient of :func:`convpool.global_avg_pool2d`."""
    v.layout_code(layout)
    _, (n, c, _, _) = _input_shape(input_shape, layout)
    expected = v.shape_in_layout(layout, n, c, 1, 1)
    gy = _grad_out(grad_out, None, expected)
    return adaptive_avg_pool2d_backward(gy, input_shape, layout=layout)


def global_max_pool2d_backward(grad_out: Any, x: Any, *, layout: str = "NCHW") -> np.ndarray:
    """Gradient of :func:`convpool.global_max_pool2d` at ``x`` (to the first maximum)."""
    xa = v.as_array(x, "x", v.FLOAT_DTYPES)
    v.layout_code(layout)
    n, c, _, _ = v.require_4d(xa, "x", layout)
    gy = _grad_out(grad_out, xa.dtype, v.shape_in_layout(layout, n, c, 1, 1))
    _, indices = adaptive_max_pool2d(xa, 1, return_indices=True, layout=layout)
    return max_pool2d_backward(gy, indices, xa.shape, layout=layout)

