"""The benchmark catalogue: one ``Workload`` per layer shape, layout- and thread-independent.

A workload is expanded at run time into cases (layout x dtype x threads). Tags drive
the selection (``quick``) and the project targets in ``report.py``:

* ``quick``     part of ``run.py --quick``
* ``dense3x3``  dense 3x3 stride-1 conv: the >= 75 % FMA-peak target
* ``depthwise`` the depthwise target (>= 3x torch NCHW)
* ``large``     big enough for the 2-thread scaling target (>= 1.7x one thread)
* ``memory``    also measured for extra peak RSS in a fresh subprocess
* ``claim``     part of the strided-conv vs conv + pool comparison
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import FrozenSet, Iterable, Iterator, List, Sequence, Tuple

CONV_OPS = ("conv", "conv_bwd", "conv_wgrad")
POOL_OPS = ("max_pool", "avg_pool", "max_pool_idx", "max_pool_bwd", "avg_pool_bwd")
BACKWARD_OPS = ("conv_bwd", "conv_wgrad", "max_pool_bwd", "avg_pool_bwd")

# The downsampling claim: strided conv vs (stride-1 conv + 2x2 max pool), same batch.
CLAIM_STRIDED = "stem7x7s2_3to64@224"
CLAIM_DENSE = "stem7x7s1_3to64@224"
CLAIM_POOL = "maxpool2x2s2_64@224"


@dataclass(frozen=True)
class Workload:
    """One operation on one input shape. ``hw`` is the input height = width."""

    name: str
    op: str  # conv | max_pool | avg_pool | max_pool_idx | conv_bwd | conv_wgrad | max_pool_bwd | avg_pool_bwd
    n: int
    c: int
    hw: int
    kernel: int
    stride: int = 1
    padding: int = 0
    k: int = 0  # output channels, convs only
    groups: int = 1
    float64: bool = False  # also run in float64
    tags: FrozenSet[str] = field(default_factory=frozenset)
    note: str = ""

    @property
    def is_conv(self) -> bool:
        return self.op in CONV_OPS

    @property
    def is_backward(self) -> bool:
        return self.op in BACKWARD_OPS

    @property
    def out_hw(self) -> int:
        return (self.hw + 2 * self.padding - self.kernel) // self.stride + 1

    @property
    def out_channels(self) -> int:
        return self.k if self.is_conv else self.c

    def input_shape(self, layout: str) -> Tuple[int, int, int, int]:
        return shape_in(layout, self.n, self.c, self.hw)

    def output_shape(self, layout: str) -> Tuple[int, int, int, int]:
        return shape_in(layout, self.n, self.out_channels, self.out_hw)

    @property
    def weight_shape(self) -> Tuple[int, int, int, int]:
        return (self.k, self.c // self.groups, self.kernel, self.kernel)

    def forward_flops(self) -> int:
        """2 * N * K * OH * OW * (C / groups) * kh * kw for a conv (0 for pooling)."""
        if not self.is_conv:
            return 0
        return 2 * self.n * self.k * self.out_hw**2 * (self.c // self.groups) * self.kernel**2

    @property
    def base_name(self) -> str:
        """The name without its batch suffix ("/n8")."""
        return self.name.rsplit("/", 1)[0]

    def dtypes(self) -> Tuple[str, ...]:
        return ("float32", "float64") if self.float64 else ("float32",)

    def describe(self) -> str:
        if self.is_conv:
            g = f" g={self.groups}" if self.groups > 1 else ""
            geo = f"{self.c}->{self.k} {self.kernel}x{self.kernel}/s{self.stride} p{self.padding}{g}"
        else:
            geo = f"{self.c}ch {self.kernel}x{self.kernel}/s{self.stride} p{self.padding}"
        return f"{self.op} N={self.n} {geo} @{self.hw}"


def shape_in(layout: str, n: int, c: int, hw: int) -> Tuple[int, int, int, int]:
    return (n, hw, hw, c) if layout == "NHWC" else (n, c, hw, hw)


def _tags(tags: Iterable[str]) -> FrozenSet[str]:
    return frozenset(tags)


def conv(name: str, c: int, k: int, hw: int, kernel: int, *, stride: int = 1, padding: int = 0,
         groups: int = 1, n: int = 8, tags: Sequence[str] = (), batch1: bool = True,
         float64: bool = False, note: str = "") -> List[Workload]:
    """A forward conv at batch ``n`` and, with ``batch1``, the same conv at batch 1.

    Tags ``large`` and ``memory`` stay with the batch-``n`` variant; ``quick`` goes to
    the batch-1 variant (small enough for a fast run)."""
    base = Workload(f"{name}/n{n}", "conv", n, c, hw, kernel, stride, padding, k, groups,
                    float64, _tags(t for t in tags if t != "quick"), note)
    if not batch1:
        return [base]
    small_tags = _tags(t for t in tags if t not in ("large", "memory"))
    return [base, replace(base, name=f"{name}/n1", n=1, tags=small_tags)]


def pool(name: str, op: str, c: int, hw: int, kernel: int, *, stride: int, padding: int = 0,
         n: int = 8, tags: Sequence[str] = (), batch1: bool = False, float64: bool = False,
         note: str = "") -> List[Workload]:
    base = Workload(f"{name}/n{n}", op, n, c, hw, kernel, stride, padding, 0, 1, float64,
                    _tags(t for t in tags if not (batch1 and t == "quick")), note)
    if not batch1:
        return [base]
    small_tags = _tags(t for t in tags if t != "large")
    return [base, replace(base, name=f"{name}/n1", n=1, tags=small_tags)]


def backward(name: str, op: str, c: int, hw: int, kernel: int, *, stride: int = 1,
             padding: int = 0, k: int = 0, n: int = 8, tags: Sequence[str] = (),
             float64: bool = False, note: str = "") -> List[Workload]:
    return [Workload(f"{name}/n{n}", op, n, c, hw, kernel, stride, padding, k, 1, float64,
                     _tags(tags), note)]


def catalogue() -> List[Workload]:
    """Every workload, in the order they are run and shown."""
    return [
        # ResNet stem and the downsampling claim (7x7/s2 vs 7x7/s1 + 2x2 max pool).
        *conv(CLAIM_STRIDED, 3, 64, 224, 7, stride=2, padding=3,
              tags=("large", "memory", "claim", "quick"), float64=True, note="ResNet stem"),
        *conv(CLAIM_DENSE, 3, 64, 224, 7, stride=1, padding=3,
              tags=("large", "claim", "quick"), note="stem at stride 1, to be pooled"),
        *pool(CLAIM_POOL, "max_pool", 64, 224, 2, stride=2, batch1=True,
              tags=("large", "claim", "quick"), note="pools the stride-1 stem"),
        # ResNet / MobileNet body.
        *conv("conv3x3_64to64@56", 64, 64, 56, 3, padding=1,
              tags=("dense3x3", "large", "memory", "quick"), float64=True, note="ResNet stage 1"),
        *conv("conv3x3s2_128to128@56", 128, 128, 56, 3, stride=2, padding=1, tags=("large",)),
        *conv("conv1x1s2_256to512@56", 256, 512, 56, 1, stride=2, tags=("large",),
              note="ResNet projection shortcut"),
        *conv("dw3x3s2_96@112", 96, 96, 112, 3, stride=2, padding=1, groups=96,
              tags=("depthwise", "large", "quick"), float64=True, note="MobileNetV2 depthwise"),
        # Keras MNIST example: 3x3 valid convs 1->32->64->64.
        *conv("mnist3x3_1to32@28", 1, 32, 28, 3, n=64),
        *conv("mnist3x3_32to64@26", 32, 64, 26, 3, n=64),
        *conv("mnist3x3_64to64@24", 64, 64, 24, 3, n=64, tags=("dense3x3",)),
        *pool("mnist_maxpool2x2_64@22", "max_pool", 64, 22, 2, stride=2, n=64,
              note="pools the last MNIST conv: NCHW rows narrower than a register"),
        # VGG.
        *conv("vgg3x3_128to128@112", 128, 128, 112, 3, padding=1,
              tags=("dense3x3", "large", "memory"), note="VGG block 2"),
        # Pooling (forward, no indices).
        *pool("maxpool3x3s2p1_64@112", "max_pool", 64, 112, 3, stride=2, padding=1,
              tags=("large", "quick"), float64=True, note="ResNet stem pool"),
        *pool("maxpool2x2s2_128@112", "max_pool", 128, 112, 2, stride=2, tags=("large",),
              note="VGG pool"),
        *pool("avgpool2x2s2_256@56", "avg_pool", 256, 56, 2, stride=2, tags=("large", "quick"),
              float64=True, note="DenseNet transition"),
        *pool("avgpool3x3s1p1_128@56", "avg_pool", 128, 56, 3, stride=1, padding=1,
              tags=("large",), note="Inception branch pool"),
        # A training forward: max pooling with int64 indices (for information, no target).
        *pool("maxpool3x3s2p1_idx_64@112", "max_pool_idx", 64, 112, 3, stride=2, padding=1,
              note="the ResNet stem pool with indices"),
        # Backward (PyTorch side: autograd of the same op, forward excluded).
        *backward("bwd_conv3x3_64to64@56", "conv_bwd", 64, 56, 3, padding=1, k=64,
                  tags=("large",), float64=True, note="input + weight grad"),
        *backward("bwd_conv3x3s2_128to128@56", "conv_bwd", 128, 56, 3, stride=2, padding=1,
                  k=128, tags=("large",), note="input + weight grad"),
        *backward("wgrad_mnist3x3_1to32@28", "conv_wgrad", 1, 28, 3, k=32, n=64,
                  note="training MNIST's first layer: weight grad only (ref: both grads)"),
        *backward("bwd_maxpool3x3s2p1_64@112", "max_pool_bwd", 64, 112, 3, stride=2, padding=1,
                  tags=("large", "quick")),
        *backward("bwd_avgpool2x2s2_256@56", "avg_pool_bwd", 256, 56, 2, stride=2,
                  tags=("large",)),
    ]


def select(workloads: Sequence[Workload], *, quick: bool, substring: str = "") -> List[Workload]:
    chosen = [w for w in workloads if (not quick or "quick" in w.tags)]
    if substring:
        chosen = [w for w in chosen if substring.lower() in w.name.lower()]
    return chosen


def iter_names(workloads: Sequence[Workload]) -> Iterator[str]:
    for w in workloads:
        yield f"{w.name:<32} {w.describe():<52} {','.join(sorted(w.tags))}"
