"""Tests of the pure-NumPy oracle ``convpool.reference`` itself.

Three independent sources of truth are used:

(a) hand-computed tiny cases (the derivation is in the comments);
(b) a deliberately naive scalar-loop transcription of docs/semantics.md
    (``_naive_*`` below), swept with hypothesis over the *whole* argument
    space, including what PyTorch cannot do (asymmetric padding, pads up to
    the dilated kernel extent, dilated avg/lp pooling, integer dtypes, NaNs);
(c) PyTorch (float64), for the cases PyTorch supports.

Only ``convpool.reference`` is imported, so these tests run before the
compiled extension exists.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings, strategies as st

try:
    from convpool import reference as ref
except ImportError:  # e.g. the package __init__ needs the not-yet-built _core
    _path = Path(__file__).resolve().parents[1] / "python" / "convpool" / "reference.py"
    _spec = importlib.util.spec_from_file_location("_convpool_reference_standalone", _path)
    ref = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(ref)


NAN = np.nan
INF = np.inf
NOPAD = ((0, 0), (0, 0))

RTOL = 1e-12
ATOL = 1e-12

SWEEP = settings(
    deadline=None,
    max_examples=50,
    database=None,  # keep the repository clean (no .hypothesis/ directory)
    suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow],
)


def pad2(p: int):
    return ((p, p), (p, p))


def arange44() -> np.ndarray:
    # x[0, 0, h, w] = 4*h + w:
    #    0  1  2  3
    #    4  5  6  7
    #    8  9 10 11
    #   12 13 14 15
    return np.arange(16, dtype=np.float64).reshape(1, 1, 4, 4)


def assert_same(actual, expected, *, rtol=RTOL, atol=ATOL):
    """dtype, shape and values (NaN == NaN, +-inf exact) must all agree."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.dtype == expected.dtype, (actual.dtype, expected.dtype)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    if actual.dtype.kind in "iu":
        np.testing.assert_array_equal(actual, expected)
    else:
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, equal_nan=True)


# =============================================================================
# (a) Hand-computed cases
# =============================================================================


class TestOutputSize:
    @pytest.mark.parametrize(
        "args, expected",
        [
            # (in, k, s, d, pb, pa, ceil)
            ((5, 3, 2, 1, 1, 1, False), 3),  # (5+2-3)//2 + 1 = 3
            ((4, 2, 2, 1, 0, 0, False), 2),  # (4-2)//2 + 1 = 2
            ((4, 3, 2, 1, 0, 0, False), 1),  # (4-3)//2 + 1 = 1
            ((4, 3, 2, 1, 0, 0, True), 2),  # (4-3+1)//2 + 1 = 2; last start 2 < 4 kept
            ((7, 3, 1, 2, 0, 0, False), 3),  # k_eff = 5: (7-5)//1 + 1 = 3
            ((3, 2, 1, 2, 0, 0, False), 1),  # k_eff = 3: (3-3)//1 + 1 = 1
            ((4, 2, 3, 1, 0, 0, False), 1),  # (4-2)//3 + 1 = 1
            ((4, 2, 3, 1, 0, 0, True), 2),  # (4-2+2)//3 + 1 = 2; last start 3 < 4 kept
        ],
    )
    def test_basic(self, args, expected):
        assert ref.output_size(*args) == expected

    def test_dilated_padded(self):
        # in=7, k=3, d=3 -> k_eff = 7; pads 3+3; s=2: (7+6-7)//2 + 1 = 3 + 1 = 4.
        assert ref.output_size(7, 3, 2, 3, 3, 3) == 4

    def test_ceil_drops_window_starting_in_trailing_padding(self):
        # in=1, k=2, s=2, pads (1, 1): ceil gives (1+2-2+1)//2 + 1 = 2, but the 2nd
        # window would start at (2-1)*2 = 2 >= in + pb = 2, i.e. entirely in the
        # trailing padding -> dropped -> 1.
        assert ref.output_size(1, 2, 2, 1, 1, 1, ceil_mode=True) == 1
        # in=4, k=3, s=2, pads (0, 2): ceil gives (4+2-3+1)//2 + 1 = 3; the 3rd
        # window would start at 4 >= 4 + 0 -> dropped -> 2 (floor mode also 2).
        assert ref.output_size(4, 3, 2, 1, 0, 2, ceil_mode=True) == 2
        assert ref.output_size(4, 3, 2, 1, 0, 2, ceil_mode=False) == 2
        # Same but with leading padding 1: ceil (4+3-3+1)//2 + 1 = 3; third window
        # starts at 4 < 4 + 1 -> kept.
        assert ref.output_size(4, 3, 2, 1, 1, 2, ceil_mode=True) == 3

    def test_ceil_allows_window_overhanging_the_input(self):
        # in=2, k=3, s=2: floor (2-3)//2 + 1 = -1 + 1 = 0 -> error,
        # ceil (2-3+1)//2 + 1 = 1 (window [0, 3) overhangs by one; starts at 0 < 2).
        with pytest.raises(ValueError):
            ref.output_size(2, 3, 2, 1, 0, 0, ceil_mode=False)
        assert ref.output_size(2, 3, 2, 1, 0, 0, ceil_mode=True) == 1
        # in=1, k=3, s=4: ceil (1-3+3)//4 + 1 = 1: one window starting at 0 < 1 that
        # overhangs the input by 2 (PyTorch agrees: output size 1).
        assert ref.output_size(1, 3, 4, 1, 0, 0, ceil_mode=True) == 1

    @pytest.mark.parametrize(
        "args",
        [
            (2, 3, 1, 1, 0, 0, False),  # (2-3)//1 + 1 = 0
            (3, 2, 1, 3, 0, 0, False),  # k_eff = 4: (3-4)//1 + 1 = 0
            (3, 2, 1, 3, 0, 0, True),  # ceil with s=1 changes nothing: still 0
            (0, 1, 1, 1, 0, 0, False),  # empty input
            (4, 1, 0, 1, 0, 0, False),  # stride 0
            (4, 0, 1, 1, 0, 0, False),  # kernel 0
            (4, 1, 1, 0, 0, 0, False),  # dilation 0
            (4, 1, 1, 1, -1, 0, False),  # negative pad
        ],
    )
    def test_errors(self, args):
        with pytest.raises(ValueError):
            ref.output_size(*args)


class TestSamePadding:
    @pytest.mark.parametrize(
        "args, expected",
        [
            # in=5, k=3, s=2: out = ceil(5/2) = 3; total = (3-1)*2 + 3 - 5 = 2 -> (1, 1)
            ((5, 3, 2, 1), (1, 1)),
            # in=6, k=3, s=2: out = 3; total = 4 + 3 - 6 = 1 -> upper (0, 1)
            ((6, 3, 2, 1), (0, 1)),
            # in=5, k=3, s=1, d=2: k_eff = 5; out = 5; total = 4 + 5 - 5 = 4 -> (2, 2)
            ((5, 3, 1, 2), (2, 2)),
            # in=4, k=1, s=2: out = 2; total = max(0, 2 + 1 - 4) = 0
            ((4, 1, 2, 1), (0, 0)),
            # in=7, k=4, s=3: out = 3; total = 6 + 4 - 7 = 3 -> upper (1, 2)
            ((7, 4, 3, 1), (1, 2)),
            # in=3, k=1, s=5: out = 1; total = max(0, 0 + 1 - 3) = 0
            ((3, 1, 5, 1), (0, 0)),
        ],
    )
    def test_upper_and_lower(self, args, expected):
        before, after = expected
        assert ref.same_padding(*args) == (before, after)
        assert ref.same_padding(*args, lower=False) == (before, after)
        assert ref.same_padding(*args, lower=True) == (after, before)

    @given(
        n=st.integers(1, 40),
        k=st.integers(1, 6),
        s=st.integers(1, 5),
        d=st.integers(1, 4),
        lower=st.booleans(),
    )
    @SWEEP
    def test_same_gives_ceil_in_over_stride(self, n, k, s, d, lower):
        before, after = ref.same_padding(n, k, s, d, lower=lower)
        assert 0 <= before and 0 <= after and abs(before - after) <= 1
        assert (before >= after) if lower else (after >= before)
        assert ref.output_size(n, k, s, d, before, after) == math.ceil(n / s)


class TestConvHand:
    W1234 = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])

    def test_valid(self):
        # out[a,b] = x[a,b] + 2x[a,b+1] + 3x[a+1,b] + 4x[a+1,b+1] with x = 4a+b
        #          = 10(4a+b) + 2*1 + 3*4 + 4*5 = 40a + 10b + 34
        a, b = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
        expected = (40 * a + 10 * b + 34).astype(np.float64)[None, None]
        assert_same(ref.conv2d(arange44(), self.W1234), expected)

    def test_bias(self):
        a, b = np.meshgrid(np.arange(3), np.arange(3), indexing="ij")
        expected = (40 * a + 10 * b + 34 - 0.5)[None, None]
        assert_same(ref.conv2d(arange44(), self.W1234, np.array([-0.5])), expected)

    def test_padded_strided(self):
        # pad 1 all round, stride 2, k=2: out = (4+2-2)//2 + 1 = 3.
        # out[o,p] reads rows 2o-1, 2o and cols 2p-1, 2p (row/col -1 is padding).
        # out[0,0] = 4*x[0,0] = 0
        # out[0,1] = 3*x[0,1] + 4*x[0,2] = 3 + 8 = 11
        # out[0,2] = 3*x[0,3] = 9                      (col 4 is padding)
        # out[1,0] = 2*x[1,0] + 4*x[2,0] = 8 + 32 = 40
        # out[1,1] = 40 + 10 + 34 = 84                 (interior formula)
        # out[1,2] = x[1,3] + 3*x[2,3] = 7 + 33 = 40
        # out[2,0] = 2*x[3,0] = 24
        # out[2,1] = x[3,1] + 2*x[3,2] = 13 + 28 = 41
        # out[2,2] = x[3,3] = 15
        expected = np.array([[0, 11, 9], [40, 84, 40], [24, 41, 15]], dtype=np.float64)
        assert_same(ref.conv2d(arange44(), self.W1234, stride=(2, 2), padding=pad2(1)), expected[None, None])

    def test_asymmetric_padding(self):
        # top 1, bottom 0, left 0, right 2, k=2, s=1: out = (4+1-2+1, 4+2-2+1) = (4, 5).
        # Row o reads x rows o-1, o. Spot checks:
        # out[0,0] = 3*x[0,0] + 4*x[0,1] = 4
        # out[0,4] = 3*x[0,4](pad) ... = 0 (cols 4,5 are padding)
        # out[3,3] = x[2,3] + 2*x[2,4](pad) + 3*x[3,3] + 4*pad = 11 + 45 = 56
        out = ref.conv2d(arange44(), self.W1234, padding=((1, 0), (0, 2)))
        assert out.shape == (1, 1, 4, 5)
        assert out[0, 0, 0, 0] == 4.0
        assert out[0, 0, 0, 4] == 0.0
        assert out[0, 0, 3, 3] == 56.0
        assert out[0, 0, 2, 1] == 40 * 1 + 10 * 1 + 34  # interior: rows 1,2 cols 1,2

    def test_dilated(self):
        # d=2: taps x[a,b], x[a,b+2], x[a+2,b], x[a+2,b+2] -> out 2x2
        # = x + 2(x+2) + 3(x+8) + 4(x+10) = 10x + 68 with x = 4a+b
        expected = np.array([[68, 78], [108, 118]], dtype=np.float64)[None, None]
        assert_same(ref.conv2d(arange44(), self.W1234, dilation=(2, 2)), expected)

    def test_groups_channel_order(self):
        # C=2, groups=2, K=4: output channels 0,1 read input channel 0; 2,3 channel 1.
        x = np.stack([arange44()[0, 0], 100 + arange44()[0, 0]])[None]  # (1, 2, 4, 4)
        w = np.array([1.0, 10.0, 100.0, 1000.0]).reshape(4, 1, 1, 1)
        out = ref.conv2d(x, w, groups=2)
        expected = np.stack([x[0, 0], 10 * x[0, 0], 100 * x[0, 1], 1000 * x[0, 1]])[None]
        assert_same(out, expected)

    def test_channels_summed_within_group(self):
        # C=4, groups=2, K=2, 1x1 kernel: out0 = x0 + 2*x1, out1 = 3*x2 + 4*x3.
        x = np.arange(4 * 2 * 2, dtype=np.float64).reshape(1, 4, 2, 2)
        w = np.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
        expected = np.stack([x[0, 0] + 2 * x[0, 1], 3 * x[0, 2] + 4 * x[0, 3]])[None]
        assert_same(ref.conv2d(x, w, groups=2), expected)

    def test_float32_accumulates_in_float64(self):
        # 1e8 + 1 - 1e8: float32 running sums lose the 1 (1e8 + 1 rounds to 1e8);
        # float64 accumulation then rounding to float32 gives exactly 1.
        x = np.array([1e8, 1.0, -1e8], dtype=np.float32).reshape(1, 3, 1, 1)
        w = np.ones((1, 3, 1, 1), dtype=np.float32)
        out = ref.conv2d(x, w)
        assert out.dtype == np.float32
        assert out[0, 0, 0, 0] == 1.0
        # Same across kernel taps (one channel, a 1x3 kernel).
        out = ref.conv2d(x.reshape(1, 1, 1, 3), w.reshape(1, 1, 1, 3))
        assert out.dtype == np.float32
        assert out[0, 0, 0, 0] == 1.0

    def test_large_padding_allowed(self):
        # Conv allows any pad: pad 3 with a 1x1 kernel gives a zero border of 3.
        x = np.ones((1, 1, 2, 2))
        out = ref.conv2d(x, np.full((1, 1, 1, 1), 2.0), padding=pad2(3))
        expected = np.zeros((1, 1, 8, 8))
        expected[0, 0, 3:5, 3:5] = 2.0
        assert_same(out, expected)

    def test_errors(self):
        x = np.zeros((1, 4, 3, 3))
        with pytest.raises(ValueError):
            ref.conv2d(x, np.zeros((2, 3, 1, 1)), groups=2)  # weight.shape[1] != 2
        with pytest.raises(ValueError):
            ref.conv2d(x, np.zeros((3, 2, 1, 1)), groups=2)  # K % groups != 0
        with pytest.raises(ValueError):
            ref.conv2d(x, np.zeros((2, 4, 4, 4)))  # kernel larger than input
        with pytest.raises(ValueError):
            ref.conv2d(x, np.zeros((2, 4, 1, 1)), bias=np.zeros(3))
        with pytest.raises(TypeError):
            ref.conv2d(x.astype(np.int32), np.zeros((2, 4, 1, 1)))


class TestMaxPoolHand:
    def test_values_and_indices(self):
        # y = 15 - (4h + w): the max of a window is its top-left element, so the
        # index is the window's first flat position -- and differs from the value.
        x = 15.0 - arange44()
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(y, np.array([[[[15.0, 13.0], [7.0, 5.0]]]]))
        assert_same(idx, np.array([[[[0, 2], [8, 10]]]], dtype=np.int64))
        # Increasing input: max is the bottom-right element of each window.
        y, idx = ref.max_pool2d(arange44(), (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(y, np.array([[[[5.0, 7.0], [13.0, 15.0]]]]))
        assert_same(idx, np.array([[[[5, 7], [13, 15]]]], dtype=np.int64))

    def test_overlapping_stride1(self):
        # k=3, s=1 on 4x4 increasing input: out[a,b] = x[a+2,b+2] = 4(a+2) + b + 2
        y, idx = ref.max_pool2d(arange44(), (3, 3), (1, 1), NOPAD, return_indices=True)
        assert_same(y, np.array([[[[10.0, 11.0], [14.0, 15.0]]]]))
        assert_same(idx, np.array([[[[10, 11], [14, 15]]]], dtype=np.int64))

    def test_padding_never_wins(self):
        # All-negative input x[h,w] = -(3h + w + 1), k=3, s=1, pad 1 -> out 3x3.
        # Zero padding would win everywhere; instead the max of the valid taps is
        # the valid top-left element x[max(a-1,0), max(b-1,0)].
        x = -(np.arange(9, dtype=np.float64) + 1).reshape(1, 1, 3, 3)
        y, idx = ref.max_pool2d(x, (3, 3), (1, 1), pad2(1), return_indices=True)
        assert_same(y, np.array([[[[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]]]], dtype=np.float64))
        assert_same(idx, np.array([[[[0, 0, 1], [0, 0, 1], [3, 3, 4]]]], dtype=np.int64))

    def test_ties_go_to_first_in_row_major_order(self):
        # Window 0 = [[1,3],[3,0]]: the 3 at (0,1) (index 1) beats the one at (1,0) (index 4).
        # Window 1 = [[3,1],[0,3]]: the 3 at (0,2) (index 2) beats the one at (1,3) (index 7).
        x = np.array([[1, 3, 3, 1], [3, 0, 0, 3]], dtype=np.float64)[None, None]
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(y, np.array([[[[3.0, 3.0]]]]))
        assert_same(idx, np.array([[[[1, 2]]]], dtype=np.int64))
        # Constant input: every window reports its first tap.
        y, idx = ref.max_pool2d(np.zeros((1, 1, 4, 4)), (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(idx, np.array([[[[0, 2], [8, 10]]]], dtype=np.int64))

    def test_nan_first_nan_index(self):
        # Window 0 taps (row-major): 1, nan@1, nan@4, 0  -> nan, index 1 (first NaN;
        #   PyTorch says 4, the last NaN).
        # Window 1 taps: 5, nan@3, 9, 2 -> nan, index 3: the larger 9 after the NaN
        #   must not replace it.
        x = np.array([[1, NAN, 5, NAN], [NAN, 0, 9, 2]])[None, None]
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert np.isnan(y).all()
        assert_same(idx, np.array([[[[1, 3]]]], dtype=np.int64))

    def test_nan_first_tap_and_last_tap(self):
        # [[nan, 7], [8, 9]] -> nan@0 ; [[1, 2], [3, nan]] -> nan@3 (beats the 3)
        x = np.array([[NAN, 7, 1, 2], [8, 9, 3, NAN]])[None, None]
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert np.isnan(y).all()
        assert_same(idx, np.array([[[[0, 7]]]], dtype=np.int64))

    def test_nan_does_not_leak_into_other_windows(self):
        x = np.array([[NAN, 0, 1, 2], [0, 0, 3, 4]])[None, None]
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert np.isnan(y[0, 0, 0, 0]) and y[0, 0, 0, 1] == 4.0
        assert_same(idx, np.array([[[[0, 7]]]], dtype=np.int64))

    def test_inf(self):
        x = np.array([[-INF, -INF, 1, INF], [-INF, -INF, INF, 2]])[None, None]
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(y, np.array([[[[-INF, INF]]]]))
        assert_same(idx, np.array([[[[0, 3]]]], dtype=np.int64))

    def test_valid_minus_inf_beats_padding(self):
        # The only valid tap is -inf: the result is that tap (index 0), not "no tap" (-1).
        x = np.full((1, 1, 1, 1), -INF)
        y, idx = ref.max_pool2d(x, (3, 3), (1, 1), pad2(1), return_indices=True)
        assert_same(y, x)
        assert_same(idx, np.zeros((1, 1, 1, 1), dtype=np.int64))

    @pytest.mark.parametrize(
        "dtype, empty",
        [(np.float64, -INF), (np.float32, -INF), (np.int8, -128), (np.uint8, 0), (np.int64, np.iinfo(np.int64).min)],
    )
    def test_window_without_valid_tap(self, dtype, empty):
        # Per axis: in=2, k=2, d=3 (k_eff=4), pads (2,2), s=1 -> out = (2+4-4)+1 = 3.
        # Window o taps at o-2 and o+1:  o=0: -2, 1 -> {1};  o=1: -1, 2 -> {} (empty);
        # o=2: 0, 3 -> {0}.  So with x = [[1,2],[3,4]]:
        #   out = [[x[1,1], E, x[1,0]], [E, E, E], [x[0,1], E, x[0,0]]]
        x = np.array([[1, 2], [3, 4]], dtype=dtype)[None, None]
        y, idx = ref.max_pool2d(x, (2, 2), (1, 1), pad2(2), (3, 3), return_indices=True)
        expected = np.array([[4, empty, 3], [empty, empty, empty], [2, empty, 1]], dtype=dtype)[None, None]
        assert_same(y, expected)
        assert_same(idx, np.array([[[[3, -1, 2], [-1, -1, -1], [1, -1, 0]]]], dtype=np.int64))

    def test_asymmetric_padding_and_ceil(self):
        # 1x1x1x4 row [0,1,2,3]; k=(1,3), s=(1,2), pads left 2, right 0, ceil:
        # out_w = (4+2-3+1)//2 + 1 = 3; 3rd window would start at 4 - 2 = 2 -> kept?
        # rule: (3-1)*2 = 4 >= 4 + 2 = 6? no -> kept.  Windows (input coords):
        #   o=0: -2,-1,0 -> max 0 @0 ; o=1: 0,1,2 -> 2 @2 ; o=2: 2,3,4 -> 3 @3
        x = np.arange(4, dtype=np.float64).reshape(1, 1, 1, 4)
        y, idx = ref.max_pool2d(x, (1, 3), (1, 2), ((0, 0), (2, 0)), ceil_mode=True, return_indices=True)
        assert_same(y, np.array([[[[0.0, 2.0, 3.0]]]]))
        assert_same(idx, np.array([[[[0, 2, 3]]]], dtype=np.int64))
        y = ref.max_pool2d(x, (1, 3), (1, 2), ((0, 0), (2, 0)), ceil_mode=False)
        assert_same(y, np.array([[[[0.0, 2.0]]]]))

    def test_integer_dtypes_exact(self):
        # uint64 / int64 values not representable in float64: a float detour would tie them.
        big = np.array([[2**64 - 2, 2**64 - 1]], dtype=np.uint64)[None, None]
        y, idx = ref.max_pool2d(big, (1, 2), (1, 2), NOPAD, return_indices=True)
        assert y.dtype == np.uint64 and int(y[0, 0, 0, 0]) == 2**64 - 1 and idx[0, 0, 0, 0] == 1
        big = np.array([[2**62 + 1, 2**62]], dtype=np.int64)[None, None]
        y, idx = ref.max_pool2d(big, (1, 2), (1, 2), NOPAD, return_indices=True)
        assert int(y[0, 0, 0, 0]) == 2**62 + 1 and idx[0, 0, 0, 0] == 0

    @pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64])
    def test_all_integer_dtypes(self, dtype):
        x = (15 - np.arange(16)).astype(dtype).reshape(1, 1, 4, 4)
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(y, np.array([[[[15, 13], [7, 5]]]], dtype=dtype))
        assert_same(idx, np.array([[[[0, 2], [8, 10]]]], dtype=np.int64))

    def test_rejected_dtypes(self):
        for dtype in (np.float16, np.bool_, np.complex128):
            with pytest.raises(TypeError):
                ref.max_pool2d(np.zeros((1, 1, 2, 2), dtype=dtype), (2, 2), (2, 2), NOPAD)

    def test_float32_stays_float32(self):
        x = (15.0 - arange44()).astype(np.float32)
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(y, np.array([[[[15.0, 13.0], [7.0, 5.0]]]], dtype=np.float32))

    def test_multi_batch_channel_indices_are_per_plane(self):
        x = np.stack([arange44()[0], 15.0 - arange44()[0]])  # (2, 1, 4, 4)
        _, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(idx, np.array([[[[5, 7], [13, 15]]], [[[0, 2], [8, 10]]]], dtype=np.int64))

    def test_non_contiguous_and_read_only(self):
        base = np.arange(64, dtype=np.float64).reshape(1, 1, 8, 8)
        x = base[:, :, ::2, ::2]  # x[h,w] = 16h + 2w, strided view
        x.flags.writeable = False
        y, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
        assert_same(y, np.array([[[[18.0, 22.0], [50.0, 54.0]]]]))
        assert_same(idx, np.array([[[[5, 7], [13, 15]]]], dtype=np.int64))

    def test_empty_batch(self):
        y, idx = ref.max_pool2d(np.zeros((0, 3, 4, 4)), (2, 2), (2, 2), NOPAD, return_indices=True)
        assert y.shape == (0, 3, 2, 2) and idx.shape == (0, 3, 2, 2) and idx.dtype == np.int64

    def test_output_too_small(self):
        with pytest.raises(ValueError):
            ref.max_pool2d(np.zeros((1, 1, 2, 2)), (3, 3), (1, 1), NOPAD)


class TestAvgPoolHand:
    def test_basic(self):
        # 2x2 windows of the 4x4 arange: mean(0,1,4,5) = 2.5, mean(2,3,6,7) = 4.5, ...
        y = ref.avg_pool2d(arange44(), (2, 2), (2, 2), NOPAD)
        assert_same(y, np.array([[[[2.5, 4.5], [10.5, 12.5]]]]))

    def test_padding_count_include_pad(self):
        # k=3, s=2, pad 1: out = (4+2-3)//2 + 1 = 2; window rows {-1,0,1} / {1,2,3}.
        # (0,0): valid 0+1+4+5 = 10          (0,1): 1+2+3+5+6+7 = 24
        # (1,0): 4+5+8+9+12+13 = 51          (1,1): 5+6+7+9+10+11+13+14+15 = 90
        # include pad: all divisors 9; exclude: 4, 6, 6, 9.
        y = ref.avg_pool2d(arange44(), (3, 3), (2, 2), pad2(1), count_include_pad=True)
        assert_same(y, np.array([[[[10 / 9, 24 / 9], [51 / 9, 90 / 9]]]]))
        y = ref.avg_pool2d(arange44(), (3, 3), (2, 2), pad2(1), count_include_pad=False)
        assert_same(y, np.array([[[[2.5, 4.0], [8.5, 10.0]]]]))

    def test_divisor_override(self):
        y = ref.avg_pool2d(arange44(), (3, 3), (2, 2), pad2(1), divisor_override=2)
        assert_same(y, np.array([[[[5.0, 12.0], [25.5, 45.0]]]]))
        # divisor_override wins over count_include_pad=False too.
        y = ref.avg_pool2d(arange44(), (3, 3), (2, 2), pad2(1), count_include_pad=False, divisor_override=2)
        assert_same(y, np.array([[[[5.0, 12.0], [25.5, 45.0]]]]))

    def test_ceil_mode_without_padding(self):
        # k=3, s=2, ceil: out = 2; window rows {0,1,2}, {2,3,(4)} -- tap 4 is past the
        # input *and* the (zero) padding, so it is not counted even with count_include_pad.
        # (0,0): 0+1+2+4+5+6+8+9+10 = 45 / 9 = 5      (0,1): 2+3+6+7+10+11 = 39 / 6 = 6.5
        # (1,0): 8+9+10+12+13+14 = 66 / 6 = 11         (1,1): 10+11+14+15 = 50 / 4 = 12.5
        for cip in (True, False):
            y = ref.avg_pool2d(arange44(), (3, 3), (2, 2), NOPAD, ceil_mode=True, count_include_pad=cip)
            assert_same(y, np.array([[[[5.0, 6.5], [11.0, 12.5]]]]))

    def test_ceil_mode_with_padding(self):
        # k=3, s=2, pad 1, ceil: out = (4+2-3+1)//2 + 1 = 3 (last start 4 < 5, kept).
        # Row/col windows: o=0: {-1,0,1}, o=1: {1,2,3}, o=2: {3,4,5}.
        # Inside padded extent [-1, 5): 3, 3, 2 taps.  Valid: 2, 3, 1 taps.
        # (2,2): only x[3,3] = 15 valid -> include: 15 / (2*2) = 3.75, exclude: 15.
        # (0,0): 10 -> include 10/9, exclude 2.5.  (0,2): x[0,3]+x[1,3] = 3+7 = 10
        #   -> include 10 / (3*2), exclude 10 / (2*1) = 5.
        y = ref.avg_pool2d(arange44(), (3, 3), (2, 2), pad2(1), ceil_mode=True, count_include_pad=True)
        assert y.shape == (1, 1, 3, 3)
        assert_same(y[0, 0, [2, 0, 0], [2, 0, 2]], np.array([3.75, 10 / 9, 10 / 6]))
        y = ref.avg_pool2d(arange44(), (3, 3), (2, 2), pad2(1), ceil_mode=True, count_include_pad=False)
        assert_same(y[0, 0, [2, 0, 0], [2, 0, 2]], np.array([15.0, 2.5, 5.0]))

    def test_ceil_overhang_window_without_padding_single_axis(self):
        # in=2 (row [0,1]), k=3, s=2, ceil: one window {0,1,(2)}; divisor 2 -> 0.5.
        x = np.arange(2, dtype=np.float64).reshape(1, 1, 1, 2)
        assert_same(ref.avg_pool2d(x, (1, 3), (1, 2), NOPAD, ceil_mode=True), np.full((1, 1, 1, 1), 0.5))

    def test_dilation(self):
        # k=2, d=2 (k_eff=3), s=1, pads top 1/left 1 only: out = (4+1-3)+1 = 3.
        # Row/col taps: o=0: {-1, 1}, o=1: {0, 2}, o=2: {1, 3}.
        # (0,0): valid only x[1,1] = 5; padded-extent taps 2x2 -> include 5/4, exclude 5.
        # (1,1): x[0,0]+x[0,2]+x[2,0]+x[2,2] = 0+2+8+10 = 20 -> 5 either way.
        # (2,2): x[1,1]+x[1,3]+x[3,1]+x[3,3] = 5+7+13+15 = 40 -> 10.
        # (0,2): x[1,1]+x[1,3] = 12 -> include 12/4 = 3, exclude 12/2 = 6.
        pad = ((1, 0), (1, 0))
        y = ref.avg_pool2d(arange44(), (2, 2), (1, 1), pad, (2, 2), count_include_pad=True)
        assert_same(y[0, 0, [0, 1, 2, 0], [0, 1, 2, 2]], np.array([1.25, 5.0, 10.0, 3.0]))
        y = ref.avg_pool2d(arange44(), (2, 2), (1, 1), pad, (2, 2), count_include_pad=False)
        assert_same(y[0, 0, [0, 1, 2, 0], [0, 1, 2, 2]], np.array([5.0, 5.0, 10.0, 6.0]))

    def test_window_without_valid_tap(self):
        # Same geometry as the max-pool case: per axis windows {1}, {}, {0}.
        # include pad: every window has 2x2 taps inside [-2, 4) -> x / 4; empty -> 0.
        # exclude pad: single valid tap -> x; empty -> 0 (divisor 0 -> 0).
        x = np.array([[1.0, 2.0], [3.0, 4.0]])[None, None]
        y = ref.avg_pool2d(x, (2, 2), (1, 1), pad2(2), (3, 3), count_include_pad=True)
        assert_same(y, np.array([[1.0, 0, 0.75], [0, 0, 0], [0.5, 0, 0.25]])[None, None])
        y = ref.avg_pool2d(x, (2, 2), (1, 1), pad2(2), (3, 3), count_include_pad=False)
        assert_same(y, np.array([[4.0, 0, 3.0], [0, 0, 0], [2.0, 0, 1.0]])[None, None])

    def test_float32_accumulates_in_float64(self):
        x = np.array([1e8, 1.0, -1e8, 0.0], dtype=np.float32).reshape(1, 1, 1, 4)
        y = ref.avg_pool2d(x, (1, 4), (1, 4), NOPAD)
        assert y.dtype == np.float32 and y[0, 0, 0, 0] == np.float32(0.25)

    def test_nan_and_inf_propagate(self):
        x = np.array([[NAN, 1.0, INF, -INF]])[None, None]
        y = ref.avg_pool2d(x, (1, 2), (1, 2), NOPAD)
        assert np.isnan(y).all()
        y = ref.avg_pool2d(np.array([[INF, 1.0]])[None, None], (1, 2), (1, 2), NOPAD)
        assert y[0, 0, 0, 0] == INF

    def test_integer_rejected(self):
        with pytest.raises(TypeError):
            ref.avg_pool2d(np.zeros((1, 1, 2, 2), dtype=np.int32), (2, 2), (2, 2), NOPAD)


class TestLpPoolHand:
    def test_p2(self):
        # sqrt(3^2 + 4^2) = 5 (sign ignored), sqrt(0 + 0 + 1 + 0) = 1
        x = np.array([[3.0, -4.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0]])[None, None]
        assert_same(ref.lp_pool2d(x, 2, (2, 2), (2, 2), NOPAD), np.array([[[[5.0, 1.0]]]]))

    def test_p1_uses_abs(self):
        # |1| + |-2| + |3| + |-4| = 10 (PyTorch: 1 - 2 + 3 - 4 = -2, then its own clamping)
        x = np.array([[1.0, -2.0], [3.0, -4.0]])[None, None]
        assert_same(ref.lp_pool2d(x, 1, (2, 2), (2, 2), NOPAD), np.full((1, 1, 1, 1), 10.0))

    def test_p3_fractional(self):
        # p=3: (1 + 8 + 8 + 0)^(1/3) = 17^(1/3); p=1.5: (1 + 2^1.5 + 2^1.5)^(2/3)
        x = np.array([[1.0, 2.0], [-2.0, 0.0]])[None, None]
        assert_same(ref.lp_pool2d(x, 3, (2, 2), (2, 2), NOPAD), np.full((1, 1, 1, 1), 17.0 ** (1 / 3)))
        expected = (1 + 2 * 2**1.5) ** (1 / 1.5)
        assert_same(ref.lp_pool2d(x, 1.5, (2, 2), (2, 2), NOPAD), np.full((1, 1, 1, 1), expected))

    def test_padding_contributes_zero(self):
        # row [3, 4], k=(1,2), s=1, pad 1 left/right: windows {-1,0}, {0,1}, {1,2}
        # -> sqrt(9) = 3, sqrt(9+16) = 5, sqrt(16) = 4
        x = np.array([[3.0, 4.0]])[None, None]
        assert_same(ref.lp_pool2d(x, 2, (1, 2), (1, 1), ((0, 0), (1, 1))), np.array([[[[3.0, 5.0, 4.0]]]]))

    def test_window_without_valid_tap(self):
        x = np.array([[1.0, -2.0], [3.0, 4.0]])[None, None]
        y = ref.lp_pool2d(x, 2, (2, 2), (1, 1), pad2(2), (3, 3))
        assert_same(y, np.array([[4.0, 0, 3.0], [0, 0, 0], [2.0, 0, 1.0]])[None, None])

    def test_float32(self):
        x = np.array([[3.0, -4.0]], dtype=np.float32)[None, None]
        y = ref.lp_pool2d(x, 2, (1, 2), (1, 2), NOPAD)
        assert y.dtype == np.float32 and y[0, 0, 0, 0] == 5.0

    @pytest.mark.parametrize("p", [0, -1, INF, NAN])
    def test_bad_norm_type(self, p):
        with pytest.raises(ValueError):
            ref.lp_pool2d(np.ones((1, 1, 2, 2)), p, (2, 2), (2, 2), NOPAD)


class TestAdaptiveHand:
    def test_in5_out3(self):
        # In=5, Out=3: [0*5//3, ceil(5/3)) = [0,2), [5//3, ceil(10/3)) = [1,4), [10//3, 5) = [3,5)
        x = np.arange(5, dtype=np.float64).reshape(1, 1, 1, 5)
        assert_same(ref.adaptive_avg_pool2d(x, (1, 3)), np.array([[[[0.5, 2.0, 3.5]]]]))
        y, idx = ref.adaptive_max_pool2d(x, (1, 3), return_indices=True)
        assert_same(y, np.array([[[[1.0, 3.0, 4.0]]]]))
        assert_same(idx, np.array([[[[1, 3, 4]]]], dtype=np.int64))

    def test_output_larger_than_input(self):
        # In=2, Out=3: [0, ceil(2/3)) = [0,1), [2//3, ceil(4/3)) = [0,2), [4//3, 2) = [1,2)
        x = np.array([[10.0, 20.0]])[None, None]
        assert_same(ref.adaptive_avg_pool2d(x, (1, 3)), np.array([[[[10.0, 15.0, 20.0]]]]))
        y, idx = ref.adaptive_max_pool2d(x, (1, 3), return_indices=True)
        assert_same(y, np.array([[[[10.0, 20.0, 20.0]]]]))
        assert_same(idx, np.array([[[[0, 1, 1]]]], dtype=np.int64))

    def test_2d_indices(self):
        # 4x4 reversed arange, output (3, 2): rows [0,2),[1,3),[2,4); cols [0,2),[2,4).
        # max is each window's top-left: (0,0)->0, (0,1)->2, (1,0)->4, (1,1)->6, (2,0)->8, (2,1)->10
        x = 15.0 - arange44()
        y, idx = ref.adaptive_max_pool2d(x, (3, 2), return_indices=True)
        assert_same(idx, np.array([[[[0, 2], [4, 6], [8, 10]]]], dtype=np.int64))
        assert_same(y, 15.0 - idx.astype(np.float64))
        # avg (1,1) of rows [1,3) cols [2,4) of arange: (6+7+10+11)/4 = 8.5
        assert ref.adaptive_avg_pool2d(arange44(), (3, 2))[0, 0, 1, 1] == 8.5

    def test_nan_first_and_ties(self):
        x = np.array([[2.0, NAN, 2.0, NAN, 1.0, 3.0, 3.0]])[None, None]
        # Out=2: [0, 4) -> nan, first NaN @1 ; [3, 7) -> nan @3
        y, idx = ref.adaptive_max_pool2d(x, (1, 2), return_indices=True)
        assert np.isnan(y).all()
        assert_same(idx, np.array([[[[1, 3]]]], dtype=np.int64))
        # Out=3 on [2, 2, 1, 3, 3, 0, 0]: [0,3) tie 2 @0 ; [2,5) 3 @3 ; [4,7) 3 @4
        x = np.array([[2.0, 2.0, 1.0, 3.0, 3.0, 0.0, 0.0]])[None, None]
        _, idx = ref.adaptive_max_pool2d(x, (1, 3), return_indices=True)
        assert_same(idx, np.array([[[[0, 3, 4]]]], dtype=np.int64))

    def test_integer_max(self):
        x = np.array([[-5, -3, -128]], dtype=np.int8)[None, None]
        y, idx = ref.adaptive_max_pool2d(x, (1, 1), return_indices=True)
        assert y.dtype == np.int8 and y[0, 0, 0, 0] == -3 and idx[0, 0, 0, 0] == 1

    def test_errors(self):
        with pytest.raises(ValueError):
            ref.adaptive_avg_pool2d(np.zeros((1, 1, 2, 2)), (0, 1))
        with pytest.raises(ValueError):
            ref.adaptive_max_pool2d(np.zeros((1, 1, 0, 2)), (1, 1))
        with pytest.raises(TypeError):
            ref.adaptive_avg_pool2d(np.zeros((1, 1, 2, 2), dtype=np.int64), (1, 1))


class TestGlobalHand:
    def test_global(self):
        x = np.stack([arange44()[0], 15.0 - arange44()[0]])  # (2, 1, 4, 4)
        assert_same(ref.global_avg_pool2d(x), np.full((2, 1, 1, 1), 7.5))
        assert_same(ref.global_max_pool2d(x), np.full((2, 1, 1, 1), 15.0))
        x32 = x.astype(np.float32)
        assert ref.global_avg_pool2d(x32).dtype == np.float32
        assert ref.global_max_pool2d(x.astype(np.uint16)).dtype == np.uint16

    def test_global_max_nan(self):
        x = np.array([[1.0, NAN], [9.0, 2.0]])[None, None]
        assert np.isnan(ref.global_max_pool2d(x)).all()


def test_module_surface():
    assert set(ref.__all__) == {
        "conv2d", "max_pool2d", "avg_pool2d", "lp_pool2d", "adaptive_avg_pool2d",
        "adaptive_max_pool2d", "global_avg_pool2d", "global_max_pool2d", "output_size", "same_padding",
        "conv2d_backward", "max_pool2d_backward", "avg_pool2d_backward", "lp_pool2d_backward",
        "adaptive_avg_pool2d_backward", "adaptive_max_pool2d_backward", "global_avg_pool2d_backward",
        "global_max_pool2d_backward",
    }
    for name in ref.__all__:
        assert callable(getattr(ref, name)) and getattr(ref, name).__doc__


def test_reference_is_standalone():
    # The reference must import nothing from convpool (only numpy).
    src = (Path(ref.__file__)).read_text()
    imports = [ln.strip() for ln in src.splitlines() if ln.strip().startswith(("import ", "from "))]
    assert all("convpool" not in ln and "." not in ln.split()[1][:1] for ln in imports), imports
    assert {ln.split()[1] for ln in imports} <= {"__future__", "typing", "numpy"}


# =============================================================================
# (b) Naive scalar-loop transcription of the spec, swept with hypothesis
# =============================================================================


def _naive_out_size(n, k, s, d, pb, pa, ceil):
    """Count windows by enumeration instead of the closed formula.

    Window o covers padded coordinates [o*s, o*s + k_eff).  Floor mode: the window
    fits in the padded extent.  Ceil mode: the previous window did not reach the
    end of the padded extent (i.e. this one still covers something new) and the
    window starts inside the input or the leading padding.
    """
    k_eff = d * (k - 1) + 1
    padded = n + pb + pa
    o = 0
    while True:
        if ceil:
            # Window o exists if the previous window had not yet reached the end of
            # the padded extent -- (o-1)*s + k_eff < padded, i.e. o*s < padded -
            # k_eff + s, which also covers o = 0 -- and it starts inside the input
            # or the leading padding.
            ok = o * s < padded - k_eff + s and o * s < n + pb
        else:
            ok = o * s + k_eff <= padded
        if not ok:
            return o
        o += 1


def _naive_windows(x_shape, k, s, d, pad, ceil):
    """[(oh, ow, taps)] where taps = [(pos_h, pos_w, valid, in_padded)] in row-major order."""
    H, W = x_shape[2], x_shape[3]
    (pt, pb), (pl, pr) = pad
    oh = _naive_out_size(H, k[0], s[0], d[0], pt, pb, ceil)
    ow = _naive_out_size(W, k[1], s[1], d[1], pl, pr, ceil)
    out = []
    for a in range(oh):
        for b in range(ow):
            taps = []
            for i in range(k[0]):
                for j in range(k[1]):
                    ph = a * s[0] - pt + i * d[0]
                    pw = b * s[1] - pl + j * d[1]
                    valid = 0 <= ph < H and 0 <= pw < W
                    inpad = -pt <= ph < H + pb and -pl <= pw < W + pr
                    taps.append((ph, pw, valid, inpad))
            out.append((a, b, taps))
    return oh, ow, out


def naive_max(x, k, s, pad, d, ceil):
    N, C, H, W = x.shape
    oh, ow, wins = _naive_windows(x.shape, k, s, d, pad, ceil)
    lowest = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
    y = np.empty((N, C, oh, ow), dtype=x.dtype)
    idx = np.empty((N, C, oh, ow), dtype=np.int64)
    for n, c in itertools.product(range(N), range(C)):
        for a, b, taps in wins:
            vals = [(x[n, c, ph, pw], ph * W + pw) for ph, pw, valid, _ in taps if valid]
            if not vals:
                y[n, c, a, b], idx[n, c, a, b] = lowest, -1
                continue
            nans = [v for v in vals if x.dtype.kind == "f" and math.isnan(v[0])]
            if nans:
                best = nans[0]
            else:
                best = vals[0]
                for v in vals[1:]:
                    if v[0] > best[0]:
                        best = v
            y[n, c, a, b], idx[n, c, a, b] = best
    return y, idx


def naive_avg(x, k, s, pad, d, ceil, cip, div):
    N, C, H, W = x.shape
    oh, ow, wins = _naive_windows(x.shape, k, s, d, pad, ceil)
    y = np.empty((N, C, oh, ow), dtype=np.float64)
    for n, c in itertools.product(range(N), range(C)):
        for a, b, taps in wins:
            total = math.fsum(float(x[n, c, ph, pw]) for ph, pw, valid, _ in taps if valid)
            if div is not None:
                count = div
            elif cip:
                count = sum(1 for t in taps if t[3])
            else:
                count = sum(1 for t in taps if t[2])
            y[n, c, a, b] = total / count if count else 0.0
    return y.astype(x.dtype)


def naive_lp(x, p, k, s, pad, d, ceil):
    N, C, H, W = x.shape
    oh, ow, wins = _naive_windows(x.shape, k, s, d, pad, ceil)
    y = np.empty((N, C, oh, ow), dtype=np.float64)
    for n, c in itertools.product(range(N), range(C)):
        for a, b, taps in wins:
            total = math.fsum(abs(float(x[n, c, ph, pw])) ** p for ph, pw, valid, _ in taps if valid)
            y[n, c, a, b] = total ** (1.0 / p)
    return y.astype(x.dtype)


def naive_conv(x, w, bias, s, pad, d, groups):
    N, C, H, W = x.shape
    K, Cg, kh, kw = w.shape
    Kg = K // groups
    (pt, pb), (pl, pr) = pad
    oh = _naive_out_size(H, kh, s[0], d[0], pt, pb, False)
    ow = _naive_out_size(W, kw, s[1], d[1], pl, pr, False)
    y = np.empty((N, K, oh, ow))
    for n, kk, a, b in itertools.product(range(N), range(K), range(oh), range(ow)):
        g = kk // Kg
        terms = [0.0 if bias is None else float(bias[kk])]
        for c, i, j in itertools.product(range(Cg), range(kh), range(kw)):
            ph, pw = a * s[0] - pt + i * d[0], b * s[1] - pl + j * d[1]
            if 0 <= ph < H and 0 <= pw < W:
                terms.append(float(w[kk, c, i, j]) * float(x[n, g * Cg + c, ph, pw]))
        y[n, kk, a, b] = math.fsum(terms)
    return y.astype(x.dtype)


@st.composite
def pool_axes(draw, max_in=7, max_k=4, max_d=3, max_s=3):
    """Per-axis (in, k, s, d, (pb, pa)) with each pad < k_eff (the public API's rule)."""
    axes = []
    for _ in range(2):
        n = draw(st.integers(1, max_in))
        k = draw(st.integers(1, max_k))
        s = draw(st.integers(1, max_s))
        d = draw(st.integers(1, max_d))
        k_eff = d * (k - 1) + 1
        pb = draw(st.integers(0, k_eff - 1))
        pa = draw(st.integers(0, k_eff - 1))
        axes.append((n, k, s, d, (pb, pa)))
    ceil = draw(st.booleans())
    for n, k, s, d, (pb, pa) in axes:
        assume(_naive_out_size(n, k, s, d, pb, pa, ceil) >= 1)
    (h, kh, sh, dh, padh), (w, kw, sw, dw, padw) = axes
    return (h, w), (kh, kw), (sh, sw), (dh, dw), (padh, padw), ceil


def _random_input(seed, shape, dtype, nan_frac=0.0, discrete=False):
    rng = np.random.default_rng(seed)
    if np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    x = rng.integers(-3, 4, size=shape).astype(np.float64) if discrete else rng.standard_normal(shape)
    if nan_frac:
        x[rng.random(shape) < nan_frac] = np.nan
    return x.astype(dtype)


@given(
    params=pool_axes(),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float64, np.float32, np.int8, np.uint8, np.int64, np.uint64]),
    nan_frac=st.sampled_from([0.0, 0.0, 0.2, 0.6]),
    discrete=st.booleans(),
)
@SWEEP
def test_max_pool_matches_naive(params, nc, seed, dtype, nan_frac, discrete):
    hw, k, s, d, pad, ceil = params
    x = _random_input(seed, nc + hw, dtype, nan_frac if np.dtype(dtype).kind == "f" else 0.0, discrete)
    y, idx = ref.max_pool2d(x, k, s, pad, d, ceil, return_indices=True)
    ey, eidx = naive_max(x, k, s, pad, d, ceil)
    assert_same(y, ey, rtol=0, atol=0)
    assert_same(idx, eidx)
    assert_same(ref.max_pool2d(x, k, s, pad, d, ceil), ey, rtol=0, atol=0)


@given(
    params=pool_axes(),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float64, np.float32]),
    cip=st.booleans(),
    div=st.one_of(st.none(), st.integers(1, 20)),
)
@SWEEP
def test_avg_pool_matches_naive(params, nc, seed, dtype, cip, div):
    hw, k, s, d, pad, ceil = params
    x = _random_input(seed, nc + hw, dtype)
    y = ref.avg_pool2d(x, k, s, pad, d, ceil, cip, div)
    rtol = RTOL if dtype == np.float64 else 1e-7  # float32: at most one rounding flip
    assert_same(y, naive_avg(x, k, s, pad, d, ceil, cip, div), rtol=rtol)


@given(
    params=pool_axes(),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    seed=st.integers(0, 2**32 - 1),
    p=st.sampled_from([1.0, 2.0, 3.0, 0.5, 1.5, 4.0]),
)
@SWEEP
def test_lp_pool_matches_naive(params, nc, seed, p):
    hw, k, s, d, pad, ceil = params
    x = _random_input(seed, nc + hw, np.float64)  # includes negative values
    assert_same(ref.lp_pool2d(x, p, k, s, pad, d, ceil), naive_lp(x, p, k, s, pad, d, ceil))


@given(
    hw=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    n=st.integers(1, 2),
    groups=st.integers(1, 3),
    cg=st.integers(1, 2),
    kg=st.integers(1, 2),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pad=st.tuples(st.tuples(st.integers(0, 4), st.integers(0, 4)), st.tuples(st.integers(0, 4), st.integers(0, 4))),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@SWEEP
def test_conv_matches_naive(hw, n, groups, cg, kg, k, s, d, pad, with_bias, seed):
    for axis in range(2):
        k_eff = d[axis] * (k[axis] - 1) + 1
        assume(hw[axis] + sum(pad[axis]) >= k_eff)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * cg) + hw)
    w = rng.standard_normal((groups * kg, cg) + k)
    b = rng.standard_normal(groups * kg) if with_bias else None
    assert_same(ref.conv2d(x, w, b, s, pad, d, groups), naive_conv(x, w, b, s, pad, d, groups))


@given(
    hw=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    out=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.float64, np.int16, np.uint32]),
    nan_frac=st.sampled_from([0.0, 0.3]),
)
@SWEEP
def test_adaptive_matches_naive(hw, out, seed, dtype, nan_frac):
    # Naive windows from real-number floor/ceil (exact for these small sizes).
    H, W = hw
    x = _random_input(seed, (2, 2) + hw, dtype, nan_frac if dtype == np.float64 else 0.0, discrete=True)
    y, idx = ref.adaptive_max_pool2d(x, out, return_indices=True)
    ey = np.empty((2, 2) + out, dtype=x.dtype)
    eidx = np.empty((2, 2) + out, dtype=np.int64)
    eavg = np.empty((2, 2) + out)
    for a, b in itertools.product(range(out[0]), range(out[1])):
        hs, he = math.floor(a * H / out[0]), math.ceil((a + 1) * H / out[0])
        ws, we = math.floor(b * W / out[1]), math.ceil((b + 1) * W / out[1])
        taps = [(ph, pw, True, True) for ph in range(hs, he) for pw in range(ws, we)]
        for n, c in itertools.product(range(2), range(2)):
            vals = [(x[n, c, ph, pw], ph * W + pw) for ph, pw, _, _ in taps]
            nans = [v for v in vals if dtype == np.float64 and math.isnan(v[0])]
            best = nans[0] if nans else max(vals, key=lambda v: (v[0], -v[1]))
            ey[n, c, a, b], eidx[n, c, a, b] = best
            eavg[n, c, a, b] = math.fsum(float(v[0]) for v in vals) / len(vals)
    assert_same(y, ey, rtol=0, atol=0)
    assert_same(idx, eidx)
    if dtype == np.float64:
        assert_same(ref.adaptive_avg_pool2d(x, out), eavg)


# =============================================================================
# (c) Comparison against PyTorch (float64)
# =============================================================================


@pytest.fixture(scope="module")
def torch():
    return pytest.importorskip("torch")


def _t(torch, x):
    return torch.from_numpy(np.ascontiguousarray(x))


def _n(t):
    return t.detach().numpy()


def pad_pair(p):
    return (p, p)


@st.composite
def torch_pool_axes(draw, max_dilation=3, avg=False):
    """Per-axis params PyTorch accepts: pad <= k // 2 (the *undilated* kernel:
    PyTorch's "pad should be smaller than or equal to half of kernel size");
    avg pool has no dilation."""
    axes = []
    for _ in range(2):
        k = draw(st.integers(1, 4))
        s = draw(st.integers(1, 3))
        d = 1 if avg else draw(st.integers(1, max_dilation))
        p = draw(st.integers(0, k // 2))
        n = draw(st.integers(1, 9))
        axes.append((n, k, s, d, p))
    ceil = draw(st.booleans())
    for n, k, s, d, p in axes:
        try:
            ref.output_size(n, k, s, d, p, p, ceil)
        except ValueError:
            assume(False)
    return tuple(zip(*axes)) + (ceil,)


@pytest.mark.torch
@given(
    params=torch_pool_axes(),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 3)),
    seed=st.integers(0, 2**32 - 1),
    discrete=st.booleans(),
)
@SWEEP
def test_max_pool_vs_torch(torch, params, nc, seed, discrete):
    hw, k, s, d, p, ceil = params
    x = _random_input(seed, nc + hw, np.float64, discrete=discrete)  # discrete -> many ties
    y, idx = ref.max_pool2d(x, k, s, (pad_pair(p[0]), pad_pair(p[1])), d, ceil, return_indices=True)
    ty, tidx = torch.nn.functional.max_pool2d(
        _t(torch, x), k, s, p, d, ceil_mode=ceil, return_indices=True
    )
    assert_same(y, _n(ty), rtol=0, atol=0)
    # Windows with no valid tap (dilation + padding): both give -inf, but PyTorch's
    # index is a meaningless position (see test_max_pool_empty_window_differs_from_torch).
    empty = idx == -1
    assert (y[empty] == -np.inf).all()
    np.testing.assert_array_equal(idx[~empty], _n(tidx)[~empty])


@pytest.mark.torch
def test_max_pool_empty_window_differs_from_torch(torch):
    # H=W=1, kernel (1, 2), dilation (1, 2) -> k_eff 3 along w, pad 1 left/right
    # (allowed by PyTorch: 1 <= 3 // 2).  The single window's taps are at w = -1 and
    # w = 1: no valid tap.  convpool: -inf, index -1.  PyTorch: -inf, index 1
    # (outside the 1x1 plane).
    x = np.full((1, 1, 1, 1), 5.0)
    y, idx = ref.max_pool2d(x, (1, 2), (1, 1), ((0, 0), (1, 1)), (1, 2), return_indices=True)
    assert y[0, 0, 0, 0] == -np.inf and idx[0, 0, 0, 0] == -1
    ty, tidx = torch.nn.functional.max_pool2d(_t(torch, x), (1, 2), 1, (0, 1), (1, 2), return_indices=True)
    assert _n(ty)[0, 0, 0, 0] == -np.inf
    assert _n(tidx)[0, 0, 0, 0] != -1  # PyTorch has no "no tap" index


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.int8, np.uint8, np.int16, np.int32, np.int64])
def test_max_pool_integer_vs_torch(torch, dtype):
    # Integer dtypes PyTorch's CPU max_pool2d supports; small values -> many ties.
    rng = np.random.default_rng(11)
    x = rng.integers(0, 4, size=(2, 3, 9, 8)).astype(dtype)
    x[0, 0, 0, 0] = np.iinfo(dtype).min
    x[1, 2, 8, 7] = np.iinfo(dtype).max
    for k, s, p, d, ceil in [((3, 2), (2, 1), (1, 1), (1, 1), True), ((2, 3), (1, 2), (1, 0), (2, 3), False)]:
        y, idx = ref.max_pool2d(x, k, s, (pad_pair(p[0]), pad_pair(p[1])), d, ceil, return_indices=True)
        ty, tidx = torch.nn.functional.max_pool2d(_t(torch, x), k, s, p, d, ceil_mode=ceil, return_indices=True)
        assert_same(y, _n(ty))
        assert_same(idx, _n(tidx))


@pytest.mark.torch
@given(
    params=torch_pool_axes(),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    seed=st.integers(0, 2**32 - 1),
)
@SWEEP
def test_max_pool_nan_vs_torch(torch, params, nc, seed):
    """Values agree; indices agree except that with several NaNs in a window
    PyTorch reports the last NaN and convpool the first."""
    hw, k, s, d, p, ceil = params
    x = _random_input(seed, nc + hw, np.float64, nan_frac=0.3)
    y, idx = ref.max_pool2d(x, k, s, (pad_pair(p[0]), pad_pair(p[1])), d, ceil, return_indices=True)
    ty, tidx = torch.nn.functional.max_pool2d(_t(torch, x), k, s, p, d, ceil_mode=ceil, return_indices=True)
    ty, tidx = _n(ty), _n(tidx)
    assert_same(y, ty, rtol=0, atol=0)
    nan_out = np.isnan(y)
    empty = idx == -1
    assert (y[empty] == -np.inf).all()
    np.testing.assert_array_equal(idx[~nan_out & ~empty], tidx[~nan_out & ~empty])
    # NaN windows: both indices point at a NaN of the plane, ours no later than theirs.
    planes = x.reshape(x.shape[0], x.shape[1], -1)
    safe_t = np.where(nan_out, tidx, 0)
    ours = np.take_along_axis(planes, np.where(nan_out, idx, 0).reshape(*idx.shape[:2], -1), 2)
    theirs = np.take_along_axis(planes, safe_t.reshape(*tidx.shape[:2], -1), 2)
    assert np.isnan(ours.reshape(idx.shape)[nan_out]).all()
    assert np.isnan(theirs.reshape(idx.shape)[nan_out]).all()
    assert (idx[nan_out] <= tidx[nan_out]).all()  # first NaN vs last NaN


@pytest.mark.torch
def test_max_pool_several_nans_differs_from_torch(torch):
    # The documented difference: window [[1, nan], [nan, 0]] -> convpool index 1,
    # PyTorch index 4 (the last NaN).
    x = np.array([[1, NAN, 5, NAN], [NAN, 0, 9, 2]])[None, None]
    _, idx = ref.max_pool2d(x, (2, 2), (2, 2), NOPAD, return_indices=True)
    _, tidx = torch.nn.functional.max_pool2d(_t(torch, x), 2, 2, return_indices=True)
    assert idx[0, 0, 0, 0] == 1
    assert _n(tidx)[0, 0, 0, 0] in (1, 4)  # 4 on current PyTorch; 1 if it ever changes
    assert idx[0, 0, 0, 1] == 3 and _n(tidx)[0, 0, 0, 1] == 3


@pytest.mark.torch
@given(
    hw=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pads=st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
    seed=st.integers(0, 2**32 - 1),
)
@SWEEP
def test_max_pool_asymmetric_padding_vs_torch_padded_input(torch, hw, nc, k, s, d, pads, seed):
    """Asymmetric pads up to k_eff - 1: pad with -inf explicitly, pool unpadded in
    PyTorch, and map PyTorch's indices back to the unpadded input.  (Floor mode:
    ceil mode's "drop a window starting in the padding" rule sees pads differently.)"""
    k_eff = [d[a] * (k[a] - 1) + 1 for a in range(2)]
    pt, pb, pl, pr = (pads[0] % k_eff[0], pads[1] % k_eff[0], pads[2] % k_eff[1], pads[3] % k_eff[1])
    assume(hw[0] + pt + pb >= k_eff[0] and hw[1] + pl + pr >= k_eff[1])
    x = _random_input(seed, nc + hw, np.float64)
    y, idx = ref.max_pool2d(x, k, s, ((pt, pb), (pl, pr)), d, False, return_indices=True)
    F = torch.nn.functional
    xp = F.pad(_t(torch, x), (pl, pr, pt, pb), value=-np.inf)
    ty, tidx = F.max_pool2d(xp, k, s, 0, d, return_indices=True)
    ty, tidx = _n(ty), _n(tidx)
    assert_same(y, ty, rtol=0, atol=0)
    Wp = hw[1] + pl + pr
    th, tw = tidx // Wp - pt, tidx % Wp - pl
    has_valid = idx >= 0
    # Windows without a valid tap: -inf (PyTorch picks some -inf padding tap).
    assert (y[~has_valid] == -np.inf).all()
    np.testing.assert_array_equal(idx[has_valid], (th * hw[1] + tw)[has_valid])


@pytest.mark.torch
@given(
    params=torch_pool_axes(avg=True),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 3)),
    seed=st.integers(0, 2**32 - 1),
    cip=st.booleans(),
    div=st.one_of(st.none(), st.integers(1, 20)),
)
@SWEEP
def test_avg_pool_vs_torch(torch, params, nc, seed, cip, div):
    hw, k, s, _, p, ceil = params
    x = _random_input(seed, nc + hw, np.float64)
    y = ref.avg_pool2d(x, k, s, (pad_pair(p[0]), pad_pair(p[1])), (1, 1), ceil, cip, div)
    ty = torch.nn.functional.avg_pool2d(
        _t(torch, x), k, s, p, ceil_mode=ceil, count_include_pad=cip, divisor_override=div
    )
    assert_same(y, _n(ty))


@pytest.mark.torch
@given(
    hw=st.tuples(st.integers(1, 8), st.integers(1, 8)),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    k=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    pads=st.tuples(st.integers(0, 9), st.integers(0, 9), st.integers(0, 9), st.integers(0, 9)),
    ceil=st.booleans(),
    cip=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@SWEEP
def test_avg_pool_dilated_asymmetric_vs_torch_conv(torch, hw, nc, k, s, d, pads, ceil, cip, seed):
    """PyTorch has no dilated avg pool; build it from depthwise conv2d:
    sum = conv(zero-padded x, ones), divisor = conv(mask, ones) where the mask is
    1 on the input (and, with count_include_pad, on the padding) and 0 on the
    ceil-mode overhang past the padding."""
    k_eff = [d[a] * (k[a] - 1) + 1 for a in range(2)]
    pt, pb, pl, pr = (pads[0] % k_eff[0], pads[1] % k_eff[0], pads[2] % k_eff[1], pads[3] % k_eff[1])
    try:
        oh = ref.output_size(hw[0], k[0], s[0], d[0], pt, pb, ceil)
        ow = ref.output_size(hw[1], k[1], s[1], d[1], pl, pr, ceil)
    except ValueError:
        assume(False)
    x = _random_input(seed, nc + hw, np.float64)
    y = ref.avg_pool2d(x, k, s, ((pt, pb), (pl, pr)), d, ceil, cip)
    F = torch.nn.functional
    # Extra zeros past the trailing padding so that ceil-mode windows fit.
    eh = max(0, (oh - 1) * s[0] + k_eff[0] - (hw[0] + pt + pb))
    ew = max(0, (ow - 1) * s[1] + k_eff[1] - (hw[1] + pl + pr))
    C = nc[1]
    ones_w = torch.ones((C, 1) + k, dtype=torch.float64)
    xt = F.pad(F.pad(_t(torch, x), (pl, pr, pt, pb)), (0, ew, 0, eh))
    mask = F.pad(torch.ones(nc + hw, dtype=torch.float64), (pl, pr, pt, pb), value=1.0 if cip else 0.0)
    mask = F.pad(mask, (0, ew, 0, eh))
    total = F.conv2d(xt, ones_w, None, s, 0, d, C)[:, :, :oh, :ow]
    count = F.conv2d(mask, ones_w, None, s, 0, d, C)[:, :, :oh, :ow]
    expected = torch.where(count > 0, total / count.clamp(min=1), torch.zeros_like(total))
    assert_same(y, _n(expected))


@pytest.mark.torch
@given(
    params=torch_pool_axes(avg=True),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    seed=st.integers(0, 2**32 - 1),
    p=st.sampled_from([1.0, 2.0, 3.0, 1.5, 0.5]),
)
@SWEEP
def test_lp_pool_vs_torch(torch, params, nc, seed, p):
    """Non-negative inputs, no padding, no ceil mode (PyTorch's lp_pool2d is
    avg_pool2d(x**p) * kh*kw, which is only the plain sum in that case).  With
    negative inputs convpool(x) == PyTorch(|x|)."""
    hw, k, s, _, _, _ = params
    assume(hw[0] >= k[0] and hw[1] >= k[1])
    x = _random_input(seed, nc + hw, np.float64)
    y = ref.lp_pool2d(x, p, k, s, NOPAD)
    ty = torch.nn.functional.lp_pool2d(_t(torch, np.abs(x)), p, k, s)
    assert_same(y, _n(ty))
    assert_same(ref.lp_pool2d(np.abs(x), p, k, s, NOPAD), y, rtol=0, atol=0)


@pytest.mark.torch
@given(
    hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    n=st.integers(1, 2),
    groups=st.integers(1, 3),
    cg=st.integers(1, 3),
    kg=st.integers(1, 3),
    k=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    s=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    d=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    p=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    extra=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@SWEEP
def test_conv2d_vs_torch(torch, hw, n, groups, cg, kg, k, s, d, p, extra, with_bias, seed):
    """Symmetric padding natively; the asymmetric variant (extra rows/cols at the
    bottom/right) via an explicit zero F.pad."""
    for a in range(2):
        assume(hw[a] + 2 * p[a] >= d[a] * (k[a] - 1) + 1)
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, groups * cg) + hw)
    w = rng.standard_normal((groups * kg, cg) + k)
    b = rng.standard_normal(groups * kg) if with_bias else None
    F = torch.nn.functional
    tb = None if b is None else _t(torch, b)
    y = ref.conv2d(x, w, b, s, ((p[0], p[0]), (p[1], p[1])), d, groups)
    ty = F.conv2d(_t(torch, x), _t(torch, w), tb, s, p, d, groups)
    assert_same(y, _n(ty))
    pad = ((p[0], p[0] + extra[0]), (p[1], p[1] + extra[1]))
    y = ref.conv2d(x, w, b, s, pad, d, groups)
    xp = F.pad(_t(torch, x), (pad[1][0], pad[1][1], pad[0][0], pad[0][1]))
    ty = F.conv2d(xp, _t(torch, w), tb, s, 0, d, groups)
    assert_same(y, _n(ty))


@pytest.mark.torch
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conv2d_float32_vs_torch(torch, dtype):
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 6, 11, 9)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 2)).astype(dtype)
    b = rng.standard_normal(4).astype(dtype)
    y = ref.conv2d(x, w, b, (2, 1), ((1, 1), (2, 2)), (1, 2), 2)
    ty = torch.nn.functional.conv2d(_t(torch, x), _t(torch, w), _t(torch, b), (2, 1), (1, 2), (1, 2), 2)
    tol = 1e-5 if dtype == np.float32 else RTOL
    assert_same(y, _n(ty), rtol=tol, atol=tol)


@pytest.mark.torch
@given(
    hw=st.tuples(st.integers(1, 9), st.integers(1, 9)),
    out=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    nc=st.tuples(st.integers(1, 2), st.integers(1, 3)),
    seed=st.integers(0, 2**32 - 1),
    discrete=st.booleans(),
)
@SWEEP
def test_adaptive_vs_torch(torch, hw, out, nc, seed, discrete):
    x = _random_input(seed, nc + hw, np.float64, discrete=discrete)
    F = torch.nn.functional
    assert_same(ref.adaptive_avg_pool2d(x, out), _n(F.adaptive_avg_pool2d(_t(torch, x), out)))
    y, idx = ref.adaptive_max_pool2d(x, out, return_indices=True)
    ty, tidx = F.adaptive_max_pool2d(_t(torch, x), out, return_indices=True)
    assert_same(y, _n(ty), rtol=0, atol=0)
    assert_same(idx, _n(tidx))


@pytest.mark.torch
def test_global_vs_torch(torch):
    x = np.random.default_rng(3).standard_normal((3, 4, 5, 7))
    tx = _t(torch, x)
    assert_same(ref.global_avg_pool2d(x), _n(tx.mean(dim=(2, 3), keepdim=True)))
    assert_same(ref.global_max_pool2d(x), _n(tx.amax(dim=(2, 3), keepdim=True)), rtol=0, atol=0)
