"""convpool.pack_weight: packed weights give exactly the results of the plain call."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import convpool
from convpool import _core

from conftest import LAYOUTS, examples, to_layout


@st.composite
def packed_cases(draw):
    groups = draw(st.sampled_from([1, 2, 3]))
    depthwise = draw(st.booleans())
    c_per_group = 1 if depthwise else draw(st.sampled_from([1, 3, 8, 17]))
    k_per_group = 1 if depthwise else draw(st.sampled_from([1, 2, 7, 16, 17, 33]))
    channels = groups * c_per_group
    if depthwise:
        groups = channels = draw(st.sampled_from([1, 5, 16, 17]))
    return dict(
        c=channels,
        k=groups * k_per_group,
        groups=groups,
        kernel=(draw(st.integers(1, 4)), draw(st.integers(1, 4))),
        stride=draw(st.integers(1, 3)),
        padding=draw(st.integers(0, 2)),
        hw=(draw(st.integers(4, 11)), draw(st.integers(4, 11))),
        layout=draw(st.sampled_from(LAYOUTS)),
        dtype=draw(st.sampled_from([np.float32, np.float64])),
        bias=draw(st.booleans()),
    )


@examples(0.5)
@given(case=packed_cases(), seed=st.integers(0, 2**16))
def test_packed_matches_plain_call(isa, case, seed):
    rng = np.random.default_rng(seed)
    dt = case["dtype"]
    x = to_layout(rng.standard_normal((2, case["c"], *case["hw"])).astype(dt), case["layout"])
    w = rng.standard_normal((case["k"], case["c"] // case["groups"], *case["kernel"])).astype(dt)
    b = rng.standard_normal(case["k"]).astype(dt) if case["bias"] else None
    kw = dict(stride=case["stride"], padding=case["padding"], groups=case["groups"], layout=case["layout"])
    packed = convpool.pack_weight(w, groups=case["groups"])
    assert packed.isa == isa and packed.shape == w.shape and packed.dtype == w.dtype
    np.testing.assert_array_equal(convpool.conv2d(x, packed, b, **kw), convpool.conv2d(x, w, b, **kw))


def test_packed_copy_is_independent_of_the_original():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 4, 6, 6))
    w = rng.standard_normal((8, 4, 3, 3))
    packed = convpool.pack_weight(w)
    expected = convpool.conv2d(x, w)
    w *= 2.0
    np.testing.assert_array_equal(convpool.conv2d(x, packed), expected)
    assert not packed.weight.flags.writeable


def test_packed_weight_repacks_when_the_isa_changes():
    isas = _core.supported_isas()
    if len(isas) < 2:
        pytest.skip("needs two runnable ISAs to switch between")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((1, 5, 7, 7)).astype(np.float32)
    w = rng.standard_normal((40, 5, 3, 3)).astype(np.float32)
    saved = _core.active_isa()
    try:
        _core.set_isa(isas[-1])
        packed = convpool.pack_weight(w)
        _core.set_isa(isas[0])
        y = convpool.conv2d(x, packed, padding=1)
        assert packed.isa == isas[0]
        np.testing.assert_array_equal(y, convpool.conv2d(x, w, padding=1))
    finally:
        _core.set_isa(saved)


def test_packed_weight_errors():
    w = np.zeros((4, 2, 3, 3))
    x = np.zeros((1, 4, 5, 5))
    packed = convpool.pack_weight(w, groups=2)
    with pytest.raises(ValueError, match="groups"):
        convpool.conv2d(x, packed)  # packed for groups=2
    np.testing.assert_array_equal(convpool.conv2d(x, packed, groups=2), np.zeros((1, 4, 3, 3)))
    with pytest.raises(ValueError, match="groups"):
        convpool.pack_weight(w, groups=3)
    with pytest.raises(ValueError, match="weight"):
        convpool.pack_weight(np.zeros((4, 2, 3)))
    with pytest.raises(TypeError, match="weight"):
        convpool.pack_weight(np.zeros((4, 2, 3, 3), np.int32))
    with pytest.raises(TypeError, match="weight"):
        convpool.conv2d(x.astype(np.float32), convpool.pack_weight(np.zeros((4, 4, 3, 3))))


def test_prepacked_core_call_checks_the_packed_array():
    x = np.zeros((1, 4, 5, 5))
    w = np.zeros((16, 4, 3, 3))
    packed, isa = _core.conv2d_pack(w, 1, 0)
    out = np.empty((1, 16, 3, 3))
    args = ((1, 1), (0, 0, 0, 0), (1, 1), 1, 0, 1)
    with pytest.raises(ValueError, match="packed"):
        _core.conv2d_prepacked(x, packed[:-1], isa, (16, 4, 3, 3), None, out, *args)
    with pytest.raises(ValueError, match="packed"):
        _core.conv2d_prepacked(x, packed, "no-such-isa", (16, 4, 3, 3), None, out, *args)
    with pytest.raises(ValueError, match="packed"):
        _core.conv2d_prepacked(x, packed, isa, (32, 4, 3, 3), None, np.empty((1, 32, 3, 3)), *args)


def test_backward_accepts_packed_weight():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 6, 6))
    w = rng.standard_normal((5, 3, 3, 3))
    gy = rng.standard_normal((2, 5, 4, 4))
    for a, b in zip(convpool.conv2d_backward(gy, x, convpool.pack_weight(w)), convpool.conv2d_backward(gy, x, w)):
        np.testing.assert_array_equal(a, b)
