"""What a comparison writes: results.json (means, standard deviations and every seed's figures),
a markdown table, and heat-maps of the mean accuracy matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.continual.evaluation import LearnerRun, TrainingPlan
from benchmarks.continual.metrics import mean_std
from benchmarks.continual.scenarios import Scenario

FIGURES = ("acc", "bwt", "fwt", "forgetting", "time_s", "memory_bytes")
# In class-IL a learner cannot name classes it has not seen, so R[j-1][j] is 0 for every learner and
# forward transfer would only measure the untrained network's chance level: it is not reported.
FWT_UNDEFINED = {"class-il": "not defined in class-IL: classes of a task not yet trained cannot be predicted"}


def _per_seed(run: LearnerRun, protocol: str) -> dict[str, Any]:
    metrics: dict[str, float | None] = {**run.metrics()}
    if protocol in FWT_UNDEFINED:
        metrics["fwt"] = None
    return {"seed": run.seed, **metrics, "time_s": run.time_s, "memory_bytes": run.memory_bytes,
            "acc_matrix": run.acc_matrix.round(6).tolist(), "init_acc": run.init_acc.round(6).tolist()}


def summarize_runs(runs: Sequence[LearnerRun], scenario: Scenario, plan: TrainingPlan, seeds: Sequence[int],
                   kinds: Mapping[str, str]) -> dict[str, Any]:
    """results.json: under ``learners`` each figure is the mean over seeds; ``std`` holds the spreads."""
    learners: dict[str, Any] = {}
    for name in dict.fromkeys(run.learner for run in runs):
        rows = [_per_seed(run, scenario.protocol) for run in runs if run.learner == name]
        entry: dict[str, Any] = {"kind": kinds.get(name, "")}
        spread: dict[str, Any] = {}
        for figure in FIGURES:
            if rows[0][figure] is None:
                entry[figure] = spread[figure] = None
                continue
            mean, std = mean_std([row[figure] for row in rows])
            entry[figure], spread[figure] = float(mean), float(std)
        matrix_mean, matrix_std = mean_std([row["acc_matrix"] for row in rows])
        entry["acc_matrix"], spread["acc_matrix"] = matrix_mean.round(6).tolist(), matrix_std.round(6).tolist()
        entry["std"] = spread
        entry["per_seed"] = rows
        learners[name] = entry
    return {"scenario": scenario.name, "protocol": scenario.protocol, "seeds": list(seeds), "online": plan.online,
            "epochs": plan.passes, "batch_size": plan.batch_size, "tasks": [t.name for t in scenario.tasks],
            "train_sizes": [len(t.y_train) for t in scenario.tasks], "test_sizes": [len(t.y_test) for t in scenario.tasks],
            "notes": {"fwt": FWT_UNDEFINED[scenario.protocol]} if scenario.protocol in FWT_UNDEFINED else {},
            "learners": learners}


def _pm(entry: Mapping[str, Any], figure: str, scale: float = 100.0, digits: int = 1) -> str:
    if entry[figure] is None:
        return "n/a"
    return f"{entry[figure] * scale:.{digits}f} ± {entry['std'][figure] * scale:.{digits}f}"


def markdown_table(results: Mapping[str, Any]) -> str:
    """One row per learner: accuracy and transfer in points (mean ± std over seeds), seconds, memory."""
    seeds = results["seeds"]
    mode = "online, single pass" if results["online"] else f"{results['epochs']} epochs"
    lines = [f"# {results['scenario']} ({results['protocol']}), {len(seeds)} seed(s), {mode}, batch {results['batch_size']}", "",
             "Accuracy, backward/forward transfer and forgetting in points (mean ± std over seeds); "
             "training seconds; state kept between tasks (parameters, optimiser moments, method state, stored examples) in KiB.", "",
             "| learner | kind | ACC | BWT | FWT | forgetting | train s | memory KiB |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, entry in results["learners"].items():
        lines.append(f"| {name} | {entry['kind']} | {_pm(entry, 'acc')} | {_pm(entry, 'bwt')} | {_pm(entry, 'fwt')} | "
                     f"{_pm(entry, 'forgetting')} | {_pm(entry, 'time_s', 1.0, 2)} | {entry['memory_bytes'] / 1024:,.0f} |")
    lines += [""] + [f"{figure.upper()}: {note}." for figure, note in results.get("notes", {}).items()]
    return "\n".join(lines) + "\n"


def plot_heatmaps(results: Mapping[str, Any], folder: Path) -> list[Path]:
    """``acc_matrices.png`` with every learner's mean matrix side by side, and one PNG per learner."""
    from matplotlib.figure import Figure  # the object API: no pyplot state, the caller's backend untouched

    names = list(results["learners"])
    tasks = results["tasks"]
    columns = min(5, len(names))
    rows = -(-len(names) // columns)
    side = 0.45 * len(tasks) + 1.2
    fig = Figure(figsize=(side * columns, side * rows + 0.6))
    axes = fig.subplots(rows, columns, squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    written = []
    for ax, name in zip(axes.flat, names):
        _heatmap(ax, np.asarray(results["learners"][name]["acc_matrix"]), name, tasks)
        single = Figure(figsize=(side + 1.5, side + 1.0))
        single_ax = single.subplots()
        image = _heatmap(single_ax, np.asarray(results["learners"][name]["acc_matrix"]), name, tasks, labels=True)
        single.colorbar(image, ax=single_ax, label="accuracy")
        single.tight_layout()
        written.append(folder / f"acc_matrix-{name}.png")
        single.savefig(written[-1], dpi=110)
    fig.suptitle(f"{results['scenario']} ({results['protocol']}): accuracy on task j (column) after training task i (row)", fontsize=10)
    fig.tight_layout()
    grid = folder / "acc_matrices.png"
    fig.savefig(grid, dpi=110)
    return [grid, *written]


def _heatmap(ax, matrix: np.ndarray, title: str, tasks: Sequence[str], labels: bool = False):
    image = ax.imshow(matrix, vmin=0.0, vmax=1.0, cmap="viridis")
    ax.set_title(title, fontsize=9)
    ax.set_xticks(range(len(tasks)))
    ax.set_yticks(range(len(tasks)))
    if labels:
        ax.set_xticklabels(tasks, rotation=45, ha="right", fontsize=7)
        ax.set_yticklabels(tasks, fontsize=7)
        ax.set_xlabel("evaluated on task")
        ax.set_ylabel("after training task")
    else:
        ax.set_xticklabels(range(len(tasks)), fontsize=7)
        ax.set_yticklabels(range(len(tasks)), fontsize=7)
    if len(tasks) <= 10:
        for i in range(len(tasks)):
            for j in range(len(tasks)):
                ax.text(j, i, f"{matrix[i, j] * 100:.0f}", ha="center", va="center", fontsize=6,
                        color="white" if matrix[i, j] < 0.6 else "black")
    return image
