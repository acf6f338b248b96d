"""`atlas cascade bench`: each deferral policy's accuracy / LLM-share frontier on the seeded IMDB stream
with GPT-3.5's recorded answers, the length-sorted stream as a shift case, and the local model's
answers as the weak-expert case; the Online Cascade Learning paper's points on the same plot."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from atlas.config import AtlasSettings
from benchmarks.cascade.run import (
    GPT35_IMDB,
    LOCAL_ANSWERS,
    CascadeOptions,
    open_stream,
    run_cascade,
)
from benchmarks.streams.items import UNLABELLED_WORDS, load_stream, unlabelled_texts

# Nie et al., Online Cascade Learning (ICML 2024), IMDB with GPT-3.5: LR on TF-IDF, then BERT-base
# fine-tuned online on a GPU (the authors' run logs; /work/shared/data/llm-labels/README.md)
PAPER_POINTS = ((0.088, 0.872), (0.093, 0.878), (0.207, 0.915), (0.294, 0.924), (0.409, 0.930))
TARGETS = ((0.10, 0.885), (0.20, 0.920), (0.30, 0.930), (0.40, 0.937))
KNOB = {"ocl": "mu", "threshold": "threshold", "budget": "budget"}


@dataclass(frozen=True)
class Case:
    """One stream with one LLM's answers and, per policy, the knob values to run."""

    name: str
    stream: str
    limit: int | None
    llm: str
    knobs: dict[str, tuple[float, ...]] = field(default_factory=dict)
    covered_only: bool = False  # the items the recorded answers cover, in the seed's order (a recording of part of a source)
    unlabelled: str = "auto"  # text from outside the stream for the topics (`CascadeOptions.unlabelled`)
    refine: bool = True  # bisect toward the share caps (a comparison case may not need it)


def default_plan() -> list[Case]:
    return [
        Case("imdb-gpt-3.5", "imdb", 12500, GPT35_IMDB,
             # q is a calibrated P(level disagrees with the LLM), at most about 0.5 for a binary level, so the
             # share falls from ~70% to ~5% as mu goes from 0.05 to 0.55: the grid is densest where it falls fastest
             {"ocl": (0.05, 0.1, 0.2, 0.22, 0.25, 0.3, 0.33, 0.36, 0.37, 0.38, 0.39, 0.4, 0.41, 0.42, 0.44, 0.46, 0.5, 0.55), "threshold": (0.6, 0.8),
              "budget": (0.05, 0.1, 0.2, 0.4)}),
        # the same stream with topics fitted on its own answered texts only (no reviews from outside it)
        Case("imdb-gpt-3.5-stream-topics", "imdb", 12500, GPT35_IMDB, {"ocl": (0.2, 0.3, 0.37, 0.44, 0.46)}, unlabelled="none", refine=False),
        Case("imdb-by-length-gpt-3.5", "imdb-by-length", 12500, GPT35_IMDB, {"ocl": (0.2,), "threshold": (0.7,), "budget": (0.2,)}),
        # the local model answered 5,000 reviews (seed 0's first 5,000): every seed runs on those, in its own order
        Case("imdb-local", "imdb", 5000, LOCAL_ANSWERS["imdb"], {"ocl": (0.2,), "threshold": (0.7,), "budget": (0.1,)}, covered_only=True),
    ]


def one_case(stream: str, limit: int | None, llm: str, knobs: dict[str, tuple[float, ...]], unlabelled: str = "auto") -> list[Case]:
    return [Case(f"{Path(stream).name}", stream, limit, llm, knobs, unlabelled=unlabelled)]


def options_for(case: Case, policy: str, value: float, seed: int, levels: str) -> CascadeOptions:
    options = CascadeOptions(stream=case.stream, limit=case.limit, llm=case.llm, policy=policy, seed=seed, levels=levels,
                             covered_only=case.covered_only, unlabelled=case.unlabelled)
    if policy == "ocl":
        options.mu = value
    elif policy == "threshold":
        options.threshold = value
    else:
        options.budget = value
    return options


POINT_KEYS = ("llm_fraction", "accuracy", "agreement_with_llm", "llm_accuracy", "items_per_s_non_llm", "items_per_s_answer_only", "n", "seconds")


def refinement(points: Sequence[dict[str, Any]], done: set[float], targets: Sequence[tuple[float, float]] = TARGETS,
               slack: float = 0.01, min_step: float = 0.001) -> float | None:
    """The next mu to run for one case's `ocl` points: for the first share cap whose nearest point below it
    lies more than `slack` under it, the midpoint of two neighbouring mu values (in mu order) whose shares lie
    either side of the cap, the pair whose point under the cap is nearest to it first (a bisection toward the
    cap, as a user looking for the mu of a budget would do: a fixed grid can leave a cap's best point far below
    it where the share falls fast). Caps whose target no point under them meets yet come first, then the others
    in order. Bracketing by neighbours keeps the search going where the share is not monotone in mu (a midpoint
    that lands under its lower neighbour opens a new bracket on the other side); near a cap the share can move
    by points for a change of mu of 0.01, so brackets are split down to `min_step`.
    None when every cap has a point close below it, or no bracket is wide enough to split."""
    measured = sorted((p for p in points if p["accuracy"] is not None), key=lambda p: p["value"])

    def met(cap: float, target: float) -> bool:
        return any(p["llm_fraction"] <= cap and p["accuracy"] >= target for p in measured)

    for cap, _target in sorted(targets, key=lambda row: met(*row)):  # stable: the caps' own order within each group
        under = [p["llm_fraction"] for p in measured if p["llm_fraction"] <= cap]
        if not under or len(under) == len(measured) or cap - max(under) <= slack:
            continue
        brackets = [(a, b) for a, b in zip(measured, measured[1:]) if (a["llm_fraction"] > cap) != (b["llm_fraction"] > cap)]
        for low, high in sorted(brackets, key=lambda pair: -min(p["llm_fraction"] for p in pair)):
            middle = round((low["value"] + high["value"]) / 2, 4)
            if high["value"] - low["value"] >= 2 * min_step - 1e-9 and middle not in done:  # mu values are decimals
                return middle
    return None


def run_bench(plan: Sequence[Case], settings: AtlasSettings, out: Path, seed: int = 0, levels: str = "nb",
              report: Callable[[str], None] = print, refine: int = 6) -> dict[str, Any]:
    """Every case's knob values; then, per case, up to `refine` more `ocl` points toward the share caps (`refinement`)."""
    started = time.perf_counter()
    for case in plan:  # a recording that does not cover its stream, or unlabelled text that cannot be read, stops the bench here
        if case.llm.startswith("annotations:"):
            stream = open_stream(options_for(case, next(iter(case.knobs), "ocl"), 0.0, seed, levels), settings)[1]
        if case.unlabelled not in UNLABELLED_WORDS:
            if not case.llm.startswith("annotations:"):
                stream = load_stream(case.stream, case.limit, seed)  # a live LLM is not started only to check a file
            unlabelled_texts(case.unlabelled, stream)
    out.mkdir(parents=True, exist_ok=True)
    points: list[dict[str, Any]] = []
    with (out / "points.jsonl").open("w", encoding="utf-8") as sink:  # each point as it is measured: an interrupted bench keeps them
        def measure(case: Case, policy: str, value: float, refined: bool = False) -> dict[str, Any]:
            result = run_cascade(options_for(case, policy, value, seed, levels), settings)
            point = {"case": case.name, "stream": case.stream, "llm": case.llm, "policy": policy, "knob": KNOB[policy], "value": value,
                     "seed": seed, "levels": levels, "refined": refined, **{key: result[key] for key in POINT_KEYS},
                     "drift_detections": len(result["drift_detections"]), "unlabelled_texts": result["unlabelled"]["texts"]}
            points.append(point)
            sink.write(json.dumps(point) + "\n")
            sink.flush()
            report(f"{case.name} {policy} {KNOB[policy]}={value:g}{' (refined)' if refined else ''}: LLM share {point['llm_fraction']:.3f}, "
                   f"accuracy {point['accuracy']:.4f}, agreement {point['agreement_with_llm']:.3f}, {point['items_per_s_non_llm']:.0f} items/s")
            return point

        for case in plan:
            for policy, values in case.knobs.items():
                for value in values:
                    measure(case, policy, value)
            mine = [p for p in points if p["case"] == case.name and p["policy"] == "ocl"]
            for _ in range(refine if case.refine and len(mine) >= 3 else 0):
                middle = refinement(mine, {round(p["value"], 4) for p in mine})
                if middle is None:
                    break
                mine.append(measure(case, "ocl", middle, refined=True))
    results = {"seed": seed, "levels": levels, "refine": refine, "cases": [asdict(c) for c in plan], "points": points,
               "targets": best_under_caps(points, plan[0].name if plan else ""), "paper_points": PAPER_POINTS,
               "seconds": round(time.perf_counter() - started, 1)}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(results), encoding="utf-8")
    plot(points, plan, out / "frontier.png")
    return results


def best_under_caps(points: Sequence[dict[str, Any]], case: str) -> list[dict[str, Any]]:
    """Per target share cap: the most accurate point of `case` within it (any policy)."""
    rows = []
    for cap, target in TARGETS:
        within = [p for p in points if p["case"] == case and p["llm_fraction"] <= cap and p["accuracy"] is not None]
        best = max(within, key=lambda p: p["accuracy"], default=None)
        rows.append({"cap": cap, "target": target, "paper": max((a for s, a in PAPER_POINTS if s <= cap), default=None),
                     "best": None if best is None else {k: best[k] for k in ("policy", "value", "llm_fraction", "accuracy")},
                     "met": best is not None and best["accuracy"] >= target})
    return rows


def markdown(results: dict[str, Any]) -> str:
    lines = [f"# Cascade frontier (seed {results['seed']}, levels {results['levels']}, {results['seconds']:.0f} s)", ""]
    for case in results["cases"]:
        rows = sorted((p for p in results["points"] if p["case"] == case["name"]), key=lambda p: p["llm_fraction"])
        if not rows:
            continue
        llm_accuracy = rows[0]["llm_accuracy"]
        taken = rows[0].get("unlabelled_texts", 0)
        corpus = ("topics from the stream only" if not taken else "topics also from the source's reviews outside the stream" if case["unlabelled"] == "auto"
                  else f"topics also from {case['unlabelled']}")
        lines += [f"## {case['name']} ({case['stream']}, {rows[0]['n']} items, {case['llm']}; LLM alone {llm_accuracy:.3f}; {corpus})", "",
                  "| policy | knob | LLM share | accuracy | agreement with LLM | items/s (stream) | items/s (answer only) |", "|---|---|---|---|---|---|---|"]
        for p in rows:
            lines.append(f"| {p['policy']} | {p['knob']} {p['value']:g}{' (refined)' if p.get('refined') else ''} | {p['llm_fraction']:.3f} | {p['accuracy']:.4f} | {p['agreement_with_llm']:.3f} | "
                         f"{p['items_per_s_non_llm']:.0f} | {p['items_per_s_answer_only']:.0f} |")
        lines.append("")
    lines += ["## Targets (first case)", "", "| LLM share at most | target | paper (BERT on GPU) | best here | met |", "|---|---|---|---|---|"]
    for row in results["targets"]:
        best = row["best"]
        shown = "none" if best is None else f"{best['accuracy']:.4f} ({best['policy']} {best['value']:g}, share {best['llm_fraction']:.3f})"
        paper = "" if row["paper"] is None else f"{row['paper']:.3f}"
        lines.append(f"| {row['cap']:.0%} | {row['target']:.3f} | {paper} | {shown} | {'yes' if row['met'] else 'no'} |")
    return "\n".join(lines) + "\n"


def plot(points: Sequence[dict[str, Any]], plan: Sequence[Case], path: Path) -> None:
    from matplotlib.figure import Figure  # the object API: no pyplot state, the caller's backend untouched

    # one panel per stream and LLM; a case that differs from the first only in its unlabelled text shares its panel
    panels: dict[tuple[Any, ...], list[Case]] = {}
    for case in plan:
        panels.setdefault((case.stream, case.limit, case.llm, case.covered_only), []).append(case)
    fig = Figure(figsize=(5.5 * len(panels), 4.2))
    axes = fig.subplots(1, len(panels), squeeze=False)
    for axis, (case, *extras) in zip(axes[0], panels.values()):
        for drawn, style in [(case, "o-"), *((extra, "x--") for extra in extras)]:
            for policy in KNOB:
                rows = sorted((p for p in points if p["case"] == drawn.name and p["policy"] == policy), key=lambda p: p["llm_fraction"])
                if rows:
                    axis.plot([p["llm_fraction"] for p in rows], [p["accuracy"] for p in rows], style,
                              label=policy if drawn is case else f"{policy}, {drawn.name}")
        mine = [p for p in points if p["case"] == case.name]
        if mine and mine[0]["llm_accuracy"] is not None:
            axis.axhline(mine[0]["llm_accuracy"], color="grey", linestyle="--", label="LLM alone")
        if case.llm == GPT35_IMDB:
            axis.plot([s for s, _ in PAPER_POINTS], [a for _, a in PAPER_POINTS], "k^", label="OCL paper (BERT, GPU)")
        axis.set_title(case.name, fontsize=9)
        axis.set_xlabel("LLM share")
        axis.set_ylabel("accuracy (prequential, true labels)")
        axis.set_xlim(0, 1)
        axis.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
