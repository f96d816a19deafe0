"""PNG bar chart of the torch / convpool ratios (matplotlib is optional)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

Row = Dict[str, Any]

COLORS = {"conv": "tab:blue", "conv_bwd": "tab:cyan", "conv_wgrad": "tab:cyan", "max_pool": "tab:orange",
          "avg_pool": "tab:red", "max_pool_idx": "tab:brown", "max_pool_bwd": "tab:olive",
          "avg_pool_bwd": "tab:pink"}


def save_ratio_chart(rows: Sequence[Row], path: Path, title: str) -> Optional[str]:
    """Write the chart; returns None on success or a message saying why it was skipped."""
    plotted: List[Row] = [r for r in rows if r.get("ratio")]
    if not plotted:
        return "no torch ratios to plot (torch not installed?)"
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import FuncFormatter
    except ImportError:
        return "matplotlib is not installed: no PNG chart (pip install matplotlib)"

    labels = [f"{r['workload']} {r['layout']} f{r['dtype'][-2:]} {r['threads']}t" for r in plotted]
    ratios = [r["ratio"] for r in plotted]
    fig, ax = plt.subplots(figsize=(10, 0.22 * len(plotted) + 1.6))
    bars = ax.barh(range(len(plotted)), ratios, color=[COLORS.get(r["op"], "gray") for r in plotted])
    ax.bar_label(bars, [f"{v:.2f}" for v in ratios], fontsize=6, padding=2)
    ax.set_yticks(range(len(plotted)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xscale("log")
    plain = FuncFormatter(lambda v, _: f"{v:g}")
    ax.xaxis.set_major_formatter(plain)
    ax.xaxis.set_minor_formatter(plain)
    ax.tick_params(axis="x", which="both", labelsize=7)
    ax.axvline(1.0, color="black", linewidth=1)
    ax.set_xlabel("torch time / convpool time (> 1: convpool faster; NHWC rows vs torch channels_last)")
    ax.set_title(title, fontsize=9)
    ops = [op for op in COLORS if any(r["op"] == op for r in plotted)]
    handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS[op]) for op in ops]
    ax.legend(handles, ops, fontsize=7, loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None
