"""Depthwise layers of two mobile networks, one at a time, convpool next to PyTorch.

The suite (run.py) measures one depthwise shape, MobileNetV2's 3x3/s2 on 96 channels.
This script times every depthwise layer of MobileNetV2 (3x3 filters) and of
EfficientNet-B0 (its 5x5 ones), in both layouts: convpool NCHW against PyTorch NCHW,
convpool NHWC against PyTorch channels_last, in one process. Each time is the median
of ``--repeats`` calls after 0.2 s of warm-up calls. Results are checked against
PyTorch's; a mismatch makes the exit status 1.

    python benchmarks/layers.py                      # batch 1 and 8, one thread
    python benchmarks/layers.py --net efficientnet --threads 2 --batch 8
    python benchmarks/layers.py --quick              # one layer per network, a smoke test

Ratios are PyTorch time / convpool time (> 1: convpool is faster). Compare ratios,
not times, between runs: see "Noise" in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

import convpool

# (channels, input height = width, filter size, stride); padding is filter size // 2.
NETS: Dict[str, List[Tuple[int, int, int, int]]] = {
    "mobilenetv2": [(32, 112, 3, 1), (96, 112, 3, 2), (144, 56, 3, 1), (144, 56, 3, 2), (192, 28, 3, 1),
                    (192, 28, 3, 2), (384, 14, 3, 1), (576, 14, 3, 1), (576, 14, 3, 2), (960, 7, 3, 1)],
    "efficientnet": [(144, 56, 5, 2), (240, 28, 5, 1), (480, 14, 5, 1), (672, 14, 5, 1), (672, 14, 5, 2),
                     (1152, 7, 5, 1)],
}
TOLERANCE = 1e-4  # max abs difference / max abs value, float32


def median_ms(fn: Callable[[], object], repeats: int, warmup_s: float) -> float:
    end = time.perf_counter() + warmup_s
    while time.perf_counter() < end:
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1e3


def run(nets: Sequence[str], batches: Sequence[int], threads: int, repeats: int, warmup_s: float,
        quick: bool) -> bool:
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    ok = True
    print(f"{'layer':<34} {'layout':<8} {'convpool ms':>11} {'torch ms':>9} {'torch/cp':>8}  check")
    for net in nets:
        layers = NETS[net][:1] if quick else NETS[net]
        for n in batches:
            totals = {"NCHW": [0.0, 0.0], "NHWC": [0.0, 0.0]}
            for c, hw, k, s in layers:
                x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
                w = rng.standard_normal((c, 1, k, k), dtype=np.float32)
                args = dict(stride=s, padding=k // 2, groups=c)
                xt = torch.from_numpy(x)
                wt = torch.from_numpy(w)
                for layout in ("NCHW", "NHWC"):
                    xc = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if layout == "NHWC" else x
                    xl, wl = xt, wt
                    if layout == "NHWC":
                        xl = xt.to(memory_format=torch.channels_last)
                        wl = wt.to(memory_format=torch.channels_last)
                    with convpool.threads(threads):
                        got = convpool.conv2d(xc, w, layout=layout, **args)
                        t_cp = median_ms(lambda: convpool.conv2d(xc, w, layout=layout, **args), repeats, warmup_s)
                    with torch.no_grad():
                        want = F.conv2d(xl, wl, **args).numpy()
                        t_torch = median_ms(lambda: F.conv2d(xl, wl, **args), repeats, warmup_s)
                    got_nchw = got.transpose(0, 3, 1, 2) if layout == "NHWC" else got
                    err = float(np.max(np.abs(got_nchw - want)) / max(float(np.max(np.abs(want))), 1e-30))
                    check = f"ok {err:.0e}" if err <= TOLERANCE else f"MISMATCH {err:.1e}"
                    ok = ok and err <= TOLERANCE
                    totals[layout][0] += t_cp
                    totals[layout][1] += t_torch
                    name = f"{net} {c}ch {k}x{k}/s{s} @{hw} n{n}"
                    print(f"{name:<34} {layout:<8} {t_cp:>11.3f} {t_torch:>9.3f} {t_torch / t_cp:>8.2f}  {check}",
                          flush=True)
            for layout, (t_cp, t_torch) in totals.items():
                print(f"{net + ' all, n' + str(n):<34} {layout:<8} {t_cp:>11.3f} {t_torch:>9.3f} "
                      f"{t_torch / t_cp:>8.2f}")
    return ok


def main(argv: Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--net", choices=sorted(NETS) + ["all"], default="all")
    parser.add_argument("--batch", default="1,8", help="batch sizes, comma-separated (default 1,8)")
    parser.add_argument("--threads", type=int, default=1, help="threads for both libraries (default 1)")
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per layer (default 30)")
    parser.add_argument("--quick", action="store_true", help="first layer of each network, batch 1, 3 repeats")
    args = parser.parse_args(list(argv))
    try:
        import torch  # noqa: F401
    except ImportError:
        print("layers.py compares with PyTorch: pip install torch==2.13.0", file=sys.stderr)
        return 2
    nets = sorted(NETS) if args.net == "all" else [args.net]
    batches = [1] if args.quick else [int(b) for b in args.batch.split(",")]
    repeats = 3 if args.quick else args.repeats
    if args.threads < 1 or repeats < 1 or any(b < 1 for b in batches):
        parser.error("--threads, --repeats and --batch take positive integers")
    ok = run(nets, batches, args.threads, repeats, 0.0 if args.quick else 0.2, args.quick)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
