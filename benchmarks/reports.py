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
    from matplotlib.figure import Figure  # the object API: no pyplot state, the caller's backend untouched

    fig = Figure(figsize=(9, 7))
    (top, bottom) = fig.subplots(2, 1, sharex=True)
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
    return path


def plot_lane_mix(rows: Sequence[dict[str, Any]], path: Path, window: int = 30, title: str = "lane mix over time") -> Path:
    """Share of each lane among the last `window` episodes, as a stacked area."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, the caller's backend untouched

    x = list(range(1, len(rows) + 1))
    shares = {lane: rolling([1.0 if r["lane"] == lane else 0.0 for r in rows], window) for lane in LANE_ORDER}
    fig = Figure(figsize=(9, 3.5))
    axis = fig.subplots()
    axis.stackplot(x, *shares.values(), labels=list(shares))
    axis.set_ylim(0, 1)
    axis.set_xlabel("episode")
    axis.set_ylabel(f"share (last {window})")
    axis.set_title(title)
    axis.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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


def plot_classes(predictions: Sequence[int], truth: Sequence[int | None], labels: Sequence[str], path: Path,
                 window: int = 200, title: str = "per-class recall over the stream") -> Path | None:
    """For K classes: each class's recall over the stream (rolling over that class's last `window`
    items) beside the confusion matrix of the whole run. None when the stream has no labels."""
    from matplotlib import colormaps
    from matplotlib.figure import Figure  # the object API: no pyplot state, the caller's backend untouched
    import numpy as np

    known = [(n, p, y) for n, (p, y) in enumerate(zip(predictions, truth)) if y is not None]
    if not known:
        return None
    k = len(labels)
    fig = Figure(figsize=(12, 4.2))
    (curves, matrix) = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    colours = colormaps.get_cmap("tab10" if k <= 10 else "tab20")
    for c, name in enumerate(labels):
        rows = [(n, float(p == y)) for n, p, y in known if y == c]
        if rows:
            curves.plot([n + 1 for n, _ in rows], rolling([v for _, v in rows], window), label=name, color=colours(c % colours.N))
    curves.set_ylim(-0.02, 1.02)
    curves.set_xlabel("item")
    curves.set_ylabel(f"recall (last {window} of the class)")
    curves.set_title(title)
    curves.legend(loc="lower right", fontsize=7, ncol=2 if k > 4 else 1)
    curves.grid(alpha=0.3)
    confusion = np.zeros((k, k), dtype=int)
    for _, p, y in known:
        confusion[y, p] += 1
    shares = confusion / np.clip(confusion.sum(axis=1, keepdims=True), 1, None)
    matrix.imshow(shares, vmin=0, vmax=1, cmap="Blues")
    for y in range(k):
        for p in range(k):
            matrix.text(p, y, str(confusion[y, p]), ha="center", va="center", fontsize=7 if k > 5 else 9,
                        color="white" if shares[y, p] > 0.5 else "black")
    matrix.set_xticks(range(k), labels, rotation=45, ha="right", fontsize=7)
    matrix.set_yticks(range(k), labels, fontsize=7)
    matrix.set_xlabel("predicted")
    matrix.set_ylabel("true")
    matrix.set_title("confusion (counts; colour: share of the true class)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
