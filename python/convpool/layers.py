"""Small NumPy neural-network layers on top of convpool's functional API.

Enough to build, train and inspect small CNNs in Python, and in particular to weigh
downsampling by pooling against strided convolution (see
``python -m convpool.experiments pooling-vs-stride``)::

    import numpy as np
    from convpool.layers import (Conv2D, ReLU, MaxPool2D, Flatten, Dense, Sequential,
                                 Adam, softmax_cross_entropy)

    model = Sequential(
        Conv2D(1, 16, 3, padding=1, rng=0), ReLU(), MaxPool2D(2),
        Conv2D(16, 32, 3, padding=1, rng=1), ReLU(), MaxPool2D(2),
        Flatten(), Dense(32 * 4 * 4, 10, rng=2),
    )
    model.summary((1, 16, 16))          # shapes, parameters, multiply-adds, receptive fields
    opt = Adam(model, lr=1e-3)
    logits = model.forward(x)           # x: (N, 1, 16, 16) float32
    loss, grad = softmax_cross_entropy(logits, labels)
    model.backward(grad)
    opt.step()

Conventions
-----------
* Every layer has ``forward(x)``, ``backward(grad) -> grad_input``, ``params()`` and
  ``grads()`` (lists of arrays in the same order), ``train()`` / ``eval()`` and a
  ``training`` flag. ``forward`` in training mode caches what ``backward`` needs;
  in eval mode nothing is cached (inference only) and ``backward`` raises.
* ``backward`` *overwrites* the arrays returned by ``grads()`` (in place, so the
  list stays valid); it does not accumulate over calls.
* Convolution and pooling arithmetic is done by :mod:`convpool.functional` and
  :mod:`convpool.backward`; nothing here reimplements it.
* Spatial layers take ``layout="NCHW"`` (default) or ``"NHWC"``. Conv weights are
  ``(K, C // groups, kh, kw)`` and Dense weights ``(out_features, in_features)``
  (PyTorch's conventions) in both layouts, and :class:`Flatten` flattens in
  ``(C, H, W)`` order by default in both layouts, so a model's parameters do not
  depend on its layout: the same parameters give the same outputs in NCHW and NHWC.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _validation as v
from .backward import (
    avg_pool2d_backward,
    conv2d_backward,
    global_avg_pool2d_backward,
    lp_pool2d_backward,
    max_pool2d_backward,
)
from .functional import (
    adaptive_max_pool2d,
    avg_pool2d,
    conv2d,
    global_avg_pool2d,
    global_max_pool2d,
    lp_pool2d,
    max_pool2d,
    pack_weight,
    PackedWeight,
    window_geometry,
)

__all__ = [
    "Layer",
    "Conv2D",
    "MaxPool2D",
    "AvgPool2D",
    "LpPool2D",
    "GlobalAvgPool2D",
    "GlobalMaxPool2D",
    "ReLU",
    "Flatten",
    "Dense",
    "Dropout",
    "Sequential",
    "Summary",
    "SummaryRow",
    "glorot_uniform",
    "he_normal",
    "softmax_cross_entropy",
    "SGD",
    "Adam",
]

RngArg = Union[None, int, np.integer, np.random.Generator]
INITS = ("glorot_uniform", "he_normal")

# ----------------------------------------------------------------------------- argument checks


def _as_rng(rng: Any) -> np.random.Generator:
    """A numpy Generator from a Generator, an int seed or None (fresh entropy)."""
    if isinstance(rng, np.random.Generator):
        return rng
    if rng is None:
        return np.random.default_rng()
    if isinstance(rng, (bool, np.bool_)) or not isinstance(rng, (int, np.integer)):
        raise TypeError(
            f"rng: expected a numpy.random.Generator, an int seed or None, got {type(rng).__name__}"
        )
    if rng < 0:
        raise ValueError(f"rng: a seed must be >= 0, got {rng}")
    return np.random.default_rng(int(rng))


def _check_dtype(dtype: Any) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype: expected float32 or float64, got {dtype!r}") from None
    if dt not in v.FLOAT_DTYPES:
        raise TypeError(f"dtype: expected float32 or float64, got {dt}")
    return dt


def _check_init(init: Any) -> str:
    if not isinstance(init, str):
        raise TypeError(f"init: expected one of {INITS}, got {type(init).__name__}")
    if init not in INITS:
        raise ValueError(f"init: expected one of {INITS}, got {init!r}")
    return init


def _check_layout(layout: Any) -> str:
    v.layout_code(layout)
    return layout


def _check_padding_form(padding: Any, kernel: v.Pair, stride: v.Pair, dilation: v.Pair) -> v.Padding2d:
    """Validate the form of ``padding`` now (string paddings are resolved per call).

    Returns the explicit padding, or zeros for a string (only used for checks)."""
    return v.resolve_padding(padding, (1, 1), kernel, stride, dilation)


def _check_float_input(x: Any, name: str = "x") -> np.ndarray:
    return v.as_array(x, name, v.FLOAT_DTYPES)


def _pair_str(p: Sequence[int]) -> str:
    return str(p[0]) if p[0] == p[1] else f"{p[0]}x{p[1]}"


# ----------------------------------------------------------------------------- initialisers


def glorot_uniform(
    shape: Sequence[int], fan_in: int, fan_out: int, rng: RngArg = None, dtype: Any = np.float32
) -> np.ndarray:
    """Glorot (Xavier) uniform: U(-b, b) with ``b = sqrt(6 / (fan_in + fan_out))``."""
    gen = _as_rng(rng)
    dt = _check_dtype(dtype)
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    u = gen.random(tuple(shape), dtype=dt)  # [0, 1) directly in the target dtype
    u *= dt.type(2.0 * bound)
    u -= dt.type(bound)
    return u


def he_normal(shape: Sequence[int], fan_in: int, rng: RngArg = None, dtype: Any = np.float32) -> np.ndarray:
    """He (Kaiming) normal: N(0, std^2) with ``std = sqrt(2 / fan_in)`` (not truncated)."""
    gen = _as_rng(rng)
    dt = _check_dtype(dtype)
    w = gen.standard_normal(tuple(shape), dtype=dt)
    w *= dt.type(math.sqrt(2.0 / fan_in))
    return w


def _init_weight(
    init: str, shape: Tuple[int, ...], fan_in: int, fan_out: int, rng: np.random.Generator, dtype: np.dtype
) -> np.ndarray:
    if init == "glorot_uniform":
        return glorot_uniform(shape, fan_in, fan_out, rng, dtype)
    return he_normal(shape, fan_in, rng, dtype)


# ----------------------------------------------------------------------------- receptive fields


@dataclass(frozen=True)
class _Field:
    """Receptive-field state after a layer: per axis (h, w) the receptive field ``r``
    and jump ``j`` of one output unit in input pixels, and the feature-map size in
    units (needed by layers that see the whole map: global pooling, Dense)."""

    r: v.Pair = (1, 1)
    j: v.Pair = (1, 1)
    grid: v.Pair = (1, 1)

    def window(self, k_eff: v.Pair, stride: v.Pair, grid: v.Pair) -> "_Field":
        """r += (k_eff - 1) * j; j *= s."""
        r = (self.r[0] + (k_eff[0] - 1) * self.j[0], self.r[1] + (k_eff[1] - 1) * self.j[1])
        j = (self.j[0] * stride[0], self.j[1] * stride[1])
        return _Field(r, j, grid)

    def whole_map(self) -> "_Field":
        """A unit that sees every position of the current map (a window of its size)."""
        return self.window(self.grid, (1, 1), (1, 1))


# ----------------------------------------------------------------------------- base class


class Layer:
    """Base class: a layer without parameters that caches nothing."""

    training: bool = True

    def forward(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(
        self, grad: np.ndarray, *, input_grad: bool = True
    ) -> Optional[np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def params(self) -> List[np.ndarray]:
        return []

    def grads(self) -> List[np.ndarray]:
        return []

    def train(self, mode: bool = True) -> "Layer":
        self.training = v.check_bool(mode, "mode")
        if not self.training:
            self._clear_cache()
        return self

    def eval(self) -> "Layer":
        return self.train(False)

    def num_params(self) -> int:
        return int(sum(p.size for p in self.params()))

    # --- introspection used by Sequential.summary (shapes exclude the batch axis)
    def output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return tuple(input_shape)

    def macs(self, input_shape: Tuple[int, ...]) -> int:
        """Multiply-adds per sample."""
        return 0

    def _field(self, f: _Field, input_shape: Tuple[int, ...]) -> _Field:
        return f

    def _describe(self) -> str:
        return type(self).__name__

    def __repr__(self) -> str:
        return self._describe()

    # --- cache handling
    def _clear_cache(self) -> None:
        pass

    def _need(self, cached: Any) -> Any:
        if cached is None:
            raise RuntimeError(
                f"{type(self).__name__}.backward: no cached forward pass; call forward() in "
                "training mode (layer.train()) before backward()"
            )
        return cached


class _Spatial(Layer):
    """A layer on 4-D feature maps in ``self.layout``."""

    layout: str = "NCHW"

    def _chw(self, shape: Tuple[int, ...]) -> Tuple[int, int, int]:
        if len(shape) != 3:
            raise ValueError(
                f"input_shape: {type(self).__name__} expects a 3-D sample shape in {self.layout} "
                f"layout (without the batch axis), got {tuple(shape)}"
            )
        if self.layout == "NHWC":
            h, w, c = shape
        else:
            c, h, w = shape
        return v.check_int(c, "input_shape", 0), v.check_int(h, "input_shape", 1), v.check_int(w, "input_shape", 1)

    def _shape(self, c: int, h: int, w: int) -> Tuple[int, int, int]:
        return (h, w, c) if self.layout == "NHWC" else (c, h, w)

    def _nchw(self, x: np.ndarray) -> Tuple[int, int, int, int]:
        return v.require_4d(x, "x", self.layout)


# ----------------------------------------------------------------------------- Conv2D


class Conv2D(_Spatial):
    """2-D convolution layer: :func:`convpool.conv2d` with a weight and optional bias.

    ``weight`` is ``(out_channels, in_channels // groups, kh, kw)`` in both layouts;
    ``bias`` is ``(out_channels,)`` and initialised to zero. ``init`` is
    ``"glorot_uniform"`` (fan_in = C/groups*kh*kw, fan_out = K/groups*kh*kw: the
    inputs each output sees and the outputs each input feeds) or ``"he_normal"``
    (std sqrt(2 / fan_in)). ``rng`` is a numpy Generator or an int seed.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: v.IntOrPair,
        stride: v.IntOrPair = 1,
        padding: v.PaddingArg = 0,
        dilation: v.IntOrPair = 1,
        groups: int = 1,
        bias: bool = True,
        layout: str = "NCHW",
        init: str = "glorot_uniform",
        rng: RngArg = None,
        dtype: Any = np.float32,
    ) -> None:
        self.in_channels = v.check_int(in_channels, "in_channels", 1)
        self.out_channels = v.check_int(out_channels, "out_channels", 1)
        self.kernel_size = v.check_pair(kernel_size, "kernel_size")
        self.stride = v.check_pair(stride, "stride")
        self.dilation = v.check_pair(dilation, "dilation")
        self.groups = v.check_int(groups, "groups", 1)
        if self.in_channels % self.groups:
            raise ValueError(f"in_channels: {self.in_channels} is not divisible by groups={self.groups}")
        if self.out_channels % self.groups:
            raise ValueError(f"out_channels: {self.out_channels} is not divisible by groups={self.groups}")
        _check_padding_form(padding, self.kernel_size, self.stride, self.dilation)
        self.padding = padding
        self.use_bias = v.check_bool(bias, "bias")
        self.layout = _check_layout(layout)
        self.init = _check_init(init)
        self.dtype = _check_dtype(dtype)
        gen = _as_rng(rng)

        kh, kw = self.kernel_size
        cg, kg = self.in_channels // self.groups, self.out_channels // self.groups
        shape = (self.out_channels, cg, kh, kw)
        self.weight = _init_weight(self.init, shape, cg * kh * kw, kg * kh * kw, gen, self.dtype)
        self.bias: Optional[np.ndarray] = np.zeros(self.out_channels, self.dtype) if self.use_bias else None
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias: Optional[np.ndarray] = np.zeros_like(self.bias) if self.bias is not None else None
        self._x: Optional[np.ndarray] = None

    def params(self) -> List[np.ndarray]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def grads(self) -> List[np.ndarray]:
        assert self.grad_weight is not None
        return [self.grad_weight] if self.grad_bias is None else [self.grad_weight, self.grad_bias]

    def _conv_kwargs(self) -> dict:
        return dict(
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            groups=self.groups,
            layout=self.layout,
        )

    def _conv(self, x: np.ndarray) -> np.ndarray:
        """The one place the forward convolution is computed.

        In eval mode the weights are packed once and reused while they stay equal to
        the packed copy (an optimizer step or an assignment makes the next call pack
        again). In training mode every step changes them, so each call packs.
        """
        if self.training:
            self._packed = None
            return conv2d(x, self.weight, self.bias, **self._conv_kwargs())
        packed: Optional[PackedWeight] = getattr(self, "_packed", None)
        if packed is None or not np.array_equal(packed.weight, self.weight):
            packed = self._packed = pack_weight(self.weight, groups=self.groups)
        return conv2d(x, packed, self.bias, **self._conv_kwargs())

    def _check_x(self, x: Any) -> np.ndarray:
        x = _check_float_input(x)
        _, c, _, _ = self._nchw(x)
        if c != self.in_channels:
            raise ValueError(
                f"x: expected {self.in_channels} input channels in {self.layout} layout, got shape {x.shape}"
            )
        if x.dtype != self.dtype:
            raise TypeError(f"x: dtype {x.dtype} does not match the layer's dtype {self.dtype}")
        return x

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = self._check_x(x)
        self._x = x if self.training else None
        return self._conv(x)

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        x = self._need(self._x)
        gx, gw, gb = conv2d_backward(
            grad,
            x,
            self.weight,
            **self._conv_kwargs(),
            input_grad=input_grad,
            weight_grad=True,
            bias_grad=self.bias is not None,
        )
        self.grad_weight[...] = gw
        if self.grad_bias is not None:
            self.grad_bias[...] = gb
        return gx

    def _clear_cache(self) -> None:
        self._x = None

    def _out_hw(self, h: int, w: int) -> v.Pair:
        pads = v.resolve_padding(self.padding, (h, w), self.kernel_size, self.stride, self.dilation)
        return v.output_hw((h, w), self.kernel_size, self.stride, self.dilation, pads, False, "kernel_size")

    def output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        c, h, w = self._chw(input_shape)
        if c != self.in_channels:
            raise ValueError(
                f"input_shape: {self._describe()} expects {self.in_channels} channels, got {tuple(input_shape)}"
            )
        return self._shape(self.out_channels, *self._out_hw(h, w))

    def macs(self, input_shape: Tuple[int, ...]) -> int:
        _, h, w = self._chw(input_shape)
        oh, ow = self._out_hw(h, w)
        kh, kw = self.kernel_size
        return oh * ow * self.out_channels * (self.in_channels // self.groups) * kh * kw

    def _field(self, f: _Field, input_shape: Tuple[int, ...]) -> _Field:
        _, h, w = self._chw(input_shape)
        k_eff = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))
        return f.window(k_eff, self.stride, self._out_hw(h, w))  # type: ignore[arg-type]

    def _describe(self) -> str:
        s = f"Conv2D({self.in_channels}->{self.out_channels}, {self.kernel_size[0]}x{self.kernel_size[1]}"
        if self.stride != (1, 1):
            s += f", s{_pair_str(self.stride)}"
        if self.padding not in (0, "valid"):
            s += f", p={self.padding}"
        if self.dilation != (1, 1):
            s += f", d{_pair_str(self.dilation)}"
        if self.groups != 1:
            s += f", g{self.groups}"
        if not self.use_bias:
            s += ", no bias"
        return s + ")"


# ----------------------------------------------------------------------------- pooling


class _WindowPool(_Spatial):
    kind = ""

    def __init__(
        self,
        kernel_size: v.IntOrPair,
        stride: Optional[v.IntOrPair],
        padding: v.PaddingArg,
        dilation: v.IntOrPair,
        ceil_mode: bool,
        layout: str,
    ) -> None:
        kernel = v.check_pair(kernel_size, "kernel_size")
        stride_hw = kernel if stride is None else v.check_pair(stride, "stride")
        dilation_hw = v.check_pair(dilation, "dilation")
        pads = _check_padding_form(padding, kernel, stride_hw, dilation_hw)
        if not isinstance(padding, str):
            v.check_pool_padding(pads, kernel, dilation_hw)
        self.kernel_size = kernel
        self.stride = stride_hw
        self.padding = padding
        self.dilation = dilation_hw
        self.ceil_mode = v.check_bool(ceil_mode, "ceil_mode")
        self.layout = _check_layout(layout)

    def _window_args(self) -> Tuple[v.Pair, v.Pair, Any, v.Pair]:
        return (self.kernel_size, self.stride, self.padding, self.dilation)

    def _geometry(self, h: int, w: int) -> Any:
        return window_geometry((h, w), *self._window_args(), self.ceil_mode)

    def output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        c, h, w = self._chw(input_shape)
        return self._shape(c, *self._geometry(h, w).out_hw)

    def _field(self, f: _Field, input_shape: Tuple[int, ...]) -> _Field:
        _, h, w = self._chw(input_shape)
        k_eff = tuple(d * (k - 1) + 1 for k, d in zip(self.kernel_size, self.dilation))
        return f.window(k_eff, self.stride, self._geometry(h, w).out_hw)  # type: ignore[arg-type]

    def _describe(self) -> str:
        s = f"{type(self).__name__}({self.kernel_size[0]}x{self.kernel_size[1]}"
        if self.stride != self.kernel_size:
            s += f", s{_pair_str(self.stride)}"
        if self.padding not in (0, "valid"):
            s += f", p={self.padding}"
        if self.dilation != (1, 1):
            s += f", d{_pair_str(self.dilation)}"
        if self.ceil_mode:
            s += ", ceil"
        return s + ")"


class MaxPool2D(_WindowPool):
    """Max pooling layer (:func:`convpool.max_pool2d`); ``stride=None`` = kernel_size."""

    def __init__(
        self,
        kernel_size: v.IntOrPair,
        stride: Optional[v.IntOrPair] = None,
        padding: v.PaddingArg = 0,
        dilation: v.IntOrPair = 1,
        *,
        ceil_mode: bool = False,
        layout: str = "NCHW",
    ) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, layout)
        self._cache: Optional[Tuple[np.ndarray, Tuple[int, ...]]] = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:
            self._cache = None
            y = max_pool2d(x, *self._window_args(), ceil_mode=self.ceil_mode, layout=self.layout)
            assert isinstance(y, np.ndarray)
            return y
        y, idx = max_pool2d(
            x, *self._window_args(), ceil_mode=self.ceil_mode, return_indices=True, layout=self.layout
        )
        self._cache = (idx, np.shape(x))
        return y

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        idx, shape = self._need(self._cache)
        if not input_grad:
            return None
        return max_pool2d_backward(grad, idx, shape, layout=self.layout)

    def _clear_cache(self) -> None:
        self._cache = None


class AvgPool2D(_WindowPool):
    """Average pooling layer (:func:`convpool.avg_pool2d`)."""

    def __init__(
        self,
        kernel_size: v.IntOrPair,
        stride: Optional[v.IntOrPair] = None,
        padding: v.PaddingArg = 0,
        dilation: v.IntOrPair = 1,
        *,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: Optional[int] = None,
        layout: str = "NCHW",
    ) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, layout)
        self.count_include_pad = v.check_bool(count_include_pad, "count_include_pad")
        self.divisor_override = (
            None if divisor_override is None else v.check_int(divisor_override, "divisor_override", 1)
        )
        self._shape_in: Optional[Tuple[int, ...]] = None

    def _kw(self) -> dict:
        return dict(
            ceil_mode=self.ceil_mode,
            count_include_pad=self.count_include_pad,
            divisor_override=self.divisor_override,
            layout=self.layout,
        )

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = avg_pool2d(x, *self._window_args(), **self._kw())
        self._shape_in = np.shape(x) if self.training else None
        return y

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        shape = self._need(self._shape_in)
        if not input_grad:
            return None
        return avg_pool2d_backward(grad, shape, *self._window_args(), **self._kw())

    def _clear_cache(self) -> None:
        self._shape_in = None


class LpPool2D(_WindowPool):
    """Power-average pooling layer (:func:`convpool.lp_pool2d`): ``(sum |x|^p)^(1/p)``."""

    def __init__(
        self,
        norm_type: float,
        kernel_size: v.IntOrPair,
        stride: Optional[v.IntOrPair] = None,
        padding: v.PaddingArg = 0,
        dilation: v.IntOrPair = 1,
        *,
        ceil_mode: bool = False,
        layout: str = "NCHW",
    ) -> None:
        if isinstance(norm_type, (bool, np.bool_)) or not isinstance(
            norm_type, (int, float, np.integer, np.floating)
        ):
            raise TypeError(f"norm_type: expected a positive number, got {norm_type!r}")
        if not (float(norm_type) > 0 and math.isfinite(float(norm_type))):
            raise ValueError(f"norm_type: expected a positive finite number, got {norm_type!r}")
        self.norm_type = float(norm_type)
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode, layout)
        self._x: Optional[np.ndarray] = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = lp_pool2d(x, self.norm_type, *self._window_args(), ceil_mode=self.ceil_mode, layout=self.layout)
        self._x = x if self.training else None
        return y

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        x = self._need(self._x)
        if not input_grad:
            return None
        return lp_pool2d_backward(
            grad, x, self.norm_type, *self._window_args(), ceil_mode=self.ceil_mode, layout=self.layout
        )

    def _clear_cache(self) -> None:
        self._x = None

    def _describe(self) -> str:
        return super()._describe().replace("(", f"(p={self.norm_type:g}, ", 1)


class _GlobalPool(_Spatial):
    def __init__(self, *, layout: str = "NCHW") -> None:
        self.layout = _check_layout(layout)

    def output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        c, _, _ = self._chw(input_shape)
        return self._shape(c, 1, 1)

    def _field(self, f: _Field, input_shape: Tuple[int, ...]) -> _Field:
        return f.whole_map()


class GlobalAvgPool2D(_GlobalPool):
    """Mean over each plane: (N, C, 1, 1), or (N, 1, 1, C) in NHWC."""

    def __init__(self, *, layout: str = "NCHW") -> None:
        super().__init__(layout=layout)
        self._shape_in: Optional[Tuple[int, ...]] = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        y = global_avg_pool2d(x, layout=self.layout)
        self._shape_in = np.shape(x) if self.training else None
        return y

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        shape = self._need(self._shape_in)
        return global_avg_pool2d_backward(grad, shape, layout=self.layout) if input_grad else None

    def _clear_cache(self) -> None:
        self._shape_in = None


class GlobalMaxPool2D(_GlobalPool):
    """Maximum over each plane: (N, C, 1, 1), or (N, 1, 1, C) in NHWC."""

    def __init__(self, *, layout: str = "NCHW") -> None:
        super().__init__(layout=layout)
        self._cache: Optional[Tuple[np.ndarray, Tuple[int, ...]]] = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        if not self.training:
            self._cache = None
            return global_max_pool2d(x, layout=self.layout)
        y, idx = adaptive_max_pool2d(x, 1, return_indices=True, layout=self.layout)
        self._cache = (idx, np.shape(x))
        return y

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        idx, shape = self._need(self._cache)
        return max_pool2d_backward(grad, idx, shape, layout=self.layout) if input_grad else None

    def _clear_cache(self) -> None:
        self._cache = None


# ----------------------------------------------------------------------------- elementwise and dense


class ReLU(Layer):
    """max(x, 0); the gradient at 0 is taken as 0."""

    def __init__(self) -> None:
        self._mask: Optional[np.ndarray] = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _check_float_input(x)
        self._mask = (x > 0) if self.training else None
        return np.maximum(x, x.dtype.type(0))

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        mask = self._need(self._mask)
        if not input_grad:
            return None
        grad = np.asarray(grad)
        if grad.shape != mask.shape:
            raise ValueError(f"grad: expected the forward output's shape {mask.shape}, got {grad.shape}")
        return grad * mask  # faster than np.where

    def _clear_cache(self) -> None:
        self._mask = None


class Flatten(_Spatial):
    """(N, ...) -> (N, features).

    For 4-D input, ``order="CHW"`` (default) flattens in channel-major order in both
    layouts (an NHWC input is transposed first), so the Dense layer after it has the
    same weights whatever the layout; ``order="HWC"`` flattens channel-last in both
    layouts (free for NHWC, a transpose for NCHW). Other ranks are reshaped as is.
    """

    def __init__(self, *, layout: str = "NCHW", order: str = "CHW") -> None:
        self.layout = _check_layout(layout)
        if not isinstance(order, str):
            raise TypeError(f"order: expected 'CHW' or 'HWC', got {type(order).__name__}")
        if order not in ("CHW", "HWC"):
            raise ValueError(f"order: expected 'CHW' or 'HWC', got {order!r}")
        self.order = order
        self._shape_in: Optional[Tuple[int, ...]] = None

    def _perm(self, ndim: int) -> Optional[Tuple[int, ...]]:
        """The transpose applied before reshaping (None: reshape directly)."""
        if ndim != 4:
            return None
        if self.layout == "NHWC" and self.order == "CHW":
            return (0, 3, 1, 2)
        if self.layout == "NCHW" and self.order == "HWC":
            return (0, 2, 3, 1)
        return None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 2:
            raise ValueError(f"x: expected at least 2 dimensions (N, ...), got shape {x.shape}")
        self._shape_in = x.shape if self.training else None
        perm = self._perm(x.ndim)
        if perm is not None:
            x = x.transpose(perm)
        return x.reshape(x.shape[0], -1)

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        shape = self._need(self._shape_in)
        if not input_grad:
            return None
        grad = np.asarray(grad)
        perm = self._perm(len(shape))
        if perm is None:
            return grad.reshape(shape)
        permuted = tuple(shape[p] for p in perm)
        return np.ascontiguousarray(grad.reshape(permuted).transpose(np.argsort(perm)))

    def _clear_cache(self) -> None:
        self._shape_in = None

    def output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return (int(np.prod(input_shape, dtype=np.int64)),)

    def _describe(self) -> str:
        return "Flatten" if self.order == "CHW" else "Flatten(HWC)"


class Dense(Layer):
    """Fully connected layer: ``y = x @ weight.T + bias``, weight ``(out_features, in_features)``.

    Initialised as :class:`Conv2D` (fan_in = in_features, fan_out = out_features),
    bias zero. Input ``(N, in_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        init: str = "glorot_uniform",
        rng: RngArg = None,
        dtype: Any = np.float32,
    ) -> None:
        self.in_features = v.check_int(in_features, "in_features", 1)
        self.out_features = v.check_int(out_features, "out_features", 1)
        self.use_bias = v.check_bool(bias, "bias")
        self.init = _check_init(init)
        self.dtype = _check_dtype(dtype)
        gen = _as_rng(rng)
        self.weight = _init_weight(
            self.init,
            (self.out_features, self.in_features),
            self.in_features,
            self.out_features,
            gen,
            self.dtype,
        )
        self.bias: Optional[np.ndarray] = np.zeros(self.out_features, self.dtype) if self.use_bias else None
        self.grad_weight = np.zeros_like(self.weight)
        self.grad_bias: Optional[np.ndarray] = np.zeros_like(self.bias) if self.bias is not None else None
        self._x: Optional[np.ndarray] = None

    def params(self) -> List[np.ndarray]:
        return [self.weight] if self.bias is None else [self.weight, self.bias]

    def grads(self) -> List[np.ndarray]:
        return [self.grad_weight] if self.grad_bias is None else [self.grad_weight, self.grad_bias]

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _check_float_input(x)
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(
                f"x: expected shape (N, {self.in_features}), got {x.shape}"
                + (" (put a Flatten layer before Dense)" if x.ndim > 2 else "")
            )
        if x.dtype != self.dtype:
            raise TypeError(f"x: dtype {x.dtype} does not match the layer's dtype {self.dtype}")
        self._x = x if self.training else None
        y = x @ self.weight.T
        if self.bias is not None:
            y += self.bias
        return y

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        x = self._need(self._x)
        grad = np.asarray(grad)
        if grad.shape != (x.shape[0], self.out_features):
            raise ValueError(f"grad: expected shape {(x.shape[0], self.out_features)}, got {grad.shape}")
        np.matmul(grad.T, x, out=self.grad_weight)
        if self.grad_bias is not None:
            np.sum(grad, axis=0, out=self.grad_bias)
        return grad @ self.weight if input_grad else None

    def _clear_cache(self) -> None:
        self._x = None

    def output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        if tuple(input_shape) != (self.in_features,):
            raise ValueError(
                f"input_shape: {self._describe()} expects ({self.in_features},), got {tuple(input_shape)}"
            )
        return (self.out_features,)

    def macs(self, input_shape: Tuple[int, ...]) -> int:
        return self.in_features * self.out_features

    def _field(self, f: _Field, input_shape: Tuple[int, ...]) -> _Field:
        return f.whole_map()

    def _describe(self) -> str:
        return f"Dense({self.in_features}->{self.out_features}{'' if self.use_bias else ', no bias'})"


class Dropout(Layer):
    """Inverted dropout: in training mode zero each element with probability ``rate``
    and scale the rest by 1 / (1 - rate); identity in eval mode."""

    def __init__(self, rate: float, rng: RngArg = None) -> None:
        if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, (int, float, np.integer, np.floating)):
            raise TypeError(f"rate: expected a number in [0, 1), got {rate!r}")
        if not 0.0 <= float(rate) < 1.0:
            raise ValueError(f"rate: expected a number in [0, 1), got {rate!r}")
        self.rate = float(rate)
        self.rng = _as_rng(rng)
        self._mask: Optional[np.ndarray] = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        x = _check_float_input(x)
        if not self.training:
            self._mask = None
            return x
        keep = self.rng.random(x.shape) >= self.rate
        self._mask = keep.astype(x.dtype) * x.dtype.type(1.0 / (1.0 - self.rate))
        return x * self._mask

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        mask = self._need(self._mask)
        return np.asarray(grad) * mask if input_grad else None

    def _clear_cache(self) -> None:
        self._mask = None

    def _describe(self) -> str:
        return f"Dropout({self.rate:g})"


# ----------------------------------------------------------------------------- Sequential and summary


@dataclass(frozen=True)
class SummaryRow:
    """One layer of :meth:`Sequential.summary`. Shapes exclude the batch axis and are
    in the model's layout; ``macs`` are multiply-adds per sample; ``receptive_field``
    and ``jump`` are (h, w) in input pixels for one output unit of this layer."""

    name: str
    output_shape: Tuple[int, ...]
    params: int
    macs: int
    receptive_field: v.Pair
    jump: v.Pair


@dataclass(frozen=True)
class Summary:
    input_shape: Tuple[int, ...]
    rows: List[SummaryRow] = field(default_factory=list)

    @property
    def total_params(self) -> int:
        return sum(r.params for r in self.rows)

    @property
    def total_macs(self) -> int:
        return sum(r.macs for r in self.rows)

    @property
    def output_shape(self) -> Tuple[int, ...]:
        return self.rows[-1].output_shape if self.rows else self.input_shape

    def table(self) -> str:
        def shape(s: Tuple[int, ...]) -> str:
            return "x".join(str(d) for d in s)

        header = ("layer", "output", "params", "mult-adds", "RF", "jump")
        lines = [
            (
                r.name,
                shape(r.output_shape),
                f"{r.params:,}",
                f"{r.macs:,}",
                f"{r.receptive_field[0]}x{r.receptive_field[1]}",
                _pair_str(r.jump),
            )
            for r in self.rows
        ]
        lines.insert(0, ("input", shape(self.input_shape), "", "", "1x1", "1"))
        total = ("total", shape(self.output_shape), f"{self.total_params:,}", f"{self.total_macs:,}", "", "")
        widths = [max(len(row[i]) for row in [header, total, *lines]) for i in range(6)]

        def fmt(row: Tuple[str, ...]) -> str:
            return "  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths)))

        rule = "-" * len(fmt(header))
        return "\n".join([fmt(header), rule, *(fmt(r) for r in lines), rule, fmt(total)])

    def __str__(self) -> str:
        return self.table()


class Sequential(Layer):
    """Layers applied in order; ``backward`` runs them in reverse."""

    def __init__(self, *layers: Layer) -> None:
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"layers: argument {i} is a {type(layer).__name__}, not a convpool.layers.Layer"
                )
        self.layers: List[Layer] = list(layers)
        self.training = True

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __getitem__(self, i: int) -> Layer:
        return self.layers[i]

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, grad: np.ndarray, *, input_grad: bool = True) -> Optional[np.ndarray]:
        """Backpropagate ``grad`` (dL/d output). With ``input_grad=False`` the first
        layer skips the gradient w.r.t. the model input (returns None)."""
        g: Optional[np.ndarray] = grad
        for i in range(len(self.layers) - 1, -1, -1):
            assert g is not None  # only the first layer may skip its input gradient
            g = self.layers[i].backward(g, input_grad=input_grad or i > 0)
        return g

    def params(self) -> List[np.ndarray]:
        return [p for layer in self.layers for p in layer.params()]

    def grads(self) -> List[np.ndarray]:
        return [g for layer in self.layers for g in layer.grads()]

    def train(self, mode: bool = True) -> "Sequential":
        self.training = v.check_bool(mode, "mode")
        for layer in self.layers:
            layer.train(self.training)
        return self

    def output_shape(self, input_shape: Tuple[int, ...]) -> Tuple[int, ...]:
        return self._walk(tuple(input_shape), _Field())[1]

    def macs(self, input_shape: Tuple[int, ...]) -> int:
        return sum(r.macs for r in self._walk(tuple(input_shape), _Field())[0])

    def summary(
        self, input_shape: Sequence[int], print_fn: Optional[Callable[[str], Any]] = print
    ) -> Summary:
        """Per layer: output shape, parameters, multiply-adds per sample, receptive field.

        ``input_shape`` is one sample's shape (no batch axis) in the model's layout,
        e.g. ``(1, 28, 28)`` for NCHW or ``(28, 28, 1)`` for NHWC. The receptive field
        ``r`` and jump ``j`` start at 1 and propagate per axis as ``r += (k_eff - 1) * j``,
        ``j *= stride`` (``k_eff = dilation * (k - 1) + 1``); they count input pixels,
        padding included, and are not clipped to the image. Global pooling and Dense
        after Flatten see the whole map (a window of the map's size). Pooling, ReLU and
        Dropout count no multiply-adds; bias additions are not counted. The table is
        passed to ``print_fn`` (None: not printed); the :class:`Summary` is returned.
        """
        if not isinstance(input_shape, (tuple, list)) or not input_shape:
            raise ValueError(
                f"input_shape: expected a sample shape without the batch axis, e.g. (C, H, W), got {input_shape!r}"
            )
        shape = tuple(v.check_int(s, "input_shape", 1) for s in input_shape)
        rows, _, _ = self._walk(shape, _Field(grid=self._grid(shape)))
        result = Summary(shape, rows)
        if print_fn is not None:
            print_fn(result.table())
        return result

    def _walk(self, shape: Tuple[int, ...], f: _Field) -> Tuple[List[SummaryRow], Tuple[int, ...], _Field]:
        """Rows for every layer, the output shape and the receptive-field state after them."""
        rows = []
        for layer in self.layers:
            out = tuple(layer.output_shape(shape))
            f = layer._field(f, shape)
            rows.append(SummaryRow(layer._describe(), out, layer.num_params(), layer.macs(shape), f.r, f.j))
            shape = out
        return rows, shape, f

    def _field(self, f: _Field, input_shape: Tuple[int, ...]) -> _Field:
        return self._walk(tuple(input_shape), f)[2]

    def _grid(self, shape: Tuple[int, ...]) -> v.Pair:
        if len(shape) != 3:
            return (1, 1)
        layouts = {layer.layout for layer in self.layers if isinstance(layer, _Spatial)}
        if len(layouts) > 1:
            raise ValueError(f"layers: the model mixes layouts {sorted(layouts)}")
        layout = layouts.pop() if layouts else "NCHW"
        return (shape[0], shape[1]) if layout == "NHWC" else (shape[1], shape[2])

    def _describe(self) -> str:
        return "Sequential(" + ", ".join(layer._describe() for layer in self.layers) + ")"


# ----------------------------------------------------------------------------- loss


def softmax_cross_entropy(logits: Any, labels: Any) -> Tuple[float, np.ndarray]:
    """Mean softmax cross-entropy over the batch and its gradient w.r.t. ``logits``.

    ``logits`` is ``(N, classes)`` float; ``labels`` are class indices ``(N,)`` (ints)
    or target distributions ``(N, classes)`` (floats, rows summing to 1). Computed
    stably via log-sum-exp; returns ``(loss, grad)`` with ``grad`` of logits' dtype,
    ``(softmax(logits) - target) / N``.
    """
    z = _check_float_input(logits, "logits")
    if z.ndim != 2 or z.shape[0] < 1 or z.shape[1] < 1:
        raise ValueError(f"logits: expected shape (N, classes) with N, classes >= 1, got {z.shape}")
    n, k = z.shape
    y = np.asarray(labels)
    z64 = z.astype(np.float64)
    shifted = z64 - z64.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_p = shifted - log_norm
    if y.ndim == 1 and (y.dtype.kind in "iu"):
        if y.shape != (n,):
            raise ValueError(f"labels: expected shape ({n},) to match logits {z.shape}, got {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= k):
            raise ValueError(
                f"labels: class indices must be in [0, {k}), got values in [{y.min()}, {y.max()}]"
            )
        target = np.zeros((n, k))
        target[np.arange(n), y] = 1.0
    elif y.ndim == 2 and y.dtype.kind == "f":
        if y.shape != z.shape:
            raise ValueError(f"labels: expected shape {z.shape} to match logits, got {y.shape}")
        target = y.astype(np.float64)
    else:
        raise TypeError(
            f"labels: expected integer class indices (N,) or float targets (N, classes), got "
            f"{y.dtype} array of shape {y.shape}"
        )
    loss = float(-(target * log_p).sum() / n)
    grad = (np.exp(log_p) - target) / n
    return loss, grad.astype(z.dtype)


# ----------------------------------------------------------------------------- optimisers


class _Optimizer:
    def __init__(self, model: Any, lr: float, weight_decay: float) -> None:
        if not (callable(getattr(model, "params", None)) and callable(getattr(model, "grads", None))):
            raise TypeError(
                f"model: expected an object with params() and grads() (a Layer), got {type(model).__name__}"
            )
        self.model = model
        self.lr = _check_number(lr, "lr", minimum=0.0, strict=True)
        self.weight_decay = _check_number(weight_decay, "weight_decay", minimum=0.0)
        self.steps = 0

    def _pairs(self) -> List[Tuple[np.ndarray, np.ndarray]]:
        params, grads = self.model.params(), self.model.grads()
        if len(params) != len(grads):
            raise ValueError(f"model: params() has {len(params)} arrays but grads() {len(grads)}")
        for i, (p, g) in enumerate(zip(params, grads)):
            if p.shape != g.shape:
                raise ValueError(f"model: parameter {i} has shape {p.shape} but its gradient {g.shape}")
        return list(zip(params, grads))

    def _state(self, name: str, params: List[np.ndarray]) -> List[np.ndarray]:
        state = getattr(self, name, None)
        if (
            state is None
            or len(state) != len(params)
            or any(s.shape != p.shape for s, p in zip(state, params))
        ):
            state = [np.zeros_like(p) for p in params]
            setattr(self, name, state)
        return state

    def _grad(self, p: np.ndarray, g: np.ndarray) -> np.ndarray:
        return g + p.dtype.type(self.weight_decay) * p if self.weight_decay else g


def _check_number(
    value: Any, name: str, minimum: float, strict: bool = False, maximum: Optional[float] = None
) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a number, got {value!r}")
    x = float(value)
    bad = (
        not math.isfinite(x)
        or x < minimum
        or (strict and x == minimum)
        or (maximum is not None and x >= maximum)
    )
    if bad:
        lo = f"> {minimum}" if strict else f">= {minimum}"
        hi = f" and < {maximum}" if maximum is not None else ""
        raise ValueError(f"{name}: expected a finite number {lo}{hi}, got {value!r}")
    return x


class SGD(_Optimizer):
    """Stochastic gradient descent with momentum (PyTorch's formulation)::

        g = grad + weight_decay * p
        v = momentum * v + g          (v = g on the first step)
        p -= lr * v                   (nesterov: p -= lr * (g + momentum * v))

    Updates the arrays of ``model.params()`` in place from ``model.grads()``.
    """

    def __init__(
        self,
        model: Any,
        lr: float = 0.01,
        momentum: float = 0.0,
        *,
        weight_decay: float = 0.0,
        nesterov: bool = False,
    ) -> None:
        super().__init__(model, lr, weight_decay)
        self.momentum = _check_number(momentum, "momentum", 0.0, maximum=1.0)
        self.nesterov = v.check_bool(nesterov, "nesterov")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: requires momentum > 0")
        self.velocity: Optional[List[np.ndarray]] = None

    def step(self) -> None:
        pairs = self._pairs()
        vel = self._state("velocity", [p for p, _ in pairs]) if self.momentum else None
        for i, (p, g) in enumerate(pairs):
            d = self._grad(p, g)
            if vel is not None:
                buf = vel[i]
                if self.steps == 0:
                    buf[...] = d
                else:
                    buf *= p.dtype.type(self.momentum)
                    buf += d
                d = d + p.dtype.type(self.momentum) * buf if self.nesterov else buf
            p -= p.dtype.type(self.lr) * d
        self.steps += 1


class Adam(_Optimizer):
    """Adam (Kingma & Ba), with bias correction; ``weight_decay`` is added to the
    gradient (L2, as PyTorch's Adam)::

        m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2
        p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)
    """

    def __init__(
        self,
        model: Any,
        lr: float = 1e-3,
        betas: Tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        *,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(model, lr, weight_decay)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas: expected a pair (beta1, beta2), got {betas!r}")
        self.betas = (
            _check_number(betas[0], "betas", 0.0, maximum=1.0),
            _check_number(betas[1], "betas", 0.0, maximum=1.0),
        )
        self.eps = _check_number(eps, "eps", 0.0, strict=True)
        self.m: Optional[List[np.ndarray]] = None
        self.v: Optional[List[np.ndarray]] = None

    def step(self) -> None:
        pairs = self._pairs()
        params = [p for p, _ in pairs]
        m_all, v_all = self._state("m", params), self._state("v", params)
        self.steps += 1
        b1, b2 = self.betas
        c1, c2 = 1.0 - b1**self.steps, 1.0 - b2**self.steps
        for (p, g), m, vv in zip(pairs, m_all, v_all):
            t = p.dtype.type
            d = self._grad(p, g)
            m *= t(b1)
            m += t(1.0 - b1) * d
            vv *= t(b2)
            vv += t(1.0 - b2) * d * d
            p -= t(self.lr) * (m / t(c1)) / (np.sqrt(vv / t(c2)) + t(self.eps))
