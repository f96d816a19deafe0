"""Threads API, show_config, ISA selection at import, and ``python -m convpool``."""

from __future__ import annotations

import asyncio
import contextvars
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

import convpool
from convpool import _core

SUPPORTED = _core.supported_isas()


def run_python(code: str, *args: str, env_update=None, timeout=120) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CONVPOOL_ISA", "OMP_NUM_THREADS")}
    env.update(env_update or {})
    return subprocess.run([sys.executable, *(["-c", code] if code else []), *args], capture_output=True, text=True,
                          env=env, timeout=timeout, cwd=str(Path(__file__).parent))


@pytest.fixture
def restore_global_threads():
    """set_num_threads changes process-wide state: put the module's setting back."""
    from convpool import _config

    saved = _config._global_threads
    yield
    _config._global_threads = saved


# ----------------------------------------------------------------------------- threads


def test_default_thread_count_is_openmp_default(restore_global_threads):
    from convpool import _config

    _config._global_threads = None
    expected = _core.default_num_threads() if _core.openmp else 1
    assert convpool.get_num_threads() == expected >= 1


def test_set_num_threads(restore_global_threads):
    for n in (1, 3, np.int64(2), 1024):  # any integer type, up to the documented limit
        convpool.set_num_threads(n)
        assert convpool.get_num_threads() == (n if _core.openmp else 1)


@pytest.mark.skipif(not _core.openmp, reason="a build without OpenMP always reports 1 thread")
def test_threads_context_manager_restores_and_nests(restore_global_threads):
    convpool.set_num_threads(3)
    with convpool.threads(1):
        assert convpool.get_num_threads() == 1
        with convpool.threads(2):
            assert convpool.get_num_threads() == 2
            convpool.set_num_threads(4)  # the innermost block still wins
            assert convpool.get_num_threads() == 2
        assert convpool.get_num_threads() == 1
    assert convpool.get_num_threads() == 4


@pytest.mark.skipif(not _core.openmp, reason="a build without OpenMP always reports 1 thread")
def test_threads_restored_after_exception(restore_global_threads):
    convpool.set_num_threads(3)
    with pytest.raises(RuntimeError):
        with convpool.threads(1):
            raise RuntimeError("boom")
    assert convpool.get_num_threads() == 3


@pytest.mark.skipif(not _core.openmp, reason="a build without OpenMP always reports 1 thread")
def test_threads_block_is_local_to_its_thread(restore_global_threads):
    convpool.set_num_threads(3)
    seen = {}
    inside = threading.Event()
    release = threading.Event()

    def worker():
        with convpool.threads(1):
            inside.set()
            release.wait(10)
            seen["worker"] = convpool.get_num_threads()

    t = threading.Thread(target=worker)
    t.start()
    assert inside.wait(10)
    seen["main"] = convpool.get_num_threads()  # while the worker is inside its block
    release.set()
    t.join(10)
    assert seen == {"main": 3, "worker": 1}


@pytest.mark.skipif(not _core.openmp, reason="a build without OpenMP always reports 1 thread")
def test_threads_block_is_local_to_its_task(restore_global_threads):
    convpool.set_num_threads(3)

    async def task(n, started, go):
        with convpool.threads(n):
            started.set()
            await go.wait()
            return convpool.get_num_threads()

    async def main():
        go = asyncio.Event()
        s1, s2 = asyncio.Event(), asyncio.Event()
        t1 = asyncio.create_task(task(1, s1, go))
        t2 = asyncio.create_task(task(2, s2, go))
        await s1.wait()
        await s2.wait()
        outside = convpool.get_num_threads()
        go.set()
        return outside, await t1, await t2

    assert asyncio.run(main()) == (3, 1, 2)


@pytest.mark.skipif(not _core.openmp, reason="a build without OpenMP always reports 1 thread")
def test_threads_copied_context(restore_global_threads):
    convpool.set_num_threads(3)
    with convpool.threads(2):
        ctx = contextvars.copy_context()
    assert ctx.run(convpool.get_num_threads) == 2
    assert convpool.get_num_threads() == 3


def test_omp_num_threads_sets_the_default():
    code = "import convpool; print(convpool.get_num_threads())"
    proc = run_python(code, env_update={"OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"


def test_results_do_not_depend_on_threads():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8, 9, 13)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    results = []
    for n in (1, 2, 3, 8):
        with convpool.threads(n):
            results.append((convpool.conv2d(x, w, padding=1), convpool.max_pool2d(x, 3, 2, 1, return_indices=True)))
    for conv, (values, indices) in results[1:]:
        assert np.array_equal(conv, results[0][0])
        assert np.array_equal(values, results[0][1][0]) and np.array_equal(indices, results[0][1][1])


_WORK_SPLIT_SCRIPT = """
import sys
import numpy as np
import convpool
from convpool import _core

_core.set_min_parallel_work(0)  # every requested thread, however small the call
rng = np.random.default_rng(5)


def into_nan(fn, shape, dtype):
    out = np.full(shape, np.nan, dtype=dtype)
    fn(out)
    return out


def results(planes):
    x = rng.standard_normal((planes, 1, 9, 11)).astype(np.float32)
    xh = np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    xc = rng.standard_normal((max(planes // 8, 1), 8, 9, 11)).astype(np.float32)
    w = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    wd = rng.standard_normal((planes, 1, 3, 3)).astype(np.float32)
    xd = rng.standard_normal((1, planes, 12, 40)).astype(np.float32)
    n = xc.shape[0]
    return [
        into_nan(lambda o: convpool.max_pool2d(x, 2, out=o), (planes, 1, 4, 5), np.float32),
        into_nan(lambda o: convpool.avg_pool2d(x, 3, 1, 1, out=o), (planes, 1, 9, 11), np.float32),
        into_nan(lambda o: convpool.avg_pool2d(xh, 3, 1, 1, layout="NHWC", out=o), (planes, 9, 11, 1), np.float32),
        into_nan(lambda o: convpool.conv2d(xc, w, padding=1, out=o), (n, 16, 9, 11), np.float32),
        into_nan(lambda o: convpool.conv2d(xd, wd, stride=2, padding=1, groups=planes, out=o),
                 (1, planes, 6, 20), np.float32),
    ]


for planes in (1, 5, 63, 64, 65, 130, 517):
    state = rng.bit_generator.state
    with convpool.threads(1):
        want = results(planes)
    for threads in [int(t) for t in sys.argv[1].split(",")]:
        rng.bit_generator.state = state  # the same inputs
        with convpool.threads(threads):
            got = results(planes)
        for i, (g, w) in enumerate(zip(got, want)):
            assert not np.isnan(g).any(), (planes, threads, i, "an output left unwritten")
            assert np.array_equal(g, w), (planes, threads, i)
print("ok")
"""


@pytest.mark.skipif(not _core.openmp, reason="a build without OpenMP has one thread")
@pytest.mark.parametrize(
    "threads, thread_limit",
    [("2,3,7,64,65,100", None), ("4,8,70", "2")],
    ids=["threads-as-asked", "omp-thread-limit-2"],
)
def test_work_split_does_every_item_once(threads, thread_limit):
    """The kernels' work split (each thread a run of items, idle threads taking the
    others' chunks): every output written, the same as on one thread, for item
    counts below, at and above the thread count and past 64 runs, and when OpenMP
    starts fewer threads than asked (OMP_THREAD_LIMIT), so that some runs have no
    owner and are taken entirely by the other threads."""
    env = {"OMP_THREAD_LIMIT": thread_limit} if thread_limit else {}
    proc = run_python(_WORK_SPLIT_SCRIPT, threads, env_update=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- remembered geometry


@pytest.mark.parametrize("limit", [1, 3, 4096])
def test_remembered_geometry_matches_the_arguments(limit, monkeypatch):
    """Geometry remembered from earlier calls (or dropped when the memo is full) is this call's own."""
    from convpool import _validation

    monkeypatch.setattr(_validation, "MEMO_LIMIT", limit)
    ref = convpool.reference
    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(s) for s in ((2, 4, 9, 9), (2, 4, 9, 10), (1, 4, 10, 9))]
    weight = rng.standard_normal((3, 4, 3, 3))
    # (arguments as given, the same as the reference takes them)
    convs = [
        (dict(stride=1, padding=0), dict(stride=(1, 1), padding=((0, 0), (0, 0)))),
        (dict(stride=2, padding=1), dict(stride=(2, 2), padding=((1, 1), (1, 1)))),
        (dict(stride=(1, 2), padding=((0, 1), (2, 0))), dict(stride=(1, 2), padding=((0, 1), (2, 0)))),
    ]
    pools = [
        (dict(kernel_size=2), dict(kernel_size=(2, 2), stride=(2, 2), padding=((0, 0), (0, 0)))),
        (dict(kernel_size=3, stride=2, padding=1), dict(kernel_size=(3, 3), stride=(2, 2), padding=((1, 1), (1, 1)))),
        (dict(kernel_size=(3, 2), stride=1), dict(kernel_size=(3, 2), stride=(1, 1), padding=((0, 0), (0, 0)))),
    ]
    for _ in range(3):  # later rounds meet remembered (or dropped) entries
        for x in inputs:
            for given, want in convs:
                np.testing.assert_allclose(
                    convpool.conv2d(x, weight, **given), ref.conv2d(x, weight, **want), rtol=1e-12, atol=1e-12
                )
            for given, want in pools:
                for ceil_mode in (False, True):
                    got = convpool.max_pool2d(x, **given, ceil_mode=ceil_mode)
                    assert np.array_equal(got, ref.max_pool2d(x, **want, ceil_mode=ceil_mode))


# ----------------------------------------------------------------------------- show_config


def test_show_config(capsys):
    convpool.show_config()
    text = capsys.readouterr().out
    assert f"convpool {convpool.__version__}" in text
    assert f"ISA in use:      {_core.active_isa()}" in text
    assert ", ".join(_core.compiled_isas()) in text
    assert ", ".join(SUPPORTED) in text
    assert "OpenMP:" in text and ("yes" if _core.openmp else "no") in text
    assert f"threads:         {convpool.get_num_threads()}" in text
    assert "CUDA backend:" in text


def test_show_config_reflects_set_isa(isa, capsys):
    convpool.show_config()
    assert f"ISA in use:      {isa}" in capsys.readouterr().out


def test_show_config_reflects_threads(capsys):
    with convpool.threads(1):
        convpool.show_config()
    assert "threads:         1\n" in capsys.readouterr().out


def test_version_and_flags():
    assert convpool.__version__ == _core.__version__
    assert isinstance(convpool.has_cuda, bool)
    assert "baseline" in SUPPORTED and set(SUPPORTED) <= set(_core.compiled_isas())
    assert _core.active_isa() in SUPPORTED


def test_set_isa_round_trip(isa):
    assert _core.active_isa() == isa


# ----------------------------------------------------------------------------- CONVPOOL_ISA


@pytest.mark.parametrize("name", SUPPORTED)
def test_convpool_isa_env_selects_isa(name):
    proc = run_python("import convpool; from convpool import _core; print(_core.active_isa())",
                      env_update={"CONVPOOL_ISA": name})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == name


def test_convpool_isa_baseline_runs_kernels():
    code = (
        "import numpy as np, convpool\n"
        "from convpool import _core\n"
        "x = np.arange(16.0).reshape(1, 1, 4, 4)\n"
        "print(_core.active_isa(), convpool.max_pool2d(x, 2).ravel().tolist())\n"
    )
    proc = run_python(code, env_update={"CONVPOOL_ISA": "baseline"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["baseline", "[5.0,", "7.0,", "13.0,", "15.0]"]


@pytest.mark.parametrize("value", ["bogus", "AVX2", "sse2"])
def test_convpool_isa_unknown_value_fails_import(value):
    proc = run_python("import convpool", env_update={"CONVPOOL_ISA": value})
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr and "CONVPOOL_ISA" in proc.stderr and value in proc.stderr


def test_convpool_isa_unset_uses_best():
    proc = run_python("import convpool; from convpool import _core; print(_core.active_isa())")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == SUPPORTED[-1]


# ----------------------------------------------------------------------------- python -m convpool

def test_python_m_convpool_demo():
    proc = run_python("", "-m", "convpool", "--size", "32", "--repeats", "1", "--batch", "1", "--layout", "NCHW")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"ISA in use:      {SUPPORTED[-1]}" in out
    assert f"convpool {convpool.__version__}" in out
    assert "NCHW" in out and "GFLOP/s" in out


def test_python_m_convpool_honours_convpool_isa():
    proc = run_python("", "-m", "convpool", "--size", "16", "--repeats", "1", env_update={"CONVPOOL_ISA": "baseline"})
    assert proc.returncode == 0, proc.stderr
    assert "ISA in use:      baseline" in proc.stdout


def test_small_calls_grain_is_settable():
    """The threading grain is positive by default (small calls stay on one thread) and
    0 makes every call use the requested threads; results do not depend on it."""
    from convpool import _core

    saved = _core.min_parallel_work()
    try:
        _core.set_min_parallel_work(1 << 15)
        assert _core.min_parallel_work() == 1 << 15
        x = np.random.default_rng(0).standard_normal((2, 3, 9, 9))
        w = np.random.default_rng(1).standard_normal((4, 3, 3, 3))
        with convpool.threads(2):
            coarse = convpool.conv2d(x, w, padding=1)
            _core.set_min_parallel_work(0)
            assert _core.min_parallel_work() == 0
            fine = convpool.conv2d(x, w, padding=1)
        np.testing.assert_array_equal(coarse, fine)
        _core.set_min_parallel_work(-5)
        assert _core.min_parallel_work() == 0
    finally:
        _core.set_min_parallel_work(saved)


def test_cache_resident_bound_is_settable():
    """The bound is 16 MiB by default and not negative; the NHWC depthwise kernels it
    chooses between (wide pixels, 3x3 at stride 1) sum in the same order, so the
    results are identical either way."""
    saved = _core.cache_resident_bytes()
    try:
        assert saved == 16 << 20
        rng = np.random.default_rng(0)
        x = rng.standard_normal((2, 9, 21, 80)).astype(np.float32)
        w = rng.standard_normal((80, 1, 3, 3)).astype(np.float32)
        b = rng.standard_normal(80).astype(np.float32)
        from_cache = convpool.conv2d(x, w, b, padding=1, groups=80, layout="NHWC")
        _core.set_cache_resident_bytes(0)
        assert _core.cache_resident_bytes() == 0
        from_memory = convpool.conv2d(x, w, b, padding=1, groups=80, layout="NHWC")
        np.testing.assert_array_equal(from_cache, from_memory)
        _core.set_cache_resident_bytes(-1)
        assert _core.cache_resident_bytes() == 0
    finally:
        _core.set_cache_resident_bytes(saved)


# ----------------------------------------------------------------------------- denormals


@pytest.fixture
def restore_flush_denormal():
    saved = convpool.get_flush_denormal()
    yield
    convpool.set_flush_denormal(saved)


def test_flush_denormal_is_on_by_default_and_settable(restore_flush_denormal):
    assert run_python("import convpool; print(convpool.get_flush_denormal())").stdout.strip() == "True"
    convpool.set_flush_denormal(False)
    assert convpool.get_flush_denormal() is False
    convpool.set_flush_denormal(np.bool_(True))
    assert convpool.get_flush_denormal() is True


@pytest.mark.parametrize("mode", [1, None, "yes"])
def test_flush_denormal_rejects_non_bool(mode, restore_flush_denormal):
    with pytest.raises(TypeError, match="mode"):
        convpool.set_flush_denormal(mode)


def _tiny_conv_case(dtype, groups=1):
    """Inputs and weights whose every product is subnormal (2**-140 in float32,
    2**-1040 in float64) while both factors are normal."""
    e = -70 if dtype == np.float32 else -520
    rng = np.random.default_rng(0)
    x = (rng.choice([-1.0, 1.0], size=(2, 5, 9, 17)) * 2.0**e).astype(dtype)
    k = 33 if groups == 1 else 5
    w = (rng.choice([-1.0, 1.0], size=(k, 5 // groups, 3, 3)) * 2.0**e).astype(dtype)
    return x, w


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
@pytest.mark.parametrize("groups", [1, 5], ids=["dense", "depthwise"])
def test_conv_flushes_subnormal_results(isa, layout, dtype, groups, restore_flush_denormal):
    x, w = _tiny_conv_case(dtype, groups)
    xl = x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))
    want = convpool.reference.conv2d(x, w, padding=((1, 1), (1, 1)), groups=groups)
    tiny = np.finfo(dtype).tiny
    assert np.any((want != 0) & (np.abs(want) < tiny))  # the case does produce subnormals

    convpool.set_flush_denormal(True)
    got = convpool.conv2d(xl, w, padding=1, groups=groups, layout=layout)
    assert np.all(got == 0)

    convpool.set_flush_denormal(False)
    got = convpool.conv2d(xl, w, padding=1, groups=groups, layout=layout)
    if layout == "NHWC":
        got = got.transpose(0, 3, 1, 2)
    # Every product is an exact power of two and the sums are exact (no rounding in
    # the subnormal range is needed): gradual underflow gives the reference exactly.
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_conv_reads_subnormal_inputs_as_zero(isa, dtype, restore_flush_denormal):
    sub = np.finfo(dtype).tiny / 4  # subnormal input; times 2**20 it is a normal result
    x = np.full((1, 3, 4, 4), sub, dtype=dtype)
    w = np.full((20, 3, 1, 1), 2.0**20, dtype=dtype)
    convpool.set_flush_denormal(True)
    assert np.all(convpool.conv2d(x, w) == 0)
    convpool.set_flush_denormal(False)
    np.testing.assert_array_equal(convpool.conv2d(x, w), np.full((1, 20, 4, 4), 3 * sub * 2.0**20, dtype=dtype))


def test_flush_leaves_the_callers_environment(isa, restore_flush_denormal):
    convpool.set_flush_denormal(True)
    with convpool.threads(1):  # the kernel runs on this very thread
        x, w = _tiny_conv_case(np.float32)
        convpool.conv2d(x, w, padding=1)
    a = np.array([2.0**-70], dtype=np.float32)
    assert (a * a)[0] == np.float32(2.0**-140)  # NumPy still sees gradual underflow


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_pooling_denormals(isa, layout, dtype, restore_flush_denormal):
    """Average pooling and its gradient flush; max pooling returns its inputs as they are."""
    sub = np.finfo(dtype).tiny / 4
    shape = (2, 3, 6, 10) if layout == "NCHW" else (2, 6, 10, 3)
    x = np.full(shape, sub, dtype=dtype)
    out_shape = (2, 3, 3, 5) if layout == "NCHW" else (2, 3, 5, 3)
    g = np.full(out_shape, sub, dtype=dtype)
    for flush in (True, False):
        convpool.set_flush_denormal(flush)
        avg = convpool.avg_pool2d(x, 2, layout=layout)
        grad = convpool.avg_pool2d_backward(g, shape, 2, layout=layout)
        np.testing.assert_array_equal(convpool.max_pool2d(x, 2, layout=layout), np.full(out_shape, sub, dtype))
        if flush:
            assert np.all(avg == 0) and np.all(grad == 0)
        else:  # exact: a sum of four equal values, divided by 4; a quarter of each gradient
            np.testing.assert_array_equal(avg, np.full(out_shape, sub, dtype))
            np.testing.assert_array_equal(grad, np.full(shape, sub / 4, dtype))
