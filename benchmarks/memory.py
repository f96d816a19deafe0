"""Extra peak RSS of one convpool conv call, measured in a fresh subprocess.

The parent calls ``measure_extra_rss(workload, layout, threads)``; it runs
``python -m benchmarks.memory NAME LAYOUT THREADS`` which:

1. imports NumPy and convpool only (no torch), fills x, weight and the output in place
   (``out=`` is passed, so the output is not part of the "extra");
2. warms up with a tiny conv of the same channels (starts the OpenMP threads);
3. reads the peak and the current RSS, makes the one call, reads the peak again.

The peak is a high-water mark, so the increase is only exact when the mark before the call
equals the current RSS; otherwise the extra is known only up to that gap (reported as
``resolution_bytes``). ``ru_maxrss`` alone is not good enough on Linux: a child process
starts with its parent's high-water mark (it is carried over at fork and exec), which here
is hundreds of MB with torch loaded. So on Linux the probe resets the mark first
(``echo 5 > /proc/self/clear_refs``) and reads ``VmHWM`` from ``/proc/self/status``;
``ru_maxrss`` is used where that is not available and is reported as well.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

REPO_ROOT = Path(__file__).resolve().parent.parent


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_bytes(precise: bool) -> int:
    if precise:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    return _maxrss_bytes()


def probe(name: str, layout: str, threads: int) -> Dict[str, Any]:
    """Runs in the child process."""
    import numpy as np

    import convpool

    from .workloads import catalogue

    wl = next(w for w in catalogue() if w.name == name)
    rng = np.random.default_rng(0)
    x = np.empty(wl.input_shape(layout), dtype=np.float32)
    w = np.empty(wl.weight_shape, dtype=np.float32)
    out = np.empty(wl.output_shape(layout), dtype=np.float32)
    for a in (x, w):
        rng.standard_normal(dtype=np.float32, out=a)
    out.fill(0.0)

    def call(xa: np.ndarray, o: Any = None) -> Any:
        return convpool.conv2d(xa, w, stride=wl.stride, padding=wl.padding, groups=wl.groups,
                               layout=layout, out=o)

    with convpool.threads(threads):
        small = np.zeros((1, wl.kernel + 1, wl.kernel + 1, wl.c) if layout == "NHWC"
                         else (1, wl.c, wl.kernel + 1, wl.kernel + 1), dtype=np.float32)
        call(small)
        precise = _reset_peak()
        ru_before = _maxrss_bytes()
        rss_before, peak_before = _current_rss_bytes(), _peak_bytes(precise)
        call(x, out)
        peak_after, ru_after = _peak_bytes(precise), _maxrss_bytes()
    grew = peak_after > peak_before
    gap = max(0, peak_before - rss_before)
    return {
        "workload": name,
        "layout": layout,
        "threads": threads,
        "dtype": "float32",
        "input_bytes": x.nbytes,
        "weight_bytes": w.nbytes,
        "output_bytes": out.nbytes,
        "extra_bytes": max(0, peak_after - rss_before) if grew else 0,
        "exact": gap < 1 << 20,
        "resolution_bytes": gap,
        "method": "VmHWM after clear_refs" if precise else "ru_maxrss",
        "ru_maxrss_delta_bytes": ru_after - ru_before,
    }


def measure_extra_rss(name: str, layout: str, threads: int) -> Dict[str, Any]:
    """Run ``probe`` in a fresh interpreter; returns its dict, or {"error": ...}."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p))
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", name, layout, str(threads)],
        capture_output=True, text=True, cwd=REPO_ROOT, env=env, timeout=600,
    )
    if proc.returncode != 0:
        return {"workload": name, "layout": layout, "threads": threads,
                "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else "failed"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
