"""convpool against torch.nn.functional, where PyTorch supports the same operation."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import convpool
from convpool import reference as ref

from conftest import (
    FLOAT_DTYPES,
    LAYOUTS,
    SIMD_SIZES,
    assert_identical,
    assert_within,
    from_layout,
    random_array,
    reduction_atol,
    seeds,
    to_layout,
)

torch = pytest.importorskip("torch")
F = torch.nn.functional

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True, scope="module")
def single_threaded_torch():
    """PyTorch's and convpool's OpenMP runtimes are separate libgomp copies; on a small
    machine their spinning worker pools slow each other down ~100x. PyTorch's thread
    count does not affect what is compared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def t(a: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(a))


def run_cp(fn, x_nchw, layout, *args, **kwargs):
    """Call convpool with x in ``layout``; results back in NCHW."""
    result = fn(to_layout(x_nchw, layout), *args, layout=layout, **kwargs)
    if isinstance(result, tuple):
        return tuple(from_layout(r, layout) for r in result)
    return from_layout(result, layout)


def torch_tol(dtype, n_terms, magnitude):
    """Two independent implementations, each within reduction_atol of the exact value."""
    return 2 * reduction_atol(dtype, n_terms, magnitude)


common = dict(layout=st.sampled_from(LAYOUTS), dtype=st.sampled_from(FLOAT_DTYPES), seed=seeds)


# ----------------------------------------------------------------------------- conv2d


@given(
    data=st.data(),
    groups_mode=st.sampled_from(["dense", "grouped", "depthwise"]),
    kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    bias=st.booleans(),
    **common,
)
def test_conv2d_vs_torch(data, groups_mode, kernel, stride, dilation, bias, layout, dtype, seed):
    if groups_mode == "dense":
        groups, c, k = 1, data.draw(st.sampled_from(SIMD_SIZES)), data.draw(st.sampled_from(SIMD_SIZES))
    elif groups_mode == "grouped":
        groups = data.draw(st.integers(2, 3))
        c, k = groups * data.draw(st.integers(1, 4)), groups * data.draw(st.integers(1, 9))
    else:
        c = data.draw(st.sampled_from(SIMD_SIZES))
        groups, k = c, c * data.draw(st.sampled_from((1, 2)))
    h, w = data.draw(st.integers(1, 8)), data.draw(st.sampled_from(SIMD_SIZES))
    pad = (data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2)))
    assume(all(size + 2 * p >= d * (kk - 1) + 1 for size, p, d, kk in zip((h, w), pad, dilation, kernel)))
    rng = np.random.default_rng(seed)
    x = random_array(rng, (2, c, h, w), dtype)
    wt = random_array(rng, (k, c // groups) + kernel, dtype)
    b = random_array(rng, (k,), dtype) if bias else None
    got = run_cp(convpool.conv2d, x, layout, wt, b, stride=stride, padding=pad, dilation=dilation, groups=groups)
    want = F.conv2d(t(x), t(wt), None if b is None else t(b), stride=stride, padding=pad, dilation=dilation,
                    groups=groups).numpy()
    magnitude = ref.conv2d(np.abs(x).astype(np.float64), np.abs(wt).astype(np.float64),
                           None if b is None else np.abs(b).astype(np.float64),
                           stride, ((pad[0], pad[0]), (pad[1], pad[1])), dilation, groups)
    n_terms = (c // groups) * kernel[0] * kernel[1] + bias
    assert_within(got, want, torch_tol(dtype, n_terms, magnitude))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
@pytest.mark.parametrize(("kernel", "dilation"), [((3, 3), (1, 1)), ((2, 4), (1, 1)), ((3, 2), (2, 3)), ((1, 1), (1, 1))])
def test_conv2d_same_padding_vs_torch(layout, dtype, kernel, dilation):
    rng = np.random.default_rng(1)
    x = random_array(rng, (2, 9, 7, 17), dtype)
    wt = random_array(rng, (8, 9) + kernel, dtype)
    got = run_cp(convpool.conv2d, x, layout, wt, padding="same", dilation=dilation)
    with warnings.catch_warnings():  # PyTorch's note that even kernels need a padded copy
        warnings.filterwarnings("ignore", "Using padding='same'", UserWarning)
        want = F.conv2d(t(x), t(wt), padding="same", dilation=dilation).numpy()
    assert got.shape == want.shape == (2, 8, 7, 17)
    n_terms = 9 * kernel[0] * kernel[1]
    magnitude = ref.conv2d(np.abs(x).astype(np.float64), np.abs(wt).astype(np.float64), None, (1, 1),
                           tuple(ref.same_padding(n, k, 1, d) for n, k, d in zip((7, 17), kernel, dilation)), dilation)
    assert_within(got, want, torch_tol(dtype, n_terms, magnitude))


# ----------------------------------------------------------------------------- pooling


@st.composite
def torch_pool_geometry(draw, dilation=True):
    """Geometries PyTorch accepts: symmetric pads of at most half the kernel."""
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if dilation else (1, 1)
    pad = (draw(st.integers(0, kernel[0] // 2)), draw(st.integers(0, kernel[1] // 2)))
    h, w = draw(st.integers(1, 9)), draw(st.sampled_from(SIMD_SIZES + (3, 4)))
    ceil_mode = draw(st.booleans())
    pads = ((pad[0], pad[0]), (pad[1], pad[1]))
    try:
        for a, size in enumerate((h, w)):
            ref.output_size(size, kernel[a], stride[a], dil[a], *pads[a], ceil_mode)
    except ValueError:
        assume(False)
    # Windows with no tap inside the input (dilation + padding): PyTorch returns an
    # out-of-range index for them, convpool documents -inf and -1 (test_pooling covers it).
    probe = np.zeros((1, 1, h, w))
    _, idx = ref.max_pool2d(probe, kernel, stride, pads, dil, ceil_mode, return_indices=True)
    assume((idx >= 0).all())
    return dict(h=h, w=w, kernel=kernel, stride=stride, dilation=dil, pad=pad, ceil_mode=ceil_mode)


@given(g=torch_pool_geometry(), nan=st.booleans(), kind=st.sampled_from(["normal", "ties"]), **common)
def test_max_pool2d_vs_torch(g, nan, kind, layout, dtype, seed):
    rng = np.random.default_rng(seed)
    x = random_array(rng, (2, 9, g["h"], g["w"]), dtype, kind)
    if nan:  # at most one NaN per plane: PyTorch reports the last NaN, convpool the first
        x[:, :, rng.integers(g["h"]), rng.integers(g["w"])] = np.nan
    kw = dict(stride=g["stride"], padding=g["pad"], dilation=g["dilation"], ceil_mode=g["ceil_mode"])
    got, idx = run_cp(convpool.max_pool2d, x, layout, g["kernel"], return_indices=True, **kw)
    want, want_idx = F.max_pool2d(t(x), g["kernel"], return_indices=True, **kw)
    assert_identical(got, want.numpy())
    assert_identical(idx, want_idx.numpy())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(("size", "kernel", "stride"), [(1, 2, 2), (3, 4, 2), (2, 3, 2), (1, 3, 4)], ids=str)
def test_ceil_mode_overhang_vs_torch(layout, size, kernel, stride):
    """PyTorch accepts a ceil-mode window larger than the (unpadded) input as long as it
    starts inside it: one output, over the input's elements."""
    x = random_array(np.random.default_rng(3), (1, 2, size, size + 3), np.float64)
    kw = dict(stride=stride, ceil_mode=True)
    want, want_idx = F.max_pool2d(t(x), kernel, return_indices=True, **kw)
    got, idx = run_cp(convpool.max_pool2d, x, layout, kernel, return_indices=True, **kw)
    assert_identical(got, want.numpy())
    assert_identical(idx, want_idx.numpy())
    for cip in (True, False):
        want = F.avg_pool2d(t(x), kernel, count_include_pad=cip, **kw).numpy()
        got = run_cp(convpool.avg_pool2d, x, layout, kernel, count_include_pad=cip, **kw)
        np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)


@given(g=torch_pool_geometry(dilation=False), count_include_pad=st.booleans(),
       divisor_override=st.none() | st.integers(1, 9), **common)
def test_avg_pool2d_vs_torch(g, count_include_pad, divisor_override, layout, dtype, seed):
    x = random_array(np.random.default_rng(seed), (2, 9, g["h"], g["w"]), dtype)
    kw = dict(stride=g["stride"], padding=g["pad"], ceil_mode=g["ceil_mode"], count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    got = run_cp(convpool.avg_pool2d, x, layout, g["kernel"], **kw)
    want = F.avg_pool2d(t(x), g["kernel"], **kw).numpy()
    magnitude = F.avg_pool2d(t(np.abs(x).astype(np.float64)), g["kernel"], **kw).numpy()
    assert_within(got, want, torch_tol(dtype, g["kernel"][0] * g["kernel"][1], magnitude))


@pytest.mark.parametrize("p", [1.0, 2.0, 3.0, 0.5])
@given(g=torch_pool_geometry(dilation=False), **common)
def test_lp_pool2d_vs_torch(p, g, layout, dtype, seed):
    """Non-negative input, no padding, floor mode: where PyTorch's lp_pool2d (computed
    as (avg_pool(x^p) * kh*kw)^(1/p)) means the same thing."""
    x = np.abs(random_array(np.random.default_rng(seed), (2, 9, g["h"], g["w"]), dtype))
    kernel, stride = g["kernel"], g["stride"]
    assume(g["h"] >= kernel[0] and g["w"] >= kernel[1])
    got = run_cp(convpool.lp_pool2d, x, layout, p, kernel, stride=stride)
    want = F.lp_pool2d(t(x), p, kernel, stride=stride).numpy()
    n_terms = kernel[0] * kernel[1]
    # PyTorch works in x's dtype (power, mean, product, power): a few roundings per term.
    tol = torch_tol(dtype, n_terms + 4, np.abs(want.astype(np.float64))) * max(1.0, 1.0 / p) * 2
    assert_within(got, want, tol)


@given(h=st.integers(1, 9), w=st.sampled_from(SIMD_SIZES), oh=st.integers(1, 12), ow=st.integers(1, 12),
       kind=st.sampled_from(["normal", "ties"]), **common)
def test_adaptive_pools_vs_torch(h, w, oh, ow, kind, layout, dtype, seed):
    x = random_array(np.random.default_rng(seed), (2, 9, h, w), dtype, kind)
    got, idx = run_cp(convpool.adaptive_max_pool2d, x, layout, (oh, ow), return_indices=True)
    want, want_idx = F.adaptive_max_pool2d(t(x), (oh, ow), return_indices=True)
    assert_identical(got, want.numpy())
    assert_identical(idx, want_idx.numpy())
    got = run_cp(convpool.adaptive_avg_pool2d, x, layout, (oh, ow))
    want = F.adaptive_avg_pool2d(t(x), (oh, ow)).numpy()
    magnitude = F.adaptive_avg_pool2d(t(np.abs(x).astype(np.float64)), (oh, ow)).numpy()
    n_terms = (-(-h // oh) + 1) * (-(-w // ow) + 1)
    assert_within(got, want, torch_tol(dtype, n_terms, magnitude))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES, ids=str)
def test_global_pools_vs_torch(layout, dtype):
    x = random_array(np.random.default_rng(2), (2, 17, 7, 33), dtype)
    assert_identical(run_cp(convpool.global_max_pool2d, x, layout), F.adaptive_max_pool2d(t(x), 1).numpy())
    magnitude = F.adaptive_avg_pool2d(t(np.abs(x).astype(np.float64)), 1).numpy()
    assert_within(run_cp(convpool.global_avg_pool2d, x, layout), F.adaptive_avg_pool2d(t(x), 1).numpy(),
                  torch_tol(dtype, 7 * 33, magnitude))
