"""Compose a continual-learning comparison: validated options -> scenario per seed -> learners ->
results.json, report.md, runs.jsonl and heat-maps in one folder."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.continual.evaluation import ONLINE_BATCH_SIZE, TrainingPlan, compare
from benchmarks.continual.report import markdown_table, plot_heatmaps, summarize_runs
from benchmarks.continual.scenarios import SCENARIOS, SPLIT_DIGITS_CLASSES, Scenario, ScenarioError, check_scenario, permuted_digits, split_digits
from policies.learners import GRADIENT_FREE, LEARNERS, make_learner

DEFAULT_EPOCHS = 10
DEFAULT_BATCH_SIZE = 32
DEFAULT_PER_DOMAIN = 1000
DEFAULT_PERMUTATIONS = 5


def parse_learners(text: str) -> tuple[str, ...]:
    """``all`` or a comma-separated list of learner names, checked against the known ones."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if names == ("all",):
        return tuple(LEARNERS)
    if "all" in names:
        raise ScenarioError(f"--learners {text!r}: use all on its own, or list names from {', '.join(LEARNERS)}")
    return check_learners(names, text)


def check_learners(names: tuple[str, ...], given: str | None = None) -> tuple[str, ...]:
    unknown = [n for n in names if n not in LEARNERS]
    if unknown or not names:
        raise ScenarioError(f"unknown learner(s) {', '.join(map(repr, unknown)) or repr(given or '')}; "
                            f"choose from {', '.join(LEARNERS)} (comma-separated) or all")
    return names


@dataclass(frozen=True)
class ComparisonOptions:
    scenario: str = "split-digits"
    protocol: str | None = None  # None: the scenario's default
    learners: tuple[str, ...] = tuple(LEARNERS)
    seeds: int = 3
    online: bool = False
    epochs: int = DEFAULT_EPOCHS
    batch_size: int | None = None  # None: 32, or 10 when online
    tasks: int | None = None  # permuted-digits: number of permutations (default 5)
    per_domain: int | None = None  # text-domains: reviews per domain (default 1000)
    embedder: str = "minilm"
    resolved_protocol: str = field(init=False, default="")

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolved_protocol", check_scenario(self.scenario, self.protocol))
        check_learners(self.learners)
        if self.seeds < 1:
            raise ScenarioError(f"--seeds must be at least 1, got {self.seeds}")
        if self.epochs < 1 or (self.batch_size is not None and self.batch_size < 1):
            raise ScenarioError(f"--epochs and --batch-size must be at least 1, got {self.epochs} and {self.batch_size}")
        if self.tasks is not None and self.scenario != "permuted-digits":
            raise ScenarioError(f"--tasks sets the number of permutations and applies only to permuted-digits, not {self.scenario}")
        if self.per_domain is not None and self.scenario != "text-domains":
            raise ScenarioError(f"--per-domain applies only to text-domains, not {self.scenario}")
        if self.per_domain is not None and self.per_domain < 10:
            raise ScenarioError(f"--per-domain must be at least 10, got {self.per_domain}")
        if self.tasks is not None and self.tasks < 2:
            raise ScenarioError(f"permuted-digits needs at least 2 tasks, got {self.tasks}")

    @property
    def plan(self) -> TrainingPlan:
        size = self.batch_size or (ONLINE_BATCH_SIZE if self.online else DEFAULT_BATCH_SIZE)
        return TrainingPlan(epochs=self.epochs, batch_size=size, online=self.online)


def scenario_factory(options: ComparisonOptions, cache_dir: Path | None,
                     on_encode: Callable[[str, int], None] | None = None) -> Callable[[int], Scenario]:
    """A function seed -> scenario. Text vectors are computed (or read from the cache) once."""
    protocol = options.resolved_protocol
    if options.scenario == "split-digits":
        return lambda seed: split_digits(protocol, seed)
    if options.scenario == "permuted-digits":
        return lambda seed: permuted_digits(options.tasks or DEFAULT_PERMUTATIONS, seed, protocol)
    from benchmarks.continual.text import DOMAINS, domain_vectors, text_domains
    from memory.embed import make_embedder

    embedder = make_embedder(options.embedder)
    per_domain = options.per_domain or DEFAULT_PER_DOMAIN
    pools = []
    for domain in DOMAINS:
        if on_encode:
            on_encode(domain, per_domain)
        pools.append(domain_vectors(domain, per_domain, embedder.encode, f"{embedder.name}-{embedder.dim}", cache_dir))
    return lambda seed: text_domains(pools, seed, protocol)


def run_comparison(options: ComparisonOptions, out: Path, cache_dir: Path | None = None,
                   on_task: Callable[[], None] | None = None,
                   on_encode: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Run every learner on every seed and write the folder; returns what results.json holds."""
    scenario_for_seed = functools.cache(scenario_factory(options, cache_dir, on_encode))  # built once per seed
    seeds = list(range(options.seeds))
    learners = {name: make_learner(name) for name in options.learners}
    runs = compare(learners, scenario_for_seed, seeds, options.plan, on_task)
    kinds = {name: "gradient-free" if name in GRADIENT_FREE else "reference" if name == "joint" else "weights" for name in learners}
    results = summarize_runs(runs, scenario_for_seed(seeds[0]), options.plan, seeds, kinds)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown_table(results), encoding="utf-8")
    with (out / "runs.jsonl").open("w", encoding="utf-8") as sink:
        for name, entry in results["learners"].items():
            for row in entry["per_seed"]:
                sink.write(json.dumps({"learner": name, **row}) + "\n")
    plot_heatmaps(results, out)
    return results


def task_count(options: ComparisonOptions) -> int:
    """Tasks per learner and seed, for progress bars."""
    from benchmarks.continual.text import DOMAINS

    counts = {"split-digits": len(SPLIT_DIGITS_CLASSES), "permuted-digits": options.tasks or DEFAULT_PERMUTATIONS, "text-domains": len(DOMAINS)}
    return counts[options.scenario]


__all__ = ["SCENARIOS", "ComparisonOptions", "parse_learners", "run_comparison", "scenario_factory", "task_count"]
