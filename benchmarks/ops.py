"""One workload in one layout and dtype, as three runnable implementations.

``make_bench(workload, layout, dtype, torch)`` returns an ``OpBench`` holding the
data (random, seeded) and factories for zero-argument callables:

* ``convpool_fn()``  the convpool call in ``layout``
* ``torch_fn()``     PyTorch in the matching memory format (NCHW, or channels_last for
  NHWC); forward under ``torch.no_grad()``, backward as ``torch.autograd.grad`` on a
  graph built beforehand (the forward is not timed)
* ``reference_fn()`` ``convpool.reference`` (always NCHW)

Any set-up a factory needs (graphs, indices) is done before it returns, so only the
returned callable is timed. ``*_outputs(result)`` turn a result into a list of NCHW
NumPy arrays for the correctness check.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Type

import numpy as np

import convpool
from convpool import reference as ref

from .workloads import Workload

Fn = Callable[[], Any]


def to_layout(a: np.ndarray, layout: str) -> np.ndarray:
    """A C-contiguous copy of NCHW ``a`` in ``layout``."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)) if layout == "NHWC" else a


def to_nchw(a: np.ndarray, layout: str) -> np.ndarray:
    return a.transpose(0, 3, 1, 2) if layout == "NHWC" else a


def tensor_to_numpy(t: Any) -> np.ndarray:
    """A torch tensor in logical NCHW order as a NumPy array, whatever its memory format."""
    return t.detach().contiguous().numpy()


class OpBench:
    """Base: the random NCHW input and the helpers shared by every op."""

    def __init__(self, wl: Workload, layout: str, dtype: str, torch: Any, seed: int = 0) -> None:
        self.wl, self.layout, self.dtype, self.torch = wl, layout, np.dtype(dtype), torch
        self.rng = np.random.default_rng(seed)
        self.x = self.random(wl.input_shape("NCHW"))
        self.x_cp = to_layout(self.x, layout)

    # -- helpers ----------------------------------------------------------------------
    def random(self, shape: Sequence[int]) -> np.ndarray:
        return self.rng.standard_normal(tuple(shape), dtype=self.dtype)

    def tensor(self, a: np.ndarray, requires_grad: bool = False) -> Any:
        """NCHW ``a`` as a torch tensor in the memory format matching ``layout``."""
        t = self.torch.from_numpy(a)
        if self.layout == "NHWC" and a.ndim == 4:
            t = t.to(memory_format=self.torch.channels_last)
        return t.requires_grad_(requires_grad)

    @property
    def pads(self) -> Tuple[Tuple[int, int], Tuple[int, int]]:
        p = self.wl.padding
        return ((p, p), (p, p))

    @property
    def pair_stride(self) -> Tuple[int, int]:
        return (self.wl.stride, self.wl.stride)

    @property
    def pair_kernel(self) -> Tuple[int, int]:
        return (self.wl.kernel, self.wl.kernel)

    def nbytes(self, shape: Sequence[int], itemsize: Optional[int] = None) -> int:
        return int(np.prod(shape)) * (itemsize or self.dtype.itemsize)

    def torch_no_grad(self, call: Fn) -> Fn:
        torch = self.torch

        def run() -> Any:
            with torch.no_grad():
                return call()

        return run

    def torch_grad(self, outputs: Any, inputs: Sequence[Any], grad: Any) -> Fn:
        torch = self.torch
        return lambda: torch.autograd.grad(outputs, inputs, grad, retain_graph=True)

    # -- interface ----------------------------------------------------------------------
    def work(self) -> Tuple[float, str]:
        """(amount, unit): FLOPs for convs, bytes read + written for pooling."""
        raise NotImplementedError

    def convpool_fn(self) -> Fn:
        raise NotImplementedError

    def torch_fn(self) -> Fn:
        raise NotImplementedError

    def reference_fn(self) -> Fn:
        raise NotImplementedError

    def convpool_outputs(self, result: Any) -> List[np.ndarray]:
        return [to_nchw(result, self.layout)]

    def torch_outputs(self, result: Any) -> List[np.ndarray]:
        return [tensor_to_numpy(result)]

    def reference_outputs(self, result: Any) -> List[np.ndarray]:
        return [result]


class ConvForward(OpBench):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        fan_in = self.wl.weight_shape[1] * self.wl.kernel**2
        self.weight = self.random(self.wl.weight_shape) / np.sqrt(fan_in).astype(self.dtype)

    def work(self) -> Tuple[float, str]:
        return float(self.wl.forward_flops()), "flop"

    def convpool_fn(self) -> Fn:
        wl, x, w = self.wl, self.x_cp, self.weight
        return lambda: convpool.conv2d(x, w, stride=wl.stride, padding=wl.padding,
                                       groups=wl.groups, layout=self.layout)

    def torch_fn(self) -> Fn:
        F, wl = self.torch.nn.functional, self.wl
        xt, wt = self.tensor(self.x), self.tensor(self.weight)
        return self.torch_no_grad(lambda: F.conv2d(xt, wt, None, wl.stride, wl.padding, 1, wl.groups))

    def reference_fn(self) -> Fn:
        return lambda: ref.conv2d(self.x, self.weight, None, self.pair_stride, self.pads, (1, 1),
                                  self.wl.groups)


class PoolForward(OpBench):
    """Max or average pooling, no indices (count_include_pad=True, as in PyTorch)."""

    @property
    def is_max(self) -> bool:
        return self.wl.op == "max_pool"

    def work(self) -> Tuple[float, str]:
        wl = self.wl
        return float(self.nbytes(wl.input_shape("NCHW")) + self.nbytes(wl.output_shape("NCHW"))), "byte"

    def convpool_fn(self) -> Fn:
        wl, x = self.wl, self.x_cp
        fn = convpool.max_pool2d if self.is_max else convpool.avg_pool2d
        return lambda: fn(x, wl.kernel, wl.stride, wl.padding, layout=self.layout)

    def torch_fn(self) -> Fn:
        F, wl = self.torch.nn.functional, self.wl
        fn = F.max_pool2d if self.is_max else F.avg_pool2d
        xt = self.tensor(self.x)
        return self.torch_no_grad(lambda: fn(xt, wl.kernel, wl.stride, wl.padding))

    def reference_fn(self) -> Fn:
        fn = ref.max_pool2d if self.is_max else ref.avg_pool2d
        return lambda: fn(self.x, self.pair_kernel, self.pair_stride, self.pads)


class MaxPoolIndices(PoolForward):
    """Max pooling that also returns the int64 argmax indices, as a training forward
    does (convpool.layers.MaxPool2D; PyTorch's autograd keeps them too)."""

    @property
    def is_max(self) -> bool:
        return True

    def work(self) -> Tuple[float, str]:
        wl = self.wl
        out = wl.output_shape("NCHW")
        return float(self.nbytes(wl.input_shape("NCHW")) + self.nbytes(out) + self.nbytes(out, 8)), "byte"

    def convpool_fn(self) -> Fn:
        wl, x = self.wl, self.x_cp
        return lambda: convpool.max_pool2d(x, wl.kernel, wl.stride, wl.padding, return_indices=True,
                                           layout=self.layout)

    def torch_fn(self) -> Fn:
        F, wl = self.torch.nn.functional, self.wl
        xt = self.tensor(self.x)
        return self.torch_no_grad(lambda: F.max_pool2d(xt, wl.kernel, wl.stride, wl.padding, return_indices=True))

    def reference_fn(self) -> Fn:
        return lambda: ref.max_pool2d(self.x, self.pair_kernel, self.pair_stride, self.pads, return_indices=True)

    def convpool_outputs(self, result: Any) -> List[np.ndarray]:
        return [to_nchw(r, self.layout) for r in result]

    def torch_outputs(self, result: Any) -> List[np.ndarray]:
        return [tensor_to_numpy(t) for t in result]

    def reference_outputs(self, result: Any) -> List[np.ndarray]:
        return list(result)


class BackwardBench(OpBench):
    """A random upstream gradient in the forward output's shape."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gy = self.random(self.wl.output_shape("NCHW"))
        self.gy_cp = to_layout(self.gy, self.layout)


class ConvBackward(BackwardBench, ConvForward):
    """Input and weight gradients (no bias), as autograd computes for a bias-free conv."""

    def work(self) -> Tuple[float, str]:
        return 2.0 * self.wl.forward_flops(), "flop"

    def convpool_fn(self) -> Fn:
        wl, gy, x, w = self.wl, self.gy_cp, self.x_cp, self.weight
        return lambda: convpool.conv2d_backward(gy, x, w, stride=wl.stride, padding=wl.padding,
                                                groups=wl.groups, layout=self.layout,
                                                bias_grad=False)

    def torch_fn(self) -> Fn:
        F, wl = self.torch.nn.functional, self.wl
        xt, wt = self.tensor(self.x, True), self.tensor(self.weight, True)
        y = F.conv2d(xt, wt, None, wl.stride, wl.padding, 1, wl.groups)
        return self.torch_grad(y, (xt, wt), self.tensor(self.gy))

    def reference_fn(self) -> Fn:
        return lambda: ref.conv2d_backward(self.gy, self.x, self.weight, self.pair_stride, self.pads,
                                           (1, 1), self.wl.groups)

    def convpool_outputs(self, result: Any) -> List[np.ndarray]:
        return [to_nchw(result[0], self.layout), result[1]]

    def torch_outputs(self, result: Any) -> List[np.ndarray]:
        return [tensor_to_numpy(t) for t in result]

    def reference_outputs(self, result: Any) -> List[np.ndarray]:
        return [result[0], result[1]]


class ConvWeightBackward(ConvBackward):
    """The weight gradient alone (no bias): what training asks of a network's first
    layer, whose input needs no gradient. The NumPy reference computes both
    gradients (its time covers both); its weight gradient is the one checked."""

    def work(self) -> Tuple[float, str]:
        return float(self.wl.forward_flops()), "flop"

    def convpool_fn(self) -> Fn:
        wl, gy, x, w = self.wl, self.gy_cp, self.x_cp, self.weight
        return lambda: convpool.conv2d_backward(gy, x, w, stride=wl.stride, padding=wl.padding,
                                                groups=wl.groups, layout=self.layout,
                                                input_grad=False, bias_grad=False)

    def torch_fn(self) -> Fn:
        F, wl = self.torch.nn.functional, self.wl
        xt, wt = self.tensor(self.x, False), self.tensor(self.weight, True)
        y = F.conv2d(xt, wt, None, wl.stride, wl.padding, 1, wl.groups)
        return self.torch_grad(y, (wt,), self.tensor(self.gy))

    def convpool_outputs(self, result: Any) -> List[np.ndarray]:
        return [result[1]]

    def reference_outputs(self, result: Any) -> List[np.ndarray]:
        return [result[1]]


class MaxPoolBackward(BackwardBench):
    """Scatter of the upstream gradient to the forward's argmax indices."""

    def work(self) -> Tuple[float, str]:
        out = self.wl.output_shape("NCHW")
        return float(self.nbytes(out) + self.nbytes(out, 8) + self.nbytes(self.wl.input_shape("NCHW"))), "byte"

    def convpool_fn(self) -> Fn:
        wl = self.wl
        _, idx = convpool.max_pool2d(self.x_cp, wl.kernel, wl.stride, wl.padding,
                                     return_indices=True, layout=self.layout)
        gy, shape = self.gy_cp, self.x_cp.shape
        return lambda: convpool.max_pool2d_backward(gy, idx, shape, layout=self.layout)

    def torch_fn(self) -> Fn:
        F, wl = self.torch.nn.functional, self.wl
        xt = self.tensor(self.x, True)
        y = F.max_pool2d(xt, wl.kernel, wl.stride, wl.padding)
        return self.torch_grad(y, (xt,), self.tensor(self.gy))

    def reference_fn(self) -> Fn:
        _, idx = ref.max_pool2d(self.x, self.pair_kernel, self.pair_stride, self.pads,
                                return_indices=True)
        return lambda: ref.max_pool2d_backward(self.gy, idx, self.x.shape)

    def torch_outputs(self, result: Any) -> List[np.ndarray]:
        return [tensor_to_numpy(result[0])]


class AvgPoolBackward(BackwardBench):
    def work(self) -> Tuple[float, str]:
        wl = self.wl
        return float(self.nbytes(wl.output_shape("NCHW")) + self.nbytes(wl.input_shape("NCHW"))), "byte"

    def convpool_fn(self) -> Fn:
        wl, gy, shape = self.wl, self.gy_cp, self.x_cp.shape
        return lambda: convpool.avg_pool2d_backward(gy, shape, wl.kernel, wl.stride, wl.padding,
                                                    layout=self.layout)

    def torch_fn(self) -> Fn:
        F, wl = self.torch.nn.functional, self.wl
        xt = self.tensor(self.x, True)
        y = F.avg_pool2d(xt, wl.kernel, wl.stride, wl.padding)
        return self.torch_grad(y, (xt,), self.tensor(self.gy))

    def reference_fn(self) -> Fn:
        return lambda: ref.avg_pool2d_backward(self.gy, self.x.shape, self.pair_kernel,
                                               self.pair_stride, self.pads)

    def torch_outputs(self, result: Any) -> List[np.ndarray]:
        return [tensor_to_numpy(result[0])]


BENCHES: Dict[str, Type[OpBench]] = {
    "conv": ConvForward,
    "max_pool": PoolForward,
    "avg_pool": PoolForward,
    "max_pool_idx": MaxPoolIndices,
    "conv_bwd": ConvBackward,
    "conv_wgrad": ConvWeightBackward,
    "max_pool_bwd": MaxPoolBackward,
    "avg_pool_bwd": AvgPoolBackward,
}


def make_bench(wl: Workload, layout: str, dtype: str, torch: Any) -> OpBench:
    return BENCHES[wl.op](wl, layout, dtype, torch)


# Largest error accepted, relative to the largest magnitude of the expected result.
TOLERANCE = {"float32": 2e-4, "float64": 1e-10}


def compare(got: List[np.ndarray], expected: List[np.ndarray], dtype: str) -> Dict[str, Any]:
    """Max |got - expected| / max |expected| over all outputs, and whether it is within tolerance."""
    worst = 0.0
    for a, b in zip(got, expected):
        if a.shape != b.shape:
            return {"ok": False, "error": f"shape {a.shape} != {b.shape}"}
        scale = max(float(np.max(np.abs(b), initial=0.0)), np.finfo(np.float32).tiny)
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        if np.isnan(diff).any():
            return {"ok": False, "error": "NaN mismatch"}
        worst = max(worst, float(np.max(diff, initial=0.0)) / scale)
    return {"ok": worst <= TOLERANCE[dtype], "max_rel_err": worst}
