"""``python -m convpool``: the build report and the downsampling question in numbers.

Compares the two ways of halving a ResNet stem's resolution, measured with
convpool itself: a 7x7 convolution with stride 2, or a 7x7 convolution with
stride 1 followed by 2x2 max pooling.
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, List, Sequence

import numpy as np

from . import conv2d, max_pool2d, show_config


def _median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up: page in buffers, start threads
    times: List[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _conv_flops(n: int, k: int, c: int, oh: int, ow: int, kh: int, kw: int) -> int:
    return 2 * n * k * oh * ow * c * kh * kw


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m convpool", description=__doc__)
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument("--size", type=int, default=224, help="input height and width (default 224)")
    parser.add_argument("--layout", choices=("NCHW", "NHWC"), default="NHWC")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per workload; the median is shown")
    args = parser.parse_args(argv)

    show_config()
    rng = np.random.default_rng(0)
    n, c, k, size = args.batch, 3, 64, args.size
    shape = (n, size, size, c) if args.layout == "NHWC" else (n, c, size, size)
    x = rng.standard_normal(shape, dtype=np.float32)
    w = rng.standard_normal((k, c, 7, 7), dtype=np.float32)

    strided = conv2d(x, w, stride=2, padding=3, layout=args.layout)
    dense = conv2d(x, w, stride=1, padding=3, layout=args.layout)
    pooled = max_pool2d(dense, 2, layout=args.layout)
    out_h = strided.shape[1] if args.layout == "NHWC" else strided.shape[2]
    dense_h = dense.shape[1] if args.layout == "NHWC" else dense.shape[2]

    t_strided = _median_seconds(lambda: conv2d(x, w, stride=2, padding=3, layout=args.layout), args.repeats)
    t_conv1 = _median_seconds(lambda: conv2d(x, w, stride=1, padding=3, layout=args.layout), args.repeats)
    t_pool = _median_seconds(lambda: max_pool2d(dense, 2, layout=args.layout), args.repeats)

    f_strided = _conv_flops(n, k, c, out_h, out_h, 7, 7)
    f_conv1 = _conv_flops(n, k, c, dense_h, dense_h, 7, 7)
    f_pool = pooled.size * 3  # three comparisons per 2x2 window
    rows = [
        ("7x7/s2 conv", f_strided, t_strided),
        ("7x7/s1 conv", f_conv1, t_conv1),
        ("  + 2x2 max pool", f_pool, t_pool),
        ("7x7/s1 conv + pool", f_conv1 + f_pool, t_conv1 + t_pool),
    ]
    print()
    print(f"ResNet stem, {args.layout}, float32, input {shape}, {k} filters, output {out_h}x{out_h}:")
    print(f"  {'workload':<20} {'MFLOP':>10} {'time ms':>10} {'GFLOP/s':>9}")
    for name, flops, seconds in rows:
        print(f"  {name:<20} {flops / 1e6:>10.1f} {seconds * 1e3:>10.2f} {flops / seconds / 1e9:>9.1f}")
    print(
        f"  stride-1 conv + pooling costs {(f_conv1 + f_pool) / f_strided:.2f}x the FLOPs "
        f"and {(t_conv1 + t_pool) / t_strided:.2f}x the time of the strided conv"
    )


if __name__ == "__main__":
    main()
