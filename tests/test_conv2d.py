"""conv2d against the NumPy oracle ``convpool.reference.conv2d``, on every ISA."""

from __future__ import annotations

import contextlib
import itertools
from dataclasses import dataclass
from typing import Tuple

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import convpool
from convpool import reference as ref

from conftest import (
    FLOAT_DTYPES,
    INPUT_FORMS,
    LAYOUTS,
    SIMD_SIZES,
    assert_identical,
    assert_within,
    cache_resident_bytes,
    examples,
    from_layout,
    normalise_padding,
    output_hw,
    pair_arg,
    random_array,
    reduction_atol,
    seeds,
    to_layout,
)

# ----------------------------------------------------------------------------- helpers


@dataclass
class ConvCase:
    n: int
    c: int
    k: int
    h: int
    w: int
    kernel: Tuple[int, int]
    stride: Tuple[int, int]
    dilation: Tuple[int, int]
    padding: object  # any public form
    groups: int
    bias: bool
    dtype: np.dtype
    layout: str

    @property
    def pads(self):
        return normalise_padding(self.padding, (self.h, self.w), self.kernel, self.stride, self.dilation)

    def arrays(self, seed: int):
        rng = np.random.default_rng(seed)
        x = random_array(rng, (self.n, self.c, self.h, self.w), self.dtype)
        weight = random_array(rng, (self.k, self.c // self.groups) + self.kernel, self.dtype)
        bias = random_array(rng, (self.k,), self.dtype) if self.bias else None
        return x, weight, bias

    def out_shape(self):
        oh, ow = output_hw((self.h, self.w), self.kernel, self.stride, self.dilation, self.pads)
        return (self.n, oh, ow, self.k) if self.layout == "NHWC" else (self.n, self.k, oh, ow)

    def kwargs(self):
        return dict(
            stride=pair_arg(self.stride),
            padding=self.padding,
            dilation=pair_arg(self.dilation),
            groups=self.groups,
            layout=self.layout,
        )


def expected_conv(case: ConvCase, x, weight, bias):
    """(reference result, elementwise tolerance) for NCHW x."""
    args = (case.stride, case.pads, case.dilation, case.groups)
    want = ref.conv2d(x, weight, bias, *args)
    f64 = lambda a: None if a is None else np.abs(a).astype(np.float64)  # noqa: E731
    magnitude = ref.conv2d(f64(x), f64(weight), f64(bias), *args)
    n_terms = (case.c // case.groups) * case.kernel[0] * case.kernel[1] + (bias is not None)
    return want, reduction_atol(case.dtype, n_terms, magnitude)


def check_conv(case: ConvCase, seed: int, *, x_transform=None, out=None) -> np.ndarray:
    """Run convpool.conv2d on ``case`` and compare with the reference; returns the result."""
    x, weight, bias = case.arrays(seed)
    x_in = to_layout(x, case.layout)
    if x_transform is not None:
        x_in = x_transform(x_in)
    got = convpool.conv2d(x_in, weight, bias, out=out, **case.kwargs())
    want, atol = expected_conv(case, x, weight, bias)
    assert isinstance(got, np.ndarray)
    assert got.dtype == case.dtype
    assert_within(from_layout(got, case.layout), want, atol)
    return got


paddings = st.one_of(
    st.sampled_from(["valid", "same", "same_lower"]),
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
)


@st.composite
def conv_cases(draw, layout=None, dtype=None) -> ConvCase:
    mode = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    if mode == "dense":
        groups, c, k = 1, draw(st.sampled_from(SIMD_SIZES)), draw(st.sampled_from(SIMD_SIZES))
    elif mode == "grouped":
        groups = draw(st.integers(2, 3))
        c = groups * draw(st.integers(1, 5))
        k = groups * draw(st.sampled_from((1, 2, 7, 8, 9, 16, 17)))
    else:  # depthwise, channel multiplier 1 or 2
        c = draw(st.sampled_from(SIMD_SIZES))
        groups, k = c, c * draw(st.sampled_from((1, 2)))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    case = ConvCase(
        n=draw(st.integers(1, 2)),
        c=c,
        k=k,
        h=draw(st.integers(1, 8)),
        w=draw(st.sampled_from(SIMD_SIZES + (2, 3, 4, 5))),
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=draw(paddings),
        groups=groups,
        bias=draw(st.booleans()),
        dtype=draw(st.sampled_from(FLOAT_DTYPES)) if dtype is None else np.dtype(dtype),
        layout=draw(st.sampled_from(LAYOUTS)) if layout is None else layout,
    )
    assume(output_hw((case.h, case.w), kernel, stride, dilation, case.pads) is not None)
    return case


def simple_case(layout="NCHW", dtype=np.float32, **changes) -> ConvCase:
    base = dict(
        n=2, c=9, k=17, h=6, w=17, kernel=(3, 2), stride=(1, 2), dilation=(2, 1),
        padding=((1, 2), (0, 1)), groups=1, bias=True, dtype=np.dtype(dtype), layout=layout,
    )
    base.update(changes)
    return ConvCase(**base)


# ----------------------------------------------------------------------------- properties


@given(case=conv_cases(), seed=seeds)
def test_conv2d_matches_reference(isa, case, seed):
    check_conv(case, seed)


@pytest.mark.parametrize("layout", LAYOUTS)
@examples(0.4)
@given(case=st.data(), seed=seeds)
def test_conv2d_depthwise(isa, layout, case, seed):
    """groups == C with channel multipliers 1 (depthwise), 2 to 8 (one depthwise pass
    per filter of a channel) and 9 (the dense kernel's narrow tiles)."""
    c = case.draw(st.sampled_from(SIMD_SIZES), label="channels")
    mult = case.draw(st.sampled_from((1, 2, 3, 8, 9)), label="multiplier")
    s = case.draw(st.integers(1, 2), label="stride")
    dtype = case.draw(st.sampled_from(FLOAT_DTYPES), label="dtype")
    bias = case.draw(st.booleans(), label="bias")
    check_conv(
        simple_case(layout, dtype, c=c, k=c * mult, groups=c, kernel=(3, 3), stride=(s, s), padding="same", bias=bias),
        seed,
    )


# Output widths around the depthwise kernels' edges: SIMD widths (4/8/16 lanes), NCHW
# register tiles of 8 vectors (32/64/128 outputs) and their half and quarter tiles.
DEPTHWISE_OUT_WIDTHS = (1, 3, 4, 5, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129)


def depthwise_case(layout, dtype, c, out_w, kernel, stride, dilation, padding, h=7, bias=True):
    """A depthwise case whose output is out_w wide (padding given per side)."""
    (pt, pb), (pl, pr) = padding
    w = (out_w - 1) * stride[1] + (kernel[1] - 1) * dilation[1] + 1 - pl - pr
    return simple_case(layout, dtype, n=2, c=c, k=c, groups=c, h=h, w=max(w, 1), kernel=kernel, stride=stride,
                       dilation=dilation, padding=padding, bias=bias)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_conv2d_depthwise_3x3_widths(isa, layout, dtype, stride):
    """The unrolled 3x3 kernels at every output width around a vector or tile edge,
    padding 1 (the MobileNet case), channels around the vector widths."""
    for i, out_w in enumerate(DEPTHWISE_OUT_WIDTHS):
        c = SIMD_SIZES[i % len(SIMD_SIZES)]
        case = depthwise_case(layout, dtype, c, out_w, (3, 3), (stride, stride), (1, 1), ((1, 1), (1, 1)))
        if case.w < 1 or output_hw((case.h, case.w), case.kernel, case.stride, case.dilation, case.pads) is None:
            continue
        check_conv(case, seed=out_w)


@pytest.mark.parametrize("layout", LAYOUTS)
@examples(0.5)
@given(
    out_w=st.sampled_from(DEPTHWISE_OUT_WIDTHS),
    c=st.sampled_from(SIMD_SIZES + (96, 100)),
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
    dtype=st.sampled_from(FLOAT_DTYPES),
    bias=st.booleans(),
    seed=seeds,
)
def test_conv2d_depthwise_shapes(isa, layout, out_w, c, kernel, stride, dilation, padding, dtype, bias, seed):
    """Any kernel size (3x3 unrolled, others generic), stride, dilation and padding on
    each side, wide rows and channel counts that are not a multiple of the vector width."""
    case = depthwise_case(layout, dtype, c, out_w, kernel, stride, dilation, padding, h=5, bias=bias)
    assume(output_hw((case.h, case.w), case.kernel, case.stride, case.dilation, case.pads) is not None)
    check_conv(case, seed)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_nchw_staged_blocks(isa, dtype, threads):
    """NCHW input of the dense kernel is staged (transposed) in blocks of lanes
    channels x lanes columns, the last block of a row overlapping the one before;
    1-wide kernels at column stride 2 stage every other column, and rows shorter
    than a block take masked loads (AVX-512). Channel counts with and without a
    partial block, rows shorter and longer than a block, padding on either side."""
    for i, (c, k, kernel, stride, pads, w) in enumerate((
        (176, 20, (1, 1), (2, 2), ((0, 0), (0, 0)), 37),
        (176, 9, (1, 1), (1, 2), ((0, 1), (1, 0)), 70),
        (64, 33, (3, 1), (1, 2), ((1, 1), (0, 0)), 40),
        (40, 17, (5, 1), (2, 2), ((2, 2), (2, 1)), 21),
        (41, 16, (3, 3), (1, 1), ((1, 1), (1, 1)), 35),
        (32, 8, (3, 3), (2, 2), ((1, 1), (1, 1)), 9),
        (19, 24, (3, 3), (1, 1), ((0, 0), (2, 3)), 50),
        (176, 12, (1, 1), (1, 1), ((0, 0), (0, 0)), 7),  # rows shorter than a block
        (200, 5, (1, 1), (1, 1), ((0, 0), (0, 0)), 14),
        (24, 16, (3, 3), (1, 1), ((1, 1), (1, 1)), 6),
    )):
        case = simple_case("NCHW", dtype, n=2, c=c, k=k, groups=1, h=5, w=w, kernel=kernel, stride=stride,
                           dilation=(1, 1), padding=pads, bias=i % 2 == 0)
        with convpool.threads(threads):
            check_conv(case, seed=i)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_conv2d_wide_column_pitch(isa, layout, dtype):
    """Groups whose channels span a multiple of 2 KiB (512 float32 or 256 float64
    channels) are staged with a cache line between columns, and each kernel column
    is then a run of its own: several kernel columns, dilation, 1-wide kernels at
    column stride 2 (which stage only the columns they read), two groups, padding
    on each side, rows of a whole tile and a partial one; and, staged as they
    are, groups of half that at column stride 2."""
    for i, (step_bytes, groups, k, kernel, stride, dilation, pads, w) in enumerate((
        (2048, 1, 20, (3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), 16),
        (2048, 2, 34, (3, 3), (2, 2), (1, 1), ((1, 0), (2, 1)), 19),
        (2048, 1, 16, (1, 1), (1, 2), (1, 1), ((0, 0), (0, 0)), 31),
        (2048, 1, 8, (2, 3), (1, 1), (1, 2), ((0, 1), (1, 1)), 12),
        (1024, 1, 33, (3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), 31),
        (1024, 2, 18, (1, 3), (1, 2), (1, 1), ((0, 0), (2, 0)), 16),
    )):
        cg = step_bytes // np.dtype(dtype).itemsize
        case = simple_case(layout, dtype, n=2, c=groups * cg, k=k, groups=groups, h=4, w=w, kernel=kernel,
                           stride=stride, dilation=dilation, padding=pads, bias=i % 2 == 0)
        with convpool.threads(1 + i % 2):
            check_conv(case, seed=i)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_nchw_few_taps(isa, dtype, threads):
    """NCHW layers with few taps per output (C x KH x KW up to 160: the kernel that
    vectorises along output rows): output widths around the vector widths, channel
    counts that leave register and packing tiles partly filled, strides along
    columns and rows, dilation, padding on each side, and images cut into several
    row bands."""
    widths = (4, 8, 9, 16, 17, 33, 40)
    shapes = (  # (C, K, kernel)
        (1, 32, (3, 3)), (3, 17, (3, 3)), (2, 5, (2, 5)), (17, 33, (3, 3)), (3, 64, (7, 7)), (4, 16, (1, 1)),
        (1, 3, (5, 1)),
    )
    combos = itertools.product(shapes, (1, 2, 3), (1, 2), (((0, 0), (0, 0)), ((1, 2), (2, 1)), ((3, 0), (0, 3))))
    for i, ((c, k, kernel), stride_h, dil, pads) in enumerate(combos):
        out_w = widths[i % len(widths)]
        w = out_w - 1 + (kernel[1] - 1) * dil + 1 - pads[1][0] - pads[1][1]
        case = simple_case("NCHW", dtype, n=1 + i % 3, c=c, k=k, groups=1, h=4 + i % 5, w=w, kernel=kernel,
                           stride=(stride_h, 1), dilation=(dil, dil), padding=pads, bias=i % 2 == 1)
        if w < 1 or output_hw((case.h, case.w), case.kernel, case.stride, case.dilation, case.pads) is None:
            continue
        with convpool.threads(threads):
            check_conv(case, seed=i)
    # Strides along rows (images of up to 4 channels): every staged row is split
    # into stride_w phases; extra input columns past the last window are not read.
    strided = itertools.product(((1, 32, (3, 3)), (3, 17, (7, 7)), (4, 8, (2, 5)), (2, 5, (1, 1))), (2, 3),
                                (1, 2), (((1, 1), (1, 1)), ((3, 0), (0, 3)), ((0, 2), (2, 0)), ((2, 1), (5, 1))),
                                (0, 1))
    for i, ((c, k, kernel), stride_w, dil, pads, extra) in enumerate(strided):
        out_w = widths[i % len(widths)]
        w = (out_w - 1) * stride_w + (kernel[1] - 1) * dil + 1 - pads[1][0] - pads[1][1] + extra
        case = simple_case("NCHW", dtype, n=1 + i % 2, c=c, k=k, groups=1, h=4 + i % 5, w=w, kernel=kernel,
                           stride=(1 + i % 3, stride_w), dilation=(dil, dil), padding=pads, bias=i % 2 == 0)
        if w < 1 or output_hw((case.h, case.w), case.kernel, case.stride, case.dilation, case.pads) is None:
            continue
        with convpool.threads(threads):
            check_conv(case, seed=100 + i)
    # Rows too wide for one band of rows: the image is staged a few rows at a time.
    for h, w in ((40, 300), (9, 1000)):
        case = simple_case("NCHW", dtype, n=2, c=3, k=20, groups=1, h=h, w=w, kernel=(3, 3), stride=(1, 1),
                           dilation=(1, 1), padding=((1, 1), (1, 1)), bias=True)
        with convpool.threads(threads):
            check_conv(case, seed=h)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("stride_w", [1, 2])
def test_conv2d_depthwise_3x3_row_copies(isa, layout, dtype, stride_w):
    """3x3 depthwise with dilation 1 (the NCHW kernels: stride_w 1 copies rows with
    vector loads only, stride_w 2 splits rows in registers, two output rows at a time
    with stride_h 2): every left padding they take (0-2) and one past it, right
    padding (outputs past the last whole vector), input columns past the last
    window, row strides that skip input rows, odd and even output heights, widths
    around whole vectors and register blocks of every ISA."""
    widths = (4, 5, 8, 9, 16, 17, 24, 31, 32, 33, 56, 63, 64, 65, 100)
    combos = itertools.product((1, 2, 3), (0, 1, 2, 3), (0, 1, 2, 3, 8), (0, 1))
    for i, (stride_h, pl, pr, extra) in enumerate(combos):
        out_w = widths[i % len(widths)]
        w = (out_w - 1) * stride_w + 3 - pl - pr + extra
        pads = ((pl % 3, (pr + 1) % 3), (pl, pr))
        c = 1 + i % 3
        case = simple_case(layout, dtype, n=1, c=c, k=c, groups=c, h=5 + i % 4, w=w, kernel=(3, 3),
                           stride=(stride_h, stride_w), dilation=(1, 1), padding=pads, bias=i % 2 == 0)
        if w < 1 or output_hw((case.h, case.w), case.kernel, case.stride, case.dilation, case.pads) is None:
            continue
        check_conv(case, seed=i)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_depthwise_small_planes(isa, dtype, threads):
    """NCHW depthwise with output rows narrower than a vector (two kernels: whole
    blocks of a vector of channels, transposed into a grid of pixels, and the
    planes past them, each copied into its stride phases with vectors across
    rows, in chunks of 8): every output width below 16, strides 1 to 3 per axis
    (stride 2 along rows splits in registers with AVX-512, with even and odd left
    padding), filters from 1x1 to 5x5 and uneven, dilation, padding on each side
    (rows and columns that are all padding, and none), input rows and columns
    past the last window, and channel counts with no, one and two whole blocks,
    with and without planes past them."""
    combos = itertools.product(
        ((3, 3), (1, 1), (2, 3), (5, 5), (3, 1)), ((1, 1), (2, 2), (1, 2), (3, 2), (2, 3)), ((1, 1), (2, 1), (1, 2)),
        (((1, 1), (1, 1)), ((0, 0), (0, 0)), ((2, 0), (0, 3)), ((0, 2), (1, 0))), (0, 2))
    for i, (kernel, stride, dil, pads, extra) in enumerate(combos):
        out_w = 1 + i % 15
        out_h = 1 + (i * 7) % 9
        (pt, pb), (pl, pr) = pads
        w = (out_w - 1) * stride[1] + (kernel[1] - 1) * dil[1] + 1 - pl - pr + extra
        h = (out_h - 1) * stride[0] + (kernel[0] - 1) * dil[0] + 1 - pt - pb + extra % 3
        c = (1, 3, 8, 9, 16, 17, 33)[i % 7]
        case = simple_case("NCHW", dtype, n=1 + i % 2, c=c, k=c, groups=c, h=h, w=w, kernel=kernel, stride=stride,
                           dilation=dil, padding=pads, bias=i % 3 != 0)
        if w < 1 or h < 1 or output_hw((h, w), kernel, stride, dil, pads) is None:
            continue
        with convpool.threads(threads):
            check_conv(case, seed=i)
    # Planes too tall for the kernel's phases (more than 4096 output rows) take
    # the row kernel; the tallest it takes, and one row more.
    for out_h in (4096, 4097):
        case = simple_case("NCHW", dtype, n=1, c=2, k=2, groups=2, h=out_h, w=5, kernel=(3, 3), stride=(1, 1),
                           dilation=(1, 1), padding=((1, 1), (1, 1)), bias=True)
        with convpool.threads(threads):
            check_conv(case, seed=out_h)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_depthwise_wide_blocks(isa, dtype, threads):
    """NCHW depthwise on planes with rows of a vector or more (the blocked kernel
    with AVX-512, the general one otherwise), channels in whole blocks of a
    vector (16 and 32: whole for every ISA and dtype) and not (24, 40), through
    the blocked kernel's segments of a vector of pixels (output widths around
    1-3 vectors of every ISA), with filters no 3x3 kernel takes
    (5x5, 7x7, 2x3, 1x1, 3x3 dilated or at stride 3 or with 3 columns of left
    padding), strides 1-3 per axis, padding on each side, batch 1 and 2 (fewer
    blocks than threads take the general kernel), and planes past the grid's
    size limit (about 64 x 64)."""
    combos = itertools.product(
        ((5, 5), (7, 7), (2, 3), (1, 1), (3, 3)), ((1, 1), (2, 2), (1, 3), (3, 1)),
        (((2, 2), (2, 2)), ((0, 1), (3, 0)), ((1, 0), (0, 2))))
    for i, (kernel, stride, pads) in enumerate(combos):
        dil = (2, 2) if kernel == (3, 3) and i % 2 == 0 else (1, 1)
        if kernel == (3, 3) and dil == (1, 1):
            pads = ((1, 1), (3, 1))
        out_w = (4, 8, 9, 16, 17, 31, 33, 47)[i % 8]
        out_h = 1 + (i * 5) % 7
        (pt, pb), (pl, pr) = pads
        w = (out_w - 1) * stride[1] + (kernel[1] - 1) * dil[1] + 1 - pl - pr
        h = (out_h - 1) * stride[0] + (kernel[0] - 1) * dil[0] + 1 - pt - pb
        c = (16, 32, 24, 40)[i % 4]
        case = simple_case("NCHW", dtype, n=1 + i % 2, c=c, k=c, groups=c, h=max(h, 1), w=max(w, 1), kernel=kernel,
                           stride=stride, dilation=dil, padding=pads, bias=i % 3 != 0)
        if output_hw((case.h, case.w), kernel, stride, dil, case.pads) is None:
            continue
        with convpool.threads(threads):
            check_conv(case, seed=i)
    # Past the grid's limit (70 x 70 pixels of 16 float32), and just inside it.
    for hw in (70, 60):
        case = simple_case("NCHW", dtype, n=1, c=16, k=16, groups=16, h=hw, w=hw, kernel=(5, 5), stride=(1, 1),
                           dilation=(1, 1), padding=((2, 2), (2, 2)), bias=True)
        with convpool.threads(threads):
            check_conv(case, seed=hw)


@pytest.fixture(params=["from-cache", "from-memory"])
def cache_resident(request):
    """Both sides of the kernels' from-cache choice: the default bound (the small
    arrays of the tests count as in cache), or 0 bytes (nothing does)."""
    with contextlib.nullcontext() if request.param == "from-cache" else cache_resident_bytes(0):
        yield request.param


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("kernel_w,stride_w", [(3, 1), (3, 2), (5, 1), (5, 2)])
def test_conv2d_depthwise_nhwc_pixel_tiles(isa, dtype, kernel_w, stride_w, cache_resident):
    """NHWC depthwise with dilation 1 and 3- or 5-wide filters at column stride 1
    or 2 (3-wide: tiles of several pixels for narrow pixels, and for wide ones
    from cache, where tiles also reach into the padding and a full 3x3 window's
    rows are unrolled; pixel by pixel otherwise; 5-wide: bands of rows made
    a vector of channels at a time, up to 16 rows, except wide pixels at stride 2
    from memory, pixel by pixel): output widths around the tiles of 8 (AVX-512)
    or 6 pixels and their halves, every left and right padding up to the
    filter width (border pixels on either side, or no interior at all), input
    columns past the last window, filter heights from 1 to past the tile's row
    limit (17), rows in the padding, channel counts around the vector widths and
    the narrow-pixel limit (63 float32 / 31 float64 channels, and one past it),
    wide pixels with and without channels past the last whole vector, with and
    without bias."""
    widths = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 17, 19, 25)
    limit = 256 // np.dtype(dtype).itemsize  # channels of the first pixel too wide for the tiles
    channels = (1, 4, 8, 15, 16, 17, 33, limit - 1, limit, limit + 3, 2 * limit)
    combos = itertools.product(range(kernel_w), range(kernel_w), (1, 3, 5, 17), (0, 1))
    for i, (pl, pr, kernel_h, extra) in enumerate(combos):
        out_w = widths[i % len(widths)]
        w = (out_w - 1) * stride_w + kernel_w - pl - pr + extra
        c = channels[i % len(channels)]
        pt = (i // 3) % kernel_h if kernel_h < 17 else 8
        case = simple_case("NHWC", dtype, n=1 + i % 2, c=c, k=c, groups=c, h=3 + i % 4, w=w,
                           kernel=(kernel_h, kernel_w), stride=(1 + i % 2, stride_w), dilation=(1, 1),
                           padding=((pt, pt), (pl, pr)), bias=i % 2 == 0)
        if w < 1 or output_hw((case.h, case.w), case.kernel, case.stride, case.dilation, case.pads) is None:
            continue
        with convpool.threads(1 + i % 2):
            check_conv(case, seed=i)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_depthwise_nhwc_wide_multiplier(isa, dtype, threads):
    """3-wide filters on wide pixels from cache (the wide-pixel kernel) with
    channel multipliers 2 and 3, where each depthwise pass writes every m-th
    output channel: strides 1 and 2, padding 0 to 2, channels in whole vectors
    and not."""
    limit = 256 // np.dtype(dtype).itemsize  # the narrowest wide pixel
    combos = itertools.product((2, 3), (1, 2), (0, 1, 2), (limit, limit + 6))
    for i, (m, s, pad, c) in enumerate(combos):
        case = simple_case("NHWC", dtype, n=1 + i % 2, c=c, k=c * m, groups=c, h=9, w=13, kernel=(3, 3),
                           stride=(s, s), dilation=(1, 1), padding=((pad, pad), (pad, pad)), bias=i % 2 == 0)
        with convpool.threads(threads):
            check_conv(case, seed=i)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_depthwise_nhwc_bands(isa, dtype, threads):
    """The NHWC band kernel (5-wide filters) on tall images, so that a band holds
    several output rows and bands meet inside an image: band heights set by the
    thread count (batch 1 and 3) and by the 192 KiB of input rows a band may
    hold (rows of 32 KiB hold several output rows, rows of 64 KiB a few, rows of
    256 KiB one), row strides 1 to 3 and column strides 1 and 2, filter heights 1
    to 16 with dilated rows and padding rows above and below, channel counts
    with and without channels past the last whole vector, and channel
    multipliers (the output written every m-th channel)."""
    itemsize = np.dtype(dtype).itemsize
    v = 64 // itemsize  # a vector of channels with AVX-512
    shapes = (  # (n, c, h, w)
        (1, 17, 41, 9), (3, 8, 23, 12), (1, v, 41, 512), (1, v, 9, 1024), (1, v + 1, 7, 4096),
    )
    rows = ((1, 1), (3, 1), (3, 2), (5, 1), (5, 3), (16, 1))  # (kernel_h, dilation_h)
    combos = itertools.product(shapes, rows, ((1, 1), (2, 2), (3, 1)))
    for i, ((n, c, h, w), (kernel_h, dil_h), stride) in enumerate(combos):
        reach = (kernel_h - 1) * dil_h + 1
        pt = (i % 3) * (reach - 1) // 2
        m = 1 + (i % 7 == 0)  # filters per channel
        case = simple_case("NHWC", dtype, n=n, c=c, k=c * m, groups=c, h=max(h, reach), w=w,
                           kernel=(kernel_h, 5), stride=stride, dilation=(dil_h, 1),
                           padding=((pt, reach - 1 - pt), (i % 5, (i + 2) % 5)), bias=i % 2 == 0)
        if output_hw((case.h, case.w), case.kernel, case.stride, case.dilation, case.pads) is None:
            continue
        with convpool.threads(threads):
            check_conv(case, seed=i)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_depthwise_mobilenet_shape(isa, layout, threads):
    """dw3x3s2 with 96 channels (the benchmark layer, smaller image), 1 and 2 threads."""
    case = depthwise_case(layout, np.float32, 96, 28, (3, 3), (2, 2), (1, 1), ((1, 1), (1, 0)), h=56)
    with convpool.threads(threads):
        check_conv(case, seed=threads)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("stride", [(2, 2), (3, 2), (2, 3)])
def test_conv2d_depthwise_strided_output(isa, layout, dtype, stride):
    """The input gradient runs the forward depthwise kernel once per stride phase and
    writes it through strides (NCHW: every stride_w-th column; NHWC: pixels
    stride_w * C apart): wide rows, borders and channels around the vector widths."""
    for c in (1, 17, 33):
        for w in (16, 33, 64, 97):
            x_shape = (2, c, 6, w)
            rng = np.random.default_rng(c + w)
            x = random_array(rng, x_shape, dtype)
            weight = random_array(rng, (c, 1, 3, 3), dtype)
            args = dict(stride=stride, padding=1, groups=c)
            y = ref.conv2d(x, weight, None, stride, ((1, 1), (1, 1)), (1, 1), c)
            gy = random_array(rng, y.shape, dtype)
            gx, _, _ = convpool.conv2d_backward(to_layout(gy, layout), to_layout(x, layout), weight, layout=layout,
                                                weight_grad=False, bias_grad=False, **args)
            want, _, _ = ref.conv2d_backward(gy, x, weight, stride, ((1, 1), (1, 1)), (1, 1), c)
            f64 = lambda a: np.abs(a).astype(np.float64)  # noqa: E731
            magnitude, _, _ = ref.conv2d_backward(f64(gy), f64(x), f64(weight), stride, ((1, 1), (1, 1)), (1, 1), c)
            assert_within(from_layout(gx, layout), want, reduction_atol(np.dtype(dtype), 9, magnitude))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("padding", ["valid", "same", "same_lower", 0, 2, (1, 0), ((0, 3), (2, 1))])
def test_conv2d_padding_forms(isa, layout, padding):
    check_conv(simple_case(layout, np.float64, padding=padding, stride=(2, 3)), seed=1)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("width", SIMD_SIZES)
def test_conv2d_widths_and_channels(isa, layout, dtype, width):
    """Output widths and channel counts around every register-tile edge."""
    check_conv(simple_case(layout, dtype, c=width, k=width, w=width + 2, h=3, kernel=(3, 3),
                           stride=(1, 1), dilation=(1, 1), padding=0), seed=width)


# Output widths around the dense kernel's register tiles (14, 13, 12, 11 and 16
# pixels on AVX-512, 6 and 12 on AVX2 and SSE) and their half and quarter tails.
TILE_WIDTHS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 21, 22, 23, 24, 25, 26, 27, 28, 29, 31,
               32, 33, 39, 41, 42, 43)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("out_w", TILE_WIDTHS)
@pytest.mark.parametrize("k", (9, 33))
def test_conv2d_tile_widths(isa, layout, out_w, k):
    """Every output column of every tile width, with padding and stride 2 at the row ends."""
    stride, kernel, pad = 2, 3, (1, 2)
    w = max((out_w - 1) * stride + kernel - sum(pad), 1)  # out_w 1: one column, padded
    check_conv(simple_case(layout, np.float64, c=3, k=k, w=w, h=5, kernel=(2, kernel), stride=(1, stride),
                           dilation=(1, 1), padding=((0, 1), pad)), seed=out_w)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("form", INPUT_FORMS)
def test_conv2d_input_forms(isa, layout, form):
    make = INPUT_FORMS[form]
    case = simple_case(layout, np.float32)
    x, weight, bias = case.arrays(seed=3)
    x_in, w_in, b_in = make(to_layout(x, layout)), make(weight), make(bias)
    if form != "read_only":
        assert not x_in.flags.c_contiguous and not w_in.flags.c_contiguous
    got = convpool.conv2d(x_in, w_in, b_in, **case.kwargs())
    want, atol = expected_conv(case, x, weight, bias)
    assert_within(from_layout(got, layout), want, atol)


def test_conv2d_accepts_array_likes():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5) / 7.0
    w = np.linspace(-1, 1, 4 * 3 * 2 * 2).reshape(4, 3, 2, 2)
    got = convpool.conv2d(x.tolist(), w.tolist(), [0.5, -1.0, 2.0, 0.0])
    want = ref.conv2d(x, w, np.array([0.5, -1.0, 2.0, 0.0]))
    np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-13)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_non_native_byte_order(layout):
    case = simple_case(layout, np.float64)
    x, weight, bias = case.arrays(seed=4)
    swapped = lambda a: a.astype(a.dtype.newbyteorder(">"))  # noqa: E731
    got = convpool.conv2d(swapped(to_layout(x, layout)), swapped(weight), swapped(bias), **case.kwargs())
    want, atol = expected_conv(case, x, weight, bias)
    assert_within(from_layout(got, layout), want, atol)


# ----------------------------------------------------------------------------- out=


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_conv2d_out_is_written_and_returned(isa, layout, dtype):
    case = simple_case(layout, dtype)
    out = np.full(case.out_shape(), np.nan, dtype=dtype)  # every element must be overwritten
    got = check_conv(case, seed=5, out=out)
    assert got is out


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_out_aliasing_input(isa, layout):
    """out is x itself (1x1 kernel, C == K keeps the shape): the result must not be
    computed from partly overwritten input."""
    case = simple_case(layout, np.float64, c=16, k=16, kernel=(1, 1), stride=(1, 1), dilation=(1, 1), padding=0)
    x, weight, bias = case.arrays(seed=6)
    buf = to_layout(x, layout)
    got = convpool.conv2d(buf, weight, bias, out=buf, **case.kwargs())
    assert got is buf
    want, atol = expected_conv(case, x, weight, bias)
    assert_within(from_layout(got, layout), want, atol)


def test_conv2d_out_aliasing_input_with_offset(isa):
    """out overlaps x with a shifted start (same buffer, different shape)."""
    case = simple_case("NCHW", np.float64, n=1, c=1, k=1, h=6, w=6, kernel=(3, 3), stride=(1, 1),
                       dilation=(1, 1), padding=0)
    x, weight, bias = case.arrays(seed=7)
    buf = x.copy()
    out = buf.reshape(-1)[3 : 3 + 16].reshape(1, 1, 4, 4)
    got = convpool.conv2d(buf, weight, bias, out=out, **case.kwargs())
    assert got is out
    want, atol = expected_conv(case, x, weight, bias)
    assert_within(got, want, atol)


def test_conv2d_out_aliasing_weight(isa):
    """out is the weight array (same shape): weights must be read before being overwritten."""
    case = simple_case("NCHW", np.float64, n=2, c=2, k=2, h=2, w=2, kernel=(2, 2), stride=(1, 1),
                       dilation=(1, 1), padding=((0, 1), (0, 1)), bias=False)
    x, weight, _ = case.arrays(seed=8)
    w_buf = weight.copy()
    assert w_buf.shape == case.out_shape() == (2, 2, 2, 2)
    got = convpool.conv2d(x, w_buf, out=w_buf, **case.kwargs())
    want, atol = expected_conv(case, x, weight, None)
    assert got is w_buf
    assert_within(got, want, atol)


# ----------------------------------------------------------------------------- empty


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize(("n", "c", "k", "groups"), [(0, 4, 6, 1), (0, 4, 4, 4), (2, 0, 3, 1), (0, 0, 3, 1)])
def test_conv2d_empty(isa, layout, bias, n, c, k, groups):
    """N == 0: empty result; C == 0: a sum over nothing, i.e. the bias (or 0)."""
    case = simple_case(layout, np.float32, n=n, c=c, k=k, groups=groups, bias=bias)
    result = check_conv(case, seed=9)  # compares shape and values with the reference
    assert result.shape == case.out_shape()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_conv2d_no_input_channels_wide_rows(isa, layout, dtype):
    """C == 0 with stride 1 and rows wider than any vector: the output is the bias."""
    case = simple_case(layout, dtype, n=2, c=0, k=5, groups=1, h=5, w=40, kernel=(3, 3), stride=(1, 1),
                       dilation=(1, 1), padding=((1, 1), (1, 1)), bias=True)
    check_conv(case, seed=3)


def assert_same_specials(got, want, atol):
    """NaN where want is NaN, the same infinities, finite values within atol."""
    assert np.array_equal(np.isnan(got), np.isnan(want))
    inf = np.isinf(want)
    assert np.array_equal(got[inf], want[inf])
    finite = np.isfinite(want)
    assert_within(got[finite], want[finite], atol[finite] if np.ndim(atol) else atol)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("k", [1, 2, 6, 8, 9])
def test_conv2d_one_input_channel_few_filters(isa, layout, dtype, k):
    """One input channel, no groups, up to 8 filters (LeNet's 1 -> 6 5x5): a dense
    conv, not a depthwise one with a channel multiplier, in both layouts, with and
    without packed weights."""
    for kernel, stride, padding, w in (((5, 5), (1, 1), ((2, 2), (2, 2)), 28), ((3, 3), (2, 2), ((1, 1), (1, 1)), 33)):
        case = simple_case(layout, dtype, n=3, c=1, k=k, h=9, w=w, kernel=kernel, stride=stride, dilation=(1, 1),
                           padding=padding)
        check_conv(case, seed=k)
        x, weight, _ = case.arrays(k)
        x = to_layout(x, layout)
        packed = convpool.pack_weight(weight)
        assert_identical(convpool.conv2d(x, packed, stride=stride, padding=padding, layout=layout),
                         convpool.conv2d(x, weight, stride=stride, padding=padding, layout=layout))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("prepacked", [False, True])
@pytest.mark.parametrize(("c", "k", "groups", "kernel", "stride", "dilation"), [
    (64, 20, 1, (3, 3), (1, 1), (1, 1)),   # dense rows kernel, channel tiles
    (3, 40, 1, (3, 3), (1, 1), (1, 1)),    # NCHW: few taps per output
    (2, 5, 1, (3, 2), (2, 1), (1, 2)),     # narrow tiles
    (6, 3, 3, (3, 3), (1, 2), (1, 1)),     # one output channel per group (scalar kernel)
    (17, 17, 17, (3, 3), (2, 2), (1, 1)),  # depthwise 3x3
    (5, 10, 5, (5, 3), (1, 1), (2, 1)),    # depthwise, general, multiplier 2
])
def test_conv2d_nonfinite_weights_over_padding(isa, layout, prepacked, c, k, groups, kernel, stride, dilation):
    """A tap in the padding multiplies a zero by the weight: infinite and NaN weights
    give NaN there, on every kernel path, as in the definition and PyTorch."""
    rng = np.random.default_rng(c + k)
    x = random_array(rng, (2, c, 7, 37), np.float64)
    weight = random_array(rng, (k, c // groups) + kernel, np.float64)
    weight.reshape(-1)[rng.choice(weight.size, 3, replace=False)] = [np.inf, -np.inf, np.nan]
    bias = random_array(rng, (k,), np.float64)
    pads = ((1, 2), (2, 1))
    w_arg = convpool.pack_weight(weight, groups=groups) if prepacked else weight
    got = from_layout(convpool.conv2d(to_layout(x, layout), w_arg, bias, stride=stride, padding=pads,
                                      dilation=dilation, groups=groups, layout=layout), layout)
    want = ref.conv2d(x, weight, bias, stride, pads, dilation, groups)
    assert np.isnan(want).any() and np.isfinite(want).any()
    finite_w = np.where(np.isfinite(weight), np.abs(weight), 0.0)
    magnitude = ref.conv2d(np.abs(x), finite_w, np.abs(bias), stride, pads, dilation, groups)
    n_terms = (c // groups) * kernel[0] * kernel[1] + 1
    assert_same_specials(got, want, reduction_atol(np.dtype(np.float64), n_terms, magnitude))


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_conv2d_same_result_for_1_and_2_threads(isa, layout, dtype):
    case = simple_case(layout, dtype, n=3, c=17, k=33, h=9, w=33)
    x, weight, bias = case.arrays(seed=10)
    x_in = to_layout(x, layout)
    with convpool.threads(1):
        one = convpool.conv2d(x_in, weight, bias, **case.kwargs())
    with convpool.threads(2):
        two = convpool.conv2d(x_in, weight, bias, **case.kwargs())
    assert_identical(two, one)
    want, atol = expected_conv(case, x, weight, bias)
    assert_within(from_layout(one, layout), want, atol)


# ----------------------------------------------------------------------------- documented example


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_conv2d_semantics_worked_example(isa, layout, dtype):
    """docs/semantics.md: arange(25) as 5x5, 3x3 ones, stride 2, padding 1."""
    x = np.arange(25, dtype=dtype).reshape(1, 1, 5, 5)
    got = convpool.conv2d(to_layout(x, layout), np.ones((1, 1, 3, 3), dtype), stride=2, padding=1, layout=layout)
    expected = np.array([[12, 27, 24], [63, 108, 81], [72, 117, 84]], dtype=dtype)
    assert_identical(from_layout(got, layout)[0, 0], expected)


# ----------------------------------------------------------------------------- special values


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_propagates_nan_and_inf(isa, layout):
    case = simple_case(layout, np.float64, n=1, c=2, k=3, h=5, w=9, kernel=(2, 2), stride=(1, 1),
                       dilation=(1, 1), padding=0, bias=False)
    x, weight, _ = case.arrays(seed=11)
    x[0, 0, 1, 1] = np.nan
    x[0, 1, 3, 6] = np.inf
    weight = np.abs(weight) + 0.5  # positive weights: inf stays +inf, no inf - inf
    got = from_layout(convpool.conv2d(to_layout(x, layout), weight, **case.kwargs()), layout)
    want = ref.conv2d(x, weight, None, case.stride, case.pads, case.dilation, case.groups)
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(want).sum() == 3 * 4
    assert np.array_equal(np.isposinf(got), np.isposinf(want)) and np.isposinf(want).sum() == 3 * 4


@pytest.mark.parametrize("layout", LAYOUTS)
def test_depthwise_dilated_far_past_the_input(isa, layout):
    """A kernel dilated by 4e7 with as much padding: one tap lands on the input. The
    call must not size its scratch by the dilated extent (it used to take gigabytes)."""
    d = 40_000_000
    x = np.arange(1, 9, dtype=np.float32).reshape(1, 1, 1, 8)
    w = np.array([2.0, 3.0, 5.0], dtype=np.float32).reshape(1, 1, 3, 1)
    xl = x if layout == "NCHW" else x.transpose(0, 2, 3, 1).copy()
    got = convpool.conv2d(xl, w, padding=((d, d), (0, 0)), dilation=(d, 1), layout=layout)
    got = got if layout == "NCHW" else got.transpose(0, 3, 1, 2)
    np.testing.assert_array_equal(got, 3.0 * x)  # only the middle tap reaches row 0
