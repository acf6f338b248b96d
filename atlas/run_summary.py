"""Figures of a run from its per-episode records: overall, per third of the run, per lane and difficulty."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

PHASES = ("first", "middle", "last")


def figures(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    n = len(records)

    def mean(key: str) -> float:
        return sum(float(r[key]) for r in records) / n if n else 0.0

    lanes = Counter(r["lane"] for r in records)
    judged = [r for r in records if r.get("judgment") is not None and not r.get("model_error")]
    return {
        "episodes": n,
        "success_rate": mean("success"),
        "mean_reward": mean("reward"),
        "cost_per_task": mean("cost"),
        "tokens_per_task": mean("tokens"),
        "queries_per_task": sum(r["queries"]["student"] + r["queries"]["teacher"] for r in records) / n if n else 0.0,
        "lane_mix": {lane: lanes[lane] / n for lane in sorted(lanes)} if n else {},
        "model_errors": sum(bool(r.get("model_error")) for r in records),
        # how often the teacher's judgment (no ground truth) agreed with the grader's verdict, where both exist
        "judge_agreement": sum((r["judgment"] >= 0.5) == bool(r["success"]) for r in judged) / len(judged) if judged else None,
        "judged": len(judged),
    }


def thirds(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    n = len(records)
    cuts = [0, n // 3, 2 * n // 3, n]
    return {name: list(records[cuts[i] : cuts[i + 1]]) for i, name in enumerate(PHASES)}


def summarize(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The figures every report uses: overall, `phases` (first, middle, last third), and by difficulty."""
    ordered = sorted(records, key=lambda r: r["index"])
    out = figures(ordered)
    out["phases"] = {name: figures(part) for name, part in thirds(ordered).items()}
    difficulties = sorted({r["meta"].get("difficulty") for r in ordered if r.get("meta", {}).get("difficulty") is not None})
    if difficulties:
        out["by_difficulty"] = {str(d): figures([r for r in ordered if r["meta"].get("difficulty") == d]) for d in difficulties}
    return out
