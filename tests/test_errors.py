"""Bad arguments: the right exception type, with a message naming the argument at fault."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import convpool
from convpool import _core

F32 = np.float32
HUGE = 2**70


def x4(shape=(1, 2, 5, 5), dtype=F32):
    return np.zeros(shape, dtype=dtype)


def w4(shape=(4, 2, 3, 3), dtype=F32):
    return np.zeros(shape, dtype=dtype)


def read_only(a):
    a.flags.writeable = False
    return a


def conv(**kw):
    args = dict(x=x4(), weight=w4())
    args.update(kw)
    return lambda: convpool.conv2d(args.pop("x"), args.pop("weight"), **args)


def maxp(**kw):
    args = dict(x=x4(), kernel_size=2)
    args.update(kw)
    return lambda: convpool.max_pool2d(args.pop("x"), **args)


def avgp(**kw):
    args = dict(x=x4(), kernel_size=2)
    args.update(kw)
    return lambda: convpool.avg_pool2d(args.pop("x"), **args)


def lpp(**kw):
    args = dict(x=x4(), norm_type=2.0, kernel_size=2)
    args.update(kw)
    return lambda: convpool.lp_pool2d(args.pop("x"), **args)


def adavg(**kw):
    args = dict(x=x4(), output_size=2)
    args.update(kw)
    return lambda: convpool.adaptive_avg_pool2d(args.pop("x"), **args)


def admax(**kw):
    args = dict(x=x4(), output_size=2)
    args.update(kw)
    return lambda: convpool.adaptive_max_pool2d(args.pop("x"), **args)


# (id, call, exception type, regex the message must contain)
CASES = [
    # --- shapes of x
    ("conv-x-3d", conv(x=np.zeros((2, 5, 5), F32)), ValueError, r"^x: .*4-D"),
    ("conv-x-5d", conv(x=np.zeros((1, 1, 2, 5, 5), F32)), ValueError, r"^x: .*4-D"),
    ("max-x-3d", maxp(x=np.zeros((2, 5, 5), F32)), ValueError, r"^x: .*4-D"),
    ("avg-x-5d", avgp(x=np.zeros((1, 1, 2, 5, 5), F32)), ValueError, r"^x: .*4-D"),
    ("adaptive-x-3d", adavg(x=np.zeros((2, 5, 5), F32)), ValueError, r"^x: .*4-D"),
    ("global-x-5d", lambda: convpool.global_max_pool2d(np.zeros((1, 1, 1, 2, 2))), ValueError, r"^x: .*4-D"),
    ("conv-zero-height", conv(x=x4((1, 2, 0, 5))), ValueError, r"^x: .*spatial"),
    ("max-zero-width", maxp(x=x4((1, 2, 5, 0))), ValueError, r"^x: .*spatial"),
    ("max-zero-width-nhwc", maxp(x=x4((1, 5, 0, 2)), layout="NHWC"), ValueError, r"^x: .*spatial"),
    ("adaptive-zero-height", admax(x=x4((1, 2, 0, 5))), ValueError, r"^x: .*spatial"),
    # --- conv weight / groups / bias
    ("conv-weight-3d", conv(weight=np.zeros((4, 2, 3), F32)), ValueError, r"^weight: .*4-D"),
    ("conv-weight-channels", conv(weight=w4((4, 3, 3, 3))), ValueError, r"^weight: "),
    ("conv-weight-channels-nhwc", conv(x=x4((1, 5, 5, 2)), weight=w4((4, 5, 3, 3)), layout="NHWC"), ValueError,
     r"^weight: "),
    ("conv-groups-not-dividing-c", conv(weight=w4((3, 1, 3, 3)), groups=3), ValueError, r"^groups: "),
    ("conv-groups-not-dividing-k", conv(weight=w4((3, 1, 3, 3)), groups=2), ValueError, r"^weight: .*groups"),
    ("conv-groups-zero", conv(groups=0), ValueError, r"^groups: "),
    ("conv-groups-bool", conv(groups=True), TypeError, r"^groups: "),
    ("conv-groups-float", conv(groups=1.0), TypeError, r"^groups: "),
    ("conv-kernel-zero", conv(weight=w4((4, 2, 0, 3))), ValueError, r"^weight: "),
    ("conv-bias-shape", conv(bias=np.zeros(3, F32)), ValueError, r"^bias: .*shape"),
    ("conv-bias-2d", conv(bias=np.zeros((4, 1), F32)), ValueError, r"^bias: .*shape"),
    ("conv-bias-dtype", conv(bias=np.zeros(4, np.float64)), TypeError, r"^bias: .*dtype"),
    ("conv-bias-int", conv(bias=np.zeros(4, np.int32)), TypeError, r"^bias: .*dtype"),
    ("conv-weight-dtype", conv(weight=w4(dtype=np.float64)), TypeError, r"^weight: .*dtype"),
    # --- dtypes
    *[
        (f"{name}-x-{np.dtype(dt).name}", fn(x=x4(dtype=dt)), TypeError, r"^x: .*dtype")
        for name, fn, dts in [
            ("conv", lambda **k: conv(weight=w4(dtype=k["x"].dtype), **k), (np.complex64, object, np.bool_, np.float16, np.int32, np.uint8)),
            ("avg", avgp, (np.complex128, object, np.bool_, np.float16, np.int64, np.uint8, np.int8)),
            ("lp", lpp, (np.complex64, np.bool_, np.float16, np.int32, np.uint16)),
            ("adaptive-avg", adavg, (np.float16, np.int16, np.bool_)),
            ("max", maxp, (np.complex64, object, np.bool_, np.float16, np.longdouble)),
            ("adaptive-max", admax, (np.complex128, np.bool_, np.float16)),
        ]
        for dt in dts
    ],
    ("conv-x-strings", conv(x=np.full((1, 2, 5, 5), "a")), TypeError, r"^x: .*dtype"),
    # --- kernel_size / stride / dilation
    *[
        (f"{name}-{arg}-{label}", fn(**{arg: value}), exc, rf"^{arg}: ")
        for name, fn, args in [
            ("conv", conv, ("stride", "dilation")),
            ("max", maxp, ("kernel_size", "stride", "dilation")),
            ("avg", avgp, ("kernel_size", "stride", "dilation")),
            ("lp", lpp, ("kernel_size", "stride", "dilation")),
        ]
        for arg in args
        for label, value, exc in [
            ("zero", 0, ValueError),
            ("negative", -1, ValueError),
            ("pair-with-zero", (1, 0), ValueError),
            ("bool", True, TypeError),
            ("bool-in-pair", (1, True), TypeError),
            ("float", 2.0, TypeError),
            ("triple", (1, 1, 1), ValueError),
            ("huge", HUGE, ValueError),
            ("string", "2", TypeError),
        ]
    ],
    # --- padding
    *[
        (f"{name}-padding-{label}", fn(padding=value), exc, r"^padding: ")
        for name, fn in [("conv", conv), ("max", maxp), ("avg", avgp), ("lp", lpp)]
        for label, value, exc in [
            ("negative", -1, ValueError),
            ("negative-pair", (0, -1), ValueError),
            ("negative-side", ((0, 0), (-1, 0)), ValueError),
            ("unknown-string", "full", ValueError),
            ("uppercase-string", "SAME", ValueError),
            ("bool", True, TypeError),
            ("float", 1.5, TypeError),
            ("triple", (1, 1, 1), ValueError),
            ("bad-side", ((0, 0), (0,)), ValueError),
            ("huge", HUGE, ValueError),
            ("huge-side", ((0, HUGE), (0, 0)), ValueError),
        ]
    ],
    # pools: each pad must be smaller than the dilated kernel extent
    ("max-pad-equal-kernel", maxp(kernel_size=2, padding=2), ValueError, r"^padding: "),
    ("max-pad-beyond-dilated", maxp(kernel_size=2, dilation=2, padding=3), ValueError, r"^padding: "),
    ("avg-pad-bottom-only", avgp(kernel_size=3, padding=((0, 3), (0, 0))), ValueError, r"^padding: "),
    ("lp-pad-right-only", lpp(kernel_size=(2, 3), padding=((0, 0), (0, 3))), ValueError, r"^padding: "),
    ("max-pad-width-pair", maxp(kernel_size=(3, 2), padding=(1, 2)), ValueError, r"^padding: "),
    # --- empty outputs
    ("conv-output-empty", conv(x=x4((1, 2, 2, 5))), ValueError, r"^weight: .*empty"),
    ("conv-output-empty-dilated", conv(x=x4((1, 2, 5, 5)), dilation=(1, 3)), ValueError, r"^weight: .*empty"),
    ("max-output-empty", maxp(x=x4((1, 2, 1, 5)), kernel_size=2), ValueError, r"^kernel_size: .*empty"),
    ("avg-output-empty-dilated", avgp(x=x4((1, 2, 5, 5)), kernel_size=2, dilation=5), ValueError,
     r"^kernel_size: .*empty"),
    ("adaptive-output-zero", adavg(output_size=0), ValueError, r"^output_size: "),
    ("adaptive-output-pair-zero", admax(output_size=(2, 0)), ValueError, r"^output_size: "),
    ("adaptive-output-negative", admax(output_size=(-1, None)), ValueError, r"^output_size: "),
    ("adaptive-output-triple", adavg(output_size=(1, 1, 1)), ValueError, r"^output_size: "),
    ("adaptive-output-bool", adavg(output_size=True), TypeError, r"^output_size: "),
    ("adaptive-output-float", adavg(output_size=(2.0, 2)), TypeError, r"^output_size: "),
    ("adaptive-output-huge", adavg(output_size=HUGE), ValueError, r"^output_size: "),
    ("adaptive-output-too-large", admax(output_size=(2**31, 2**31)), ValueError, r"^out"),
    # --- layout
    ("conv-layout-unknown", conv(layout="NHCW"), ValueError, r"^layout: "),
    ("conv-layout-lowercase", conv(layout="nchw"), ValueError, r"^layout: "),
    ("max-layout-int", maxp(layout=0), TypeError, r"^layout: "),
    ("adaptive-layout-unknown", adavg(layout="CHWN"), ValueError, r"^layout: "),
    ("global-layout-none", lambda: convpool.global_avg_pool2d(x4(), layout=None), TypeError, r"^layout: "),
    # --- flags
    ("max-ceil-mode-int", maxp(ceil_mode=1), TypeError, r"^ceil_mode: "),
    ("avg-ceil-mode-none", avgp(ceil_mode=None), TypeError, r"^ceil_mode: "),
    ("max-return-indices-str", maxp(return_indices="yes"), TypeError, r"^return_indices: "),
    ("adaptive-return-indices-int", admax(return_indices=1), TypeError, r"^return_indices: "),
    ("avg-count-include-pad-int", avgp(count_include_pad=0), TypeError, r"^count_include_pad: "),
    # --- avg / lp parameters
    ("avg-divisor-zero", avgp(divisor_override=0), ValueError, r"^divisor_override: "),
    ("avg-divisor-negative", avgp(divisor_override=-2), ValueError, r"^divisor_override: "),
    ("avg-divisor-bool", avgp(divisor_override=True), TypeError, r"^divisor_override: "),
    ("avg-divisor-float", avgp(divisor_override=2.0), TypeError, r"^divisor_override: "),
    ("avg-divisor-huge", avgp(divisor_override=HUGE), ValueError, r"^divisor_override: "),
    *[
        (f"lp-norm-{label}", lpp(norm_type=value), exc, r"^norm_type: ")
        for label, value, exc in [
            ("zero", 0, ValueError),
            ("negative", -2.0, ValueError),
            ("inf", float("inf"), ValueError),
            ("nan", float("nan"), ValueError),
            ("minus-inf", -np.inf, ValueError),
            ("bool", True, TypeError),
            ("string", "2", TypeError),
            ("none", None, TypeError),
            ("complex", 2j, TypeError),
        ]
    ],
    # --- out
    *[
        (f"{name}-out-{label}", fn(out=make()), exc, r"^out")
        for name, fn, shape, dtype in [
            ("conv", conv, (1, 4, 3, 3), F32),
            ("max", maxp, (1, 2, 2, 2), F32),
            ("avg", avgp, (1, 2, 2, 2), F32),
            ("lp", lpp, (1, 2, 2, 2), F32),
            ("adaptive-avg", adavg, (1, 2, 2, 2), F32),
            ("adaptive-max", admax, (1, 2, 2, 2), F32),
        ]
        for label, make, exc in [
            ("shape", lambda shape=shape, dtype=dtype: np.zeros(shape[:-1] + (shape[-1] + 1,), dtype), ValueError),
            ("dtype", lambda shape=shape: np.zeros(shape, np.float64), TypeError),
            ("read-only", lambda shape=shape, dtype=dtype: read_only(np.zeros(shape, dtype)), ValueError),
            ("non-contiguous", lambda shape=shape, dtype=dtype: np.zeros(shape[:-1] + (2 * shape[-1],), dtype)[..., ::2], ValueError),
            ("fortran", lambda shape=shape, dtype=dtype: np.asfortranarray(np.zeros(shape, dtype)), ValueError),
            ("list", lambda shape=shape: np.zeros(shape, F32).tolist(), TypeError),
        ]
    ],
    ("conv-out-nchw-shape-for-nhwc", conv(x=x4((1, 5, 5, 2)), layout="NHWC", out=np.zeros((1, 4, 3, 3), F32)),
     ValueError, r"^out: .*shape"),
    ("max-out-nchw-shape-for-nhwc", maxp(x=x4((1, 4, 4, 3)), layout="NHWC", out=np.zeros((1, 3, 2, 2), F32)),
     ValueError, r"^out: .*shape"),
    ("max-out-pair-length", maxp(return_indices=True, out=(np.zeros((1, 2, 2, 2), F32),)), ValueError, r"^out"),
    ("max-out-indices-dtype", maxp(return_indices=True, out=(np.zeros((1, 2, 2, 2), F32), np.zeros((1, 2, 2, 2), np.int32))),
     TypeError, r"indices"),
    ("max-out-indices-shape", maxp(return_indices=True, out=(np.zeros((1, 2, 2, 2), F32), np.zeros((1, 2, 2, 3), np.int64))),
     ValueError, r"indices"),
    ("max-out-indices-read-only", maxp(return_indices=True, out=(None, read_only(np.zeros((1, 2, 2, 2), np.int64)))),
     ValueError, r"indices"),
    # --- sizes too large to allocate
    ("conv-padding-enormous-output", conv(padding=2**40), ValueError, r"^out"),
    ("conv-padding-enormous-one-axis", conv(padding=((2**58, 0), (0, 0))), ValueError, r"^out"),
    ("max-dilation-enormous-output", maxp(x=x4((1, 1, 1, 1)), kernel_size=(2, 1), stride=1, dilation=(2**58, 1),
                                          padding=((2**58, 2**58), (0, 0))), ValueError, r"^out"),
    ("conv-dilation-beyond-limit", conv(dilation=2**61), ValueError, r"^dilation: "),
]


@pytest.mark.parametrize(("call", "exc", "match"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# Arguments equal to valid ones in Python (True == 1 == 1.0) that the checks reject.
# The geometry of a valid call is remembered (convpool._validation.memoize_plain);
# an equal bad argument after it must still be rejected, not served from memory.
EQUAL_BUT_BAD = [
    ("conv-stride-bool", conv, dict(stride=1), dict(stride=True), r"^stride: "),
    ("conv-stride-pair-bool", conv, dict(stride=(1, 1)), dict(stride=(True, 1)), r"^stride: "),
    ("conv-stride-float", conv, dict(stride=2), dict(stride=2.0), r"^stride: "),
    ("conv-padding-bool", conv, dict(padding=1), dict(padding=True), r"^padding: "),
    ("conv-padding-pair-float", conv, dict(padding=(1, 1)), dict(padding=(1.0, 1)), r"^padding: "),
    ("conv-padding-nested-float", conv, dict(padding=((1, 0), (0, 1))), dict(padding=((1, 0), (0, 1.0))),
     r"^padding: "),
    ("conv-dilation-bool", conv, dict(dilation=1), dict(dilation=True), r"^dilation: "),
    ("conv-groups-bool", conv, dict(groups=1), dict(groups=True), r"^groups: "),
    ("max-kernel-float", maxp, dict(kernel_size=2), dict(kernel_size=2.0), r"^kernel_size: "),
    ("max-kernel-pair-bool", maxp, dict(kernel_size=(1, 2)), dict(kernel_size=(True, 2)), r"^kernel_size: "),
    ("max-stride-bool", maxp, dict(stride=1), dict(stride=True), r"^stride: "),
    ("max-ceil-int", maxp, dict(ceil_mode=False), dict(ceil_mode=0), r"^ceil_mode: "),
    ("avg-ceil-int", avgp, dict(ceil_mode=True), dict(ceil_mode=1), r"^ceil_mode: "),
    ("avg-padding-bool", avgp, dict(padding=1), dict(padding=True), r"^padding: "),
    ("lp-dilation-float", lpp, dict(dilation=1), dict(dilation=1.0), r"^dilation: "),
]


@pytest.mark.parametrize(("make", "good", "bad", "match"), [c[1:] for c in EQUAL_BUT_BAD],
                         ids=[c[0] for c in EQUAL_BUT_BAD])
def test_bad_argument_equal_to_a_remembered_good_one(make, good, bad, match):
    assert good == bad
    for _ in range(2):  # the second call is served from memory
        make(**good)()
    with pytest.raises(TypeError, match=match):
        make(**bad)()


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# ----------------------------------------------------------------------------- empty batch, huge output


_LIMITED_MEMORY_SCRIPT = """
import resource, sys
import numpy as np
import convpool

# Whatever the machine's overcommit policy, no allocation above 4 GiB can succeed.
resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
x = np.zeros((0, 1, 4, 4))
calls = {
    "adaptive-avg": lambda: convpool.adaptive_avg_pool2d(x, (2**40, 1)),
    "adaptive-max": lambda: convpool.adaptive_max_pool2d(x, (1, 2**40)),
    "max-dilated": lambda: convpool.max_pool2d(
        x[:, :, :1, :1], (2, 1), stride=1, dilation=(2**40, 1), padding=((2**40, 2**40), (0, 0))
    ),
}
try:
    result = calls[sys.argv[1]]()
except ValueError:
    print("ValueError")
else:
    print("empty" if result.size == 0 and max(result.shape) >= 2**40 else f"wrong shape {result.shape}")
"""


@pytest.mark.parametrize("case", ["adaptive-avg", "adaptive-max", "max-dilated"])
def test_empty_batch_with_enormous_output(case):
    """N == 0 with an output plane of ~2**40 elements: either an empty result of the
    right shape or a ValueError -- not an attempt to allocate per-output tables
    (MemoryError) or a crash. Runs in a subprocess with a 4 GiB address-space limit."""
    proc = subprocess.run([sys.executable, "-c", _LIMITED_MEMORY_SCRIPT, case], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() in ("ValueError", "empty"), (
        f"exit code {proc.returncode}; stdout: {proc.stdout!r}; stderr: {proc.stderr[-1500:]}"
    )


# ----------------------------------------------------------------------------- threads


@pytest.mark.parametrize(
    ("value", "exc"),
    [(0, ValueError), (-1, ValueError), (10**6, ValueError), (HUGE, ValueError), (True, TypeError),
     (1.0, TypeError), ("2", TypeError), (None, TypeError)],
    ids=["zero", "negative", "million", "huge", "bool", "float", "string", "none"],
)
def test_bad_thread_counts(value, exc):
    before = convpool.get_num_threads()
    with pytest.raises(exc, match=r"^n: "):
        convpool.set_num_threads(value)
    with pytest.raises(exc, match=r"^n: "):
        with convpool.threads(value):
            pass  # pragma: no cover - must not be reached
    assert convpool.get_num_threads() == before


# ----------------------------------------------------------------------------- _core called directly


def core_conv(x=None, weight=None, bias=None, out=None, stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1),
              groups=1, layout=0):
    x = x4((1, 2, 5, 5)) if x is None else x
    weight = w4((4, 2, 3, 3)) if weight is None else weight
    out = np.zeros((1, 4, 3, 3), F32) if out is None else out
    return lambda: _core.conv2d(x, weight, bias, out, stride, padding, dilation, groups, layout, 1)


def core_pool(reduction="max", x=None, out=None, indices=None, kernel=(2, 2), stride=(2, 2), padding=(0, 0, 0, 0),
              dilation=(1, 1), divisor_override=0, norm_type=2.0, layout=0):
    x = x4((1, 2, 4, 4)) if x is None else x
    out = np.zeros((1, 2, 2, 2), x.dtype) if out is None else out
    return lambda: _core.pool2d(reduction, x, out, indices, kernel, stride, padding, dilation, False, True,
                                divisor_override, norm_type, layout, 1)


def core_adaptive(reduction="avg", x=None, out=None, indices=None, output_size=(2, 2), layout=0):
    x = x4((1, 2, 4, 4)) if x is None else x
    out = np.zeros((1, 2) + tuple(output_size), x.dtype) if out is None else out
    return lambda: _core.adaptive_pool2d(reduction, x, out, indices, output_size, layout, 1)


CORE_CASES = [
    ("conv-ok", core_conv(), None),
    ("conv-out-shape", core_conv(out=np.zeros((1, 4, 3, 4), F32)), ValueError),
    ("conv-out-dtype", core_conv(out=np.zeros((1, 4, 3, 3))), TypeError),
    ("conv-out-read-only", core_conv(out=read_only(np.zeros((1, 4, 3, 3), F32))), ValueError),
    ("conv-out-non-contiguous", core_conv(out=np.zeros((1, 4, 3, 6), F32)[..., ::2]), ValueError),
    ("conv-x-non-contiguous", core_conv(x=x4((1, 2, 5, 10))[..., ::2]), ValueError),
    ("conv-weight-non-contiguous", core_conv(weight=w4((4, 2, 3, 6))[..., ::2]), ValueError),
    ("conv-weight-dtype", core_conv(weight=w4(dtype=np.float64)), TypeError),
    ("conv-weight-3d", core_conv(weight=np.zeros((4, 2, 3), F32)), ValueError),
    ("conv-weight-channels", core_conv(weight=w4((4, 3, 3, 3))), ValueError),
    ("conv-x-3d", core_conv(x=np.zeros((2, 5, 5), F32)), ValueError),
    ("conv-x-int", core_conv(x=x4(dtype=np.int32), weight=w4(dtype=np.int32)), TypeError),
    ("conv-bias-shape", core_conv(bias=np.zeros(3, F32)), ValueError),
    ("conv-bias-dtype", core_conv(bias=np.zeros(4)), TypeError),
    ("conv-groups-zero", core_conv(groups=0), ValueError),
    ("conv-groups-mismatch", core_conv(groups=2), ValueError),
    ("conv-stride-zero", core_conv(stride=(0, 1)), ValueError),
    ("conv-dilation-zero", core_conv(dilation=(1, 0)), ValueError),
    ("conv-padding-negative", core_conv(padding=(0, -1, 0, 0)), ValueError),
    ("conv-layout-code", core_conv(layout=7), ValueError),
    ("conv-output-empty", core_conv(x=x4((1, 2, 2, 5))), ValueError),
    ("conv-zero-height", core_conv(x=x4((1, 2, 0, 5))), ValueError),
    ("conv-huge-padding", core_conv(padding=(2**61, 2**61, 0, 0)), ValueError),
    ("pool-ok", core_pool(), None),
    ("pool-out-shape", core_pool(out=np.zeros((1, 2, 2, 3), F32)), ValueError),
    ("pool-out-dtype", core_pool(out=np.zeros((1, 2, 2, 2), np.float64)), TypeError),
    ("pool-out-non-contiguous", core_pool(out=np.zeros((1, 2, 2, 4), F32)[..., ::2]), ValueError),
    ("pool-x-non-contiguous", core_pool(x=x4((1, 2, 4, 8))[..., ::2]), ValueError),
    ("pool-x-3d", core_pool(x=np.zeros((2, 4, 4), F32)), ValueError),
    ("pool-reduction", core_pool(reduction="median"), ValueError),
    ("pool-indices-for-avg", core_pool(reduction="avg", indices=np.zeros((1, 2, 2, 2), np.int64)), ValueError),
    ("pool-indices-dtype", core_pool(indices=np.zeros((1, 2, 2, 2), np.int32)), TypeError),
    ("pool-indices-shape", core_pool(indices=np.zeros((1, 2, 2, 1), np.int64)), ValueError),
    ("pool-pad-too-large", core_pool(padding=(2, 0, 0, 0)), ValueError),
    ("pool-pad-negative", core_pool(padding=(-1, 0, 0, 0)), ValueError),
    ("pool-kernel-zero", core_pool(kernel=(0, 2)), ValueError),
    ("pool-stride-zero", core_pool(stride=(2, 0)), ValueError),
    ("pool-int-avg", core_pool(reduction="avg", x=x4((1, 2, 4, 4), np.int32)), TypeError),
    ("pool-bool-max", core_pool(x=x4((1, 2, 4, 4), np.bool_)), TypeError),
    ("pool-divisor-negative", core_pool(reduction="avg", divisor_override=-1), ValueError),
    ("pool-norm-zero", core_pool(reduction="lp", norm_type=0.0), ValueError),
    ("pool-norm-nan", core_pool(reduction="lp", norm_type=float("nan")), ValueError),
    ("pool-layout-code", core_pool(layout=-1), ValueError),
    ("pool-output-empty", core_pool(x=x4((1, 2, 1, 4))), ValueError),
    ("adaptive-ok", core_adaptive(), None),
    ("adaptive-output-zero", core_adaptive(output_size=(0, 2), out=np.zeros((1, 2, 1, 2), F32)), ValueError),
    ("adaptive-out-shape", core_adaptive(out=np.zeros((1, 2, 2, 3), F32)), ValueError),
    ("adaptive-x-non-contiguous", core_adaptive(x=x4((1, 2, 4, 8))[..., ::2]), ValueError),
    ("adaptive-reduction", core_adaptive(reduction="median"), ValueError),
    ("adaptive-indices-for-avg", core_adaptive(indices=np.zeros((1, 2, 2, 2), np.int64)), ValueError),
    ("adaptive-output-huge", core_adaptive(output_size=(2**62, 1), out=np.zeros((1, 2, 1, 1), F32)), ValueError),
]


@pytest.mark.parametrize(("call", "exc"), [c[1:] for c in CORE_CASES], ids=[c[0] for c in CORE_CASES])
def test_core_rejects_inconsistent_arrays(call, exc):
    """The compiled functions check their arrays themselves (they can be called directly)."""
    if exc is None:
        call()  # the baseline of each group of cases is accepted
    else:
        with pytest.raises(exc):
            call()


def test_set_isa_rejects_unknown_name():
    before = _core.active_isa()
    with pytest.raises(ValueError, match="bogus"):
        _core.set_isa("bogus")
    assert _core.active_isa() == before
