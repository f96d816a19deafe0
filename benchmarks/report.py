"""Turn a benchmark JSON (from run.py) into tables and the project's target verdicts.

    python benchmarks/report.py [RESULTS.json]                  # markdown to stdout
    python benchmarks/report.py RESULTS.json --update docs/performance.md
    python benchmarks/report.py A.json B.json C.json           # several runs as one

Several runs of the same suite are combined row by row: each time is the median
over the runs of that run's median, and the peaks are the highest measured. A slow
spell of the machine that lasts seconds (other processes, or on a VM both threads
of a 2-thread call sharing one core) then moves at most a minority of the runs.

``--update`` replaces what lies between the ``<!-- BEGIN GENERATED -->`` and
``<!-- END GENERATED -->`` markers of the document, leaving the rest as written.
run.py uses the same functions for its stdout table and target summary.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from itertools import groupby
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

if __package__ in (None, ""):  # run as a script: python benchmarks/report.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.workloads import CLAIM_DENSE, CLAIM_POOL, CLAIM_STRIDED  # noqa: E402

Row = Dict[str, Any]

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "latest.json"
BEGIN, END = "<!-- BEGIN GENERATED -->", "<!-- END GENERATED -->"

# Targets of the project (docs/performance.md explains them).
CONV_NHWC_GEOMEAN, CONV_NHWC_FLOOR = 1.0, 0.8
CONV_NCHW_GEOMEAN, DEPTHWISE_NCHW = 1.5, 3.0
DENSE3X3_PEAK_PCT = 75.0
POOL_VS_NCHW, POOL_VS_CL, POOL_BW_PCT = 5.0, 1.2, 70.0
SCALING_2T = 1.7
# The ratio and bandwidth targets are judged on this many threads, as the targets
# were set; rows on other thread counts are reported next to them.
TARGET_THREADS = 2
# Budget for one thread's working tile in the memory target (L2-sized). The dense
# conv kernel's tile is KH staged input rows of (padded width x C) values plus one
# register tile spill, e.g. 3 x 114 x 128 x 4 B = 175 KiB for VGG 128 ch @112.
TILE_BYTES_PER_THREAD = 2 * 2**20


# ----------------------------------------------------------------------------- formatting


def fmt_ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "-"
    ms = seconds * 1e3
    for limit, spec in ((100, ".0f"), (10, ".1f"), (0.1, ".2f")):
        if ms >= limit:
            return format(ms, spec)
    return f"{ms:.3f}"


def fmt_ratio(r: Optional[float]) -> str:
    return "-" if r is None else f"{r:.2f}"


def fmt_mb(nbytes: Optional[float]) -> str:
    return "-" if nbytes is None else f"{nbytes / 2**20:.1f}"


def fmt_check(check: Optional[Dict[str, Any]]) -> str:
    if not check or check.get("against") is None:
        return "-"
    if "error" in check:
        return "MISMATCH " + check["error"]
    err = f"{check['max_rel_err']:.0e}"
    return ("ok " if check["ok"] else "MISMATCH ") + err


def layout_label(row: Row) -> str:
    return "NHWC/cl" if row["layout"] == "NHWC" else "NCHW"


Column = Tuple[str, Callable[[Row], str], str]  # header, cell, alignment "<" or ">"

ROW_COLUMNS: List[Column] = [
    ("workload", lambda r: r["workload"], "<"),
    ("layout", layout_label, "<"),
    ("dtype", lambda r: r["dtype"].replace("float", "f"), "<"),
    ("thr", lambda r: str(r["threads"]), ">"),
    ("convpool ms", lambda r: fmt_ms(r["convpool_s"]), ">"),
    ("torch ms", lambda r: fmt_ms(r.get("torch_s")), ">"),
    ("ref ms", lambda r: fmt_ms(r.get("reference_s")), ">"),
    ("torch/cp", lambda r: fmt_ratio(r.get("ratio")), ">"),
    ("rate", lambda r: f"{r['rate']:.1f} {r['rate_unit']}", ">"),
    ("% peak", lambda r: f"{r['pct_peak']:.0f}%", ">"),
    ("check", lambda r: fmt_check(r.get("check")), "<"),
]


def text_table(rows: Sequence[Row], columns: Sequence[Column] = ROW_COLUMNS) -> str:
    cells = [[cell(r) for _, cell, _ in columns] for r in rows]
    widths = [max([len(h)] + [len(c[i]) for c in cells]) for i, (h, _, _) in enumerate(columns)]
    def line(values: Sequence[str]) -> str:
        return "  ".join(format(v, f"{a}{w}") for v, w, (_, _, a) in zip(values, widths, columns))
    out = [line([h for h, _, _ in columns]), "  ".join("-" * w for w in widths)]
    out += [line(c) for c in cells]
    return "\n".join(out)


def md_table(headers: Sequence[str], body: Iterable[Sequence[str]], align: str = "") -> str:
    align = align or "l" * len(headers)
    sep = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(sep) + " |"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in body]
    return "\n".join(lines)


def md_from_columns(rows: Sequence[Row], columns: Sequence[Column]) -> str:
    return md_table([h for h, _, _ in columns], ([cell(r) for _, cell, _ in columns] for r in rows),
                    "".join("r" if a == ">" else "l" for _, _, a in columns))


def rows_md(rows: Sequence[Row]) -> str:
    return md_from_columns(rows, ROW_COLUMNS)


# ----------------------------------------------------------------------------- targets


@dataclass
class Verdict:
    title: str
    goal: str
    status: str  # "met", "missed", "not measured"
    lines: List[str] = field(default_factory=list)

    def text(self) -> str:
        head = f"[{self.status.upper()}] {self.title}: {self.goal}"
        return "\n".join([head] + ["    " + ln for ln in self.lines])

    def markdown(self) -> str:
        body = "\n".join(f"- {ln}" for ln in self.lines)
        return f"### {self.title}\n\nTarget: {self.goal}\n\n**{self.status.upper()}**\n\n{body}\n"


def geomean(values: Sequence[float]) -> float:
    return math.exp(sum(math.log(v) for v in values) / len(values))


def by_threads(rows: Sequence[Row]) -> Dict[int, List[Row]]:
    out: Dict[int, List[Row]] = {}
    for r in rows:
        out.setdefault(r["threads"], []).append(r)
    return dict(sorted(out.items()))


def row_id(r: Row) -> str:
    return f"{r['workload']} {r['layout']} {r['dtype']} {r['threads']}t"


def shortfall(value: float, goal: float, unit: str = "x") -> str:
    """'met (+12% margin)' or 'missed by 0.31x (needs 1.45x)'; percentages miss by points."""
    if value >= goal:
        return f"met ({value / goal - 1:+.0%} margin)"
    gap = f"{goal - value:.1f} points" if unit == "%" else f"{goal - value:.2f}x"
    return f"missed by {gap} (needs {goal / value:.2f}x)"


def status_of(oks: Sequence[bool]) -> str:
    return "not measured" if not oks else ("met" if all(oks) else "missed")


def select(rows: Sequence[Row], *, ops: Sequence[str], layout: Optional[str] = None,
           dtype: Optional[str] = "float32", tag: Optional[str] = None, need_torch: bool = False) -> List[Row]:
    return [r for r in rows
            if r["op"] in ops and (layout is None or r["layout"] == layout)
            and (dtype is None or r["dtype"] == dtype) and (tag is None or tag in r["tags"])
            and (not need_torch or r.get("ratio") is not None)]


def threads_label(threads: int) -> str:
    """"2 threads" for the thread count the targets are judged on; other counts say they are not."""
    plural = "thread" if threads == 1 else "threads"
    if threads == TARGET_THREADS:
        return f"{threads} {plural}"
    return f"{threads} {plural} (for information, not part of the target)"


def geomean_target(title: str, rows: Sequence[Row], goal: float, floor: Optional[float],
                   against: str) -> Verdict:
    """On TARGET_THREADS threads: geomean(torch / convpool) >= goal and (optionally)
    every row >= floor; other thread counts are reported the same way."""
    goal_text = f"geomean(torch {against} / convpool) >= {goal}" + (
        f" and no workload < {floor}" if floor else "") + f" (float32 forward convs, {TARGET_THREADS} threads)"
    verdict = Verdict(title, goal_text, "not measured")
    oks: List[bool] = []
    for threads, group in by_threads(rows).items():
        ratios = [r["ratio"] for r in group]
        g = geomean(ratios)
        worst = min(group, key=lambda r: r["ratio"])
        judged = threads == TARGET_THREADS
        if judged:
            oks.append(g >= goal)
        verdict.lines.append(f"{threads_label(threads)}, {len(group)} workloads: geomean {g:.2f}, "
                             f"{shortfall(g, goal)}; worst {worst['workload']} {worst['ratio']:.2f}")
        # What any kernel could reach: convpool's time scaled to 100% of the FMA peak.
        at_peak = [r["ratio"] * 100.0 / r["pct_peak"] for r in group if r.get("pct_peak")]
        if len(at_peak) == len(group) and g < goal:
            verdict.lines.append(f"{threads_label(threads)}: at 100% of the measured FMA peak on every workload "
                                 f"the geomean would be {geomean(at_peak):.2f} (a bound no kernel reaches: "
                                 "thin and depthwise layers are limited by memory first)")
        if floor:
            below = [r for r in group if r["ratio"] < floor]
            if judged:
                oks.append(not below)
            if below:
                verdict.lines.append(f"{threads_label(threads)}: {len(below)} below {floor}: " + ", ".join(
                    f"{r['workload']} {r['ratio']:.2f}" for r in sorted(below, key=lambda r: r["ratio"])))
    verdict.status = status_of(oks)
    return verdict


def each_row_target(title: str, goal_text: str, rows: Sequence[Row], value: Callable[[Row], float],
                    goal: float, unit: str = "x", judged_threads: Optional[int] = None) -> Verdict:
    """Every row must reach ``goal``; lists the misses and the worst row. With
    ``judged_threads``, only rows on that many threads count for the verdict, and
    the other rows are summed up separately per thread count."""
    judged = [r for r in rows if judged_threads is None or r["threads"] == judged_threads]
    verdict = Verdict(title, goal_text, status_of([value(r) >= goal for r in judged]))

    def summary(group: Sequence[Row], label: str) -> List[str]:
        worst = min(group, key=value)
        misses = [r for r in group if value(r) < goal]
        lines = [f"{label}{len(group)} rows, {len(group) - len(misses)} meet it; worst "
                 f"{row_id(worst)}: {value(worst):.2f}{unit}, {shortfall(value(worst), goal, unit)}"]
        return lines + [f"missed: {row_id(r)} {value(r):.2f}{unit}" for r in sorted(misses, key=value)[:12]]

    if judged_threads is None:
        if rows:
            verdict.lines += summary(rows, "")
        return verdict
    for threads, group in by_threads(rows).items():
        verdict.lines += summary(group, f"{threads_label(threads)}: ")
    return verdict


def scaling_rows(rows: Sequence[Row]) -> List[Row]:
    """One synthetic row per (workload, layout, dtype) with convpool 1-thread / 2-thread time."""
    out = []
    key = lambda r: (r["workload"], r["layout"], r["dtype"])  # noqa: E731
    for (name, layout, dtype), group in groupby(sorted(rows, key=key), key=key):
        t = {r["threads"]: r["convpool_s"] for r in group}
        if 1 in t and 2 in t:
            out.append({"workload": name, "layout": layout, "dtype": dtype, "threads": "1->2",
                        "speedup": t[1] / t[2]})
    return out


def memory_verdict(memory: Sequence[Dict[str, Any]]) -> Verdict:
    goal = (f"extra peak RSS of one conv call <= weights + {TILE_BYTES_PER_THREAD // 2**20} MiB "
            "per thread (assumed per-thread tile budget)")
    ok_rows = memory_ok(memory)
    verdict = Verdict("Memory per conv call", goal, status_of(
        [m["extra_bytes"] <= memory_budget(m) for m in ok_rows]))
    for m in ok_rows:
        verdict.lines.append(
            f"{m['workload']} {m['layout']} {m['threads']}t: extra {fmt_mb(m['extra_bytes'])} MiB vs budget "
            f"{fmt_mb(memory_budget(m))} MiB (in+out+weights {fmt_mb(io_bytes(m))} MiB)"
            + ("" if m["exact"] else f", resolution {fmt_mb(m['resolution_bytes'])} MiB"))
    verdict.lines += [f"{m['workload']} {m['layout']}: probe failed: {m['error']}" for m in memory if "error" in m]
    return verdict


def memory_budget(m: Dict[str, Any]) -> int:
    return m["weight_bytes"] + m["threads"] * TILE_BYTES_PER_THREAD


def io_bytes(m: Dict[str, Any]) -> int:
    return m["input_bytes"] + m["output_bytes"] + m["weight_bytes"]


# What a run needs for each target, said when a target has no rows.
NEEDS = {
    "Conv NHWC vs torch channels_last": "torch and NHWC forward conv rows",
    "Conv NCHW vs torch NCHW": "torch and NCHW forward conv rows",
    "Depthwise NCHW vs torch NCHW": "torch and NCHW rows of a depthwise workload",
    "Dense 3x3 conv efficiency": "1-thread rows (--threads 1,...) of dense 3x3 convs",
    "Pooling vs torch NCHW": "torch and NCHW forward pooling rows",
    "Pooling vs torch channels_last": "torch and NHWC forward pooling rows",
    "Pooling bandwidth": "forward pooling rows",
    "Two-thread scaling": "--threads 1,2 on the large (batch-8) workloads",
    "Memory per conv call": "the memory probes (not --no-memory, float32)",
}


def evaluate_targets(data: Dict[str, Any]) -> List[Verdict]:
    verdicts = _evaluate(data)
    for v in verdicts:
        if v.status == "not measured" and not v.lines:
            v.lines.append(f"no rows in this run: needs {NEEDS[v.title]}")
    return verdicts


def _evaluate(data: Dict[str, Any]) -> List[Verdict]:
    rows = data["rows"]
    conv = ("conv",)
    pools = ("max_pool", "avg_pool")
    nchw_conv = select(rows, ops=conv, layout="NCHW", need_torch=True)
    verdicts = [
        geomean_target("Conv NHWC vs torch channels_last",
                       select(rows, ops=conv, layout="NHWC", need_torch=True),
                       CONV_NHWC_GEOMEAN, CONV_NHWC_FLOOR, "channels_last"),
        geomean_target("Conv NCHW vs torch NCHW", nchw_conv, CONV_NCHW_GEOMEAN, None, "NCHW"),
        each_row_target("Depthwise NCHW vs torch NCHW", f"torch NCHW / convpool >= {DEPTHWISE_NCHW} on every "
                        f"depthwise row ({TARGET_THREADS} threads)", [r for r in nchw_conv if "depthwise" in r["tags"]],
                        lambda r: r["ratio"], DEPTHWISE_NCHW, judged_threads=TARGET_THREADS),
        each_row_target("Dense 3x3 conv efficiency", f">= {DENSE3X3_PEAK_PCT:.0f}% of the measured FMA peak "
                        "on one thread (float32, every dense 3x3 row)",
                        [r for r in select(rows, ops=conv, tag="dense3x3") if r["threads"] == 1],
                        lambda r: r["pct_peak"], DENSE3X3_PEAK_PCT, "%"),
        each_row_target("Pooling vs torch NCHW", f"torch NCHW / convpool >= {POOL_VS_NCHW} (forward, no indices, "
                        f"{TARGET_THREADS} threads)", select(rows, ops=pools, layout="NCHW", need_torch=True),
                        lambda r: r["ratio"], POOL_VS_NCHW, judged_threads=TARGET_THREADS),
        each_row_target("Pooling vs torch channels_last", f"torch channels_last / convpool >= {POOL_VS_CL} "
                        f"({TARGET_THREADS} threads)", select(rows, ops=pools, layout="NHWC", need_torch=True),
                        lambda r: r["ratio"], POOL_VS_CL, judged_threads=TARGET_THREADS),
        each_row_target("Pooling bandwidth", f">= {POOL_BW_PCT:.0f}% of the measured copy bandwidth "
                        f"(bytes read + written; copy measured on one thread; {TARGET_THREADS} threads)",
                        select(rows, ops=pools), lambda r: r["pct_peak"], POOL_BW_PCT, "%",
                        judged_threads=TARGET_THREADS),
        each_row_target("Two-thread scaling", f"convpool 2 threads >= {SCALING_2T}x faster than 1 thread on "
                        "the large workloads (float32)", scaling_rows(select(
                            rows, ops=conv + pools + ("conv_bwd", "max_pool_bwd", "avg_pool_bwd"), tag="large")),
                        lambda r: r["speedup"], SCALING_2T),
        memory_verdict(data.get("memory", [])),
    ]
    return verdicts


# ----------------------------------------------------------------------------- sections


def claim_lines(claims: Sequence[Dict[str, Any]]) -> List[str]:
    lines = []
    for c in claims:
        torch_part = (f"; torch {c['torch_time_ratio']:.2f}x" if c.get("torch_time_ratio") else "")
        lines.append(
            f"batch {c['batch']} {c['layout']} {c['dtype']} {c['threads']}t: 7x7/s1 conv + 2x2 max pool does "
            f"{c['flop_ratio']:.2f}x the FLOPs of the 7x7/s2 conv and takes {c['time_ratio']:.2f}x its time "
            f"with convpool ({fmt_ms(c['dense_s'])} + {fmt_ms(c['pool_s'])} ms vs {fmt_ms(c['strided_s'])} ms)"
            + torch_part)
    return lines


MEMORY_COLUMNS: List[Column] = [
    ("workload", lambda m: m["workload"], "<"),
    ("layout", lambda m: m["layout"], "<"),
    ("thr", lambda m: str(m["threads"]), ">"),
    ("input MiB", lambda m: fmt_mb(m["input_bytes"]), ">"),
    ("weights MiB", lambda m: fmt_mb(m["weight_bytes"]), ">"),
    ("output MiB", lambda m: fmt_mb(m["output_bytes"]), ">"),
    ("extra peak RSS MiB", lambda m: fmt_mb(m["extra_bytes"]) + ("" if m["exact"] else " (approx.)"), ">"),
    ("budget MiB", lambda m: fmt_mb(memory_budget(m)), ">"),
]


def rate_and_peak(work: float, unit: str, seconds: float, dtype: str, threads: int,
                  peaks: Dict[str, Any]) -> Dict[str, Any]:
    rate = work / seconds / 1e9
    if unit == "flop":
        peak = peaks["fma_gflops"][str(threads)] / (2 if dtype == "float64" else 1)
        return {"rate": rate, "rate_unit": "GFLOP/s", "pct_peak": 100 * rate / peak}
    return {"rate": rate, "rate_unit": "GB/s", "pct_peak": 100 * rate / peaks["copy_gbs"]}


def merge_runs(runs: Sequence[Dict[str, Any]]) -> Dict[str, Any]:
    """Several runs of one suite as one result (see the module docstring). Result
    checks and the memory probes come from the first run."""
    if len(runs) == 1:
        return runs[0]
    merged = copy.deepcopy(runs[0])
    peaks = merged["peaks"]
    for run in runs[1:]:
        for t, v in run["peaks"]["fma_gflops"].items():
            peaks["fma_gflops"][t] = max(peaks["fma_gflops"].get(t, 0.0), v)
        peaks["copy_gbs"] = max(peaks["copy_gbs"], run["peaks"]["copy_gbs"])
    key = lambda r: (r["workload"], r["layout"], r["dtype"], r["threads"])  # noqa: E731
    indexes = [{key(r): r for r in run["rows"]} for run in runs]
    for row in merged["rows"]:
        found = [index[key(row)] for index in indexes if key(row) in index]
        row["convpool_s"] = statistics.median(r["convpool_s"] for r in found)
        torch_times = [r["torch_s"] for r in found if r.get("torch_s")]
        row["torch_s"] = statistics.median(torch_times) if torch_times else None
        row["ratio"] = row["torch_s"] / row["convpool_s"] if row["torch_s"] else None
        row.update(rate_and_peak(row["work"], row["unit"], row["convpool_s"], row["dtype"], row["threads"], peaks))
        row["runs"] = len(found)
    by_base = {(r["base"], r["batch"], r["layout"], r["dtype"], r["threads"]): r for r in merged["rows"]}
    for claim in merged.get("claim") or []:
        k = (claim["batch"], claim["layout"], claim["dtype"], claim["threads"])
        strided, dense, pool = (by_base.get((name, *k)) for name in (CLAIM_STRIDED, CLAIM_DENSE, CLAIM_POOL))
        if strided is None or dense is None or pool is None:
            continue
        claim.update(strided_s=strided["convpool_s"], dense_s=dense["convpool_s"], pool_s=pool["convpool_s"],
                     time_ratio=(dense["convpool_s"] + pool["convpool_s"]) / strided["convpool_s"])
        if strided["torch_s"] and dense["torch_s"] and pool["torch_s"]:
            claim["torch_time_ratio"] = (dense["torch_s"] + pool["torch_s"]) / strided["torch_s"]
    meta = merged["meta"]
    meta["runs"] = len(runs)
    meta["date"] = f"{runs[0]['meta']['date']} to {runs[-1]['meta']['date']}"
    meta["wall_time_s"] = sum(run["meta"]["wall_time_s"] for run in runs)
    meta["load_after"] = runs[-1]["meta"]["load_after"]
    return merged


def memory_ok(memory: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [m for m in memory if "error" not in m]


def header_lines(data: Dict[str, Any]) -> List[str]:
    meta, peaks = data["meta"], data["peaks"]
    fma = ", ".join(f"{t} thread(s) {v:.0f}" for t, v in sorted(peaks["fma_gflops"].items()))
    quick = ["--quick run: few repeats, batch-1 convs, a subset of the workloads; not for the docs"] \
        if meta.get("quick") else []
    return quick + [
        f"Machine: {meta['machine']['cpu']}, {meta['machine']['cores']} cores, ISA {meta['machine']['isa']}; "
        f"convpool {meta['versions']['convpool']}, torch {meta['versions'].get('torch') or 'not installed'}, "
        f"NumPy {meta['versions']['numpy']}, Python {meta['versions']['python']}",
        f"Command: `{meta['command']}`" + (f", {meta['runs']} runs; each time is the median of the runs' "
                                            "medians" if meta.get("runs") else "")
        + f" ({meta['date']}, wall time {meta['wall_time_s']:.0f} s, "
        f"load average before/after {meta['load_before']} / {meta['load_after']})",
        f"Measured peaks: FP32 FMA {fma} GFLOP/s (float64 rows use half); copy bandwidth "
        f"{peaks['copy_gbs']:.1f} GB/s (one thread, read + write)",
    ]


def render_markdown(data: Dict[str, Any]) -> str:
    parts = ["## Results", "", *[f"- {ln}" for ln in header_lines(data)], "",
             "Ratios are torch time / convpool time (> 1: convpool faster), against torch in the matching "
             "memory format (NCHW or channels_last). Times are medians.", "",
             rows_md(data["rows"]), ""]
    if data.get("claim"):
        parts += ["### Downsampling: strided conv vs conv + pool", "",
                  *[f"- {ln}" for ln in claim_lines(data["claim"])], ""]
    if data.get("memory"):
        parts += ["### Extra memory per conv call", "",
                  "One call in a fresh process, output passed as `out=`; extra = peak RSS increase.", "",
                  md_from_columns(memory_ok(data["memory"]), MEMORY_COLUMNS), ""]
    parts += ["## Targets", ""] + [v.markdown() for v in evaluate_targets(data)]
    return "\n".join(parts)


def update_doc(doc: Path, block: str) -> None:
    text = doc.read_text()
    if BEGIN not in text or END not in text:
        raise SystemExit(f"{doc}: no {BEGIN} ... {END} markers to replace")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    doc.write_text(f"{head}{BEGIN}\n{block.rstrip()}\n{END}{tail}")


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json", nargs="*", default=[str(DEFAULT_JSON)],
                        help=f"results of one or more runs (default {DEFAULT_JSON})")
    parser.add_argument("--update", metavar="DOC", help="rewrite the generated part of this markdown file")
    args = parser.parse_args(argv)
    data = merge_runs([json.loads(Path(path).read_text()) for path in args.json])
    block = render_markdown(data)
    if args.update:
        update_doc(Path(args.update), block)
        print(f"updated {args.update}")
    else:
        print(block)


if __name__ == "__main__":
    sys.exit(main())
