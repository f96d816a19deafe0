"""Timing loop and the machine's measured peaks (FMA throughput, copy bandwidth)."""

from __future__ import annotations

import gc
import os
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Dict, List

import numpy as np


@dataclass(frozen=True)
class Budget:
    """How long to time one callable: ``warmup`` untimed calls, more of them until
    ``warmup_seconds`` have passed, then repeats until ``seconds`` of timed calls or
    ``max_repeats``, and never fewer than ``min_repeats``.

    The warm-up time is there for the threads: on the 2-vCPU machine the
    benchmarks were made on, a core that has been idle (while the one-thread rows
    ran) runs a two-thread call at about half speed for the next few hundred
    milliseconds, so without it whichever library is timed first on two threads
    would be measured on a cold core and the other on a warm one."""

    seconds: float = 0.5
    min_repeats: int = 3
    max_repeats: int = 50
    warmup: int = 1
    warmup_seconds: float = 0.0


@dataclass(frozen=True)
class Timing:
    median: float
    best: float
    repeats: int

    def to_json(self) -> Dict[str, Any]:
        return asdict(self)


def measure(fn: Callable[[], object], budget: Budget) -> Timing:
    """Median wall time of ``fn()`` in seconds (garbage collector off while timing)."""
    warm_until = time.perf_counter() + budget.warmup_seconds
    calls = 0
    while calls < budget.warmup or time.perf_counter() < warm_until:
        fn()
        calls += 1
    times: List[float] = []
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        while len(times) < budget.max_repeats and (
            len(times) < budget.min_repeats or sum(times) < budget.seconds
        ):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    finally:
        if gc_was_enabled:
            gc.enable()
    return Timing(float(np.median(times)), float(min(times)), len(times))


def fma_peak_gflops(core: Any, threads: int, tries: int = 7) -> float:
    """FP32 FMA throughput with the active ISA on ``threads`` threads (best of ``tries``).

    ``fma_probe(iterations, threads)`` returns the FLOPs it did; the best run is the
    least disturbed by other processes, which is what a peak should be."""
    iterations = 4_000_000
    warm_until = time.perf_counter() + 0.3  # start the threads, raise the clock of every core
    while time.perf_counter() < warm_until:
        core.fma_probe(iterations // 10, threads)
    best = 0.0
    for _ in range(tries):
        start = time.perf_counter()
        flops = core.fma_probe(iterations, threads)
        best = max(best, flops / (time.perf_counter() - start) / 1e9)
    return best


def copy_bandwidth_gbs(megabytes: int = 256, tries: int = 5) -> float:
    """Single-threaded ``np.copyto`` bandwidth in GB/s, counting bytes read + written."""
    src = np.ones(megabytes * 2**20 // 4, dtype=np.float32)
    dst = np.empty_like(src)
    np.copyto(dst, src)  # touch every page before timing
    best = float("inf")
    for _ in range(tries):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def load_average() -> List[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on Linux
        return []
