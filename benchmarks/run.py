"""convpool vs PyTorch (CPU), side by side, on the layer shapes of common CNNs.

    python benchmarks/run.py --quick            # a few workloads, < 1 minute
    python benchmarks/run.py --threads 2        # the full suite at 2 threads
    python -m benchmarks.run --filter conv3x3 --layout NHWC --dtype float32

For every workload, layout (NCHW vs torch NCHW, NHWC vs torch channels_last), dtype
and thread count: median times of convpool, PyTorch and (where affordable) the NumPy
reference, the ratio torch / convpool (> 1: convpool faster), GFLOP/s or GB/s and the
percentage of the machine's measured FMA peak or copy bandwidth, and a correctness
check. Writes a JSON file and a PNG chart; ``report.py`` turns the JSON into markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as a script: python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

try:
    import convpool
except ImportError as exc:
    sys.exit(f"convpool is not installed in this Python ({exc}); install it first: pip install .")

from benchmarks import report
from benchmarks.memory import measure_extra_rss
from benchmarks.ops import OpBench, compare, make_bench
from benchmarks.plot import save_ratio_chart
from benchmarks.timing import Budget, Timing, copy_bandwidth_gbs, fma_peak_gflops, load_average, measure
from benchmarks.workloads import CLAIM_DENSE, CLAIM_POOL, CLAIM_STRIDED, Workload, catalogue, iter_names, select

RESULTS_DIR = Path(__file__).resolve().parent / "results"
LAYOUTS = ("NCHW", "NHWC")
DTYPES = ("float32", "float64")

FULL_BUDGET = Budget(seconds=0.5, min_repeats=3, max_repeats=30, warmup=1, warmup_seconds=0.25)
QUICK_BUDGET = Budget(seconds=0.08, min_repeats=2, max_repeats=5, warmup=1)
REFERENCE_BUDGET = Budget(seconds=0.3, min_repeats=1, max_repeats=3, warmup=0)
# The NumPy reference runs at about 2 GFLOP/s (convs) and 80 MB/s (pooling): time it
# only below these amounts of work.
REFERENCE_LIMIT = {"flop": 1.0e9, "byte": 50e6}
QUICK_REFERENCE_LIMIT = {"flop": 0.3e9, "byte": 15e6}
PAUSE_S = 0.02  # between backends, so one OpenMP pool's spinning threads have gone to sleep


# ----------------------------------------------------------------------------- set-up


def csv(kind: type, choices: Optional[Sequence[Any]] = None):
    def parse(text: str) -> List[Any]:
        values = [kind(v.strip()) for v in text.split(",") if v.strip()]
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {choices or kind.__name__}")
        return values
    return parse


# Environment variables that change how either library's OpenMP threads run; the
# command line records them so that a run can be repeated as it was made.
OPENMP_ENV = ("OMP_NUM_THREADS", "OMP_PROC_BIND", "OMP_PLACES", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def command_line() -> str:
    env = " ".join(f"{k}={os.environ[k]}" for k in OPENMP_ENV if k in os.environ)
    return (env + " " if env else "") + "python benchmarks/run.py " + " ".join(sys.argv[1:])


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a few workloads, few repeats (< 1 minute)")
    p.add_argument("--threads", type=csv(int), help="thread counts, e.g. 1,2 (default 1,2; --quick: all cores)")
    p.add_argument("--filter", default="", help="only workloads whose name contains this substring")
    p.add_argument("--dtype", type=csv(str, DTYPES),
                   help="float32,float64 (default both; --quick: float32); float64 runs on a subset")
    p.add_argument("--layout", type=csv(str, LAYOUTS), default=list(LAYOUTS), help="NCHW,NHWC")
    p.add_argument("--json", type=Path, default=RESULTS_DIR / "latest.json", help="results file")
    p.add_argument("--png", type=Path, default=RESULTS_DIR / "latest.png", help="ratio chart")
    p.add_argument("--no-png", action="store_true", help="do not draw the chart")
    p.add_argument("--no-torch", action="store_true", help="convpool-only numbers even if torch is installed")
    p.add_argument("--no-reference", action="store_true", help="do not time the NumPy reference")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-RSS subprocess probes")
    p.add_argument("--list", action="store_true", help="list the selected workloads and exit")
    args = p.parse_args(argv)
    if args.threads is None:
        args.threads = [os.cpu_count() or 1] if args.quick else [1, 2]
    if args.dtype is None:
        args.dtype = ["float32"] if args.quick else list(DTYPES)
    return args


def load_torch(disabled: bool) -> Any:
    if disabled:
        return None
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: convpool-only numbers (pip install torch==2.13.0 to compare)",
              file=sys.stderr)
        return None
    return torch


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def metadata(args: argparse.Namespace, torch: Any) -> Dict[str, Any]:
    return {
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": command_line(),
        "quick": args.quick,
        "threads": args.threads,
        "machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "isa": convpool._core.active_isa()},
        "versions": {"convpool": convpool.__version__, "torch": torch.__version__ if torch else None,
                     "numpy": np.__version__, "python": platform.python_version()},
        "load_before": load_average(),
    }


def measure_peaks(threads: Sequence[int]) -> Dict[str, Any]:
    return {"fma_gflops": {str(t): fma_peak_gflops(convpool._core, t) for t in threads},
            "copy_gbs": copy_bandwidth_gbs()}


# ----------------------------------------------------------------------------- one workload


def reference_affordable(bench: OpBench, quick: bool) -> bool:
    amount, unit = bench.work()
    return amount <= (QUICK_REFERENCE_LIMIT if quick else REFERENCE_LIMIT)[unit]


def check_once(bench: OpBench, torch_fn: Any, use_reference: bool) -> Dict[str, Any]:
    """convpool's result against torch's (or the reference's, without torch)."""
    got = bench.convpool_outputs(bench.convpool_fn()())
    if torch_fn is not None:
        return {"against": "torch", **compare(got, bench.torch_outputs(torch_fn()), bench.dtype.name)}
    if use_reference:
        expected = bench.reference_outputs(bench.reference_fn()())
        return {"against": "reference", **compare(got, expected, bench.dtype.name)}
    return {"against": None}


def timed(fn: Any, budget: Budget) -> Timing:
    time.sleep(PAUSE_S)
    return measure(fn, budget)


def make_row(bench: OpBench, threads: int, cp: Timing, th: Optional[Timing], ref_s: Optional[float],
             check: Dict[str, Any], peaks: Dict[str, Any]) -> Dict[str, Any]:
    wl = bench.wl
    work, unit = bench.work()
    return {
        "workload": wl.name, "base": wl.base_name, "batch": wl.n, "op": wl.op, "tags": sorted(wl.tags),
        "describe": wl.describe(), "layout": bench.layout,
        "torch_format": "channels_last" if bench.layout == "NHWC" else "NCHW",
        "dtype": bench.dtype.name, "threads": threads, "work": work, "unit": unit,
        "convpool_s": cp.median, "convpool": cp.to_json(),
        "torch_s": th.median if th else None, "torch": th.to_json() if th else None,
        "reference_s": ref_s, "ratio": th.median / cp.median if th else None,
        **report.rate_and_peak(work, unit, cp.median, bench.dtype.name, threads, peaks),
        "check": check,
    }


def run_layout(bench: OpBench, args: argparse.Namespace, torch: Any, budget: Budget,
               ref_s: Optional[float], use_reference: bool, peaks: Dict[str, Any]) -> List[Dict[str, Any]]:
    """All thread counts of one (workload, dtype, layout)."""
    cp_fn = bench.convpool_fn()
    torch_fn = bench.torch_fn() if torch else None
    check = check_once(bench, torch_fn, use_reference)
    rows = []
    for t in args.threads:
        with convpool.threads(t):
            cp = timed(cp_fn, budget)
        th = None
        if torch_fn is not None:
            torch.set_num_threads(t)
            th = timed(torch_fn, budget)
        rows.append(make_row(bench, t, cp, th, ref_s, check, peaks))
        progress(rows[-1])
    return rows


def progress(row: Dict[str, Any]) -> None:
    torch_part = f" torch {report.fmt_ms(row['torch_s'])} ms ratio {report.fmt_ratio(row['ratio'])}" \
        if row["torch_s"] else ""
    print(f"  {row['workload']:<30} {row['layout']} {row['dtype']} {row['threads']}t: convpool "
          f"{report.fmt_ms(row['convpool_s'])} ms{torch_part} {report.fmt_check(row['check'])}",
          file=sys.stderr, flush=True)


def run_workload(wl: Workload, args: argparse.Namespace, torch: Any, budget: Budget,
                 peaks: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    for dtype in (d for d in wl.dtypes() if d in args.dtype):
        ref_s: Optional[float] = None
        for i, layout in enumerate(args.layout):
            bench = make_bench(wl, layout, dtype, torch)
            use_reference = not args.no_reference and reference_affordable(bench, args.quick)
            if use_reference and i == 0:  # the reference is NCHW whatever the layout: time it once
                ref_s = measure(bench.reference_fn(), REFERENCE_BUDGET).median
            rows += run_layout(bench, args, torch, budget, ref_s, use_reference, peaks)
    return rows


# ----------------------------------------------------------------------------- derived sections


def pool_outputs(name: str) -> int:
    wl = next(w for w in catalogue() if w.name == name)
    return wl.n * wl.c * wl.out_hw**2


def downsampling_claim(rows: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """7x7/s2 conv vs 7x7/s1 conv + 2x2 max pool, per batch, layout, dtype and threads measured."""
    index = {(r["base"], r["batch"], r["layout"], r["dtype"], r["threads"]): r for r in rows}
    claims = []
    for (base, *key), strided in index.items():
        dense, pool = index.get((CLAIM_DENSE, *key)), index.get((CLAIM_POOL, *key))
        if base != CLAIM_STRIDED or dense is None or pool is None:
            continue
        pool_flops = 3 * pool_outputs(pool["workload"])  # 3 comparisons per 2x2 window
        claim = {"batch": key[0], "layout": key[1], "dtype": key[2], "threads": key[3],
                 "flop_ratio": (dense["work"] + pool_flops) / strided["work"],
                 "strided_s": strided["convpool_s"], "dense_s": dense["convpool_s"], "pool_s": pool["convpool_s"],
                 "time_ratio": (dense["convpool_s"] + pool["convpool_s"]) / strided["convpool_s"]}
        if strided["torch_s"] and dense["torch_s"] and pool["torch_s"]:
            claim["torch_time_ratio"] = (dense["torch_s"] + pool["torch_s"]) / strided["torch_s"]
        claims.append(claim)
    return claims


def memory_probes(workloads: Sequence[Workload], args: argparse.Namespace) -> List[Dict[str, Any]]:
    """Peak-RSS probes for the ``memory`` convs (or the first conv selected), float32."""
    if args.no_memory or "float32" not in args.dtype:
        return []
    convs = [w for w in workloads if w.op == "conv"]
    chosen = [w for w in convs if "memory" in w.tags] or convs[:1]
    threads = max(args.threads)
    return [measure_extra_rss(w.name, layout, threads) for w in chosen for layout in args.layout]


# ----------------------------------------------------------------------------- output


def print_summary(data: Dict[str, Any]) -> None:
    print()
    print("\n".join(report.header_lines(data)))
    print("Ratios: torch / convpool (> 1: convpool faster); NHWC/cl rows are compared with torch channels_last.")
    print()
    print(report.text_table(data["rows"]))
    if data["claim"]:
        print("\nDownsampling (convpool): strided conv vs stride-1 conv + 2x2 max pool")
        print("\n".join("  " + ln for ln in report.claim_lines(data["claim"])))
    if data["memory"]:
        print("\nExtra peak RSS of one conv call (fresh process, out= given):")
        print(report.text_table(report.memory_ok(data["memory"]), report.MEMORY_COLUMNS))
        for m in data["memory"]:
            if "error" in m:
                print(f"  {m['workload']} {m['layout']}: probe failed: {m['error']}")
    mismatches = [r for r in data["rows"] if r["check"].get("against") and not r["check"].get("ok")]
    if mismatches:
        print("\nMISMATCHES: " + ", ".join(sorted({f"{r['workload']} {r['layout']} {r['dtype']}" for r in mismatches})))
    for e in data["errors"]:
        print(f"\nERROR {e['workload']} {e['dtype']}: {e['error']}")
    print("\nTargets:")
    print("\n".join(v.text() for v in report.evaluate_targets(data)))


def write_outputs(data: Dict[str, Any], args: argparse.Namespace) -> None:
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=1))
    print(f"\nJSON: {args.json}")
    if not args.no_png:
        title = f"convpool vs torch {data['meta']['versions']['torch']}, {data['meta']['date']}" + \
            (" (--quick)" if args.quick else "")
        skipped = save_ratio_chart(data["rows"], args.png, title)
        print(f"PNG:  {skipped or args.png}")


def main(argv: Optional[Sequence[str]] = None) -> int:
    start = time.perf_counter()
    args = parse_args(argv)
    workloads = select(catalogue(), quick=args.quick, substring=args.filter)
    if args.list or not workloads:
        print("\n".join(iter_names(workloads)) or f"no workload matches --filter {args.filter!r}")
        return 0 if workloads else 1
    torch = load_torch(args.no_torch)
    data: Dict[str, Any] = {"meta": metadata(args, torch), "rows": [], "errors": []}
    print(f"measuring peaks (threads {args.threads}) ...", file=sys.stderr, flush=True)
    data["peaks"] = measure_peaks(args.threads)
    budget = QUICK_BUDGET if args.quick else FULL_BUDGET
    for wl in workloads:
        try:
            data["rows"] += run_workload(wl, args, torch, budget, data["peaks"])
        except Exception as exc:  # one broken kernel must not lose the other results
            data["errors"].append({"workload": wl.name, "dtype": ",".join(args.dtype), "error": repr(exc)})
            print(f"  {wl.name}: ERROR {exc!r}", file=sys.stderr)
    data["claim"] = downsampling_claim(data["rows"])
    data["memory"] = memory_probes(workloads, args)
    data["meta"]["load_after"] = load_average()
    data["meta"]["wall_time_s"] = time.perf_counter() - start
    print_summary(data)
    write_outputs(data, args)
    print(f"wall time {data['meta']['wall_time_s']:.1f} s")
    return 1 if data["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
