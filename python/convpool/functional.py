"""The public functions: normalise and check arguments, then one call into ``_core``.

All functions take NumPy arrays (any strides, read-only is fine) in ``layout="NCHW"``
(default) or ``"NHWC"``, return arrays of the input's dtype, and accept ``out=``.
The exact semantics are in docs/semantics.md.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional, Tuple, Union

import numpy as np

from . import _core
from . import _validation as v
from ._config import get_num_threads

__all__ = [
    "PackedWeight",
    "pack_weight",
    "conv2d",
    "max_pool2d",
    "avg_pool2d",
    "lp_pool2d",
    "global_avg_pool2d",
    "global_max_pool2d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool2d",
]

MaxResult = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def flat_padding(padding: v.Padding2d) -> Tuple[int, int, int, int]:
    return (padding[0][0], padding[0][1], padding[1][0], padding[1][1])


class PackedWeight:
    """Convolution weights packed once into the layout the active kernels read.

    Made by :func:`pack_weight`; pass it to :func:`conv2d` in place of the weight
    array to skip the packing that every call otherwise does. It keeps a read-only
    copy of the weights (``.weight``), so changing the original array afterwards
    does not change it; pack again after updating weights. If the active ISA changes
    (``CONVPOOL_ISA``, ``_core.set_isa``), it is packed again on first use.
    """

    __slots__ = ("weight", "groups", "isa", "_packed")

    def __init__(self, weight: np.ndarray, groups: int) -> None:
        self.weight = weight
        self.groups = groups
        self._pack()

    def _pack(self) -> None:
        self._packed, self.isa = _core.conv2d_pack(self.weight, self.groups, 0)

    @property
    def shape(self) -> Tuple[int, ...]:
        return self.weight.shape

    @property
    def dtype(self) -> np.dtype:
        return self.weight.dtype

    def packed_for_active_isa(self) -> Tuple[np.ndarray, str]:
        if self.isa != _core.active_isa():
            self._pack()
        return self._packed, self.isa

    def __repr__(self) -> str:
        return f"PackedWeight(shape={self.shape}, dtype={self.dtype}, groups={self.groups}, isa={self.isa!r})"


def pack_weight(weight: Any, *, groups: int = 1) -> PackedWeight:
    """Pack convolution weights (K, C // groups, kh, kw) once for repeated :func:`conv2d` calls.

    Useful in inference loops and layers whose weights do not change between calls.
    """
    w = v.as_array(weight, "weight", v.FLOAT_DTYPES)
    if w.ndim != 4:
        raise ValueError(f"weight: expected a 4-D array (K, C // groups, kh, kw), got shape {w.shape}")
    groups = v.check_int(groups, "groups", 1)
    if w.shape[0] % groups != 0:
        raise ValueError(f"weight: its {w.shape[0]} output channels are not divisible by groups={groups}")
    if w.shape[2] < 1 or w.shape[3] < 1:
        raise ValueError(f"weight: kernel size must be at least 1x1, got {w.shape[2]}x{w.shape[3]}")
    copy = np.array(w, order="C", copy=True)
    copy.flags.writeable = False
    return PackedWeight(copy, groups)


class ConvShapes(NamedTuple):
    """The checked sizes of a convolution: what depends on shapes and arguments only."""

    out_channels: int
    stride: v.Pair
    dilation: v.Pair
    padding: v.Padding2d
    flat_padding: Tuple[int, int, int, int]
    groups: int
    out_shape: Tuple[int, int, int, int]


@v.memoize_plain(shapes=2)
def conv_shapes(
    x_shape: Tuple[int, ...],
    weight_shape: Tuple[int, ...],
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    layout: str,
) -> ConvShapes:
    """Check x's and the weight's shapes against each other and the arguments."""
    n, c, h, w = v.require_4d_shape(x_shape, "x", layout)
    if len(weight_shape) != 4:
        raise ValueError(f"weight: expected a 4-D array (K, C // groups, kh, kw), got shape {weight_shape}")
    groups = v.check_int(groups, "groups", 1)
    k, c_per_group, kh, kw = weight_shape
    if c % groups != 0:
        raise ValueError(f"groups: the {c} input channels of x are not divisible by groups={groups}")
    if k % groups != 0:
        raise ValueError(f"weight: its {k} output channels are not divisible by groups={groups}")
    if c_per_group != c // groups:
        raise ValueError(
            f"weight: expected shape ({k}, {c // groups}, kh, kw) for {c} input channels and "
            f"groups={groups}, got {weight_shape}"
        )
    if kh < 1 or kw < 1:
        raise ValueError(f"weight: kernel size must be at least 1x1, got {kh}x{kw}")
    stride_hw = v.check_pair(stride, "stride")
    dilation_hw = v.check_pair(dilation, "dilation")
    pads = v.resolve_padding(padding, (h, w), (kh, kw), stride_hw, dilation_hw)
    oh, ow = v.output_hw((h, w), (kh, kw), stride_hw, dilation_hw, pads, False, "weight")
    out_shape = v.shape_in_layout(layout, n, k, oh, ow)
    return ConvShapes(k, stride_hw, dilation_hw, pads, flat_padding(pads), groups, out_shape)


def conv_geometry(
    x: Any,
    weight: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    layout: str,
) -> Tuple[np.ndarray, np.ndarray, ConvShapes]:
    """x and weight (dtype-checked, not yet contiguous) and their checked sizes."""
    if isinstance(weight, PackedWeight):
        if groups != weight.groups:
            raise ValueError(f"groups: the weight was packed for groups={weight.groups}, got groups={groups}")
        weight = weight.weight
    x = v.as_array(x, "x", v.FLOAT_DTYPES)
    weight = v.as_array(weight, "weight", v.FLOAT_DTYPES)
    if weight.dtype != x.dtype:
        raise TypeError(
            f"weight: dtype {weight.dtype} does not match x's dtype {x.dtype}; convpool does not "
            "cast, convert one of them first"
        )
    return x, weight, conv_shapes(x.shape, weight.shape, stride, padding, dilation, groups, layout)


class WindowGeometry(NamedTuple):
    """Checked pooling window arguments and the output size they give."""

    kernel: v.Pair
    stride: v.Pair
    dilation: v.Pair
    padding: v.Padding2d
    flat_padding: Tuple[int, int, int, int]
    ceil_mode: bool
    out_hw: v.Pair


def window_geometry(
    in_hw: v.Pair,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil_mode: Any,
) -> WindowGeometry:
    """Check the window arguments against an input of ``in_hw`` (exact ints: a shape's,
    or checked ones); compute the output size."""
    ceil = 1 if v.check_bool(ceil_mode, "ceil_mode") else 0
    return _window_geometry(in_hw, kernel_size, stride, padding, dilation, ceil)


@v.memoize_plain(shapes=1)
def _window_geometry(
    in_hw: v.Pair,
    kernel_size: Any,
    stride: Any,
    padding: Any,
    dilation: Any,
    ceil: int,
) -> WindowGeometry:
    ceil_mode = ceil == 1
    kernel = v.check_pair(kernel_size, "kernel_size")
    stride_hw = kernel if stride is None else v.check_pair(stride, "stride")
    dilation_hw = v.check_pair(dilation, "dilation")
    pads = v.resolve_padding(padding, in_hw, kernel, stride_hw, dilation_hw)
    v.check_pool_padding(pads, kernel, dilation_hw)
    out_hw = v.output_hw(in_hw, kernel, stride_hw, dilation_hw, pads, ceil_mode, "kernel_size")
    return WindowGeometry(kernel, stride_hw, dilation_hw, pads, flat_padding(pads), ceil_mode, out_hw)


def adaptive_output_hw(in_hw: v.Pair, output_size: Any) -> v.Pair:
    """(oh, ow) from an int, a pair, or a pair with None entries (= the input size)."""
    if isinstance(output_size, (tuple, list)) and len(output_size) == 2:
        sizes = tuple(
            in_size if s is None else v.check_int(s, "output_size", 1)
            for s, in_size in zip(output_size, in_hw)
        )
        return (sizes[0], sizes[1])
    return v.check_pair(output_size, "output_size")


def conv2d(
    x: Any,
    weight: Any,
    bias: Any = None,
    *,
    stride: v.IntOrPair = 1,
    padding: v.PaddingArg = 0,
    dilation: v.IntOrPair = 1,
    groups: int = 1,
    layout: str = "NCHW",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """2-D convolution (cross-correlation, as in PyTorch and TensorFlow).

    Parameters
    ----------
    x : array (N, C, H, W), or (N, H, W, C) with ``layout="NHWC"``; float32 or float64.
    weight : array (K, C // groups, kh, kw) in either layout, same dtype as ``x``, or a
        :class:`PackedWeight` from :func:`pack_weight` (packed with the same ``groups``).
    bias : array (K,) of the same dtype, or None.
    stride, dilation : int or (h, w).
    padding : int, (ph, pw), ((top, bottom), (left, right)), "valid", "same" or
        "same_lower". Zero padding; any non-negative amount.
    groups : input and output channels are split into this many independent groups.
    out : optional C-contiguous array of the result's shape and dtype to write into.

    Returns
    -------
    (N, K, OH, OW), or (N, OH, OW, K) for NHWC, of ``x``'s dtype.
    """
    code = v.layout_code(layout)
    packed = weight if isinstance(weight, PackedWeight) else None
    x, weight, g = conv_geometry(x, weight, stride, padding, dilation, groups, layout)
    k = g.out_channels
    if bias is not None:
        bias = v.as_array(bias, "bias", v.FLOAT_DTYPES)
        if bias.dtype != x.dtype:
            raise TypeError(f"bias: dtype {bias.dtype} does not match x's dtype {x.dtype}")
        if bias.shape != (k,):
            raise ValueError(f"bias: expected shape ({k},), got {bias.shape}")
    y, user_out = v.prepare_out(out, g.out_shape, x.dtype, (x, weight, bias))
    if y.size == 0:
        return v.finish_out(y, user_out)
    geometry = (g.stride, g.flat_padding, g.dilation, g.groups, code, get_num_threads())
    b = None if bias is None else np.ascontiguousarray(bias)
    if packed is not None:
        packed_w, isa = packed.packed_for_active_isa()
        _core.conv2d_prepacked(np.ascontiguousarray(x), packed_w, isa, weight.shape, b, y, *geometry)
    else:
        _core.conv2d(np.ascontiguousarray(x), np.ascontiguousarray(weight), b, y, *geometry)
    return v.finish_out(y, user_out)


def _split_out(out: Any, return_indices: bool) -> Tuple[Any, Any]:
    if return_indices and isinstance(out, (tuple, list)):
        if len(out) != 2:
            raise ValueError("out: with return_indices=True, expected an array or a (values, indices) pair")
        return out[0], out[1]
    return out, None


def _run_pool(
    x: np.ndarray,
    layout: str,
    n: int,
    c: int,
    out_hw: v.Pair,
    out: Any,
    return_indices: bool,
    call: Any,
) -> MaxResult:
    """Allocate or check the outputs, then ``call(x, y, indices)`` into ``_core``."""
    shape = v.shape_in_layout(layout, n, c, out_hw[0], out_hw[1])
    values_out, indices_out = _split_out(out, return_indices)
    y, user_y = v.prepare_out(values_out, shape, x.dtype, (x,))
    indices: Optional[np.ndarray] = None
    user_i: Optional[np.ndarray] = None
    if return_indices:
        indices, user_i = v.prepare_out(
            indices_out, shape, np.dtype(np.int64), (x, y), name="out[1] (indices)"
        )
    if y.size > 0:  # an empty result needs no window tables (whose size is not bounded by it)
        call(np.ascontiguousarray(x), y, indices)
    result = v.finish_out(y, user_y)
    if return_indices:
        assert indices is not None
        return result, v.finish_out(indices, user_i)
    return result


def _window_pool(
    reduction: str,
    x: Any,
    kernel_size: v.IntOrPair,
    stride: Optional[v.IntOrPair],
    padding: v.PaddingArg,
    dilation: v.IntOrPair,
    ceil_mode: bool,
    layout: str,
    out: Any,
    *,
    return_indices: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
    norm_type: float = 2.0,
) -> MaxResult:
    code = v.layout_code(layout)
    dtypes = v.FLOAT_DTYPES + v.INT_DTYPES if reduction == "max" else v.FLOAT_DTYPES
    x = v.as_array(x, "x", dtypes)
    n, c, h, w = v.require_4d(x, "x", layout)
    g = window_geometry((h, w), kernel_size, stride, padding, dilation, ceil_mode)

    def call(xc: np.ndarray, y: np.ndarray, indices: Optional[np.ndarray]) -> None:
        _core.pool2d(
            reduction,
            xc,
            y,
            indices,
            g.kernel,
            g.stride,
            g.flat_padding,
            g.dilation,
            g.ceil_mode,
            count_include_pad,
            0 if divisor_override is None else divisor_override,
            norm_type,
            code,
            get_num_threads(),
        )

    return _run_pool(x, layout, n, c, g.out_hw, out, return_indices, call)


def max_pool2d(
    x: Any,
    kernel_size: v.IntOrPair,
    stride: Optional[v.IntOrPair] = None,
    padding: v.PaddingArg = 0,
    dilation: v.IntOrPair = 1,
    *,
    ceil_mode: bool = False,
    return_indices: bool = False,
    layout: str = "NCHW",
    out: Any = None,
) -> MaxResult:
    """2-D max pooling over float or integer arrays.

    ``stride=None`` means ``stride = kernel_size``. Padding never wins: the maximum is
    over the window's taps inside the input. NaN propagates (the first NaN's index);
    ties go to the first tap in row-major order. With ``return_indices=True`` also
    returns int64 indices ``h * W + w`` within each (n, c) plane, in the output's
    layout; ``out`` may then be a ``(values, indices)`` pair.
    """
    return_indices = v.check_bool(return_indices, "return_indices")
    return _window_pool(
        "max", x, kernel_size, stride, padding, dilation, ceil_mode, layout, out,
        return_indices=return_indices,
    )


def avg_pool2d(
    x: Any,
    kernel_size: v.IntOrPair,
    stride: Optional[v.IntOrPair] = None,
    padding: v.PaddingArg = 0,
    dilation: v.IntOrPair = 1,
    *,
    ceil_mode: bool = False,
    count_include_pad: bool = True,
    divisor_override: Optional[int] = None,
    layout: str = "NCHW",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """2-D average pooling (float32/float64).

    The divisor counts the window's taps: inside the padded extent with
    ``count_include_pad`` (ceil-mode overhang is never counted), inside the input
    without it; ``divisor_override`` replaces it. Dilation is supported (ONNX
    AveragePool semantics).
    """
    count_include_pad = v.check_bool(count_include_pad, "count_include_pad")
    if divisor_override is not None:
        divisor_override = v.check_int(divisor_override, "divisor_override", 1)
    result = _window_pool(
        "avg", x, kernel_size, stride, padding, dilation, ceil_mode, layout, out,
        count_include_pad=count_include_pad, divisor_override=divisor_override,
    )
    assert isinstance(result, np.ndarray)
    return result


def lp_pool2d(
    x: Any,
    norm_type: float,
    kernel_size: v.IntOrPair,
    stride: Optional[v.IntOrPair] = None,
    padding: v.PaddingArg = 0,
    dilation: v.IntOrPair = 1,
    *,
    ceil_mode: bool = False,
    layout: str = "NCHW",
    out: Optional[np.ndarray] = None,
) -> np.ndarray:
    """2-D power-average pooling: ``(sum over the window of |x|^p) ** (1/p)`` (ONNX LpPool).

    ``norm_type`` is p, a positive finite number. Padding contributes nothing.
    """
    if isinstance(norm_type, (bool, np.bool_)) or not isinstance(norm_type, (int, float, np.integer, np.floating)):
        raise TypeError(f"norm_type: expected a positive number, got {norm_type!r}")
    p = float(norm_type)
    if not (p > 0.0 and np.isfinite(p)):
        raise ValueError(f"norm_type: expected a positive finite number, got {norm_type!r}")
    result = _window_pool(
        "lp", x, kernel_size, stride, padding, dilation, ceil_mode, layout, out, norm_type=p
    )
    assert isinstance(result, np.ndarray)
    return result


def _adaptive_pool(
    reduction: str,
    x: Any,
    output_size: Any,
    layout: str,
    out: Any,
    return_indices: bool,
) -> MaxResult:
    code = v.layout_code(layout)
    dtypes = v.FLOAT_DTYPES + v.INT_DTYPES if reduction == "max" else v.FLOAT_DTYPES
    x = v.as_array(x, "x", dtypes)
    n, c, h, w = v.require_4d(x, "x", layout)
    out_hw = adaptive_output_hw((h, w), output_size)

    def call(xc: np.ndarray, y: np.ndarray, indices: Optional[np.ndarray]) -> None:
        _core.adaptive_pool2d(reduction, xc, y, indices, out_hw, code, get_num_threads())

    return _run_pool(x, layout, n, c, out_hw, out, return_indices, call)


def adaptive_avg_pool2d(
    x: Any, output_size: Any, *, layout: str = "NCHW", out: Optional[np.ndarray] = None
) -> np.ndarray:
    """Average over windows [floor(i*In/Out), ceil((i+1)*In/Out)) along each axis.

    ``output_size`` is an int or (h, w); an entry of None keeps that input size.
    """
    result = _adaptive_pool("avg", x, output_size, layout, out, False)
    assert isinstance(result, np.ndarray)
    return result


def adaptive_max_pool2d(
    x: Any,
    output_size: Any,
    *,
    return_indices: bool = False,
    layout: str = "NCHW",
    out: Any = None,
) -> MaxResult:
    """Maximum over adaptive windows; indices as in :func:`max_pool2d`."""
    return_indices = v.check_bool(return_indices, "return_indices")
    return _adaptive_pool("max", x, output_size, layout, out, return_indices)


def global_avg_pool2d(x: Any, *, layout: str = "NCHW", out: Optional[np.ndarray] = None) -> np.ndarray:
    """Mean over each whole (n, c) plane: (N, C, 1, 1), or (N, 1, 1, C) for NHWC."""
    return adaptive_avg_pool2d(x, 1, layout=layout, out=out)


def global_max_pool2d(x: Any, *, layout: str = "NCHW", out: Optional[np.ndarray] = None) -> np.ndarray:
    """Maximum over each whole (n, c) plane: (N, C, 1, 1), or (N, 1, 1, C) for NHWC."""
    result = adaptive_max_pool2d(x, 1, layout=layout, out=out)
    assert isinstance(result, np.ndarray)
    return result
