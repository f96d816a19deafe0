"""Backward passes (``convpool.*_backward``), checked three independent ways.

1. Against the scatter references ``convpool.reference.*_backward`` (hypothesis, every
   ISA, both layouts, float32/float64, 1 and 2 threads), within the rounding-error
   bounds of ``conftest.reduction_atol``. The compiled kernels gather, the references
   scatter, so a wrong stride phase, tap or divisor shows up as an O(1) error.
2. Against central finite differences (float64) of ``L = sum(forward(x) * g)``, with
   convpool's own forward: the backward must be the derivative of the forward.
3. Against PyTorch autograd where PyTorch supports the case (``@pytest.mark.torch``).

Then bad inputs: out-of-range indices, mismatched grad_out, bad input_shape.
"""

from __future__ import annotations

import contextlib
import math
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
    LAYOUTS,
    SIMD_SIZES,
    TOL_C,
    assert_identical,
    assert_within,
    cache_resident_bytes,
    eps,
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

# Channel counts around every SIMD width / register tile.
CHANNELS = (1, 7, 8, 9, 15, 16, 17, 33)
WIDTHS = SIMD_SIZES + (2, 3, 4, 5)
THREADS = st.sampled_from((1, 2))
F64 = np.dtype(np.float64)


def abs64(a: np.ndarray) -> np.ndarray:
    return np.abs(np.asarray(a, dtype=np.float64))


# ============================================================================= conv2d


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
    dtype: np.dtype
    layout: str

    @property
    def pads(self):
        return normalise_padding(self.padding, (self.h, self.w), self.kernel, self.stride, self.dilation)

    @property
    def out_hw(self):
        return output_hw((self.h, self.w), self.kernel, self.stride, self.dilation, self.pads)

    def arrays(self, seed: int):
        """NCHW x, weight, bias and an upstream gradient of the output's NCHW shape."""
        rng = np.random.default_rng(seed)
        x = random_array(rng, (self.n, self.c, self.h, self.w), self.dtype)
        weight = random_array(rng, (self.k, self.c // self.groups) + self.kernel, self.dtype)
        bias = random_array(rng, (self.k,), self.dtype)
        gy = random_array(rng, (self.n, self.k) + self.out_hw, self.dtype)
        return x, weight, bias, gy

    def kwargs(self):
        return dict(
            stride=pair_arg(self.stride), padding=self.padding, dilation=pair_arg(self.dilation),
            groups=self.groups, layout=self.layout,
        )

    def ref_args(self):
        return (self.stride, self.pads, self.dilation, self.groups)


paddings = st.one_of(
    st.sampled_from(["valid", "same", "same_lower"]),
    st.integers(0, 3),
    st.tuples(st.integers(0, 3), st.integers(0, 3)),
    st.tuples(st.tuples(st.integers(0, 3), st.integers(0, 3)), st.tuples(st.integers(0, 3), st.integers(0, 3))),
)


@st.composite
def conv_cases(draw, dtype=None, small=False) -> ConvCase:
    mode = draw(st.sampled_from(["dense", "grouped", "depthwise"]))
    sizes = (1, 2, 3, 4) if small else CHANNELS
    if mode == "dense":
        groups, c, k = 1, draw(st.sampled_from(sizes)), draw(st.sampled_from(sizes))
    elif mode == "grouped":
        groups = draw(st.integers(2, 3))
        c = groups * draw(st.integers(1, 2 if small else 9))
        k = groups * draw(st.sampled_from((1, 2) if small else (1, 2, 7, 8, 9, 16, 17)))
    else:  # depthwise, channel multiplier 1 or 2
        c = draw(st.sampled_from(sizes))
        groups, k = c, c * draw(st.sampled_from((1, 2)))
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    case = ConvCase(
        n=draw(st.integers(1, 2 if small else 3)),
        c=c,
        k=k,
        h=draw(st.integers(1, 6 if small else 9)),
        w=draw(st.integers(1, 6) if small else st.sampled_from(WIDTHS)),
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=draw(paddings),
        groups=groups,
        dtype=draw(st.sampled_from(FLOAT_DTYPES)) if dtype is None else np.dtype(dtype),
        layout=draw(st.sampled_from(LAYOUTS)),
    )
    assume(case.out_hw is not None)
    return case


def conv_grads(case: ConvCase, x, weight, gy, flags=(True, True, True), transform=None):
    """convpool.conv2d_backward on NCHW arrays, results back in NCHW."""
    t = transform or (lambda a: a)
    gx, gw, gb = convpool.conv2d_backward(
        t(to_layout(gy, case.layout)), t(to_layout(x, case.layout)), t(weight),
        input_grad=flags[0], weight_grad=flags[1], bias_grad=flags[2], **case.kwargs(),
    )
    return (None if gx is None else from_layout(gx, case.layout)), gw, gb


def check_conv_backward(case: ConvCase, seed: int, flags=(True, True, True), transform=None) -> None:
    x, weight, _, gy = case.arrays(seed)
    got = conv_grads(case, x, weight, gy, flags, transform)
    want = ref.conv2d_backward(gy, x, weight, *case.ref_args())
    magnitude = ref.conv2d_backward(abs64(gy), abs64(x), abs64(weight), *case.ref_args())
    oh, ow = case.out_hw
    n_terms = (
        (case.k // case.groups) * case.kernel[0] * case.kernel[1],  # grad_x[n, c, ih, iw]
        case.n * oh * ow,  # grad_w[k, c, i, j]
        case.n * oh * ow,  # grad_b[k]
    )
    for name, flag, g, w, m, n in zip(("grad_x", "grad_w", "grad_b"), flags, got, want, magnitude, n_terms):
        if not flag:
            assert g is None, f"{name} was not asked for"
            continue
        assert g is not None, f"{name} missing"
        assert_within(g, w, reduction_atol(case.dtype, n, m), f"{name}: ")


@examples(0.3)
@given(case=conv_cases(), threads=THREADS, seed=seeds)
def test_conv2d_backward_matches_reference(isa, case, threads, seed):
    with convpool.threads(threads):
        check_conv_backward(case, seed)


@examples(0.15)
@given(
    case=conv_cases(),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
    seed=seeds,
)
def test_conv2d_backward_flags(isa, case, flags, seed):
    """input_grad / weight_grad / bias_grad in every combination (bias alone has its own path)."""
    check_conv_backward(case, seed, flags)


def sweep_dtype(c: int, layout: str) -> np.dtype:
    """Alternate the dtype over the channel sweeps (each layout sees both dtypes; the
    hypothesis tests cover every combination): halves their cost."""
    return FLOAT_DTYPES[(CHANNELS.index(c) + LAYOUTS.index(layout)) % 2]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c", CHANNELS)
def test_conv2d_backward_stride_phases(isa, layout, c):
    """Every stride phase of the input gradient: strides 2 and 3 with dilated and undilated
    3x3 / 2x3 kernels, "same" and asymmetric padding, dense and depthwise, at every
    channel count around the SIMD widths."""
    dtype = sweep_dtype(c, layout)
    for stride, dilation, kernel, padding, groups in (
        ((2, 2), (1, 1), (3, 3), "same", 1),
        ((3, 2), (2, 1), (2, 3), ((2, 0), (1, 3)), 1),
        ((2, 3), (1, 2), (3, 3), "same_lower", c),
        ((3, 3), (1, 1), (3, 2), 1, c),
    ):
        case = ConvCase(
            n=2, c=c, k=c if groups == c else 9, h=10, w=c + 4, kernel=kernel, stride=stride,
            dilation=dilation, padding=padding, groups=groups, dtype=np.dtype(dtype), layout=layout,
        )
        check_conv_backward(case, seed=c)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_backward_filter_layouts(isa, layout):
    """The weight layouts the backward pass builds from (K, C/groups, kh, kw): each
    stride phase's packed weights (transposed and flipped, packed straight from the
    weight for the dense kernels' wide and narrow tiles, through a copy for the
    others), and the weight gradient unpacked from its sums (filters in blocks of
    lanes, the rest one at a time). Channel counts that fill wide and narrow tiles
    and leave them partly filled, filters shorter and longer than a register,
    phases with different tap counts, phases no tap reaches, groups, dilation."""
    for i, (c, k, groups, kernel, stride, dilation, padding) in enumerate((
        (40, 20, 1, (3, 2), (2, 3), (1, 2), ((1, 0), (2, 1))),
        (24, 34, 2, (3, 3), (2, 2), (1, 1), 1),
        (2, 17, 1, (3, 3), (2, 1), (1, 1), "same"),
        (1, 9, 1, (2, 3), (2, 2), (2, 1), 1),
        (33, 5, 1, (1, 1), (2, 2), (1, 1), 0),
        (3, 16, 1, (1, 1), (1, 1), (1, 1), 0),
        (18, 33, 1, (3, 3), (3, 2), (1, 1), ((2, 2), (0, 1))),
    )):
        for dtype in FLOAT_DTYPES:
            case = ConvCase(n=2, c=c, k=k, h=8, w=11, kernel=kernel, stride=stride, dilation=dilation,
                            padding=padding, groups=groups, dtype=dtype, layout=layout)
            check_conv_backward(case, seed=i, flags=(True, True, False))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_backward_weight_row_bands(isa, layout, threads):
    """The weight gradient's tiles go over bands of output rows whose output
    gradient and input rows fit in a 32nd of cache_resident_bytes(). With the bound
    at 0 every band is one row: the results match the reference, and the one-band
    pass bit for bit (each tile's sums are stored and reloaded between bands, the
    same additions in the same order). Strides, padding, dilation, groups, tiles
    within one tap and across taps."""
    for i, (c, k, groups, kernel, stride, dilation, padding) in enumerate((
        (24, 40, 1, (3, 3), (1, 1), (1, 1), "same"),
        (16, 33, 1, (3, 3), (2, 2), (1, 1), 1),
        (18, 34, 2, (3, 2), (2, 1), (1, 2), ((1, 0), (2, 1))),
        (3, 20, 1, (3, 3), (1, 1), (1, 1), 0),
    )):
        case = ConvCase(n=2, c=c, k=k, h=9, w=13, kernel=kernel, stride=stride, dilation=dilation,
                        padding=padding, groups=groups, dtype=FLOAT_DTYPES[i % 2], layout=layout)
        x, weight, _, gy = case.arrays(seed=i)
        with convpool.threads(threads):
            whole = conv_grads(case, x, weight, gy, (False, True, True))
            with cache_resident_bytes(0):
                rows = conv_grads(case, x, weight, gy, (False, True, True))
                check_conv_backward(case, seed=i, flags=(False, True, True))
        assert_identical(rows[1], whole[1])
        assert_identical(rows[2], whole[2])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_backward_input_wide_pitch(isa, layout):
    """Input gradients whose output gradient has 512 float32 (256 float64) channels
    per group: the forward kernels stage its columns a cache line apart (see
    test_conv2d_wide_column_pitch), at stride 1 and per stride phase."""
    for i, (dtype, kernel, stride, padding) in enumerate((
        (np.float32, (3, 3), (1, 1), 1),
        (np.float64, (3, 3), (2, 2), 1),
        (np.float32, (1, 1), (2, 2), 0),
    )):
        k = 2048 // np.dtype(dtype).itemsize
        case = ConvCase(n=2, c=12, k=k, h=6, w=17, kernel=kernel, stride=stride, dilation=(1, 1),
                        padding=padding, groups=1, dtype=dtype, layout=layout)
        with convpool.threads(1 + i % 2):
            check_conv_backward(case, seed=i, flags=(True, False, False))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_backward_input_image_chunks(isa, layout, threads):
    """Input gradients with column phases (NCHW, and NHWC pixels narrower than a cache
    line) run the phases a chunk of images at a time; a chunk's grad_x fits in an
    eighth of cache_resident_bytes(), at least one image. With the bound at 0 every
    image is a chunk of its own: the results match the reference, and the whole-batch
    pass bit for bit (each phase sums the same terms in the same order either way).
    Strides 2 and 3 along columns, a phase no tap reaches, groups, dilation."""
    for i, (c, k, groups, kernel, stride, dilation, padding) in enumerate((
        (16, 40, 1, (3, 3), (2, 2), (1, 1), "same"),
        (3, 8, 1, (3, 3), (1, 2), (1, 1), 1),
        (9, 17, 1, (2, 3), (3, 3), (1, 2), ((1, 0), (2, 1))),
        (8, 16, 4, (3, 3), (2, 2), (1, 1), 1),
        (33, 33, 33, (3, 3), (2, 2), (1, 1), "same"),
        (5, 7, 1, (1, 1), (2, 3), (1, 1), 0),  # columns 3j + 1, 3j + 2: no tap
    )):
        case = ConvCase(n=3, c=c, k=k, h=9, w=13, kernel=kernel, stride=stride, dilation=dilation,
                        padding=padding, groups=groups, dtype=FLOAT_DTYPES[i % 2], layout=layout)
        x, weight, _, gy = case.arrays(seed=i)
        with convpool.threads(threads):
            whole = conv_grads(case, x, weight, gy, (True, False, False))[0]
            with cache_resident_bytes(0):
                chunked = conv_grads(case, x, weight, gy, (True, False, False))[0]
        assert_identical(chunked, whole)
        check_conv_backward(case, seed=i, flags=(True, False, False))
        with convpool.threads(threads), cache_resident_bytes(0):
            check_conv_backward(case, seed=i, flags=(True, False, False))


@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_backward_input_small_depthwise_planes(isa, threads):
    """Input gradient of NCHW depthwise layers on planes narrower than a vector,
    with padding past the filter's reach: the gradient is a convolution with
    negative padding (it crops), which the small-plane forward kernels then take
    (blocks of a vector of channels, and the planes past them)."""
    for i, (kernel, dilation, padding, stride) in enumerate((
        ((3, 3), (1, 1), ((3, 3), (3, 3)), (1, 1)),
        ((1, 1), (1, 1), ((2, 1), (0, 2)), (1, 1)),
        ((3, 2), (2, 1), ((5, 0), (4, 2)), (1, 1)),
        ((3, 3), (1, 1), ((3, 4), (3, 4)), (2, 2)),
    )):
        for w in (1, 5, 9, 14):
            case = ConvCase(
                n=2, c=3 + 6 * (i % 2), k=3 + 6 * (i % 2), h=6, w=w, kernel=kernel, stride=stride,
                dilation=dilation, padding=padding, groups=3 + 6 * (i % 2), dtype=FLOAT_DTYPES[w % 2],
                layout="NCHW",
            )
            with convpool.threads(threads):
                check_conv_backward(case, seed=w + 10 * i, flags=(True, False, False))
    # Whole blocks of a vector of channels (16 float32 with AVX-512) and the
    # channels past them, in both dtypes, cropped on every side.
    for dtype in FLOAT_DTYPES:
        for c in (16, 17):
            case = ConvCase(
                n=1, c=c, k=c, h=7, w=6, kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
                padding=((3, 4), (4, 3)), groups=c, dtype=np.dtype(dtype), layout="NCHW",
            )
            with convpool.threads(threads):
                check_conv_backward(case, seed=c, flags=(True, False, False))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("from_cache", [True, False], ids=["from-cache", "from-memory"])
def test_conv2d_backward_input_depthwise_cropped(isa, layout, from_cache):
    """Input gradient of depthwise layers padded past the filter's reach (the
    forward output is wider than the input): each stride phase is a convolution
    with negative padding, through every depthwise kernel of the layout (NHWC:
    3-wide filters on narrow pixels in the row kernel, on wide ones from cache
    in the wide-pixel kernel, pixel by pixel from memory; 5-wide filters in the
    band kernel), with
    wide rows and narrow ones, and the channels past the last whole vector."""
    with contextlib.nullcontext() if from_cache else cache_resident_bytes(0):
        for i, (kernel, padding, stride) in enumerate((
            ((3, 3), ((3, 3), (3, 4)), (1, 1)),
            ((3, 3), ((4, 3), (5, 3)), (2, 2)),
            ((5, 5), ((5, 6), (6, 5)), (1, 1)),
            ((5, 5), ((6, 5), (5, 7)), (2, 1)),
            ((1, 5), ((0, 1), (7, 5)), (1, 2)),
        )):
            for c, w in ((16, 23), (17, 9), (70, 20), (33, 3)):
                case = ConvCase(n=2, c=c, k=c, h=5, w=w, kernel=kernel, stride=stride, dilation=(1, 1),
                                padding=padding, groups=c, dtype=FLOAT_DTYPES[(i + c) % 2], layout=layout)
                with convpool.threads(1 + i % 2):
                    check_conv_backward(case, seed=c + 10 * i, flags=(True, False, False))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kernel", [(3, 3), (5, 5)])
def test_conv2d_backward_empty_batch_depthwise(isa, layout, kernel):
    """N = 0 through the depthwise kernels' input gradients (each stride phase is a
    depthwise convolution of an empty batch)."""
    for stride in ((1, 1), (2, 2)):
        case = ConvCase(n=0, c=16, k=16, h=8, w=8, kernel=kernel, stride=stride, dilation=(1, 1),
                        padding=kernel[0] // 2, groups=16, dtype=np.dtype(np.float32), layout=layout)
        x, weight, _, gy = case.arrays(0)
        gx, gw, gb = conv_grads(case, x, weight, gy)
        assert gx.shape == x.shape
        assert_within(gw, np.zeros_like(weight), 0.0)
        assert_within(gb, np.zeros(16, np.float32), 0.0)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("threads", [1, 2])
def test_conv2d_backward_weight_tiles_of_taps(isa, layout, threads):
    """The weight gradient's tiles of (tap, channel) rows over a zero-padded copy of
    the input: 1-3 input channels (first layers) and more, 1x1 to 7x7 filters (row
    counts around every tile size of every ISA), output channels around the vector
    widths (one or two vectors per tile, channels past the last whole block of the
    NCHW transpose), images of fewer and more than 64 pixels and not a whole number
    of blocks, strides, dilation, padding, groups."""
    cases = [
        # c, k, groups, kernel, stride, dilation, padding, h, w
        (1, 16, 1, (3, 3), (1, 1), (1, 1), 1, 16, 16),
        (1, 32, 1, (3, 3), (1, 1), (1, 1), 0, 13, 11),
        (1, 7, 1, (5, 5), (2, 1), (1, 1), 2, 12, 9),
        (3, 17, 1, (7, 7), (2, 2), (1, 1), 3, 17, 15),
        (2, 33, 1, (3, 3), (1, 2), (2, 1), "same", 10, 14),
        (3, 16, 1, (2, 2), (1, 1), (1, 1), ((0, 1), (1, 0)), 9, 9),
        (4, 9, 1, (1, 1), (1, 1), (1, 1), 0, 5, 30),
        (16, 32, 1, (3, 3), (1, 1), (1, 1), 1, 8, 8),
        (6, 10, 2, (3, 3), (2, 2), (1, 1), 1, 11, 7),
        (8, 8, 8, (3, 3), (1, 1), (1, 1), 1, 7, 20),
        (2, 150, 1, (3, 3), (1, 1), (1, 1), 1, 6, 7),  # bias sums of more than 8 vectors
    ]
    for i, (c, k, groups, kernel, stride, dilation, padding, h, w) in enumerate(cases):
        case = ConvCase(n=3, c=c, k=k, h=h, w=w, kernel=kernel, stride=stride, dilation=dilation,
                        padding=padding, groups=groups, dtype=FLOAT_DTYPES[i % 2], layout=layout)
        with convpool.threads(threads):
            check_conv_backward(case, seed=i)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize(
    ("c", "k", "h", "w", "kernel", "stride", "padding"),
    [
        (1, 1, 1, 1, (1, 1), (1, 5), 2),  # the one output column lies in the left padding
        (3, 4, 3, 2, (1, 1), (5, 4), ((2, 0), (3, 1))),  # rows and columns wholly in the padding
        (2, 3, 2, 6, (1, 2), (1, 7), ((0, 0), (4, 4))),
        (2, 17, 1, 3, (2, 2), (3, 3), ((1, 2), (2, 2))),
    ],
)
def test_conv2d_backward_windows_past_the_input(isa, layout, threads, c, k, h, w, kernel, stride, padding):
    """Strides that carry every window of a row or column into the padding before
    the input: nothing of the input lands in the padded copy the weight gradient
    reads (once a crash: a negative copy length in NHWC)."""
    case = ConvCase(n=3, c=c, k=k, h=h, w=w, kernel=kernel, stride=stride, dilation=(1, 1),
                    padding=padding, groups=1, dtype=F64, layout=layout)
    assert case.out_hw is not None
    with convpool.threads(threads):
        check_conv_backward(case, seed=c + k)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("n", "c", "k", "groups"), [(5, 1, 16, 1), (2, 3, 33, 1), (6, 2, 8, 2), (3, 16, 32, 1)])
def test_conv2d_backward_weight_does_not_depend_on_threads(isa, layout, n, c, k, groups):
    """Weight and bias gradients are identical on 1, 2 and 3 threads: layers with few
    tiles per image (first layers) sum the batch in runs of images fixed by the
    problem, others image after image."""
    rng = np.random.default_rng(n + c + k)
    shape = (n, c, 13, 11) if layout == "NCHW" else (n, 13, 11, c)
    x = rng.standard_normal(shape)
    weight = rng.standard_normal((k, c // groups, 3, 3))
    gy_shape = (n, k, 13, 11) if layout == "NCHW" else (n, 13, 11, k)
    gy = rng.standard_normal(gy_shape)
    results = []
    for threads in (1, 2, 3):
        with convpool.threads(threads):
            _, gw, gb = convpool.conv2d_backward(gy, x, weight, padding=1, groups=groups, layout=layout,
                                                 input_grad=False)
        results.append((gw, gb))
    for gw, gb in results[1:]:
        np.testing.assert_array_equal(gw, results[0][0])
        np.testing.assert_array_equal(gb, results[0][1])


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("padding", "dilation"), [(101, (1, 1)), (90, (90, 1)), (((0, 0), (80000, 0)), (1, 40000))])
def test_conv2d_backward_weight_far_padding(isa, layout, padding, dilation):
    """Padding or dilation far past a small input, where a zero-padded copy of it
    would be much larger than the input: the weight gradient reads the input as it
    is and skips the taps in the padding."""
    case = ConvCase(n=2, c=2, k=5, h=3, w=4, kernel=(3, 3), stride=(1, 1), dilation=dilation,
                    padding=padding, groups=1, dtype=F64, layout=layout)
    check_conv_backward(case, seed=3, flags=(False, True, True))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("form", INPUT_FORMS)
def test_conv2d_backward_input_forms(isa, layout, form):
    case = ConvCase(n=2, c=9, k=17, h=6, w=11, kernel=(3, 2), stride=(2, 2), dilation=(1, 2),
                    padding=((1, 2), (0, 1)), groups=1, dtype=F64, layout=layout)
    check_conv_backward(case, seed=5, transform=INPUT_FORMS[form])


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_backward_empty_batch(layout):
    """N = 0: no input gradient elements, and zero weight and bias gradients."""
    case = ConvCase(n=0, c=3, k=4, h=5, w=5, kernel=(3, 3), stride=(2, 2), dilation=(1, 1),
                    padding=1, groups=1, dtype=F64, layout=layout)
    x, weight, _, gy = case.arrays(0)
    gx, gw, gb = conv_grads(case, x, weight, gy)
    assert gx.shape == x.shape
    assert_within(gw, np.zeros_like(weight), 0.0)
    assert_within(gb, np.zeros(4), 0.0)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_conv2d_backward_no_output_channels(isa, layout):
    """K = 0: the input gradient is a convolution over no channels, i.e. zeros (wide
    rows, stride 1: every forward kernel's shape checks see C = 0)."""
    case = ConvCase(n=2, c=4, k=0, h=5, w=40, kernel=(3, 3), stride=(1, 1), dilation=(1, 1),
                    padding=1, groups=1, dtype=F64, layout=layout)
    x, weight, _, gy = case.arrays(0)
    gx, gw, gb = conv_grads(case, x, weight, gy)
    assert_within(gx, np.zeros_like(x), 0.0)
    assert gw.shape == weight.shape and gb.shape == (0,)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("c", "k", "groups", "stride"), [(4, 20, 1, (1, 1)), (6, 6, 6, (2, 2)), (4, 6, 2, (2, 1))])
def test_conv2d_backward_nonfinite_weights(isa, layout, c, k, groups, stride):
    """The input gradient has no taps in the padding: an infinite weight gives infinities
    (and NaN only where infinities of both signs meet), not NaN at the borders."""
    rng = np.random.default_rng(c + k)
    case = ConvCase(n=2, c=c, k=k, h=6, w=37, kernel=(3, 3), stride=stride, dilation=(1, 1),
                    padding=((1, 2), (2, 1)), groups=groups, dtype=F64, layout=layout)
    x, weight, _, gy = case.arrays(1)
    weight.reshape(-1)[rng.choice(weight.size, 2, replace=False)] = [np.inf, np.nan]
    gx, _, _ = conv_grads(case, x, weight, gy)
    want, _, _ = ref.conv2d_backward(gy, x, weight, *case.ref_args())
    assert np.isinf(want).any()
    assert np.array_equal(np.isnan(gx), np.isnan(want))
    assert np.array_equal(gx[np.isinf(want)], want[np.isinf(want)])
    finite = np.isfinite(want)
    assert np.allclose(gx[finite], want[finite], rtol=1e-12, atol=1e-12)


# ============================================================================= window pooling


@dataclass
class PoolCase:
    n: int
    c: int
    h: int
    w: int
    kernel: Tuple[int, int]
    stride: Optional[Tuple[int, int]]  # None = kernel_size
    dilation: Tuple[int, int]
    padding: object
    ceil_mode: bool
    dtype: np.dtype
    layout: str

    @property
    def eff_stride(self):
        return self.kernel if self.stride is None else self.stride

    @property
    def pads(self):
        return normalise_padding(self.padding, (self.h, self.w), self.kernel, self.eff_stride, self.dilation)

    @property
    def out_hw(self):
        return output_hw((self.h, self.w), self.kernel, self.eff_stride, self.dilation, self.pads, self.ceil_mode)

    @property
    def shape(self):
        return (self.n, self.c, self.h, self.w)

    def kwargs(self):
        return dict(
            kernel_size=pair_arg(self.kernel),
            stride=None if self.stride is None else pair_arg(self.stride),
            padding=self.padding, dilation=pair_arg(self.dilation), ceil_mode=self.ceil_mode,
            layout=self.layout,
        )

    def ref_args(self):
        return (self.kernel, self.eff_stride, self.pads, self.dilation, self.ceil_mode)

    def grad_out(self, rng):
        return random_array(rng, (self.n, self.c) + self.out_hw, self.dtype)

    def legal(self) -> bool:
        pads = self.pads
        for a in range(2):
            if max(pads[a]) >= extent(self.kernel[a], self.dilation[a]):
                return False
        return self.out_hw is not None



@st.composite
def pool_cases(draw, dtype=None, small=False) -> PoolCase:
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    case = PoolCase(
        n=draw(st.integers(1, 2 if small else 3)),
        c=draw(st.sampled_from((1, 2, 3) if small else CHANNELS)),
        h=draw(st.integers(1, 6 if small else 9)),
        w=draw(st.integers(1, 6) if small else st.sampled_from(WIDTHS)),
        kernel=kernel,
        stride=stride,
        dilation=(draw(st.integers(1, 3)), draw(st.integers(1, 3))),
        padding=draw(paddings),
        ceil_mode=draw(st.booleans()),
        dtype=draw(st.sampled_from(FLOAT_DTYPES)) if dtype is None else np.dtype(dtype),
        layout=draw(st.sampled_from(LAYOUTS)),
    )
    assume(case.legal())
    return case


def run_layout(fn, case_layout, *arrays, **kwargs):
    """Call ``fn`` with NCHW ``arrays`` converted to the layout; result back in NCHW."""
    out = fn(*(to_layout(a, case_layout) for a in arrays), **kwargs)
    return from_layout(out, case_layout)


def layout_shape(shape, layout):
    n, c, h, w = shape
    return (n, h, w, c) if layout == "NHWC" else (n, c, h, w)


# ----------------------------------------------------------------------------- max


def check_max_backward(gy, idx, shape, layout):
    """convpool.max_pool2d_backward of NCHW (gy, idx) against the reference."""
    got = from_layout(
        convpool.max_pool2d_backward(
            to_layout(gy, layout), to_layout(idx, layout), layout_shape(shape, layout), layout=layout
        ),
        layout,
    )
    want = ref.max_pool2d_backward(gy, idx, shape)
    magnitude = ref.max_pool2d_backward(abs64(gy), idx, shape)
    coinciding = ref.max_pool2d_backward(np.ones(gy.shape), idx, shape).max(initial=1.0)
    assert_within(got, want, reduction_atol(gy.dtype, coinciding, magnitude))


@examples(0.2)
@given(case=pool_cases(), kind=st.sampled_from(["normal", "ties"]), threads=THREADS, seed=seeds)
def test_max_pool2d_backward_matches_reference(isa, case, kind, threads, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, case.shape, case.dtype, kind)
    _, idx = convpool.max_pool2d(to_layout(x, case.layout), return_indices=True, **case.kwargs())
    idx = from_layout(idx, case.layout)
    with convpool.threads(threads):
        check_max_backward(case.grad_out(rng), idx, case.shape, case.layout)


@examples(0.2)
@given(
    # 65 and 129: NHWC splits channels into blocks of 4 SIMD registers (64 floats on AVX-512)
    n=st.integers(1, 3), c=st.sampled_from(CHANNELS + (65, 129)), h=st.integers(1, 6), w=st.sampled_from(WIDTHS),
    oh=st.integers(1, 7), ow=st.integers(1, 7), dtype=st.sampled_from(FLOAT_DTYPES),
    layout=st.sampled_from(LAYOUTS), threads=THREADS, seed=seeds,
)
def test_max_pool2d_backward_arbitrary_indices(isa, n, c, h, w, oh, ow, dtype, layout, threads, seed):
    """Any indices in [-1, H*W): many coinciding ones (they add up), -1 goes nowhere."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(-1, min(h * w, 4), size=(n, c, oh, ow)) if rng.random() < 0.5 else \
        rng.integers(-1, h * w, size=(n, c, oh, ow))
    gy = random_array(rng, (n, c, oh, ow), dtype)
    with convpool.threads(threads):
        check_max_backward(gy, idx.astype(np.int64), (n, c, h, w), layout)


@examples(0.15)
@given(
    n=st.integers(1, 3), c=st.sampled_from(CHANNELS), h=st.integers(1, 9), w=st.sampled_from(WIDTHS),
    oh=st.integers(1, 12), ow=st.integers(1, 12), dtype=st.sampled_from(FLOAT_DTYPES),
    layout=st.sampled_from(LAYOUTS), threads=THREADS, seed=seeds,
)
def test_adaptive_and_global_max_backward_match_reference(isa, n, c, h, w, oh, ow, dtype, layout, threads, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (n, c, h, w), dtype, "ties" if rng.random() < 0.3 else "normal")
    x_in = to_layout(x, layout)
    _, idx = convpool.adaptive_max_pool2d(x_in, (oh, ow), return_indices=True, layout=layout)
    assert convpool.adaptive_max_pool2d_backward is convpool.max_pool2d_backward
    with convpool.threads(threads):
        check_max_backward(random_array(rng, (n, c, oh, ow), dtype), from_layout(idx, layout), x.shape, layout)
        gy = random_array(rng, (n, c, 1, 1), dtype)
        got = run_layout(convpool.global_max_pool2d_backward, layout, gy, x, layout=layout)
    assert_within(got, ref.global_max_pool2d_backward(gy, x), 0.0)


# ----------------------------------------------------------------------------- avg


@examples(0.25)
@given(
    case=pool_cases(),
    count_include_pad=st.booleans(),
    divisor_override=st.one_of(st.none(), st.integers(1, 5)),
    threads=THREADS,
    seed=seeds,
)
def test_avg_pool2d_backward_matches_reference(isa, case, count_include_pad, divisor_override, threads, seed):
    rng = np.random.default_rng(seed)
    gy = case.grad_out(rng)
    opts = dict(count_include_pad=count_include_pad, divisor_override=divisor_override)
    with convpool.threads(threads):
        got = from_layout(
            convpool.avg_pool2d_backward(
                to_layout(gy, case.layout), layout_shape(case.shape, case.layout), **case.kwargs(), **opts
            ),
            case.layout,
        )
    args = case.ref_args() + (count_include_pad, divisor_override)
    want = ref.avg_pool2d_backward(gy, case.shape, *args)
    magnitude = ref.avg_pool2d_backward(abs64(gy), case.shape, *args)
    n_terms = case.kernel[0] * case.kernel[1]  # at most one output per tap reads an input
    assert_within(got, want, reduction_atol(case.dtype, n_terms, magnitude, acc_dtype=F64))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_avg_pool2d_backward_special_values(isa, layout, dtype):
    """Infinite, NaN, zero and signed-zero gradients pass through the division as a true
    division does, and sums start from +0.0, in every channel position of a block."""
    rng = np.random.default_rng(1)
    shape = (2, 37, 6, 6)
    gy = random_array(rng, (2, 37, 3, 3), dtype)
    gy.reshape(-1)[rng.choice(gy.size, 60, replace=False)] = rng.choice([np.inf, -np.inf, np.nan, 0.0, -0.0], 60)
    for kernel, stride, padding in (((2, 2), (2, 2), 0), ((3, 3), (2, 2), 1)):
        got = from_layout(convpool.avg_pool2d_backward(to_layout(gy, layout), layout_shape(shape, layout), kernel,
                                                       stride, padding, layout=layout), layout)
        want = ref.avg_pool2d_backward(gy, shape, kernel, stride, ((padding, padding), (padding, padding)), (1, 1),
                                       False, True, None)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        finite = np.isfinite(want)
        assert np.array_equal(got[~finite & ~np.isnan(want)], want[~finite & ~np.isnan(want)])
        assert not np.any(np.signbit(got[want == 0]))
        magnitude = ref.avg_pool2d_backward(np.where(np.isfinite(gy), abs64(gy), 0.0), shape, kernel, stride,
                                            ((padding, padding), (padding, padding)), (1, 1), False, True, None)
        assert_within(got[finite], want[finite], reduction_atol(np.dtype(dtype), 4, magnitude, acc_dtype=F64)[finite])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("width", [3, 8, 11, 22, 31, 32, 33, 56, 70])
def test_avg_pool2d_backward_nchw_planes(isa, dtype, threads, width):
    """NCHW average pooling over regular windows, a plane at a time: every input
    gathers its outputs' shares from rows spread out to the window starts, vectors
    of inputs side by side and a last one overlapping. Column strides 1 to 3,
    kernels 1 to 4, dilation, padding on either side, ceil mode and every divisor
    rule. The shares are added in the order of the NHWC kernel (ascending outputs),
    so both layouts give the same bits; against the reference, within the
    float64 sum's rounding."""
    rng = np.random.default_rng(width)
    for kernel, stride, dilation, pads, ceil_mode in [
        ((3, 3), (1, 1), (1, 1), ((1, 1), (1, 1)), False), ((2, 2), (2, 2), (1, 1), ((0, 0), (0, 0)), False),
        ((3, 3), (2, 2), (1, 1), ((1, 1), (1, 1)), True), ((1, 4), (1, 3), (1, 1), ((0, 0), (2, 1)), True),
        ((2, 3), (1, 1), (1, 2), ((1, 0), (0, 2)), False), ((3, 2), (2, 1), (1, 1), ((0, 1), (1, 0)), False),
    ]:
        shape = (2, 17, 7, width)
        out_hw = output_hw(shape[2:], kernel, stride, dilation, pads, ceil_mode)
        if out_hw is None:
            continue
        gy = random_array(rng, (2, 17) + out_hw, dtype)
        for count_include_pad, divisor_override in ((True, None), (False, None), (True, 3)):
            args = (kernel, stride, pads, dilation, ceil_mode, count_include_pad, divisor_override)
            kw = dict(kernel_size=kernel, stride=stride, padding=pads, dilation=dilation, ceil_mode=ceil_mode,
                      count_include_pad=count_include_pad, divisor_override=divisor_override)
            with convpool.threads(threads):
                got = convpool.avg_pool2d_backward(gy, shape, **kw)
                nhwc = run_layout(convpool.avg_pool2d_backward, "NHWC", gy, input_shape=layout_shape(shape, "NHWC"),
                                  layout="NHWC", **kw)
            assert_identical(got, nhwc, f"{args}: NCHW vs NHWC: ")
            want = ref.avg_pool2d_backward(gy, shape, *args)
            magnitude = ref.avg_pool2d_backward(abs64(gy), shape, *args)
            assert_within(got, want, reduction_atol(np.dtype(dtype), kernel[0] * kernel[1], magnitude, acc_dtype=F64))


# ----------------------------------------------------------------------------- lp

NORMS = (1, 2, 3, 1.5, 0.5, 2.5, 4.0)


def lp_atol(dtype, p, n_terms, magnitude):
    """Like reduction_atol (sums in float64), plus the rounding of y: convpool divides by
    the forward's y in x's dtype (relative error <= eps(dtype)), the reference by y
    recomputed in float64 (error <= TOL_C sqrt(n) eps64); y ** (p - 1) multiplies either
    relative error by |p - 1|."""
    y_rel = eps(dtype) + TOL_C * math.sqrt(n_terms) * eps(F64)
    return reduction_atol(dtype, n_terms, magnitude, acc_dtype=F64) + abs(p - 1) * y_rel * magnitude


@examples(0.25)
@given(case=pool_cases(), p=st.sampled_from(NORMS), zeros=st.booleans(), threads=THREADS, seed=seeds)
def test_lp_pool2d_backward_matches_reference(isa, case, p, zeros, threads, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, case.shape, case.dtype)
    if zeros:  # x == 0 gets no gradient; all-zero windows (y == 0) pass none
        x[rng.random(x.shape) < 0.3] = 0
        x[:, :, : case.h // 2] = 0
    gy = case.grad_out(rng)
    with convpool.threads(threads):
        got = run_layout(
            lambda g, xx, **kw: convpool.lp_pool2d_backward(g, xx, p, **kw), case.layout, gy, x, **case.kwargs()
        )
    want = ref.lp_pool2d_backward(gy, x, p, *case.ref_args())
    magnitude = ref.lp_pool2d_backward(abs64(gy), abs64(x), p, *case.ref_args())
    assert_within(got, want, lp_atol(case.dtype, p, case.kernel[0] * case.kernel[1], magnitude))
    assert np.all(got[x == 0] == 0)


# ----------------------------------------------------------------------------- adaptive / global avg


def adaptive_cover(in_size: int, out_size: int) -> int:
    """Most windows of an adaptive axis that hold one input position."""
    count = np.zeros(in_size, dtype=np.int64)
    for o in range(out_size):
        start, end = (o * in_size) // out_size, -((-(o + 1) * in_size) // out_size)
        count[start:end] += 1
    return int(count.max())


@examples(0.2)
@given(
    n=st.integers(1, 3), c=st.sampled_from(CHANNELS), h=st.integers(1, 9), w=st.sampled_from(WIDTHS),
    oh=st.integers(1, 12), ow=st.integers(1, 12), dtype=st.sampled_from(FLOAT_DTYPES),
    layout=st.sampled_from(LAYOUTS), threads=THREADS, seed=seeds,
)
def test_adaptive_and_global_avg_backward_match_reference(isa, n, c, h, w, oh, ow, dtype, layout, threads, seed):
    rng = np.random.default_rng(seed)
    shape = (n, c, h, w)
    gy = random_array(rng, (n, c, oh, ow), dtype)
    g1 = random_array(rng, (n, c, 1, 1), dtype)
    lshape = layout_shape(shape, layout)
    with convpool.threads(threads):
        got = run_layout(convpool.adaptive_avg_pool2d_backward, layout, gy, input_shape=lshape, layout=layout)
        got1 = run_layout(convpool.global_avg_pool2d_backward, layout, g1, input_shape=lshape, layout=layout)
    n_terms = adaptive_cover(h, oh) * adaptive_cover(w, ow)
    want = ref.adaptive_avg_pool2d_backward(gy, shape)
    magnitude = ref.adaptive_avg_pool2d_backward(abs64(gy), shape)
    assert_within(got, want, reduction_atol(dtype, n_terms, magnitude, acc_dtype=F64))
    want1 = ref.global_avg_pool2d_backward(g1, shape)
    assert_within(got1, want1, reduction_atol(dtype, 1, abs64(want1), acc_dtype=F64))


# ----------------------------------------------------------------------------- pooling sweeps


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c", CHANNELS)
def test_pool_backward_channels_and_strides(isa, layout, c):
    """Channel counts around the SIMD widths with strides 1-3, ceil mode and "same"."""
    dtype = sweep_dtype(c, layout)
    rng = np.random.default_rng(c)
    for kernel, stride, dilation, padding, ceil_mode in (
        ((3, 3), (2, 2), (1, 1), 1, True),
        ((2, 3), (3, 1), (2, 1), "same", False),
        ((3, 2), (1, 3), (1, 2), ((2, 0), (0, 1)), True),
    ):
        case = PoolCase(2, c, 7, 10, kernel, stride, dilation, padding, ceil_mode, np.dtype(dtype), layout)
        assert case.legal()
        x = random_array(rng, case.shape, dtype)
        gy = case.grad_out(rng)
        _, idx = convpool.max_pool2d(to_layout(x, layout), return_indices=True, **case.kwargs())
        check_max_backward(gy, from_layout(idx, layout), case.shape, layout)
        got = run_layout(convpool.avg_pool2d_backward, layout, gy,
                         input_shape=layout_shape(case.shape, layout), **case.kwargs())
        want = ref.avg_pool2d_backward(gy, case.shape, *case.ref_args())
        mag = ref.avg_pool2d_backward(abs64(gy), case.shape, *case.ref_args())
        assert_within(got, want, reduction_atol(dtype, 9, mag, acc_dtype=F64), "avg: ")
        got = run_layout(lambda g, xx, **kw: convpool.lp_pool2d_backward(g, xx, 3, **kw), layout, gy, x,
                         **case.kwargs())
        want = ref.lp_pool2d_backward(gy, x, 3, *case.ref_args())
        mag = ref.lp_pool2d_backward(abs64(gy), abs64(x), 3, *case.ref_args())
        assert_within(got, want, lp_atol(dtype, 3, 9, mag), "lp: ")


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("n", "c"), [(0, 3), (2, 0), (0, 0)])
def test_pool_backward_empty_batch_or_channels(layout, n, c):
    shape = layout_shape((n, c, 5, 6), layout)
    x = np.zeros(shape)
    y, idx = convpool.max_pool2d(x, 2, layout=layout, return_indices=True)
    assert convpool.max_pool2d_backward(y, idx, shape, layout=layout).shape == shape
    assert convpool.avg_pool2d_backward(y, shape, 2, layout=layout).shape == shape
    assert convpool.lp_pool2d_backward(y, x, 2, 2, layout=layout).shape == shape
    assert convpool.adaptive_avg_pool2d_backward(y, shape, layout=layout).shape == shape
    g1 = convpool.global_max_pool2d(x, layout=layout)
    assert convpool.global_avg_pool2d_backward(g1, shape, layout=layout).shape == shape
    assert convpool.global_max_pool2d_backward(g1, x, layout=layout).shape == shape


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("c", [3, 17])
def test_pool_backward_empty_windows(isa, layout, c):
    """Dilation plus padding gives windows with no valid tap: they pass no gradient (max
    index -1; avg divisor may be 0; lp y == 0). 17 channels take the NHWC average
    kernel that gathers whole vectors of channels."""
    case = PoolCase(2, c, 2, 2, (2, 2), (1, 1), (3, 3), ((2, 2), (2, 2)), False, F64, layout)
    rng = np.random.default_rng(0)
    x = random_array(rng, case.shape, F64)
    gy = case.grad_out(rng)
    _, idx = convpool.max_pool2d(to_layout(x, layout), return_indices=True, **case.kwargs())
    idx = from_layout(idx, layout)
    assert (idx == -1).any()
    check_max_backward(gy, idx, case.shape, layout)
    for cip in (True, False):
        got = run_layout(convpool.avg_pool2d_backward, layout, gy, input_shape=layout_shape(case.shape, layout),
                         count_include_pad=cip, **case.kwargs())
        want = ref.avg_pool2d_backward(gy, case.shape, *case.ref_args(), count_include_pad=cip)
        assert_within(got, want, reduction_atol(F64, 4, ref.avg_pool2d_backward(
            abs64(gy), case.shape, *case.ref_args(), count_include_pad=cip), acc_dtype=F64))
    got = run_layout(lambda g, xx, **kw: convpool.lp_pool2d_backward(g, xx, 2, **kw), layout, gy, x, **case.kwargs())
    want = ref.lp_pool2d_backward(gy, x, 2, *case.ref_args())
    assert_within(got, want, lp_atol(F64, 2, 4, ref.lp_pool2d_backward(abs64(gy), abs64(x), 2, *case.ref_args())))


# ============================================================================= finite differences


def fd_gradient(f, a: np.ndarray, h: float) -> np.ndarray:
    """Central differences of the scalar function f at every element of a (float64)."""
    grad = np.empty_like(a)
    flat, gflat = a.reshape(-1), grad.reshape(-1)
    with convpool.threads(1):  # many tiny calls: one thread avoids waking a team each time
        for i in range(flat.size):
            keep = flat[i]
            flat[i] = keep + h
            up = f(a)
            flat[i] = keep - h
            down = f(a)
            flat[i] = keep
            gflat[i] = (up - down) / (2 * h)
    return grad


def assert_fd(analytic: np.ndarray, numeric: np.ndarray, what: str = "") -> None:
    # Linear functionals of a piecewise-linear or smooth forward: the central difference
    # carries O(h^2) truncation and O(eps |L| / h) rounding error, both << 1e-6 here,
    # while a wrong or missing tap is an O(1) error.
    scale = max(1.0, float(np.abs(analytic).max(initial=0.0)))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-6 * scale, err_msg=what)


def finite_sum(y: np.ndarray, g: np.ndarray) -> float:
    """sum(y * g) over finite y (max pooling's empty windows give -inf)."""
    keep = np.isfinite(y)
    return float(np.sum(np.where(keep, y, 0.0) * np.where(keep, g, 0.0)))


@examples(0.12)
@given(case=conv_cases(dtype=np.float64, small=True), seed=seeds)
def test_conv2d_backward_finite_differences(case, seed):
    x, weight, bias, _ = case.arrays(seed)
    x_in = to_layout(x, case.layout)
    g = np.random.default_rng(seed + 1).standard_normal(layout_shape((case.n, case.k) + case.out_hw, case.layout))
    fwd = lambda xx, ww, bb: float(np.sum(convpool.conv2d(xx, ww, bb, **case.kwargs()) * g))  # noqa: E731
    gx, gw, gb = convpool.conv2d_backward(g, x_in, weight, **case.kwargs())
    assert_fd(gx, fd_gradient(lambda a: fwd(a, weight, bias), x_in.copy(), 1e-3), "grad_x")
    assert_fd(gw, fd_gradient(lambda a: fwd(x_in, a, bias), weight.copy(), 1e-3), "grad_w")
    assert_fd(gb, fd_gradient(lambda a: fwd(x_in, weight, a), bias.copy(), 1e-3), "grad_b")


def distinct_values(rng, shape) -> np.ndarray:
    """Values 0.1 apart in random order and sign: no ties, so the argmax is stable."""
    size = int(np.prod(shape))
    return (rng.permutation(size) - size / 2.0).reshape(shape) * 0.1 + 0.05


@examples(0.12)
@given(
    case=pool_cases(dtype=np.float64, small=True),
    count_include_pad=st.booleans(),
    divisor_override=st.one_of(st.none(), st.integers(1, 5)),
    p=st.sampled_from(NORMS),
    seed=seeds,
)
def test_window_pool_backward_finite_differences(case, count_include_pad, divisor_override, p, seed):
    rng = np.random.default_rng(seed)
    layout = case.layout
    kw = case.kwargs()
    g = rng.standard_normal(layout_shape((case.n, case.c) + case.out_hw, layout))
    shape = layout_shape(case.shape, layout)

    # max: distinct inputs, the gradient goes to the (stable) argmax
    x = to_layout(distinct_values(rng, case.shape), layout)
    _, idx = convpool.max_pool2d(x, return_indices=True, **kw)
    got = convpool.max_pool2d_backward(g, idx, shape, layout=layout)
    assert_fd(got, fd_gradient(lambda a: finite_sum(convpool.max_pool2d(a, **kw), g), x.copy(), 1e-3), "max")

    # avg (linear)
    opts = dict(count_include_pad=count_include_pad, divisor_override=divisor_override)
    x = to_layout(rng.standard_normal(case.shape), layout)
    got = convpool.avg_pool2d_backward(g, shape, **kw, **opts)
    assert_fd(got, fd_gradient(lambda a: float(np.sum(convpool.avg_pool2d(a, **kw, **opts) * g)), x.copy(), 1e-3),
              "avg")

    # lp: |x| in [0.5, 2], away from the kink at 0
    x = to_layout(rng.uniform(0.5, 2.0, case.shape) * rng.choice((-1.0, 1.0), case.shape), layout)
    got = convpool.lp_pool2d_backward(g, x, p, **kw)
    assert_fd(got, fd_gradient(lambda a: float(np.sum(convpool.lp_pool2d(a, p, **kw) * g)), x.copy(), 1e-5),
              f"lp p={p}")


@examples(0.1)
@given(
    n=st.integers(1, 2), c=st.integers(1, 3), h=st.integers(1, 6), w=st.integers(1, 6),
    oh=st.integers(1, 8), ow=st.integers(1, 8), layout=st.sampled_from(LAYOUTS), seed=seeds,
)
def test_adaptive_pool_backward_finite_differences(n, c, h, w, oh, ow, layout, seed):
    rng = np.random.default_rng(seed)
    shape = layout_shape((n, c, h, w), layout)
    g = rng.standard_normal(layout_shape((n, c, oh, ow), layout))
    g1 = rng.standard_normal(layout_shape((n, c, 1, 1), layout))

    x = to_layout(rng.standard_normal((n, c, h, w)), layout)
    got = convpool.adaptive_avg_pool2d_backward(g, shape, layout=layout)
    fd = fd_gradient(lambda a: float(np.sum(convpool.adaptive_avg_pool2d(a, (oh, ow), layout=layout) * g)),
                     x.copy(), 1e-3)
    assert_fd(got, fd, "adaptive avg")
    got = convpool.global_avg_pool2d_backward(g1, shape, layout=layout)
    fd = fd_gradient(lambda a: float(np.sum(convpool.global_avg_pool2d(a, layout=layout) * g1)), x.copy(), 1e-3)
    assert_fd(got, fd, "global avg")

    x = to_layout(distinct_values(rng, (n, c, h, w)), layout)
    _, idx = convpool.adaptive_max_pool2d(x, (oh, ow), return_indices=True, layout=layout)
    got = convpool.adaptive_max_pool2d_backward(g, idx, shape, layout=layout)
    fd = fd_gradient(lambda a: float(np.sum(convpool.adaptive_max_pool2d(a, (oh, ow), layout=layout) * g)),
                     x.copy(), 1e-3)
    assert_fd(got, fd, "adaptive max")
    got = convpool.global_max_pool2d_backward(g1, x, layout=layout)
    fd = fd_gradient(lambda a: float(np.sum(convpool.global_max_pool2d(a, layout=layout) * g1)), x.copy(), 1e-3)
    assert_fd(got, fd, "global max")


# ============================================================================= PyTorch


def torch_grads(fn, *arrays):
    """Autograd gradients of sum(fn(*tensors) * g) in float64; returns (grads, output)."""
    torch = pytest.importorskip("torch")
    ts = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    y = fn(*ts)
    return ts, y


def torch_backward(ts, y, g):
    import torch

    y.backward(torch.tensor(g, dtype=torch.float64))
    return [t.grad.numpy() for t in ts]


def torch_close(got, want, what=""):
    """float64 both sides; torch sums in its own order."""
    scale = max(1.0, float(np.abs(want).max(initial=0.0)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12 * scale, err_msg=what)


@pytest.mark.torch
@examples(0.1)
@given(case=conv_cases(dtype=np.float64), seed=seeds)
def test_conv2d_backward_matches_torch(case, seed):
    """Every conv case: asymmetric / "same" padding applied with F.pad (zeros)."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    x, weight, bias, gy = case.arrays(seed)
    (pt, pb), (pl, pr) = case.pads

    def fwd(tx, tw, tb):
        return F.conv2d(F.pad(tx, (pl, pr, pt, pb)), tw, tb, stride=case.stride, dilation=case.dilation,
                        groups=case.groups)

    ts, y = torch_grads(fwd, x, weight, bias)
    assert tuple(y.shape) == gy.shape
    want = torch_backward(ts, y, gy)
    got = conv_grads(case, x, weight, gy)
    for name, a, b in zip(("grad_x", "grad_w", "grad_b"), got, want):
        torch_close(a, b, name)


@st.composite
def torch_pool_cases(draw, dilation=True):
    """Cases PyTorch's pooling accepts: symmetric padding <= k // 2."""
    kernel = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pad = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    case = PoolCase(
        n=draw(st.integers(1, 2)), c=draw(st.sampled_from((1, 3, 8))), h=draw(st.integers(1, 8)),
        w=draw(st.integers(1, 9)), kernel=kernel,
        stride=draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3)))),
        dilation=(draw(st.integers(1, 3)), draw(st.integers(1, 3))) if dilation else (1, 1),
        padding=pad, ceil_mode=draw(st.booleans()), dtype=F64, layout=draw(st.sampled_from(LAYOUTS)),
    )
    assume(case.legal())
    return case


@pytest.mark.torch
@examples(0.1)
@given(case=torch_pool_cases(), count_include_pad=st.booleans(),
       divisor_override=st.one_of(st.none(), st.integers(1, 5)), seed=seeds)
def test_pool_backward_matches_torch(case, count_include_pad, divisor_override, seed):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    layout, kw, shape = case.layout, case.kwargs(), layout_shape(case.shape, case.layout)
    gy = case.grad_out(rng)
    stride = case.eff_stride
    pad = (case.pads[0][0], case.pads[1][0])

    # max (no ties; windows without a valid tap have no meaningful PyTorch index)
    x = rng.standard_normal(case.shape)
    values, idx = ref.max_pool2d(x, *case.ref_args(), return_indices=True)
    if np.isfinite(values).all():
        ts, y = torch_grads(lambda t: F.max_pool2d(t, case.kernel, stride, pad, case.dilation,
                                                   ceil_mode=case.ceil_mode), x)
        (want,) = torch_backward(ts, y, gy)
        _, idx = convpool.max_pool2d(to_layout(x, layout), return_indices=True, **kw)
        got = from_layout(convpool.max_pool2d_backward(to_layout(gy, layout), idx, shape, layout=layout), layout)
        torch_close(got, want, "max")

    if case.dilation == (1, 1):  # PyTorch's avg_pool2d has no dilation
        ts, y = torch_grads(lambda t: F.avg_pool2d(t, case.kernel, stride, pad, ceil_mode=case.ceil_mode,
                                                   count_include_pad=count_include_pad,
                                                   divisor_override=divisor_override), x)
        (want,) = torch_backward(ts, y, gy)
        got = run_layout(convpool.avg_pool2d_backward, layout, gy, input_shape=shape, **kw,
                         count_include_pad=count_include_pad, divisor_override=divisor_override)
        torch_close(got, want, "avg")


@pytest.mark.torch
@examples(0.1)
@given(
    n=st.integers(1, 2), c=st.sampled_from((1, 3, 8)), h=st.integers(1, 8), w=st.integers(1, 9),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))),
    p=st.sampled_from(NORMS), layout=st.sampled_from(LAYOUTS), seed=seeds,
)
def test_lp_pool2d_backward_matches_torch(n, c, h, w, kernel, stride, p, layout, seed):
    """PyTorch's lp_pool2d agrees for positive inputs without padding or ceil mode."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    assume(h >= kernel[0] and w >= kernel[1])
    rng = np.random.default_rng(seed)
    case = PoolCase(n, c, h, w, kernel, stride, (1, 1), 0, False, F64, layout)
    x = rng.uniform(0.1, 2.0, case.shape)
    gy = case.grad_out(rng)
    ts, y = torch_grads(lambda t: F.lp_pool2d(t, float(p), kernel, case.eff_stride), x)
    (want,) = torch_backward(ts, y, gy)
    got = run_layout(lambda g, xx, **kw: convpool.lp_pool2d_backward(g, xx, p, **kw), layout, gy, x,
                     **case.kwargs())
    torch_close(got, want, "lp")


@pytest.mark.torch
@examples(0.1)
@given(
    n=st.integers(1, 2), c=st.sampled_from((1, 3, 8)), h=st.integers(1, 8), w=st.integers(1, 9),
    oh=st.integers(1, 10), ow=st.integers(1, 10), layout=st.sampled_from(LAYOUTS), seed=seeds,
)
def test_adaptive_pool_backward_matches_torch(n, c, h, w, oh, ow, layout, seed):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, h, w))
    gy = rng.standard_normal((n, c, oh, ow))
    shape = layout_shape(x.shape, layout)

    ts, y = torch_grads(lambda t: F.adaptive_avg_pool2d(t, (oh, ow)), x)
    (want,) = torch_backward(ts, y, gy)
    torch_close(run_layout(convpool.adaptive_avg_pool2d_backward, layout, gy, input_shape=shape, layout=layout),
                want, "adaptive avg")

    ts, y = torch_grads(lambda t: F.adaptive_max_pool2d(t, (oh, ow)), x)
    (want,) = torch_backward(ts, y, gy)
    _, idx = convpool.adaptive_max_pool2d(to_layout(x, layout), (oh, ow), return_indices=True, layout=layout)
    got = from_layout(convpool.adaptive_max_pool2d_backward(to_layout(gy, layout), idx, shape, layout=layout), layout)
    torch_close(got, want, "adaptive max")


# ============================================================================= bad inputs


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("bad", [-2, -(2**63), 20, 21, 2**40, 2**63 - 1])
def test_max_backward_rejects_out_of_range_indices(layout, bad):
    """Every index is checked before any is used as an address (here H*W = 20)."""
    shape = layout_shape((2, 3, 4, 5), layout)
    gy = np.ones(layout_shape((2, 3, 2, 2), layout), dtype=np.float32)
    idx = np.zeros(gy.shape, dtype=np.int64)
    idx.reshape(-1)[-1] = bad  # the very last one, after many valid ones
    with pytest.raises(ValueError, match="indices"):
        convpool.max_pool2d_backward(gy, idx, shape, layout=layout)
    idx = np.full(gy.shape, 19, dtype=np.int64)  # the largest valid index, and -1
    idx.reshape(-1)[0] = -1
    got = convpool.max_pool2d_backward(gy, idx, shape, layout=layout)
    assert got.sum() == gy.size - 1


def test_max_backward_rejects_bad_indices_array():
    shape, gy = (1, 2, 3, 3), np.ones((1, 2, 2, 2))
    with pytest.raises(TypeError, match="indices"):
        convpool.max_pool2d_backward(gy, np.zeros((1, 2, 2, 2), dtype=np.int32), shape)
    with pytest.raises(TypeError, match="indices"):
        convpool.max_pool2d_backward(gy, np.zeros((1, 2, 2, 2)), shape)
    with pytest.raises(ValueError, match="indices"):
        convpool.max_pool2d_backward(gy, np.zeros((1, 2, 2, 3), dtype=np.int64), shape)
    with pytest.raises(ValueError):  # batch / channels differ from input_shape
        convpool.max_pool2d_backward(gy, np.zeros((1, 2, 2, 2), dtype=np.int64), (1, 3, 3, 3))
    with pytest.raises(ValueError):
        convpool.max_pool2d_backward(gy, np.zeros((1, 2, 2, 2), dtype=np.int64), (2, 2, 3, 3))
    with pytest.raises(ValueError):  # grad_out not 4-D
        convpool.max_pool2d_backward(gy[0], np.zeros((2, 2, 2), dtype=np.int64), shape)
    with pytest.raises(TypeError, match="grad_out"):
        convpool.max_pool2d_backward(gy.astype(np.int64), np.zeros((1, 2, 2, 2), dtype=np.int64), shape)
    with pytest.raises(ValueError, match="indices"):  # the reference checks too
        ref.max_pool2d_backward(gy, np.full((1, 2, 2, 2), 9, dtype=np.int64), shape)


BAD_SHAPES_VALUE = [(1, 2, 5), (1, 2, 5, 5, 1), (1, 2, 0, 5), (1, 2, 5, 0), (-1, 2, 5, 5), (1, -2, 5, 5), "1255"]


def pool_calls(layout="NCHW"):
    """Every pooling backward with valid arguments for x of NCHW shape (1, 2, 5, 5), as
    functions of (grad_out, input_shape)."""
    x = to_layout(np.random.default_rng(0).standard_normal((1, 2, 5, 5)), layout)
    _, idx = convpool.max_pool2d(x, 2, layout=layout, return_indices=True)
    return {
        "max": lambda g, s: convpool.max_pool2d_backward(g, idx, s, layout=layout),
        "avg": lambda g, s: convpool.avg_pool2d_backward(g, s, 2, layout=layout),
        "adaptive_avg": lambda g, s: convpool.adaptive_avg_pool2d_backward(g, s, layout=layout),
        "global_avg": lambda g, s: convpool.global_avg_pool2d_backward(g, s, layout=layout),
    }


@pytest.mark.parametrize("name", ["max", "avg", "adaptive_avg", "global_avg"])
@pytest.mark.parametrize("bad", BAD_SHAPES_VALUE, ids=str)
def test_pool_backward_rejects_bad_input_shape(name, bad):
    call = pool_calls()[name]
    gy = np.ones((1, 2, 1, 1) if name == "global_avg" else (1, 2, 2, 2))
    call(gy, (1, 2, 5, 5))  # fine
    with pytest.raises(ValueError, match="input_shape"):
        call(gy, bad)
    with pytest.raises(TypeError, match="input_shape"):
        call(gy, (1, 2, 5.0, 5))
    if name != "global_avg":
        with pytest.raises(ValueError):  # channels disagree with grad_out
            call(gy, (1, 3, 5, 5))


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pool_backward_rejects_bad_grad_out(layout):
    x = to_layout(np.random.default_rng(0).standard_normal((1, 2, 5, 5)), layout)
    shape = x.shape
    good = np.ones(layout_shape((1, 2, 2, 2), layout))  # kernel 2 on 5x5
    wrong = [np.ones(layout_shape((1, 2, 3, 2), layout)), np.ones(layout_shape((1, 2, 2, 3), layout)),
             np.ones(layout_shape((2, 2, 2, 2), layout)), np.ones(layout_shape((1, 1, 2, 2), layout)),
             np.ones((2, 2, 2))]
    convpool.avg_pool2d_backward(good, shape, 2, layout=layout)
    convpool.lp_pool2d_backward(good, x, 2, 2, layout=layout)
    for g in wrong:
        with pytest.raises(ValueError, match="grad_out"):
            convpool.avg_pool2d_backward(g, shape, 2, layout=layout)
        with pytest.raises(ValueError, match="grad_out"):
            convpool.lp_pool2d_backward(g, x, 2, 2, layout=layout)
    with pytest.raises(ValueError, match="grad_out"):
        convpool.global_avg_pool2d_backward(good, shape, layout=layout)
    with pytest.raises(ValueError, match="grad_out"):
        convpool.global_max_pool2d_backward(good, x, layout=layout)
    # dtypes: lp's grad_out must match x; integers are never accepted
    with pytest.raises(TypeError, match="grad_out"):
        convpool.lp_pool2d_backward(good.astype(np.float32), x, 2, 2, layout=layout)
    for call in pool_calls(layout).values():
        with pytest.raises(TypeError, match="grad_out"):
            call(good.astype(np.int32), shape)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_global_max_backward_rejects_grad_out_dtype_mismatch(layout):
    x = np.zeros(layout_shape((1, 2, 5, 5), layout))
    with pytest.raises(TypeError, match="grad_out"):
        convpool.global_max_pool2d_backward(np.ones(layout_shape((1, 2, 1, 1), layout), np.float32), x,
                                            layout=layout)


def test_conv2d_backward_rejects_bad_grad_out():
    x = np.zeros((2, 3, 6, 6))
    w = np.zeros((4, 3, 3, 3))
    good = np.zeros((2, 4, 2, 2))  # stride 2, no padding
    kw = dict(stride=2)
    convpool.conv2d_backward(good, x, w, **kw)
    for bad in [np.zeros((2, 4, 2, 3)), np.zeros((2, 3, 2, 2)), np.zeros((1, 4, 2, 2)), np.zeros((2, 4, 2))]:
        for flags in [(True, True, True), (True, False, False), (False, True, False), (False, False, True)]:
            with pytest.raises(ValueError, match="grad_out"):
                convpool.conv2d_backward(bad, x, w, input_grad=flags[0], weight_grad=flags[1],
                                         bias_grad=flags[2], **kw)
    with pytest.raises(TypeError, match="grad_out"):
        convpool.conv2d_backward(good.astype(np.float32), x, w, **kw)
    with pytest.raises(TypeError, match="grad_out"):
        convpool.conv2d_backward(good.astype(np.int64), x, w, **kw)
    with pytest.raises(TypeError):  # x and weight dtypes differ
        convpool.conv2d_backward(good, x, w.astype(np.float32), **kw)
    with pytest.raises(ValueError):  # weight does not fit x
        convpool.conv2d_backward(good, x, np.zeros((4, 2, 3, 3)), **kw)
    with pytest.raises(TypeError):
        convpool.conv2d_backward(good, x, w, input_grad=1, **kw)
