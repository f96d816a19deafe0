"""convpool.layers and convpool.experiments: gradients, training, summary, initialisers, errors.

Gradients are checked against central finite differences in float64. Expected numbers
in the summary, initialiser and optimiser tests are worked out by hand (in comments),
not recomputed with the code under test.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import convpool
from convpool import experiments
from convpool.layers import (
    SGD,
    Adam,
    AvgPool2D,
    Conv2D,
    Dense,
    Dropout,
    Flatten,
    GlobalAvgPool2D,
    GlobalMaxPool2D,
    Layer,
    LpPool2D,
    MaxPool2D,
    ReLU,
    Sequential,
    softmax_cross_entropy,
)

F64 = np.float64
LAYOUTS = ("NCHW", "NHWC")


@pytest.fixture(autouse=True)
def one_thread():
    """Thousands of tiny kernel calls: one thread avoids OpenMP barrier stalls on a busy
    machine. Threaded kernels are tested in test_conv2d.py / test_pooling.py."""
    with convpool.threads(1):
        yield


# ----------------------------------------------------------------------------- helpers


def to_layout(x_nchw: np.ndarray, layout: str) -> np.ndarray:
    return np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1) if layout == "NHWC" else x_nchw)


def sample_shape(c: int, h: int, w: int, layout: str):
    return (h, w, c) if layout == "NHWC" else (c, h, w)


def away_from_zero(rng: np.random.Generator, shape, margin: float = 0.05) -> np.ndarray:
    """Normal values with |x| >= margin (keeps finite differences off ReLU's kink)."""
    x = rng.standard_normal(shape)
    return np.where(np.abs(x) < margin, np.sign(x + 1e-300) * (margin + np.abs(x)), x)


def numeric_grad(f, arr: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() w.r.t. every element of arr (perturbed in place)."""
    grad = np.empty(arr.shape, dtype=F64)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    assert np.shares_memory(flat, arr)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        gflat[i] = (fp - fm) / (2 * eps)
    return grad


def assert_grad_close(analytic, numeric, what: str) -> None:
    assert analytic.shape == numeric.shape, what
    scale = max(1.0, float(np.abs(numeric).max()))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7 * scale, err_msg=what)


def check_layer_gradients(layer: Layer, x: np.ndarray, seed: int = 0) -> None:
    """backward() of L = sum(forward(x) * R) against finite differences, for x and params."""
    rng = np.random.default_rng(seed)
    layer.train()
    y = layer.forward(x)
    r = rng.standard_normal(y.shape)
    gx = layer.backward(r)
    analytic_params = [g.copy() for g in layer.grads()]
    assert len(analytic_params) == len(layer.params())

    def loss() -> float:
        return float(np.sum(layer.forward(x) * r))

    assert_grad_close(gx, numeric_grad(loss, x), f"{layer!r}: d/dx")
    for i, (p, g) in enumerate(zip(layer.params(), analytic_params)):
        assert_grad_close(g, numeric_grad(loss, p), f"{layer!r}: d/dparam[{i}]")


# ----------------------------------------------------------------------------- layer gradients

CONV_CASES = [
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, groups=2),
    dict(in_channels=3, out_channels=2, kernel_size=(2, 3), stride=(1, 2), padding="same", dilation=2),
    dict(in_channels=2, out_channels=3, kernel_size=3, padding=((1, 0), (0, 2)), bias=False),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d_gradients(case, layout):
    kw = CONV_CASES[case]
    rng = np.random.default_rng(case)
    layer = Conv2D(**kw, layout=layout, rng=case, dtype=F64)
    if layer.bias is not None:
        layer.bias[...] = rng.standard_normal(layer.bias.shape)  # non-zero bias
    x = to_layout(rng.standard_normal((2, kw["in_channels"], 6, 7)), layout)
    check_layer_gradients(layer, x, seed=case)


POOL_CASES = [
    lambda layout: MaxPool2D(3, 2, 1, layout=layout),
    lambda layout: MaxPool2D(2, ceil_mode=True, layout=layout),
    lambda layout: AvgPool2D(3, 2, 1, ceil_mode=True, count_include_pad=False, layout=layout),
    lambda layout: AvgPool2D(2, 1, dilation=2, divisor_override=3, layout=layout),
    lambda layout: LpPool2D(2, 2, layout=layout),
    lambda layout: LpPool2D(3, 3, 2, 1, layout=layout),
    lambda layout: GlobalAvgPool2D(layout=layout),
    lambda layout: GlobalMaxPool2D(layout=layout),
]


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("case", range(len(POOL_CASES)))
def test_pool_gradients(case, layout):
    layer = POOL_CASES[case](layout)
    rng = np.random.default_rng(100 + case)
    x = to_layout(rng.standard_normal((2, 3, 5, 6)), layout)
    check_layer_gradients(layer, x)


def test_relu_gradient():
    x = away_from_zero(np.random.default_rng(1), (3, 2, 4, 4))
    check_layer_gradients(ReLU(), x)
    assert np.array_equal(ReLU().forward(x), np.where(x > 0, x, 0.0))


@pytest.mark.parametrize("order", ["CHW", "HWC"])
@pytest.mark.parametrize("layout", LAYOUTS)
def test_flatten_gradient_and_order(layout, order):
    rng = np.random.default_rng(2)
    x_nchw = rng.standard_normal((2, 3, 4, 5))
    layer = Flatten(layout=layout, order=order)
    y = layer.forward(to_layout(x_nchw, layout))
    # the flattened order is a property of `order`, not of the layout
    expected = x_nchw.reshape(2, -1) if order == "CHW" else x_nchw.transpose(0, 2, 3, 1).reshape(2, -1)
    assert np.array_equal(y, expected)
    check_layer_gradients(layer, to_layout(x_nchw, layout))


def test_dense_gradient():
    rng = np.random.default_rng(3)
    layer = Dense(7, 4, rng=0, dtype=F64)
    layer.bias[...] = rng.standard_normal(4)
    check_layer_gradients(layer, rng.standard_normal((5, 7)))


def test_dropout_masks_scales_and_passes_gradient():
    rng = np.random.default_rng(4)
    x = away_from_zero(rng, (200, 50))
    layer = Dropout(0.25, rng=7)
    y = layer.forward(x)
    kept = y != 0
    assert 0.70 < kept.mean() < 0.80  # 10,000 draws: mean 0.75, sd 0.0043
    np.testing.assert_allclose(y[kept], x[kept] / 0.75, rtol=1e-15)
    r = rng.standard_normal(x.shape)
    gx = layer.backward(r)
    np.testing.assert_allclose(gx, np.where(kept, r / 0.75, 0.0), rtol=1e-15)
    # same seed, same mask; eval mode is the identity and caches nothing
    assert np.array_equal(Dropout(0.25, rng=7).forward(x), y)
    layer.eval()
    assert np.array_equal(layer.forward(x), x)
    with pytest.raises(RuntimeError, match="train"):
        layer.backward(r)


def test_eval_mode_caches_nothing():
    layer = Conv2D(2, 3, 3, rng=0, dtype=F64).eval()
    assert not layer.training
    layer.forward(np.ones((1, 2, 5, 5)))
    with pytest.raises(RuntimeError, match="training mode"):
        layer.backward(np.ones((1, 3, 3, 3)))
    layer.train()
    layer.forward(np.ones((1, 2, 5, 5)))
    assert layer.backward(np.ones((1, 3, 3, 3))).shape == (1, 2, 5, 5)


# ----------------------------------------------------------------------------- whole model


def small_cnn(layout: str, dtype=F64) -> Sequential:
    # 10x10 -> conv p1 10x10 -> maxpool 5x5 -> conv s2 p1 3x3 -> avgpool k2 s1 2x2 -> 6*2*2=24 -> 3
    return Sequential(
        Conv2D(2, 4, 3, padding=1, layout=layout, rng=10, dtype=dtype),
        ReLU(),
        MaxPool2D(2, layout=layout),
        Conv2D(4, 6, 3, stride=2, padding=1, layout=layout, rng=11, init="he_normal", dtype=dtype),
        ReLU(),
        AvgPool2D(2, 1, layout=layout),
        Flatten(layout=layout),
        Dense(24, 3, rng=12, dtype=dtype),
    )


def randomise_biases(model: Sequential, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for layer in model:
        if getattr(layer, "bias", None) is not None:
            layer.bias[...] = 0.1 * rng.standard_normal(layer.bias.shape)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_sequential_loss_gradient_wrt_every_parameter_and_input(layout):
    model = small_cnn(layout)
    randomise_biases(model, 5)
    rng = np.random.default_rng(6)
    x = to_layout(rng.standard_normal((3, 2, 10, 10)), layout)
    labels = np.array([0, 2, 1])

    model.train()
    loss, g = softmax_cross_entropy(model.forward(x), labels)
    gx = model.backward(g)
    analytic = [gr.copy() for gr in model.grads()]
    assert len(analytic) == len(model.params()) == 6  # 3 weights + 3 biases
    assert all(np.abs(a).max() > 0 for a in analytic), "a parameter gets no gradient at all"

    def f() -> float:
        return softmax_cross_entropy(model.forward(x), labels)[0]

    assert f() == loss
    assert_grad_close(gx, numeric_grad(f, x), "d loss / d x")
    for i, (p, a) in enumerate(zip(model.params(), analytic)):
        assert_grad_close(a, numeric_grad(f, p), f"d loss / d param[{i}] {p.shape}")
    assert model.backward(g, input_grad=False) is None


def test_same_parameters_give_same_results_in_both_layouts():
    """Parameters do not depend on the layout (Flatten flattens C, H, W in both)."""
    nchw, nhwc = small_cnn("NCHW"), small_cnn("NHWC")
    randomise_biases(nchw, 8)
    randomise_biases(nhwc, 8)
    for a, b in zip(nchw.params(), nhwc.params()):
        assert np.array_equal(a, b)
    x = np.random.default_rng(9).standard_normal((4, 2, 10, 10))
    labels = np.array([0, 1, 2, 1])
    out_a, out_b = nchw.forward(x), nhwc.forward(to_layout(x, "NHWC"))
    np.testing.assert_allclose(out_b, out_a, rtol=1e-12, atol=1e-12)
    ga = nchw.backward(softmax_cross_entropy(out_a, labels)[1])
    gb = nhwc.backward(softmax_cross_entropy(out_b, labels)[1])
    np.testing.assert_allclose(gb, to_layout(ga, "NHWC"), rtol=1e-10, atol=1e-13)
    for a, b in zip(nchw.grads(), nhwc.grads()):
        np.testing.assert_allclose(b, a, rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------- loss


def test_softmax_cross_entropy_values_and_gradient():
    # -log(e^3 / (e^1 + e^2 + e^3)) = log(1 + e^-1 + e^-2) = 0.40760596444...
    loss, grad = softmax_cross_entropy(np.array([[1.0, 2.0, 3.0]]), np.array([2]))
    assert loss == pytest.approx(0.4076059644443803, rel=1e-12)
    p = np.exp([1.0, 2.0, 3.0]) / np.exp([1.0, 2.0, 3.0]).sum()
    np.testing.assert_allclose(grad, [[p[0], p[1], p[2] - 1]], rtol=1e-12)
    # stable for huge logits: softmax = (1, 0), loss 1000 for the wrong class
    loss, grad = softmax_cross_entropy(np.array([[1000.0, 0.0], [0.0, 1000.0]]), np.array([1, 1]))
    assert loss == pytest.approx(500.0)  # mean of 1000 and 0
    np.testing.assert_allclose(grad, [[0.5, -0.5], [0.0, 0.0]], atol=1e-15)
    # mean over the batch, gradient by finite differences, one-hot targets agree
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((5, 4)), np.array([0, 3, 1, 1, 2])
    loss, grad = softmax_cross_entropy(z, y)
    assert_grad_close(grad, numeric_grad(lambda: softmax_cross_entropy(z, y)[0], z), "dL/dz")
    loss2, grad2 = softmax_cross_entropy(z, np.eye(4)[y])
    assert loss2 == pytest.approx(loss, rel=1e-14)
    np.testing.assert_allclose(grad2, grad, rtol=1e-14)
    assert softmax_cross_entropy(z.astype(np.float32), y)[1].dtype == np.float32


# ----------------------------------------------------------------------------- training and optimisers


def bars(n: int, rng: np.random.Generator, layout: str):
    """Class 0: a vertical bar, class 1: a horizontal bar, at random positions, plus noise."""
    x = 0.3 * rng.standard_normal((n, 1, 8, 8))
    y = np.arange(n) % 2
    pos = rng.integers(1, 7, size=n)
    for i in range(n):
        if y[i] == 0:
            x[i, 0, :, pos[i]] += 2.0
        else:
            x[i, 0, pos[i], :] += 2.0
    return to_layout(x, layout).astype(np.float32), y


@pytest.mark.parametrize("opt_name, layout", [("sgd", "NCHW"), ("adam", "NHWC")])
def test_training_makes_the_loss_fall(opt_name, layout):
    rng = np.random.default_rng(20)
    x, y = bars(64, rng, layout)
    model = Sequential(
        Conv2D(1, 4, 3, padding=1, layout=layout, rng=21, init="he_normal"),
        ReLU(),
        MaxPool2D(2, layout=layout),
        Flatten(layout=layout),
        Dense(64, 2, rng=22),
    )
    opt = SGD(model, lr=0.05, momentum=0.9) if opt_name == "sgd" else Adam(model, lr=0.01)
    params_before = [p.copy() for p in model.params()]
    param_ids = [id(p) for p in model.params()]
    losses = []
    for _ in range(25):
        loss, g = softmax_cross_entropy(model.forward(x), y)
        model.backward(g, input_grad=False)
        opt.step()
        losses.append(loss)
    final, _ = softmax_cross_entropy(model.forward(x), y)
    assert [id(p) for p in model.params()] == param_ids  # updated in place
    assert all(not np.array_equal(a, b) for a, b in zip(params_before, model.params()))
    assert losses[0] > 0.5
    assert final < 0.4 * losses[0], losses
    assert (model.eval().forward(x).argmax(axis=1) == y).mean() >= 0.9


class _Params:
    """A minimal model for optimiser tests: one parameter array and its gradient."""

    def __init__(self, p, g):
        self.p, self.g = np.array(p, dtype=F64), np.array(g, dtype=F64)

    def params(self):
        return [self.p]

    def grads(self):
        return [self.g]


def test_sgd_momentum_weight_decay_step_by_hand():
    m = _Params([1.0, -2.0], [0.5, 0.25])
    opt = SGD(m, lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.step()
    # v1 = g + wd p = (0.51, 0.23); p1 = p - 0.1 v1 = (0.949, -2.023)
    np.testing.assert_allclose(m.p, [0.949, -2.023], rtol=1e-14)
    opt.step()
    # v2 = 0.9 v1 + g + wd p1 = (0.459 + 0.50949, 0.207 + 0.22977) = (0.96849, 0.43677)
    # p2 = p1 - 0.1 v2 = (0.852151, -2.066677)
    np.testing.assert_allclose(m.p, [0.852151, -2.066677], rtol=1e-14)
    plain = _Params([1.0], [0.5])
    SGD(plain, lr=0.2).step()
    assert plain.p[0] == pytest.approx(0.9)


def test_adam_step_by_hand():
    m = _Params([1.0, -2.0], [0.5, 0.25])
    opt = Adam(m, lr=0.01)  # betas (0.9, 0.999), eps 1e-8
    opt.step()
    # bias-corrected m = g, v = g^2: the step is lr * g / (|g| + eps)
    np.testing.assert_allclose(
        m.p, [1 - 0.01 * 0.5 / (0.5 + 1e-8), -2 - 0.01 * 0.25 / (0.25 + 1e-8)], rtol=1e-14
    )
    m.g[...] = [-0.5, 0.25]
    opt.step()
    # m = (0.9*0.05 - 0.05, 0.9*0.025 + 0.025) = (-0.005, 0.0475); / (1 - 0.81) = (-0.0263158, 0.25)
    # v = (0.999*0.00025 + 0.00025, 0.999*0.0000625 + 0.0000625); / (1 - 0.998001) = (0.25, 0.0625)
    # step = 0.01 * (-0.0263158 / 0.5, 0.25 / 0.25) = (-0.000526316, 0.01)
    np.testing.assert_allclose(m.p, [0.9900000002 + 0.0005263157895, -2.0099999996 - 0.01], rtol=1e-9)


# ----------------------------------------------------------------------------- summary


def three_convs(layout: str) -> Sequential:
    return Sequential(
        Conv2D(1, 32, 3, layout=layout, rng=0),
        Conv2D(32, 64, 3, layout=layout, rng=0),
        Conv2D(64, 64, 3, layout=layout, rng=0),
        Flatten(layout=layout),
        Dense(30976, 512, rng=0),
    )


@pytest.mark.parametrize("layout", LAYOUTS)
def test_summary_three_convs_and_dense(layout, capsys):
    s = three_convs(layout).summary(sample_shape(1, 28, 28, layout), print_fn=None)
    assert capsys.readouterr().out == ""
    shapes = [r.output_shape for r in s.rows]
    assert shapes[:3] == [
        sample_shape(32, 26, 26, layout),
        sample_shape(64, 24, 24, layout),
        sample_shape(64, 22, 22, layout),
    ]
    assert shapes[3] == (30976,)  # 22 * 22 * 64
    assert shapes[4] == (512,)
    # 1*9*32 + 32; 32*9*64 + 64; 64*9*64 + 64; 30976*512 + 512
    assert [r.params for r in s.rows] == [320, 18496, 36928, 0, 15860224]
    # OH*OW*K*C*kh*kw per conv: 26*26*32*1*9, 24*24*64*32*9, 22*22*64*64*9; dense 30976*512
    assert [r.macs for r in s.rows] == [194688, 10616832, 17842176, 0, 15859712]
    assert [r.receptive_field for r in s.rows[:4]] == [(3, 3), (5, 5), (7, 7), (7, 7)]
    assert all(r.jump == (1, 1) for r in s.rows)
    assert s.rows[4].receptive_field == (28, 28)  # dense sees the whole 22x22 map: 7 + 21
    assert s.total_params == 320 + 18496 + 36928 + 15860224 == 15915968
    assert s.total_macs == 194688 + 10616832 + 17842176 + 15859712
    # printed by default, with the totals
    three_convs(layout).summary(sample_shape(1, 28, 28, layout))
    printed = capsys.readouterr().out
    assert "15,860,224" in printed and "15,915,968" in printed and "total" in printed


def test_summary_stem_receptive_field_and_jump():
    model = Sequential(Conv2D(3, 64, 7, stride=2, padding=3, rng=0), MaxPool2D(3, 2, 1), GlobalAvgPool2D())
    s = model.summary((3, 224, 224), print_fn=None)
    assert [r.output_shape for r in s.rows] == [(64, 112, 112), (64, 56, 56), (64, 1, 1)]
    assert [(r.receptive_field, r.jump) for r in s.rows[:2]] == [((7, 7), (2, 2)), ((11, 11), (4, 4))]
    assert s.rows[2].receptive_field == (11 + 55 * 4, 11 + 55 * 4)  # a window of the whole 56x56 map
    assert s.rows[0].params == 64 * 3 * 49 + 64 == 9472
    assert s.rows[0].macs == 112 * 112 * 64 * 3 * 49
    assert s.rows[1].macs == s.rows[2].macs == 0


def test_summary_dilation_and_anisotropic_strides():
    model = Sequential(
        Conv2D(1, 2, 3, dilation=2, rng=0), Conv2D(2, 2, (1, 3), stride=(1, 2), rng=0), Conv2D(2, 2, 3, rng=0)
    )
    s = model.summary((1, 20, 20), print_fn=None)
    # k_eff 5: r 5; then (1, 3)/(1, 2): r (5, 7), j (1, 2); then 3x3: r (7, 7 + 2*2), j (1, 2)
    assert [r.receptive_field for r in s.rows] == [(5, 5), (5, 7), (7, 11)]
    assert [r.jump for r in s.rows] == [(1, 1), (1, 2), (1, 2)]
    assert [r.output_shape for r in s.rows] == [(2, 16, 16), (2, 16, 7), (2, 14, 5)]


def test_summary_groups_and_bias():
    rows = (
        Sequential(
            Conv2D(8, 16, 3, groups=4, rng=0),  # 16 * 2 * 9 + 16
            Conv2D(16, 16, 3, groups=4, bias=False, rng=0),  # 16 * 4 * 9
            Conv2D(16, 32, 3, groups=16, padding=1, rng=0),  # depthwise x2: 32 * 1 * 9 + 32
        )
        .summary((8, 10, 10), print_fn=None)
        .rows
    )
    assert [r.params for r in rows] == [304, 576, 320]
    # 8*8*16*2*9, 6*6*16*4*9, 6*6*32*1*9
    assert [r.macs for r in rows] == [18432, 20736, 10368]


def test_summary_shapes_match_forward():
    layout = "NHWC"
    model = Sequential(
        Conv2D(3, 4, 3, stride=2, padding="same", layout=layout, rng=0),
        ReLU(),
        LpPool2D(2, 3, 2, 1, ceil_mode=True, layout=layout),
        AvgPool2D(2, 1, padding=1, layout=layout),
        GlobalMaxPool2D(layout=layout),
        Flatten(layout=layout),
        Dropout(0.5, rng=0),
        Dense(4, 3, rng=0),
    )
    s = model.summary((13, 11, 3), print_fn=None)
    h = np.zeros((2, 13, 11, 3), dtype=np.float32)
    for layer, row in zip(model, s.rows):
        h = layer.forward(h)
        assert h.shape[1:] == row.output_shape, repr(layer)


# ----------------------------------------------------------------------------- initialisers


def test_glorot_uniform_statistics():
    w = Conv2D(64, 128, 3, init="glorot_uniform", rng=0).weight  # 73,728 values
    bound = math.sqrt(6 / (64 * 9 + 128 * 9))  # fan_in 576, fan_out 1152
    assert w.dtype == np.float32 and w.shape == (128, 64, 3, 3)
    assert np.abs(w).max() <= bound
    assert np.abs(w).max() > 0.999 * bound
    assert abs(w.std() / (bound / math.sqrt(3)) - 1) < 0.02  # sd of U(-b, b) is b / sqrt(3)
    assert abs(w.mean()) < 0.02 * bound
    d = Dense(300, 100, rng=1, dtype=F64).weight
    b = math.sqrt(6 / 400)
    assert d.shape == (100, 300) and np.abs(d).max() <= b and abs(d.std() / (b / math.sqrt(3)) - 1) < 0.03


def test_he_normal_statistics():
    w = Conv2D(64, 128, 3, init="he_normal", rng=0).weight
    assert abs(w.std() / math.sqrt(2 / 576) - 1) < 0.02
    assert abs(w.mean()) < 0.02 * math.sqrt(2 / 576)
    g = Conv2D(32, 1024, 3, groups=16, init="he_normal", rng=0, dtype=F64).weight  # fan_in = 2*9
    assert abs(g.std() / math.sqrt(2 / 18) - 1) < 0.02
    d = Dense(500, 200, init="he_normal", rng=0).weight
    assert abs(d.std() / math.sqrt(2 / 500) - 1) < 0.02
    assert not np.any(Conv2D(3, 4, 3, rng=0).bias)  # biases start at zero


def test_initialisers_are_seeded():
    a = Conv2D(3, 8, 3, rng=42).weight
    assert np.array_equal(a, Conv2D(3, 8, 3, rng=42).weight)
    assert np.array_equal(a, Conv2D(3, 8, 3, rng=np.random.default_rng(42)).weight)
    assert not np.array_equal(a, Conv2D(3, 8, 3, rng=43).weight)
    gen = np.random.default_rng(5)
    first, second = Dense(4, 4, rng=gen).weight, Dense(4, 4, rng=gen).weight
    assert not np.array_equal(first, second)  # a shared generator advances
    gen = np.random.default_rng(5)
    assert np.array_equal(Dense(4, 4, rng=gen).weight, first)
    assert np.array_equal(Dense(4, 4, rng=gen).weight, second)
    assert Conv2D(3, 8, 3, rng=0, dtype=F64).weight.dtype == F64


# ----------------------------------------------------------------------------- errors

BAD_ARGUMENTS = [
    (lambda: Conv2D(3, 8, 3, groups=2), ValueError, "in_channels"),
    (lambda: Conv2D(4, 6, 3, groups=4), ValueError, "out_channels"),
    (lambda: Conv2D(3.0, 8, 3), TypeError, "in_channels"),
    (lambda: Conv2D(0, 8, 3), ValueError, "in_channels"),
    (lambda: Conv2D(3, 8, 0), ValueError, "kernel_size"),
    (lambda: Conv2D(3, 8, 3, stride=0), ValueError, "stride"),
    (lambda: Conv2D(3, 8, 3, dilation=1.5), TypeError, "dilation"),
    (lambda: Conv2D(3, 8, 3, padding="full"), ValueError, "padding"),
    (lambda: Conv2D(3, 8, 3, padding=-1), ValueError, "padding"),
    (lambda: Conv2D(3, 8, 3, layout="CHWN"), ValueError, "layout"),
    (lambda: Conv2D(3, 8, 3, init="xavier"), ValueError, "init"),
    (lambda: Conv2D(3, 8, 3, rng="seed"), TypeError, "rng"),
    (lambda: Conv2D(3, 8, 3, dtype=np.int32), TypeError, "dtype"),
    (lambda: Conv2D(3, 8, 3, bias=1), TypeError, "bias"),
    (lambda: Conv2D(3, 8, 3).forward(np.zeros((1, 4, 5, 5), np.float32)), ValueError, "x"),
    (lambda: Conv2D(3, 8, 3).forward(np.zeros((1, 3, 5, 5))), TypeError, "x"),
    (lambda: MaxPool2D(0), ValueError, "kernel_size"),
    (lambda: MaxPool2D(2, padding=2), ValueError, "padding"),
    (lambda: AvgPool2D(2, divisor_override=0), ValueError, "divisor_override"),
    (lambda: AvgPool2D(2, ceil_mode="yes"), TypeError, "ceil_mode"),
    (lambda: LpPool2D(0, 2), ValueError, "norm_type"),
    (lambda: LpPool2D("2", 2), TypeError, "norm_type"),
    (lambda: GlobalMaxPool2D(layout="nchw"), ValueError, "layout"),
    (lambda: Flatten(order="WHC"), ValueError, "order"),
    (lambda: Dense(0, 3), ValueError, "in_features"),
    (lambda: Dense(4, 3).forward(np.zeros((2, 5), np.float32)), ValueError, "x"),
    (lambda: Dense(4, 3).forward(np.zeros((2, 1, 2, 2), np.float32)), ValueError, "Flatten"),
    (lambda: Dropout(1.0), ValueError, "rate"),
    (lambda: Dropout("0.5"), TypeError, "rate"),
    (lambda: Sequential(ReLU(), "relu"), TypeError, "layers"),
    (lambda: Sequential(Conv2D(1, 2, 3)).summary((1, 28)), ValueError, "input_shape"),
    (lambda: Sequential(Conv2D(1, 2, 3)).summary((2, 28, 28)), ValueError, "input_shape"),
    (lambda: Sequential(Conv2D(1, 2, 5)).summary((1, 3, 3)), ValueError, "kernel_size"),
    (lambda: softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 3])), ValueError, "labels"),
    (lambda: softmax_cross_entropy(np.zeros((2, 3)), np.array([0, 1, 2])), ValueError, "labels"),
    (lambda: softmax_cross_entropy(np.zeros(3), np.array([0])), ValueError, "logits"),
    (lambda: SGD(ReLU(), lr=-1.0), ValueError, "lr"),
    (lambda: SGD(ReLU(), momentum=1.0), ValueError, "momentum"),
    (lambda: SGD([np.zeros(2)]), TypeError, "model"),
    (lambda: Adam(ReLU(), betas=(0.9, 1.5)), ValueError, "betas"),
    (lambda: experiments.pooling_vs_stride(epochs=0, out=None, print_fn=None), ValueError, "epochs"),
    (lambda: experiments.pooling_vs_stride(layout="HWCN", out=None, print_fn=None), ValueError, "layout"),
    (lambda: experiments.build_cnn("maxpool"), ValueError, "variant"),
]


@pytest.mark.parametrize(
    "call, exc, name", BAD_ARGUMENTS, ids=[f"{i}-{b[2]}" for i, b in enumerate(BAD_ARGUMENTS)]
)
def test_bad_arguments_name_the_argument(call, exc, name):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc
    assert name in str(info.value)


# ----------------------------------------------------------------------------- experiments (no sklearn needed)


def synthetic_digits(layout: str):
    rng = np.random.default_rng(30)
    x_tr, y_tr = bars(96, rng, layout)
    x_te, y_te = bars(32, rng, layout)
    return x_tr, y_tr, x_te, y_te


def test_pooling_vs_stride_is_reproducible_and_counts_costs():
    data = synthetic_digits("NCHW")
    kw = dict(epochs=2, out=None, print_fn=None, data=data, seed=3)
    first = experiments.pooling_vs_stride(**kw)
    second = experiments.pooling_vs_stride(**kw)
    assert set(first) == {"pool", "stride"}
    for name in first:
        assert first[name].train_loss == second[name].train_loss
        assert first[name].test_accuracy == second[name].test_accuracy
        assert len(first[name].epoch_seconds) == 2 and all(t > 0 for t in first[name].epoch_seconds)
    # same parameters: 1*9*16+16 + 16*9*32+32 + 32*2*2*2+2 (8x8 -> 2x2 after two halvings, 2 classes)
    assert first["pool"].params == first["stride"].params == 160 + 4640 + 258
    # pool: 8*8*16*9 + 4*4*32*16*9 + 128*2; stride: 4*4*16*9 + 2*2*32*16*9 + 128*2
    assert first["pool"].macs == 9216 + 73728 + 256
    assert first["stride"].macs == 2304 + 18432 + 256
    # another seed changes the numbers
    other = experiments.pooling_vs_stride(**{**kw, "seed": 4})
    assert other["pool"].train_loss != first["pool"].train_loss


def test_both_variants_share_initial_weights():
    pool, stride = experiments.build_cnn("pool", seed=1), experiments.build_cnn("stride", seed=1)
    assert len(pool.params()) == len(stride.params()) == 6
    for a, b in zip(pool.params(), stride.params()):
        assert np.array_equal(a, b)


def test_missing_sklearn_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"convpool\[examples\]"):
        experiments.load_digits_16()


def test_missing_matplotlib_is_reported_not_fatal(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    lines = []
    out = tmp_path / "curves.png"
    result = experiments.pooling_vs_stride(
        epochs=1,
        out=str(out),
        print_fn=lines.append,
        data=synthetic_digits("NHWC"),
        layout="NHWC",
        verbose=False,
    )
    assert set(result) == {"pool", "stride"}
    assert not out.exists()
    assert any("no plot written" in s and "convpool[examples]" in s for s in lines)


def test_conv2d_layer_reuses_packed_weights_in_eval_mode():
    """Eval mode packs once and reuses it while the weights are unchanged; a change
    (in place, as optimizers do) is seen on the next call."""
    layer = Conv2D(3, 8, 3, padding=1, rng=0, dtype=np.float64)
    layer.eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 6, 6))
    y0 = layer.forward(x)
    first = layer._packed
    assert first is not None
    np.testing.assert_array_equal(layer.forward(x), y0)
    assert layer._packed is first
    layer.weight *= 2.0
    y1 = layer.forward(x)
    assert layer._packed is not first
    np.testing.assert_allclose(y1 - layer.bias[None, :, None, None], 2.0 * (y0 - layer.bias[None, :, None, None]))
    np.testing.assert_array_equal(y1, convpool.conv2d(x, layer.weight, layer.bias, padding=1))


@pytest.mark.parametrize("bad", [(4, 9.0, 9), (4, 9, True), (4, 0, 9), ("4", 9, 9)])
def test_output_shape_rejects_sizes_that_are_not_ints(bad):
    """A sample shape of floats, bools or empty sizes is an error naming input_shape,
    also after the same layer answered for the equal shape of ints (whose geometry
    it remembers)."""
    for layer in (MaxPool2D(2), Conv2D(4, 3, 3)):
        assert layer.output_shape((4, 9, 9)) is not None
        with pytest.raises((TypeError, ValueError), match=r"^input_shape: "):
            layer.output_shape(bad)
