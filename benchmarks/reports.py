"""Plots and a short markdown report for agent runs (matplotlib, written as PNG files)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

LANE_ORDER = ("auto", "paired", "coach", "escalate")


def rolling(values: Sequence[float], window: int) -> list[float]:
    """Trailing mean over at most `window` items (shorter at the start)."""
    out, total = [], 0.0
    for n, value in enumerate(values):
        total += value
        if n >= window:
            total -= values[n - window]
        out.append(total / min(n + 1, window))
    return out


def plot_arms(records: Mapping[str, Sequence[dict[str, Any]]], path: Path, window: int = 30) -> Path:
    """Success and cost per episode (rolling mean) for every arm, one figure with two panels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    for name, rows in records.items():
        if not rows:
            continue
        x = list(range(1, len(rows) + 1))
        top.plot(x, rolling([float(r["success"]) for r in rows], window), label=name)
        bottom.plot(x, rolling([float(r["cost"]) for r in rows], window), label=name)
    top.set_ylabel(f"success (rolling mean, {window})")
    top.set_ylim(-0.02, 1.02)
    bottom.set_ylabel(f"cost per task, $ (rolling mean, {window})")
    bottom.set_xlabel("episode")
    top.legend(loc="lower right", fontsize=8)
    top.grid(alpha=0.3)
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_lane_mix(rows: Sequence[dict[str, Any]], path: Path, window: int = 30, title: str = "lane mix over time") -> Path:
    """Share of each lane among the last `window` episodes, as a stacked area."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(1, len(rows) + 1))
    shares = {lane: rolling([1.0 if r["lane"] == lane else 0.0 for r in rows], window) for lane in LANE_ORDER}
    fig, axis = plt.subplots(figsize=(9, 3.5))
    axis.stackplot(x, *shares.values(), labels=list(shares))
    axis.set_ylim(0, 1)
    axis.set_xlabel("episode")
    axis.set_ylabel(f"share (last {window})")
    axis.set_title(title)
    axis.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def arms_table(arms: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown table of the arms' headline figures, queries first (a student's and a teacher's count the
    same), dollars under the declared prices as a second view, with the last third alongside."""
    lines = [
        "| arm | episodes | success | queries/task | last third: success | last third: queries/task | mean reward | cost/task ($) | last third: cost/task ($) | tokens/task |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, arm in arms.items():
        last = arm["phases"]["last"]
        lines.append(
            f"| {name} | {arm['episodes']} | {arm['success_rate']:.3f} | {arm['queries_per_task']:.1f} | {last['success_rate']:.3f} | "
            f"{last['queries_per_task']:.1f} | {arm['mean_reward']:.3f} | {arm['cost_per_task']:.4f} | {last['cost_per_task']:.4f} | {arm['tokens_per_task']:.0f} |"
        )
    return "\n".join(lines)
