"""Pooling against the NumPy oracle ``convpool.reference``, on every ISA.

Max pooling is exact (values and indices must be identical); average and Lp pooling
are compared within the tolerances of conftest.reduction_atol.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import convpool
from convpool import reference as ref

from conftest import (
    FLOAT_DTYPES,
    INPUT_FORMS,
    INT_DTYPES,
    LAYOUTS,
    SIMD_SIZES,
    assert_identical,
    assert_within,
    examples,
    extent,
    from_layout,
    normalise_padding,
    output_hw,
    pair_arg,
    random_array,
    reduction_atol,
    seeds,
    to_layout,
)

ALL_DTYPES = FLOAT_DTYPES + INT_DTYPES
F64 = np.dtype(np.float64)

# ----------------------------------------------------------------------------- cases


@dataclass(frozen=True)
class PoolCase:
    n: int
    c: int
    h: int
    w: int
    kernel: Tuple[int, int]
    stride: Optional[Tuple[int, int]]  # None: the public default (= kernel)
    dilation: Tuple[int, int]
    padding: object  # any public form
    ceil_mode: bool
    dtype: np.dtype
    layout: str

    @property
    def strides(self) -> Tuple[int, int]:
        return self.kernel if self.stride is None else self.stride

    @property
    def pads(self):
        return normalise_padding(self.padding, (self.h, self.w), self.kernel, self.strides, self.dilation)

    @property
    def out_hw(self):
        return output_hw((self.h, self.w), self.kernel, self.strides, self.dilation, self.pads, self.ceil_mode)

    def out_shape(self):
        oh, ow = self.out_hw
        return (self.n, oh, ow, self.c) if self.layout == "NHWC" else (self.n, self.c, oh, ow)

    def x(self, seed: int, kind: str = "normal") -> np.ndarray:
        """Random NCHW input."""
        return random_array(np.random.default_rng(seed), (self.n, self.c, self.h, self.w), self.dtype, kind)

    def kwargs(self):
        return dict(
            kernel_size=pair_arg(self.kernel),
            stride=None if self.stride is None else pair_arg(self.stride),
            padding=self.padding,
            dilation=pair_arg(self.dilation),
            ceil_mode=self.ceil_mode,
            layout=self.layout,
        )

    def ref_args(self):
        return (self.kernel, self.strides, self.pads, self.dilation, self.ceil_mode)


def _pool_paddings(kernel, dilation):
    """Every public padding form, each pad below the dilated kernel extent."""
    top = extent(kernel[0], dilation[0]) - 1
    left = extent(kernel[1], dilation[1]) - 1
    both = min(top, left)
    return st.one_of(
        st.sampled_from(["valid", "same", "same_lower"]),
        st.integers(0, both),
        st.tuples(st.integers(0, top), st.integers(0, left)),
        st.tuples(st.tuples(st.integers(0, top), st.integers(0, top)),
                  st.tuples(st.integers(0, left), st.integers(0, left))),
    )


@st.composite
def pool_cases(draw, dtypes=FLOAT_DTYPES) -> PoolCase:
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.none() | st.tuples(st.integers(1, 3), st.integers(1, 3)))
    case = PoolCase(
        n=draw(st.integers(0, 2)) if draw(st.integers(0, 9)) == 0 else draw(st.integers(1, 2)),
        c=draw(st.sampled_from(SIMD_SIZES)),
        h=draw(st.integers(1, 9)),
        w=draw(st.sampled_from(SIMD_SIZES + (2, 3, 4, 5, 40))),
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=draw(_pool_paddings(kernel, dilation)),
        ceil_mode=draw(st.booleans()),
        dtype=draw(st.sampled_from(dtypes)),
        layout=draw(st.sampled_from(LAYOUTS)),
    )
    assume(case.out_hw is not None)
    return case


def _padded_smaller_than_extent(case: PoolCase) -> bool:
    return any(
        size + sum(pads) < extent(k, d)
        for size, pads, k, d in zip((case.h, case.w), case.pads, case.kernel, case.dilation)
    )


def simple_case(layout="NCHW", dtype=np.float32, **changes) -> PoolCase:
    base = dict(
        n=2, c=9, h=7, w=17, kernel=(3, 2), stride=(2, 1), dilation=(1, 2), padding=((1, 2), (0, 1)),
        ceil_mode=True, dtype=np.dtype(dtype), layout=layout,
    )
    base.update(changes)
    if "dtype" in changes:
        base["dtype"] = np.dtype(changes["dtype"])
    return PoolCase(**base)


def narrow_row_cases(dtype, outputs: int):
    """(input width, NCHW case) for rows of `outputs` outputs, for window geometries
    (kernel, stride, padding, column dilation, ceil mode; an int is an equal pair)
    with column strides 1 and 2, widths 2 to 4, dilation and ceil mode."""
    for kernel, stride, pad, dilation, ceil_mode in [
        (2, 2, 0, 1, False), (3, 2, 1, 1, False), (3, 2, 0, 1, True), (2, 1, 0, 1, False),
        (3, 1, 1, 1, False), (4, 1, 0, 1, False), (3, 2, 1, 2, False), (3, 1, 0, 2, True),
        ((2, 3), (2, 2), (0, 1), 1, True), ((3, 2), (1, 2), (1, 0), 1, True),
    ]:
        kernel, stride, pad = (v if isinstance(v, tuple) else (v, v) for v in (kernel, stride, pad))
        width = (outputs - 1) * stride[1] + (kernel[1] - 1) * dilation + 1 - 2 * pad[1]
        if width >= 1:
            yield width, simple_case("NCHW", dtype, n=2, c=3, h=7, w=width, kernel=kernel, stride=stride,
                                     dilation=(1, dilation), padding=pad, ceil_mode=ceil_mode)


# ----------------------------------------------------------------------------- checks


def check_max(case: PoolCase, x: np.ndarray, *, x_transform=None, out=None):
    """convpool.max_pool2d (values and indices) == reference, exactly."""
    x_in = to_layout(x, case.layout)
    if x_transform is not None:
        x_in = x_transform(x_in)
    got, idx = convpool.max_pool2d(x_in, return_indices=True, out=out, **case.kwargs())
    want, want_idx = ref.max_pool2d(x, *case.ref_args(), return_indices=True)
    assert idx.dtype == np.int64
    assert_identical(from_layout(got, case.layout), want, "values: ")
    assert_identical(from_layout(idx, case.layout), want_idx, "indices: ")
    # Without indices: the same values.
    alone = convpool.max_pool2d(x_in, **case.kwargs())
    assert_identical(alone, got, "values without indices: ")
    return got, idx


def with_specials(x: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    """x with NaN, -inf, +inf, +0.0 and -0.0 each written at `count` random places."""
    flat = x.reshape(-1)
    for value in (np.nan, -np.inf, np.inf, 0.0, -0.0):
        flat[rng.integers(0, flat.size, count)] = value
    return x


def check_max_signs(case: PoolCase, x: np.ndarray) -> None:
    """check_max, and the sign of every non-NaN result, with and without indices
    (the paths differ; assert_identical takes -0.0 == +0.0)."""
    got, _ = check_max(case, x)
    alone = from_layout(convpool.max_pool2d(to_layout(x, case.layout), **case.kwargs()), case.layout)
    want = ref.max_pool2d(x, *case.ref_args())
    numbers = ~np.isnan(want)
    assert np.array_equal(np.signbit(from_layout(got, case.layout))[numbers], np.signbit(want)[numbers])
    assert np.array_equal(np.signbit(alone)[numbers], np.signbit(want)[numbers])


def check_avg(case: PoolCase, x: np.ndarray, *, count_include_pad=True, divisor_override=None,
              x_transform=None, out=None):
    x_in = to_layout(x, case.layout)
    if x_transform is not None:
        x_in = x_transform(x_in)
    got = convpool.avg_pool2d(x_in, count_include_pad=count_include_pad, divisor_override=divisor_override,
                              out=out, **case.kwargs())
    opts = dict(count_include_pad=count_include_pad, divisor_override=divisor_override)
    want = ref.avg_pool2d(x, *case.ref_args(), **opts)
    magnitude = ref.avg_pool2d(np.abs(x).astype(F64), *case.ref_args(), **opts)
    n_terms = case.kernel[0] * case.kernel[1]
    assert_within(from_layout(got, case.layout), want, reduction_atol(case.dtype, n_terms, magnitude, F64))
    return got


def lp_atol(out_dtype, p: float, n_terms: int, value: np.ndarray) -> np.ndarray:
    """(sum |x|^p)^(1/p) in double: every term is positive, so the sum's relative error
    is at most the rounding bound; the final power scales it by 1/p; pow itself adds a
    few ulps."""
    rel = reduction_atol(F64, n_terms, 1.0) * max(1.0, 1.0 / p) + 8 * np.finfo(F64).eps
    value = np.abs(np.asarray(value, dtype=F64))
    return rel * value + np.finfo(out_dtype).eps * value


def check_lp(case: PoolCase, x: np.ndarray, p: float, *, out=None):
    got = convpool.lp_pool2d(to_layout(x, case.layout), p, out=out, **case.kwargs())
    want = ref.lp_pool2d(x, p, *case.ref_args())
    want64 = ref.lp_pool2d(x.astype(F64), p, *case.ref_args())
    n_terms = case.kernel[0] * case.kernel[1]
    assert_within(from_layout(got, case.layout), want, lp_atol(case.dtype, p, n_terms, want64))
    return got


# ----------------------------------------------------------------------------- max


@given(case=pool_cases(ALL_DTYPES), seed=seeds, kind=st.sampled_from(["normal", "ties", "full"]))
def test_max_pool2d_matches_reference(isa, case, seed, kind):
    check_max(case, case.x(seed, kind))


@given(case=pool_cases(), seed=seeds, nans=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=3),
       infs=st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.sampled_from([np.inf, -np.inf])), max_size=3))
def test_max_pool2d_nan_and_inf(isa, case, seed, nans, infs):
    """NaN propagates with the first NaN's index; infinities are ordinary values."""
    x = case.x(seed, "ties")
    for u, v, *value in infs + nans:
        x[..., int(u * (case.h - 1) + 0.5), int(v * (case.w - 1) + 0.5)] = value[0] if value else np.nan
    check_max(case, x)


def _tile_edge_cases(layout, dtype, width):
    """width x width channels: 3x3/s1/pad 1, and 2x3/s2 where the input is wide enough."""
    geometries = [((3, 3), (1, 1), 1)] + ([((2, 3), (2, 2), 0)] if width >= 3 else [])
    return [
        simple_case(layout, dtype, n=1, c=width, h=4, w=width, kernel=kernel, stride=stride, dilation=(1, 1),
                    padding=pad, ceil_mode=False)
        for kernel, stride, pad in geometries
    ]


# One dtype per element size (1, 2, 4, 8 bytes), signed, unsigned and float.
TILE_DTYPES = tuple(np.dtype(t) for t in (np.int8, np.uint16, np.float32, np.int32, np.float64, np.uint64))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", TILE_DTYPES, ids=str)
@pytest.mark.parametrize("width", SIMD_SIZES + (40, 65))
def test_max_pool2d_tile_edges(isa, layout, dtype, width):
    """Widths around the NCHW interior blocks, channel counts around the NHWC blocks."""
    for case in _tile_edge_cases(layout, dtype, width):
        check_max(case, case.x(width, "full"))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [63, 64, 65, 127, 128, 129, 143, 257])
def test_max_pool2d_nhwc_wide_pixels(isa, dtype, channels):
    """NHWC pixels of 512 bytes or more are reduced one tap sweep at a time (vector
    blocks, then a scalar tail): NaN anywhere in a window wins, -inf is a value,
    windows of 1, 4, 6 and 9 taps, padding and ceil mode."""
    rng = np.random.default_rng(channels)
    for kernel, stride, pad in [((2, 2), (2, 2), 0), ((3, 3), (2, 2), 1), ((1, 1), (1, 1), 0), ((3, 2), (1, 2), (1, 0))]:
        case = simple_case("NHWC", dtype, n=2, c=channels, h=5, w=6, kernel=kernel, stride=stride,
                           dilation=(1, 1), padding=pad, ceil_mode=True)
        x = case.x(channels, "ties")
        flat = x.reshape(-1)
        flat[rng.integers(0, flat.size, 20)] = np.nan
        flat[rng.integers(0, flat.size, 20)] = -np.inf
        flat[rng.integers(0, flat.size, 20)] = np.inf
        check_max(case, x)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("outputs", [1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129, 150])
def test_max_pool2d_nchw_2x2_stride2_rows(isa, dtype, outputs):
    """NCHW 2x2/s2 rows: vector blocks of pair maxima, chunks of up to 8 vectors per
    row pass, an overlapping last block; odd widths, column padding and ceil mode
    (the borders take the per-pixel path). NaN wins, infinities are values, and
    +-0 ties keep the first tap's sign."""
    rng = np.random.default_rng(outputs)
    for width, pad, ceil_mode in [(2 * outputs, 0, False), (2 * outputs + 1, 0, True), (2 * outputs, (0, 1), False),
                                  (2 * outputs + 1, ((0, 1), (1, 0)), True)]:
        case = simple_case("NCHW", dtype, n=1, c=2, h=5, w=width, kernel=(2, 2), stride=(2, 2), dilation=(1, 1),
                           padding=pad, ceil_mode=ceil_mode)
        check_max_signs(case, with_specials(case.x(width, "ties"), rng, 6))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("outputs", [7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 63, 64, 65, 95, 127, 128, 129, 150])
def test_max_pool2d_nchw_3x3_stride2_rows(isa, dtype, outputs):
    """NCHW 3-wide windows at column stride 2 (the ResNet stem pool): rows split
    into even and odd columns, groups of four vectors, an overlapping last vector,
    padding 0 and 1 on the left, any right edge; window heights 2, 3 and 5, row
    strides 1 and 2, row dilation, the top and bottom in the padding. NaN wins (a
    block with one is made again tracking NaN lanes), infinities are values, and
    +-0 ties keep the first tap."""
    rng = np.random.default_rng(outputs)
    for width, pad, kernel_h, stride_h, dilation_h, ceil_mode in [
        (2 * outputs + 1, 0, 3, 2, 1, False),
        (2 * outputs, 1, 3, 2, 1, False),
        (2 * outputs - 1, 1, 3, 1, 1, False),
        (2 * outputs + 2, (1, 0), 2, 2, 1, True),
        (2 * outputs, (0, 1), 3, 2, 1, True),
        (2 * outputs - 1, ((0, 1), (1, 0)), 3, 2, 1, True),
        (2 * outputs, ((2, 2), (1, 1)), 5, 2, 1, False),
        (2 * outputs, 1, 3, 1, 2, False),
    ]:
        case = simple_case("NCHW", dtype, n=1, c=2, h=9, w=width, kernel=(kernel_h, 3), stride=(stride_h, 2),
                           dilation=(dilation_h, 1), padding=pad, ceil_mode=ceil_mode)
        check_max_signs(case, with_specials(case.x(width, "ties"), rng, 4))


@pytest.mark.parametrize("layout,channels", [("NCHW", 3), ("NHWC", 1), ("NHWC", 3), ("NHWC", 17), ("NHWC", 40)])
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("outputs", [1, 2, 7, 8, 9, 15, 16, 17, 31, 33, 56, 65])
def test_max_pool2d_stride1_rows_first(isa, layout, channels, dtype, outputs):
    """Windows at stride 1 along both axes (without indices: each input row's
    column maxima once, in a ring of window-height rows, then the rows' maxima;
    NHWC in bands of output rows): window sizes 2 to 5 and 7 x 2, padding 0 to 3
    on either side (the top and bottom rows and the first and last columns in
    it), ceil mode, planes taller than the ring, NHWC pixels narrower and wider
    than a register. NaN, infinities and +-0 are planted at random: NaN wins and
    ties keep the first tap in row-major order, sign and all."""
    rng = np.random.default_rng(outputs)
    for kernel, pad, h, ceil_mode in [
        ((3, 3), 1, 9, False),
        ((2, 2), 0, 5, False),
        ((2, 3), ((1, 0), (0, 2)), 6, True),
        ((3, 2), ((0, 2), (1, 1)), 11, False),
        ((5, 5), 2, 13, False),
        ((4, 4), ((3, 0), (0, 3)), 8, True),
        ((7, 2), ((3, 3), (1, 0)), 10, False),
        ((3, 3), 2, 4, False),  # the corner windows hold one input value
    ]:
        kh, kw = kernel
        pl, pr = ((pad, pad) if isinstance(pad, int) else pad[1])
        width = outputs - 1 + kw - pl - pr
        if width < 1:
            continue
        case = simple_case(layout, dtype, n=2, c=channels, h=h, w=width, kernel=kernel, stride=(1, 1),
                           dilation=(1, 1), padding=pad, ceil_mode=ceil_mode)
        assert case.out_hw[1] == outputs
        check_max_signs(case, with_specials(case.x(width, "ties"), rng, 2 + width * channels // 4))
        x = case.x(width + 1, "ties")
        x[0, channels // 2, h // 2, rng.integers(0, width)] = np.nan
        with convpool.threads(2):
            got = from_layout(convpool.max_pool2d(to_layout(x, layout), **case.kwargs()), layout)
        assert_identical(got, ref.max_pool2d(x, *case.ref_args()), f"{kernel}, pad {pad}: ")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("outputs", [1, 2, 3, 4, 5, 7, 8, 9, 12, 13, 15, 16, 17])
def test_max_pool2d_nchw_rows_narrower_than_a_register(isa, dtype, outputs):
    """NCHW rows with fewer outputs than a register holds (MNIST's 24 x 24 and
    CIFAR's 16 x 16 planes): half and quarter registers, the last one overlapping,
    after whatever whole registers cover; column strides 1 and 2, window widths 2,
    3 and 4, padding, column dilation and ceil mode. NaN, infinities and +-0 are
    planted at random, and NaN in each column in turn."""
    rng = np.random.default_rng(outputs)
    for width, case in narrow_row_cases(dtype, outputs):
        check_max_signs(case, with_specials(case.x(width, "ties"), rng, 3))
        base = rng.standard_normal((1, 1, 4, width)).astype(dtype)
        for col in range(width):
            x = base.copy()
            x[0, 0, 1, col] = np.nan
            got = convpool.max_pool2d(x, **case.kwargs())
            assert_identical(got, ref.max_pool2d(x, *case.ref_args()), f"width {width}, NaN in column {col}: ")


def planes_of_narrow_rows(dtype):
    """(height, width, NCHW case) for 2x2/s2 pooling whose output rows are narrower
    than a register (made a whole plane at a time, one row per register, with
    AVX-512): every output width up to one past the register, an unused last
    input column and row (odd sizes), ceil mode on even sizes (the same windows),
    and padding after the input that no window reaches (or, with ceil mode, one
    window does: the other paths)."""
    for ow in range(1, 18):
        for extra_w, extra_h, pad_after, ceil_mode in ((0, 0, 0, False), (1, 1, 0, False), (1, 0, 0, False),
                                                       (0, 0, 0, True), (0, 0, 1, False), (0, 0, 1, True)):
            h, w = 2 * (1 + ow % 4) + extra_h, 2 * ow + extra_w
            yield h, w, simple_case("NCHW", dtype, n=3, c=5, h=h, w=w, kernel=(2, 2), stride=(2, 2),
                                    dilation=(1, 1), padding=((0, pad_after), (0, pad_after)), ceil_mode=ceil_mode)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_max_pool2d_2x2_planes_of_narrow_rows(isa, dtype, threads):
    """planes_of_narrow_rows, many planes, values and indices: ties, NaN,
    infinities and +-0 planted at random, and one NaN at each position of a plane
    in turn."""
    rng = np.random.default_rng(7)
    for h, w, case in planes_of_narrow_rows(dtype):
        with convpool.threads(threads):
            check_max_signs(case, with_specials(case.x(w, "ties"), rng, 6))
        if threads == 1:
            base = rng.standard_normal((1, 1, h, w)).astype(dtype)
            for pos in range(h * w):
                x = base.copy()
                x.reshape(-1)[pos] = np.nan
                got, idx = convpool.max_pool2d(x, return_indices=True, **case.kwargs())
                want, want_idx = ref.max_pool2d(x, *case.ref_args(), return_indices=True)
                assert_identical(got, want, f"{h} x {w}, NaN at {pos}: ")
                assert_identical(idx, want_idx, f"{h} x {w}, NaN at {pos}, indices: ")
                alone = convpool.max_pool2d(x, **case.kwargs())
                assert_identical(alone, want, f"{h} x {w}, NaN at {pos}, no indices: ")


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
def test_avg_pool2d_2x2_planes_of_narrow_rows(isa, dtype, threads):
    """planes_of_narrow_rows averaged, with every divisor rule; on inputs whose sums
    are exact, the float64 quotient rounded once, bit for bit; a NaN or an infinity
    reaches only its own window."""
    rng = np.random.default_rng(8)
    for h, w, case in planes_of_narrow_rows(dtype):
        x = case.x(w)
        grid = (rng.integers(-4000, 4000, size=x.shape) / 64.0).astype(dtype)
        with convpool.threads(threads):
            for opts in (dict(), dict(count_include_pad=False), dict(divisor_override=3)):
                check_avg(case, x, **opts)
                got = convpool.avg_pool2d(grid, **opts, **case.kwargs())
                assert_identical(got, ref.avg_pool2d(grid.astype(F64), *case.ref_args(), **opts).astype(dtype))
            specials = grid.copy()
            specials.reshape(-1)[rng.integers(0, grid.size, 4)] = np.nan
            specials.reshape(-1)[rng.integers(0, grid.size, 4)] = np.inf
            got = convpool.avg_pool2d(specials, **case.kwargs())
            assert_identical(got, ref.avg_pool2d(specials.astype(F64), *case.ref_args()).astype(dtype))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("outputs", [3, 4, 6, 9, 16, 21, 40])
def test_max_pool2d_indices_in_vectors(isa, dtype, outputs):
    """Max pooling with indices, in vectors: of outputs in NCHW (whole, half and
    quarter registers, the last overlapping), of channels in NHWC. Each tap takes
    the lanes where it is larger or NaN (unless a NaN came first), index and all.
    NCHW: a NaN, then a tie of two maxima, in each column in turn of a window row;
    NHWC: NaN, infinities and +-0 at random. Column strides 1 and 2, window widths
    2 to 4, column dilation, padding."""
    for kernel, stride, pad, dilation in [(2, 2, 0, 1), (3, 2, 1, 1), (3, 1, 1, 1), (4, 1, 0, 1), (3, 2, 0, 2)]:
        width = (outputs - 1) * stride + (kernel - 1) * dilation + 1 - 2 * pad
        base = np.random.default_rng(width).standard_normal((1, 1, 4, width)).astype(dtype)
        args = ((kernel, kernel), (stride, stride), ((pad, pad), (pad, pad)), (1, dilation))
        for col in range(width):
            for row, value in ((1, np.nan), (0, np.inf)):
                x = base.copy()
                x[0, 0, row, col] = value
                x[0, 0, row + 1, width - 1 - col] = value  # a second NaN, or a tie, later in some window
                got, idx = convpool.max_pool2d(x, kernel, stride, pad, (1, dilation), return_indices=True)
                want, want_idx = ref.max_pool2d(x, *args, return_indices=True)
                assert_identical(got, want, f"width {width}, column {col}, {value}: ")
                assert_identical(idx, want_idx, f"width {width}, column {col}, {value}: indices: ")
        # NHWC: vectors of channels, four or one at a time, then the rest one by one.
        case = simple_case("NHWC", dtype, n=1, c=4 * 16 + 16 + 5, h=4, w=width, kernel=(kernel, kernel),
                           stride=(stride, stride), dilation=(1, dilation), padding=pad, ceil_mode=False)
        check_max_signs(case, with_specials(case.x(width, "ties"), np.random.default_rng(outputs), 40))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("pad", [0, 1])
@pytest.mark.parametrize("outputs", [65, 127, 150])
def test_max_pool2d_nchw_3x3_stride2_nan_in_every_column(isa, dtype, pad, outputs):
    """One NaN, or +inf and -inf together, in each column in turn of a row long
    enough for two groups of vectors (ending in one overlapping vector, or a rest
    of up to four): every window that reads it is NaN (or the infinity that wins),
    whichever vector, group edge or moved-in lane reads it. Even widths with
    padding 0 and ceil mode put the last window's third tap in the padding."""
    for width, ceil_mode in ((2 * outputs + 1 - pad, False), (2 * outputs, pad == 0)):
        base = np.random.default_rng(pad).standard_normal((1, 1, 3, width)).astype(dtype)
        for col in range(width):
            for values in ((np.nan,), (np.inf, -np.inf)):
                x = base.copy()
                x[0, 0, 1, col] = values[0]
                if len(values) > 1:
                    x[0, 0, 0, width - 1 - col] = values[1]
                got = convpool.max_pool2d(x, 3, stride=2, padding=pad, ceil_mode=ceil_mode)
                want = ref.max_pool2d(x, (3, 3), (2, 2), ((pad, pad), (pad, pad)), ceil_mode=ceil_mode)
                assert_identical(got, want, f"width {width}, column {col}, {values}: ")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [3, 129])
def test_max_pool2d_signed_zero_ties_keep_first_tap(isa, layout, dtype, channels):
    """-0.0 and +0.0 compare equal, so a window's result is its first zero, sign and all."""
    x = np.zeros((1, channels, 4, 4), dtype=dtype)
    x[:, :, 0::2, 0::2] = -0.0  # the first tap of every 2x2/s2 window
    x[:, : channels // 2, 0, 0] = 0.0  # some windows start with +0.0 followed by -0.0 elsewhere
    x[:, : channels // 2, 1, 1] = -0.0
    got = from_layout(convpool.max_pool2d(to_layout(x, layout), 2, layout=layout), layout)
    want = ref.max_pool2d(x, (2, 2), (2, 2), ((0, 0), (0, 0)))
    assert np.array_equal(np.signbit(got), np.signbit(want))
    assert np.array_equal(np.signbit(got), np.signbit(x[:, :, 0::2, 0::2]))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
@pytest.mark.parametrize("channels", [63, 64, 65, 257])
def test_max_pool2d_integer_wide_channels(isa, layout, dtype, channels):
    """Channel blocks of 4 vectors: 256 int8 lanes with AVX-512."""
    case = simple_case(layout, dtype, n=1, c=channels, h=3, w=3, kernel=(2, 2), stride=(1, 1),
                       dilation=(1, 1), padding=((1, 0), (0, 1)), ceil_mode=False)
    check_max(case, case.x(channels, "full"))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", INT_DTYPES, ids=str)
@pytest.mark.parametrize("extreme", ["min", "max"])
def test_max_pool2d_integer_extremes(isa, layout, dtype, extreme):
    """A constant plane at the dtype's minimum/maximum: that value, index of the first
    valid tap (padding never wins, even against the minimum)."""
    info = np.iinfo(dtype)
    value = info.min if extreme == "min" else info.max
    x = np.full((1, 2, 3, 4), value, dtype=dtype)
    case = simple_case(layout, dtype, n=1, c=2, h=3, w=4, kernel=(2, 2), stride=(1, 1), dilation=(1, 1),
                       padding=1, ceil_mode=False)
    got, idx = check_max(case, x)
    assert (got == value).all()
    first_row = np.maximum(np.arange(4) - 1, 0)  # window oh covers rows oh-1, oh
    first_col = np.maximum(np.arange(5) - 1, 0)
    expected_idx = first_row[:, None] * 4 + first_col[None, :]
    assert (from_layout(idx, layout) == expected_idx).all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_max_pool2d_ties_go_to_first_tap(isa, layout, dtype):
    """Constant input: every window's first valid tap in row-major order."""
    h, w = 5, 19
    x = np.full((1, 3, h, w), 7, dtype=dtype)
    case = simple_case(layout, dtype, n=1, c=3, h=h, w=w, kernel=(3, 3), stride=(2, 1), dilation=(1, 1),
                       padding=((2, 1), (1, 2)), ceil_mode=False)
    got, idx = check_max(case, x)
    oh, ow = case.out_hw
    first_row = np.clip(np.arange(oh) * 2 - 2, 0, None)
    first_col = np.clip(np.arange(ow) - 1, 0, None)
    expected = np.broadcast_to(first_row[:, None] * w + first_col[None, :], (1, 3, oh, ow))
    assert_identical(from_layout(idx, layout), expected.astype(np.int64))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_max_pool2d_nan_rules_by_hand(isa, layout):
    #            w: 0       1     2       3
    row = [1.0, np.nan, 5.0, np.nan]
    x = np.array(row, dtype=np.float64).reshape(1, 1, 1, 4)
    case = simple_case(layout, np.float64, n=1, c=1, h=1, w=4, kernel=(1, 4), stride=(1, 1), dilation=(1, 1),
                       padding=0, ceil_mode=False)
    got, idx = check_max(case, x)
    assert np.isnan(got).all() and idx.ravel().tolist() == [1]  # two NaNs -> the first
    # A NaN after a larger value, and a larger value after the NaN: still the NaN.
    x = np.array([9.0, np.nan, 10.0], dtype=np.float64).reshape(1, 1, 1, 3)
    got, idx = convpool.max_pool2d(to_layout(x, layout), (1, 3), return_indices=True, layout=layout)
    assert np.isnan(got).all() and idx.ravel().tolist() == [1]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_max_pool2d_all_minus_inf_window(isa, layout, dtype):
    """-inf everywhere, padded windows: -inf with the first *valid* tap's index."""
    x = np.full((1, 1, 2, 3), -np.inf, dtype=dtype)
    got, idx = convpool.max_pool2d(to_layout(x, layout), 2, stride=1, padding=1, return_indices=True, layout=layout)
    got, idx = from_layout(got, layout), from_layout(idx, layout)
    assert np.isneginf(got).all()
    first_row = np.array([0, 0, 1])
    first_col = np.array([0, 0, 1, 2])
    assert_identical(idx[0, 0], (first_row[:, None] * 3 + first_col[None, :]).astype(np.int64))


# ----------------------------------------------------------------------------- empty windows


EMPTY_WINDOW_GEOMETRIES = [
    # H=1, kernel 2, dilation 3, pad 2: taps at -2,1 and -1,2 -- never row 0.
    dict(h=1, w=5, kernel=(2, 1), stride=(1, 1), dilation=(3, 1), padding=((2, 2), (0, 0)), ceil_mode=False),
    # the same along the width, with ceil mode and stride 2
    dict(h=4, w=1, kernel=(1, 2), stride=(1, 2), dilation=(1, 3), padding=((0, 0), (2, 2)), ceil_mode=True),
    # some windows empty, some not: W=2, kernel 2, dilation 3, pad 2
    dict(h=3, w=2, kernel=(1, 2), stride=(1, 1), dilation=(1, 3), padding=((0, 0), (2, 2)), ceil_mode=False),
]


def _empty_mask(case: PoolCase) -> np.ndarray:
    """(oh, ow) windows with no tap inside the input, straight from the definition."""
    (kh, kw), (sh, sw), (dh, dw) = case.kernel, case.strides, case.dilation
    (pt, _), (pl, _) = case.pads
    oh, ow = case.out_hw
    rows = [any(0 <= o * sh - pt + i * dh < case.h for i in range(kh)) for o in range(oh)]
    cols = [any(0 <= o * sw - pl + j * dw < case.w for j in range(kw)) for o in range(ow)]
    return ~(np.array(rows)[:, None] & np.array(cols)[None, :])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geometry", EMPTY_WINDOW_GEOMETRIES)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_empty_windows_max(isa, layout, geometry, dtype):
    case = simple_case(layout, dtype, n=2, c=3, **geometry)
    empty = _empty_mask(case)
    assert empty.any()
    got, idx = check_max(case, case.x(1, "full" if np.dtype(dtype).kind in "iu" else "normal"))
    got, idx = from_layout(got, layout), from_layout(idx, layout)
    lowest = -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min
    assert (got[..., empty] == lowest).all()
    assert (idx[..., empty] == -1).all()
    assert (idx[..., ~empty] >= 0).all()


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geometry", EMPTY_WINDOW_GEOMETRIES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("count_include_pad", [True, False])
def test_empty_windows_avg_and_lp(isa, layout, geometry, dtype, count_include_pad):
    """A window with no valid tap averages to 0 (whatever the divisor) and has Lp norm 0."""
    case = simple_case(layout, dtype, n=2, c=3, **geometry)
    empty = _empty_mask(case)
    x = case.x(2) + 10  # nothing near 0, so a wrong tap shows
    got = from_layout(check_avg(case, x, count_include_pad=count_include_pad), layout)
    assert (got[..., empty] == 0).all() and (got[..., ~empty] != 0).all()
    got = from_layout(check_avg(case, x, divisor_override=3), layout)
    assert (got[..., empty] == 0).all()
    for p in (1.0, 2.0, 0.5):
        got = from_layout(check_lp(case, x, p), layout)
        assert (got[..., empty] == 0).all() and (got[..., ~empty] > 0).all()


# ----------------------------------------------------------------------------- avg


@given(case=pool_cases(), seed=seeds, count_include_pad=st.booleans(),
       divisor_override=st.none() | st.integers(1, 10))
def test_avg_pool2d_matches_reference(isa, case, seed, count_include_pad, divisor_override):
    check_avg(case, case.x(seed), count_include_pad=count_include_pad, divisor_override=divisor_override)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("width", SIMD_SIZES + (40, 65))
def test_avg_pool2d_tile_edges(isa, layout, dtype, width):
    for case in _tile_edge_cases(layout, dtype, width):
        check_avg(case, case.x(width), count_include_pad=False)


# NHWC average pooling reads every input pixel in one sweep over its channels (vector
# blocks, then a scalar tail), and stride-1 windows three columns wide slide along the
# row reusing column sums; NCHW stride-1 rows reuse column sums too.
AVG_SWEEP_CHANNELS = (1, 7, 8, 9, 16, 17, 33, 64, 65)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("channels", AVG_SWEEP_CHANNELS)
def test_avg_pool2d_channel_sweeps(isa, layout, dtype, channels):
    """Windows of 1, 2, 4, 6 and 9 taps over channel counts around every vector block."""
    geometries = [((2, 2), (2, 2), 0), ((3, 3), (2, 2), 1), ((1, 1), (1, 1), 0), ((2, 3), (1, 2), (1, 0)),
                  ((3, 2), (3, 1), ((0, 2), (1, 1)))]
    for kernel, stride, pad in geometries:
        for count_include_pad in (True, False):
            case = simple_case(layout, dtype, n=2, c=channels, h=5, w=6, kernel=kernel, stride=stride,
                               dilation=(1, 1), padding=pad, ceil_mode=True)
            check_avg(case, case.x(channels), count_include_pad=count_include_pad)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("width", (1, 2, 3, 8, 9, 17, 18, 34))
@pytest.mark.parametrize("kernel_h", (1, 3))
def test_avg_pool2d_stride1_width3_windows(isa, layout, dtype, width, kernel_h):
    """Stride-1 windows three columns wide: column paddings none, one side, both, up to
    two (windows centred on the padding), rows of 1-4 taps, all divisor rules, and
    widths around the vector blocks of the NCHW column sums."""
    channels = 9 if layout == "NHWC" else 2
    top = min(1, kernel_h - 1)
    for left, right in ((0, 0), (1, 0), (1, 1), (2, 0), (0, 2)):
        pad = ((top, kernel_h - 1 - top), (left, right))
        case = simple_case(layout, dtype, n=1, c=channels, h=5, w=width, kernel=(kernel_h, 3), stride=(1, 1),
                           dilation=(1, 1), padding=pad, ceil_mode=False)
        if case.out_hw is None or min(case.out_hw) < 1:
            continue
        x = case.x(width + kernel_h)
        check_avg(case, x, count_include_pad=True)
        check_avg(case, x, count_include_pad=False)
        check_avg(case, x, divisor_override=7)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("kernel, padding", [(3, 0), (3, 1), (2, 0), (2, 1)])
def test_avg_pool2d_negative_zeros_average_to_positive_zero(isa, layout, dtype, kernel, padding):
    """A window of -0.0 averages to +0.0, as in the reference (sums start from zero)
    and PyTorch: in whole vector blocks, blocks straddling a border and paired rows."""
    for width in (3, 8, 9, 17, 20, 33):
        x = np.full((2, 3, 6, width), -0.0, dtype=dtype)
        want = ref.avg_pool2d(x, (kernel, kernel), (1, 1), ((padding, padding), (padding, padding)))
        assert not np.signbit(want).any()
        xl = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
        got = convpool.avg_pool2d(xl, kernel, 1, padding, layout=layout)
        assert got.shape == (want.shape if layout == "NCHW" else want.transpose(0, 2, 3, 1).shape)
        assert not np.signbit(got).any(), width


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("outputs", [1, 7, 8, 9, 15, 16, 17, 31, 33, 63, 64, 65, 70])
def test_avg_pool2d_nchw_2x2_stride2_rows(isa, dtype, outputs):
    """NCHW 2x2/s2 rows: pair sums of up to 4 vectors per row pass, an overlapping
    last block, odd widths, column padding, ceil mode and every divisor rule."""
    for width, pad, ceil_mode in [(2 * outputs, 0, False), (2 * outputs + 1, 0, True), (2 * outputs, (0, 1), False),
                                  (2 * outputs + 1, ((1, 0), (1, 0)), True)]:
        case = simple_case("NCHW", dtype, n=1, c=2, h=5, w=width, kernel=(2, 2), stride=(2, 2), dilation=(1, 1),
                           padding=pad, ceil_mode=ceil_mode)
        x = case.x(width)
        check_avg(case, x, count_include_pad=True)
        check_avg(case, x, count_include_pad=False)
        check_avg(case, x, divisor_override=3)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("outputs", [1, 3, 4, 5, 7, 8, 9, 12, 13, 15, 16, 17])
def test_avg_pool2d_nchw_rows_narrower_than_a_register(isa, dtype, outputs):
    """NCHW rows with fewer outputs than a register of floats holds: blocks of one
    register of double sums, the last one overlapping; column strides 1 and 2,
    window widths 2 to 4, padding, column dilation, ceil mode and every divisor
    rule. On inputs whose sums are exact, float32 results are the float64 quotient
    rounded once, bit for bit."""
    rng = np.random.default_rng(outputs)
    for width, case in narrow_row_cases(dtype, outputs):
        x = case.x(width)
        check_avg(case, x, count_include_pad=True)
        check_avg(case, x, count_include_pad=False)
        check_avg(case, x, divisor_override=3)
        grid = (rng.integers(-4000, 4000, size=x.shape) / 64.0).astype(dtype)
        for count_include_pad in (True, False):
            got = convpool.avg_pool2d(grid, count_include_pad=count_include_pad, **case.kwargs())
            want = ref.avg_pool2d(grid.astype(F64), *case.ref_args(), count_include_pad=count_include_pad)
            assert_identical(got, want.astype(dtype), f"width {width}: ")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernel,stride,pad", [((2, 2), (2, 2), 0), ((3, 3), (1, 1), 1), ((3, 3), (2, 2), 1)])
def test_avg_pool2d_float32_rounds_once(isa, layout, kernel, stride, pad):
    """float32 averages are the float64 sum divided in float64 and rounded once. With
    inputs on a coarse binary grid every sum is exact, so the result must be identical
    to the reference's (summed and divided in float64), divisor 4 (a power of two,
    applied as an exact multiplication) or 9."""
    rng = np.random.default_rng(5)
    x = (rng.integers(-4000, 4000, size=(2, 37, 11, 19)) / 64.0).astype(np.float32)
    pads = normalise_padding(pad, (11, 19), kernel, stride, (1, 1))
    for count_include_pad in (True, False):
        got = convpool.avg_pool2d(to_layout(x, layout), kernel, stride, pad, count_include_pad=count_include_pad,
                                  layout=layout)
        want = ref.avg_pool2d(x.astype(F64), kernel, stride, pads, (1, 1), False,
                              count_include_pad=count_include_pad).astype(np.float32)
        assert_identical(from_layout(got, layout), want)


def test_avg_pool2d_divisors_by_hand(isa):
    """3x3 window, stride 2, pad 1 on a 4x4 ones plane, ceil mode (output 3x3):
    sums are the valid-tap counts; divisors per the documented rules."""
    x = np.ones((1, 1, 4, 4))
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    # rows/cols of window o: [2o-1, 2o+1]; valid taps per axis: 2, 3, 1;
    # taps inside the padded extent [-1, 5): 3, 3, 2 (the last window overhangs by one).
    valid = np.array([2, 3, 1])
    padded = np.array([3, 3, 2])
    sums = np.outer(valid, valid)
    assert_identical(convpool.avg_pool2d(x, count_include_pad=False, **kw)[0, 0], sums / np.outer(valid, valid))
    np.testing.assert_allclose(convpool.avg_pool2d(x, count_include_pad=True, **kw)[0, 0],
                               sums / np.outer(padded, padded), rtol=1e-15)
    np.testing.assert_allclose(convpool.avg_pool2d(x, divisor_override=5, **kw)[0, 0], sums / 5, rtol=1e-15)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_avg_pool2d_nan_and_inf_propagate(isa, layout):
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = np.nan
    x[0, 0, 3, 3] = np.inf
    got = from_layout(convpool.avg_pool2d(to_layout(x, layout), 2, layout=layout), layout)[0, 0]
    assert np.isnan(got[0, 0]) and np.isposinf(got[1, 1]) and (got[[0, 1], [1, 0]] == 0).all()


# ----------------------------------------------------------------------------- lp


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5, 1.5])
@examples(0.3)
@given(case=pool_cases(), seed=seeds)
def test_lp_pool2d_matches_reference(isa, p, case, seed):
    check_lp(case, case.x(seed), p)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("p", [1, 2, 3, 0.5])
def test_lp_pool2d_uses_absolute_values(isa, layout, p):
    x = -np.arange(1.0, 5.0).reshape(1, 1, 2, 2)
    got = convpool.lp_pool2d(to_layout(x, layout), p, 2, layout=layout).item()
    np.testing.assert_allclose(got, (np.sum(np.abs(x) ** p)) ** (1 / p), rtol=1e-14)


# ----------------------------------------------------------------------------- ceil mode


CEIL_GEOMETRIES = [
    # (in, kernel, stride, dilation, pads): the last window overhangs the input and
    # starts in the trailing padding or the input; windows starting in leading padding.
    (5, 3, 2, 1, (1, 1)),
    (4, 3, 3, 1, (2, 0)),
    (6, 2, 4, 1, (1, 1)),
    (2, 3, 3, 1, (2, 2)),
    (7, 2, 3, 2, (2, 1)),
    (1, 3, 2, 1, (2, 2)),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("geom", CEIL_GEOMETRIES, ids=str)
def test_ceil_mode_geometries(isa, layout, geom):
    size, k, s, d, pads = geom
    case = simple_case(layout, np.float64, n=1, c=2, h=size, w=size + 1, kernel=(k, k), stride=(s, s),
                       dilation=(d, d), padding=(pads, pads), ceil_mode=True)
    x = case.x(3)
    check_max(case, x)
    for cip in (True, False):
        check_avg(case, x, count_include_pad=cip)
    check_lp(case, x, 2.0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [(1, 2, 2, (0, 0)), (3, 4, 2, (0, 0)), (2, 3, 2, (0, 0)), (1, 3, 4, (0, 0)), (1, 4, 3, (1, 1))],
    ids=str,
)
def test_ceil_mode_window_larger_than_padded_input(isa, layout, size, kernel, stride, pads):
    """In ceil mode the output size is floor((in + pads - extent + stride - 1) / stride) + 1,
    which is 1 here although the window is larger than the padded input: the window
    starts inside the input and overhangs its end (PyTorch and the reference agree)."""
    case = simple_case(layout, np.float64, n=1, c=2, h=size, w=size + 2, kernel=(kernel, kernel),
                       stride=(stride, stride), dilation=(1, 1), padding=(pads, pads), ceil_mode=True)
    assert case.out_hw is not None and case.out_hw[0] == 1
    assert _padded_smaller_than_extent(case)
    x = case.x(12)
    check_max(case, x)
    check_avg(case, x, count_include_pad=False)
    check_avg(case, x, count_include_pad=True)
    check_lp(case, x, 2.0)


_GUARDED_POOL_SCRIPT = """
import sys
import numpy as np
import convpool
from convpool import _core

_core.set_isa(sys.argv[1])
x = np.ones((1, 1, 3, 1))
# kernel 5, "same" padding 2 on a width of 1: one output column, two windows'
# worth of leading padding.
for fn, kwargs in [
    (convpool.max_pool2d, {}),
    (convpool.avg_pool2d, {}),
    (convpool.lp_pool2d, {"norm_type": 2.0}),
]:
    buf = np.full(3 + 64, -12345.0)
    out = buf[:3].reshape(1, 1, 3, 1)  # C-contiguous, followed by guard values
    fn(x, kernel_size=5, stride=1, padding="same", out=out, **kwargs)
    assert (buf[3:] == -12345.0).all(), f"{fn.__name__} wrote past the end of out: {buf[3:6]}"
print("ok")
"""


def test_nchw_leading_padding_wider_than_output_in_subprocess(isa):
    """5x5 pooling with padding 2 ("same") of an image one pixel wide, NCHW: nothing may be
    written outside ``out`` (run in a subprocess: an out-of-bounds access may crash)."""
    proc = subprocess.run([sys.executable, "-c", _GUARDED_POOL_SCRIPT, isa], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONFAULTHANDLER": "0"})
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", (
        f"exit code {proc.returncode}\nstdout: {proc.stdout}\nstderr: {proc.stderr[-2000:]}"
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_leading_padding_wider_than_output_values(isa, layout):
    """The same geometry's values: every window starts in the padding."""
    case = simple_case(layout, np.float64, n=1, c=2, h=3, w=1, kernel=(5, 5), stride=(1, 1), dilation=(1, 1),
                       padding="same", ceil_mode=False)
    x = case.x(13)
    check_max(case, x)
    check_avg(case, x)
    check_lp(case, x, 2.0)


# ----------------------------------------------------------------------------- adaptive / global


@st.composite
def adaptive_cases(draw, dtypes=FLOAT_DTYPES):
    h, w = draw(st.integers(1, 9)), draw(st.sampled_from(SIMD_SIZES + (2, 3)))
    size = st.integers(1, 12)
    output_size = draw(
        size | st.tuples(size | st.none(), size | st.none())
    )
    case = simple_case(draw(st.sampled_from(LAYOUTS)), draw(st.sampled_from(dtypes)),
                       n=draw(st.integers(1, 2)), c=draw(st.sampled_from(SIMD_SIZES)), h=h, w=w)
    if isinstance(output_size, int):
        out_hw = (output_size, output_size)
    else:
        out_hw = tuple(in_size if o is None else o for o, in_size in zip(output_size, (h, w)))
    return case, output_size, out_hw


@given(args=adaptive_cases(ALL_DTYPES), seed=seeds, kind=st.sampled_from(["normal", "ties", "full"]))
def test_adaptive_max_pool2d_matches_reference(isa, args, seed, kind):
    case, output_size, out_hw = args
    x = case.x(seed, kind)
    got, idx = convpool.adaptive_max_pool2d(to_layout(x, case.layout), output_size, return_indices=True,
                                            layout=case.layout)
    want, want_idx = ref.adaptive_max_pool2d(x, out_hw, return_indices=True)
    assert_identical(from_layout(got, case.layout), want)
    assert_identical(from_layout(idx, case.layout), want_idx)
    assert_identical(convpool.adaptive_max_pool2d(to_layout(x, case.layout), output_size, layout=case.layout), got)


@given(args=adaptive_cases(), seed=seeds)
def test_adaptive_avg_pool2d_matches_reference(isa, args, seed):
    case, output_size, out_hw = args
    x = case.x(seed)
    got = convpool.adaptive_avg_pool2d(to_layout(x, case.layout), output_size, layout=case.layout)
    want = ref.adaptive_avg_pool2d(x, out_hw)
    magnitude = ref.adaptive_avg_pool2d(np.abs(x).astype(F64), out_hw)
    # an adaptive window spans at most ceil(In / Out) + 1 elements per axis
    n_terms = (math.ceil(case.h / out_hw[0]) + 1) * (math.ceil(case.w / out_hw[1]) + 1)
    assert_within(from_layout(got, case.layout), want, reduction_atol(case.dtype, n_terms, magnitude, F64))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_adaptive_output_larger_than_input(isa, layout):
    """Out > In: windows overlap and repeat input elements."""
    x = np.arange(6, dtype=np.float64).reshape(1, 1, 2, 3)
    got, idx = convpool.adaptive_max_pool2d(to_layout(x, layout), (4, 5), return_indices=True, layout=layout)
    # rows: [floor(o*2/4), ceil((o+1)*2/4)) -> {0},{0},{1},{1}; cols: {0},{0,1},{1},{1,2},{2}
    row = np.array([0, 0, 1, 1])[:, None]
    col = np.array([0, 1, 1, 2, 2])[None, :]  # last (largest) column of each window
    assert_identical(from_layout(idx, layout)[0, 0], (row * 3 + col).astype(np.int64))
    avg = from_layout(convpool.adaptive_avg_pool2d(to_layout(x, layout), (4, 5), layout=layout), layout)
    col_mean = np.array([0, 0.5, 1, 1.5, 2])[None, :]
    np.testing.assert_allclose(avg[0, 0], row * 3 + col_mean, rtol=1e-15)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", ALL_DTYPES, ids=str)
def test_global_pools(isa, layout, dtype):
    case = simple_case(layout, dtype, n=2, c=17, h=5, w=33)
    x = case.x(4, "full" if np.dtype(dtype).kind in "iu" else "normal")
    x_in = to_layout(x, layout)
    got = convpool.global_max_pool2d(x_in, layout=layout)
    assert got.shape == ((2, 1, 1, 17) if layout == "NHWC" else (2, 17, 1, 1))
    assert_identical(from_layout(got, layout), ref.global_max_pool2d(x))
    if np.dtype(dtype).kind == "f":
        got = convpool.global_avg_pool2d(x_in, layout=layout)
        magnitude = ref.global_avg_pool2d(np.abs(x).astype(F64))
        assert_within(from_layout(got, layout), ref.global_avg_pool2d(x),
                      reduction_atol(dtype, 5 * 33, magnitude, F64))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("h,w", [(1, 4), (1, 15), (2, 8), (3, 7), (1, 33), (4, 16), (5, 13), (7, 7), (8, 17),
                                 (11, 40), (14, 14), (22, 22), (3, 130)])
def test_nchw_global_and_adaptive_windows_in_vector_runs(isa, dtype, h, w):
    """NCHW global windows (one run over the whole plane) and long adaptive windows
    (a run per window row) are reduced in registers: runs around the vector widths
    and their multiples, a short last part. Max: NaN wins wherever it is, a zero
    maximum keeps the sign of the first zero; sums (avg, Lp with p = 1, 2) are
    exact where every partial sum is: the result is the float64 sum divided once."""
    rng = np.random.default_rng(h * 1000 + w)
    x = with_specials(rng.standard_normal((2, 3, h, w)).astype(dtype), rng, 2)
    zeros = np.zeros((2, 3, h, w), dtype=dtype)
    zeros[rng.random(zeros.shape) < 0.5] = -0.0  # maxima of +-0: the first zero's sign,
    zeros[1, :, 0, : min(w, 3)] = -1.0  # which is not always in a vector's first lane
    zeros[0, 0] = -np.arange(h * w, dtype=dtype).reshape(h, w)  # one plane starting -0.0, 0, -1, ...
    grid = (rng.integers(-4000, 4000, size=(2, 3, h, w)) / 64.0).astype(dtype)
    adaptive = [(1, 1), (2, 1), (1, 2), (3, 2)]
    for data in (x, zeros, grid):
        got = convpool.global_max_pool2d(data)
        want = ref.global_max_pool2d(data)
        assert_identical(got, want)
        assert np.array_equal(np.signbit(got), np.signbit(want))
        for out_hw in adaptive:
            got = convpool.adaptive_max_pool2d(data, out_hw)
            want = ref.adaptive_max_pool2d(data, out_hw)
            assert_identical(got, want, f"adaptive max {out_hw}: ")
            numbers = ~np.isnan(want)
            assert np.array_equal(np.signbit(got)[numbers], np.signbit(want)[numbers])
    # Sums: float64 sums of these values are exact, so each result is correctly rounded.
    assert_identical(convpool.global_avg_pool2d(grid), ref.global_avg_pool2d(grid.astype(F64)).astype(dtype))
    for out_hw in adaptive:
        assert_identical(convpool.adaptive_avg_pool2d(grid, out_hw),
                         ref.adaptive_avg_pool2d(grid.astype(F64), out_hw).astype(dtype), f"adaptive avg {out_hw}: ")
    for p in (1.0, 2.0):  # p = 2: the square root of the exact sum
        assert_identical(convpool.lp_pool2d(grid, p, (h, w)),
                         ref.lp_pool2d(grid.astype(F64), p, (h, w), (h, w), ((0, 0), (0, 0))).astype(dtype))
    # NaN and infinities propagate through the sums.
    got = convpool.global_avg_pool2d(x)
    want = ref.global_avg_pool2d(x)
    assert np.array_equal(np.isnan(got), np.isnan(want))
    assert np.array_equal(np.isinf(got), np.isinf(want))


# ----------------------------------------------------------------------------- documented examples
# Expected values are the worked examples of docs/semantics.md.


def _plane(values, dtype=np.float64):
    return np.array(values, dtype=dtype)[None, None]


def _run(fn, x, layout, *args, **kwargs):
    result = fn(to_layout(x, layout), *args, layout=layout, **kwargs)
    if isinstance(result, tuple):
        return tuple(from_layout(r, layout)[0, 0] for r in result)
    return from_layout(result, layout)[0, 0]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_semantics_examples_max(isa, layout):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    values, idx = _run(convpool.max_pool2d, x, layout, 2, padding=1, ceil_mode=True, return_indices=True)
    expected = np.array([[0, 2, 3], [8, 10, 11], [12, 14, 15]])
    assert_identical(values, expected.astype(np.float64))
    assert_identical(idx, expected.astype(np.int64))

    x = _plane([[1, np.nan, 5, np.nan], [np.nan, 0, 9, 2]])
    values, idx = _run(convpool.max_pool2d, x, layout, 2, return_indices=True)
    assert np.isnan(values).all() and idx.tolist() == [[1, 3]]

    # in = 2, k = 2, d = 3, pads (2, 2), s = 1: the middle window reads -1 and 2.
    x = _plane([[4.0, -7.0]])
    values, idx = _run(convpool.max_pool2d, x, layout, (1, 2), stride=1, dilation=(1, 3),
                       padding=((0, 0), (2, 2)), return_indices=True)
    assert values.tolist() == [[-7.0, -np.inf, 4.0]] and idx.tolist() == [[1, -1, 0]]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_semantics_examples_avg(isa, layout):
    x = _plane([[1.0, 2.0, 3.0, 4.0]])
    kw = dict(kernel_size=(1, 2), stride=(1, 2), padding=((0, 0), (1, 1)))
    assert _run(convpool.avg_pool2d, x, layout, count_include_pad=True, **kw).tolist() == [[0.5, 2.5, 2.0]]
    assert _run(convpool.avg_pool2d, x, layout, count_include_pad=False, **kw).tolist() == [[1.0, 2.5, 4.0]]

    x = _plane([[1.0, 2.0, 3.0, 4.0, 5.0]])
    for cip in (True, False):
        got = _run(convpool.avg_pool2d, x, layout, (1, 2), ceil_mode=True, count_include_pad=cip)
        assert got.tolist() == [[1.5, 3.5, 5.0]]

    x = np.arange(16.0).reshape(1, 1, 4, 4)
    kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True)
    assert _run(convpool.avg_pool2d, x, layout, count_include_pad=True, **kw)[2, 2] == 3.75
    assert _run(convpool.avg_pool2d, x, layout, count_include_pad=False, **kw)[2, 2] == 15.0


@pytest.mark.parametrize("layout", LAYOUTS)
def test_semantics_examples_lp(isa, layout):
    assert _run(convpool.lp_pool2d, _plane([[3.0, -4.0], [0.0, 0.0]]), layout, 2, 2).item() == 5.0
    assert _run(convpool.lp_pool2d, _plane([[1.0, -2.0], [3.0, -4.0]]), layout, 1, 2).item() == 10.0
    x = np.arange(25.0).reshape(1, 1, 5, 5)
    assert _run(convpool.lp_pool2d, x, layout, 2, 2, ceil_mode=True)[2, 2] == 24.0


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", [np.float64, np.int16], ids=str)
def test_semantics_examples_adaptive(isa, layout, dtype):
    x = _plane([[0, 1, 2, 3, 4]], dtype)
    values, idx = _run(convpool.adaptive_max_pool2d, x, layout, (1, 3), return_indices=True)
    assert values.tolist() == [[1, 3, 4]] and idx.tolist() == [[1, 3, 4]]
    if np.dtype(dtype).kind == "f":
        assert _run(convpool.adaptive_avg_pool2d, x, layout, (1, 3)).tolist() == [[0.5, 2.0, 3.5]]
        # In = 2, Out = 3: windows [0, 1), [0, 2), [1, 2); None keeps the height.
        got = _run(convpool.adaptive_avg_pool2d, _plane([[2.0, 4.0]]), layout, (None, 3))
        assert got.tolist() == [[2.0, 3.0, 4.0]]


# ----------------------------------------------------------------------------- input forms, out=, empty, threads


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("form", INPUT_FORMS)
def test_pool_input_forms(isa, layout, form):
    case = simple_case(layout, np.float32)
    x = case.x(5)
    make = INPUT_FORMS[form]
    check_max(case, x, x_transform=make)
    check_avg(case, x, count_include_pad=False, x_transform=make)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pool_out_is_written_and_returned(isa, layout):
    case = simple_case(layout, np.float64)
    x = case.x(6)
    out = np.full(case.out_shape(), np.nan)
    assert check_avg(case, x, out=out) is out
    out = np.full(case.out_shape(), np.nan)
    assert check_lp(case, x, 3.0, out=out) is out
    values = np.full(case.out_shape(), np.nan)
    indices = np.full(case.out_shape(), -7, dtype=np.int64)
    got, idx = check_max(case, x, out=(values, indices))
    assert got is values and idx is indices
    values = np.full(case.out_shape(), np.nan)
    assert convpool.max_pool2d(to_layout(x, layout), out=values, **case.kwargs()) is values
    assert_identical(values, got)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pool_out_aliasing_input(isa, layout):
    """3x3/stride 1/pad 1 keeps the shape, so out can be x itself; and out can overlap x
    at an offset. The result must be as if computed from the untouched input."""
    case = simple_case(layout, np.float64, n=1, c=3, h=6, w=9, kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
                       padding=1, ceil_mode=False)
    x = case.x(7)
    buf = to_layout(x, layout)
    assert convpool.avg_pool2d(buf, out=buf, **case.kwargs()) is buf
    want = ref.avg_pool2d(x, *case.ref_args())
    np.testing.assert_allclose(from_layout(buf, layout), want, rtol=1e-13, atol=1e-15)

    buf = to_layout(x, layout)
    values, indices = convpool.max_pool2d(buf, out=(buf, None), return_indices=True, **case.kwargs())
    assert values is buf
    want, want_idx = ref.max_pool2d(x, *case.ref_args(), return_indices=True)
    assert_identical(from_layout(values, layout), want)
    assert_identical(from_layout(indices, layout), want_idx)

    buf = to_layout(x, layout)
    small = simple_case(layout, np.float64, n=1, c=3, h=6, w=9, kernel=(2, 2), stride=(2, 2), dilation=(1, 1),
                        padding=0, ceil_mode=False)
    out = buf.reshape(-1)[4 : 4 + int(np.prod(small.out_shape()))].reshape(small.out_shape())
    assert convpool.max_pool2d(buf, out=out, **small.kwargs()) is out
    assert_identical(from_layout(out, layout), ref.max_pool2d(x, *small.ref_args()))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("n", "c"), [(0, 3), (2, 0), (0, 0)])
def test_pool_empty_batch_or_channels(isa, layout, n, c):
    case = simple_case(layout, np.float32, n=n, c=c)
    x = case.x(8)
    got, idx = check_max(case, x)
    assert got.shape == idx.shape == case.out_shape()
    assert check_avg(case, x).shape == case.out_shape()
    assert check_lp(case, x, 2.0).shape == case.out_shape()
    x_in = to_layout(x, layout)
    out_hw = (3, 4)
    expected = (n, 3, 4, c) if layout == "NHWC" else (n, c, 3, 4)
    assert convpool.adaptive_avg_pool2d(x_in, out_hw, layout=layout).shape == expected
    assert convpool.adaptive_max_pool2d(x_in, out_hw, layout=layout).shape == expected
    assert convpool.global_max_pool2d(x_in, layout=layout).shape == ((n, 1, 1, c) if layout == "NHWC" else (n, c, 1, 1))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pool_same_result_for_1_and_2_threads(isa, layout):
    case = simple_case(layout, np.float32, n=3, c=17, h=9, w=33)
    x_in = to_layout(case.x(9), layout)
    calls = {
        "max": lambda: convpool.max_pool2d(x_in, return_indices=True, **case.kwargs()),
        "avg": lambda: convpool.avg_pool2d(x_in, **case.kwargs()),
        "lp": lambda: convpool.lp_pool2d(x_in, 3, **case.kwargs()),
        "adaptive_avg": lambda: convpool.adaptive_avg_pool2d(x_in, (4, 5), layout=layout),
        "adaptive_max": lambda: convpool.adaptive_max_pool2d(x_in, (4, 5), return_indices=True, layout=layout),
    }
    for name, call in calls.items():
        with convpool.threads(1):
            one = call()
        with convpool.threads(2):
            two = call()
        one, two = (one if isinstance(one, tuple) else (one,)), (two if isinstance(two, tuple) else (two,))
        for a, b in zip(one, two):
            assert_identical(b, a, f"{name}: ")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("kernel,stride,padding", [(2, 2, 0), (3, 1, 1), (3, 2, 1), (3, 1, 0)])
def test_avg_pool_of_negative_zeros_is_positive_zero(isa, layout, dtype, kernel, stride, padding):
    """A sum starts from +0.0 (reference, PyTorch): windows of -0.0 average to +0.0."""
    shape = (2, 3, 7, 37) if layout == "NCHW" else (2, 7, 37, 3)
    got = convpool.avg_pool2d(np.full(shape, -0.0, dtype=dtype), kernel, stride, padding, layout=layout)
    assert np.all(got == 0) and not np.any(np.signbit(got))
