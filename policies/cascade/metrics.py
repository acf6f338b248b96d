"""What a cascade run achieved: prequential accuracy, per-class precision and recall, macro-F1 (and a
headline class's recall), agreement with the LLM, LLM share, cost, speed; for any number of classes."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from policies.cascade.cascade import CascadeRun


def class_figures(predicted: Sequence[int], truth: Sequence[int], labels: Sequence[str]) -> dict[str, Any]:
    """Per-class precision, recall, F1 and support, and their macro averages, from one confusion
    matrix (vectorised; a class never predicted has precision None, one never present recall None;
    macro figures average over the classes present in the truth)."""
    k = len(labels)
    if not len(truth):
        return {"per_class": {}, "macro_f1": None, "macro_recall": None, "confusion": []}
    confusion = np.bincount(np.asarray(truth) * k + np.asarray(predicted), minlength=k * k).reshape(k, k)
    hits = np.diag(confusion).astype(float)
    support, predicted_n = confusion.sum(axis=1), confusion.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(predicted_n > 0, hits / predicted_n, np.nan)
        recall = np.where(support > 0, hits / support, np.nan)
        f1 = np.where(support > 0, np.nan_to_num(2 * precision * recall / (precision + recall)), np.nan)
    present = support > 0

    def value(x: float) -> float | None:
        return None if np.isnan(x) else float(x)

    per_class = {name: {"precision": value(precision[n]), "recall": value(recall[n]), "f1": value(f1[n]), "support": int(support[n])}
                 for n, name in enumerate(labels)}
    return {"per_class": per_class, "macro_f1": float(np.mean(f1[present])), "macro_recall": float(np.mean(recall[present])),
            "confusion": confusion.tolist()}


def summarize(
    run: CascadeRun,
    truth: Sequence[int | None],
    level_costs: Mapping[str, float],
    llm_name: str,
    reference: Sequence[int | None] | None = None,
    dollars_per_call: float = 0.0,
    labels: Sequence[str] | None = None,
    headline: int | None = None,
) -> dict[str, Any]:
    """`truth`: ground-truth labels (None where unknown); `reference`: the LLM's label for every item
    (recorded answers), used for LLM-only accuracy and agreement; without it those use asked items only.
    `labels`: class names (for per-class figures); `headline`: the class whose recall is the headline."""
    outcomes = run.outcomes
    n = len(outcomes)
    labelled = [(o, y) for o, y in zip(outcomes, truth) if y is not None]
    asked = [o for o in outcomes if o.llm_label is not None or o.llm_unparsed]
    llm_answers = list(reference) if reference is not None else None
    if llm_answers is not None:
        pairs = [(o.prediction, a) for o, a in zip(outcomes, llm_answers) if a is not None]
        llm_right = [a == y for a, y in zip(llm_answers, truth) if a is not None and y is not None]
    else:
        pairs = [(o.prediction, o.llm_label) for o in asked if o.llm_label is not None]
        llm_right = [o.llm_label == y for o, y in zip(outcomes, truth) if o.llm_label is not None and y is not None]
    names = list(labels) if labels is not None else [str(n) for n in range(1 + max([o.prediction for o in outcomes] + [y for y in truth if y is not None] + [0]))]
    classes = class_figures([o.prediction for o, _ in labelled], [y for _, y in labelled], names)
    if llm_answers is not None:
        llm_pairs = [(a, y) for a, y in zip(llm_answers, truth) if a is not None and y is not None]
    else:
        llm_pairs = [(o.llm_label, y) for o, y in zip(outcomes, truth) if o.llm_label is not None and y is not None]
    llm_classes = class_figures([a for a, _ in llm_pairs], [y for _, y in llm_pairs], names)
    headline_name = names[headline] if headline is not None else None
    shares = Counter(o.answered_by for o in outcomes)
    cost = sum(sum(level_costs[name] for name in o.levels_used) for o in outcomes)
    return {
        "n": n,
        "accuracy": sum(o.prediction == y for o, y in labelled) / len(labelled) if labelled else None,
        "llm_accuracy": sum(llm_right) / len(llm_right) if llm_right else None,
        "macro_f1": classes["macro_f1"],
        "llm_macro_f1": llm_classes["macro_f1"],
        "per_class": classes["per_class"],
        "llm_per_class": llm_classes["per_class"],
        "confusion": classes["confusion"],
        "headline_class": headline_name,
        "headline_recall": classes["per_class"].get(headline_name, {}).get("recall") if headline_name else None,
        "llm_headline_recall": llm_classes["per_class"].get(headline_name, {}).get("recall") if headline_name else None,
        "agreement_with_llm": sum(p == a for p, a in pairs) / len(pairs) if pairs else None,
        "llm_fraction": len(asked) / n if n else 0.0,
        "llm_calls": len(asked),
        "llm_unparsed": sum(o.llm_unparsed for o in outcomes),
        "budget_capped": sum(o.capped for o in outcomes),
        "cost": cost,
        "cost_llm_only": n * level_costs[llm_name],
        "cost_dollars": len(asked) * dollars_per_call,
        "cost_dollars_llm_only": n * dollars_per_call,
        "items_per_s_non_llm": n / run.non_llm_seconds if run.non_llm_seconds else None,
        "level_shares": {name: shares[name] / n for name in sorted(shares)} if n else {},
        "drift_detections": list(run.drift_positions),
    }


def phase_figures(outcomes, truth: Sequence[int | None], sources: Sequence[str], labels: Sequence[str] | None = None) -> dict[str, dict[str, float | None]]:
    """Accuracy (and macro-F1, given the class names) and LLM share per stream source (before and after a shift)."""
    out = {}
    for source in dict.fromkeys(sources):
        rows = [(o, y) for o, y, s in zip(outcomes, truth, sources) if s == source]
        known = [(o, y) for o, y in rows if y is not None]
        out[source] = {
            "n": len(rows),
            "accuracy": sum(o.prediction == y for o, y in known) / len(known) if known else None,
            "llm_fraction": sum(o.llm_label is not None or o.llm_unparsed for o, _ in rows) / len(rows) if rows else 0.0,
        }
        if labels is not None:
            out[source]["macro_f1"] = class_figures([o.prediction for o, _ in known], [y for _, y in known], labels)["macro_f1"]
    return out
