"""`atlas bench scale`: episodes at once, against a latency-bound model server.

The fake OpenAI-compatible server (`benchmarks/fake_openai.py`) answers with the capable stand-in
model (`benchmarks/investigation/standin.py`) after a fixed latency per call, in a process of its
own (as a real endpoint would be: its CPU is not the agents'). The LLM agents run the adaptive loop
with a fresh SQLite memory per configuration: 1, 4 and 16 local worker threads, and Ray actors.
Figures: wall time, episodes/s, speed-up over one worker, the checks that every episode is recorded
once in question order and no use or lesson is written twice for an episode, and whether the learning
curve (success and cost per third) stays within noise of the sequential run (|z| <= 2 per third).
Each configuration also gets its ceiling: the wall time an ideal scheduler would need for the same
episodes (each its calls x the latency, no CPU, no start-up, handed out in question order to the first
free worker), with its own call counts and with the sequential run's; the gap between a configuration's
speed-up and these ceilings says how much is the engine and how much the work (extra calls).
Then the cascade's live answerer on the same server: items/s at concurrency 1 and 16.
"""

from __future__ import annotations

import heapq
import json
import math
import multiprocessing
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from atlas.config import DEFAULT_PRICE_KEY, AtlasSettings
from atlas.errors import AtlasError
from atlas.runner import RayWorkers, RunSpec, read_records, run_episodes
from benchmarks.investigation.episodes import select_questions, world_paths
from benchmarks.investigation.question_files import read_questions

STUDENT, TEACHER, LABELLER = "openai:standin-student", "openai:standin-teacher", "openai:standin-labeller"
SCOPE = ("benchmark:soc",)


def _serve(conn: Any, latency_s: float) -> None:
    """The server process: the stand-in behind the fake endpoint until told to stop."""
    from benchmarks.fake_openai import FakeOpenAIServer
    from benchmarks.investigation.standin import StandInModel

    with FakeOpenAIServer(responder=StandInModel(), count_tokens=lambda text: max(1, len(text) // 4), latency_s=latency_s) as server:
        conn.send((server.url, server.api_key))
        conn.recv()


class ServerProcess:
    """The fake endpoint in a child process (spawned: nothing of this process is inherited)."""

    def __init__(self, latency_s: float) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve, args=(child, latency_s), daemon=True)

    def __enter__(self) -> tuple[str, str]:
        self._process.start()
        reason = "it did not answer within 120 s"
        if self._conn.poll(120):
            try:
                return self._conn.recv()
            except EOFError:
                reason = "it exited before saying where it listens"
        self._process.kill()
        raise AtlasError(f"the fake OpenAI server process did not start ({reason})")

    def __exit__(self, *_exc: object) -> None:
        self._conn.send("stop")
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()


def endpoint_settings(settings: AtlasSettings, url: str, key: str) -> AtlasSettings:
    """The settings pointed at the fake endpoint; the stand-in models are priced at `prices.default`, declared
    (the same figures, without a warning per configuration and model that the price was not set)."""
    endpoint = settings.openai.model_copy(update={"base_url": url, "api_key": SecretStr(key), "timeout_s": 120.0, "deadline_s": 300.0})
    default = settings.prices[DEFAULT_PRICE_KEY]
    prices = {**{spec.split(":", 1)[1]: default for spec in (STUDENT, TEACHER, LABELLER)}, **settings.prices}  # a user's own price wins
    return settings.model_copy(update={"openai": endpoint, "prices": prices})


def run_config(name: str, world: Path, out: Path, settings: AtlasSettings, questions: list, workers: int, ray_actors: int | None,
               seed: int, progress: Callable[[str, dict[str, Any]], None] | None) -> dict[str, Any]:
    """One configuration on a fresh memory; returns its figures and checks."""
    from atlas.cli.run import make_agents
    from atlas.cli.workers import WorkerRecipe, decided_capabilities
    from atlas.llm.meter import Meter
    from benchmarks.investigation.arms import inputs_for
    from benchmarks.investigation.database import open_database
    from memory.store import MemoryStore

    db_path, questions_path = world_paths(world)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    meter = Meter()
    student, teacher = make_agents("llm", STUDENT, TEACHER, settings, meter, quiet=True)
    store = MemoryStore.open(str(folder / "memory.sqlite"), index_dir=folder / "indexes")
    ray = None
    if ray_actors:
        recipe = WorkerRecipe("llm", STUDENT, TEACHER, settings.model_copy(update={"home": folder}), str(db_path), str(questions_path), store.target,
                              decided_capabilities(student, teacher))
        ray = RayWorkers("auto", ray_actors, recipe)
    try:
        with open_database(str(db_path)) as database:
            spec = RunSpec(name, memory=store, scope=SCOPE, seed=seed, workers=workers, ray=ray)
            started = time.perf_counter()
            results = run_episodes(inputs_for(questions, database), student, teacher, settings.agents, spec, folder / "run", meter=meter,
                                   progress=(lambda record: progress(name, record)) if progress else None)
            seconds = time.perf_counter() - started
    finally:
        store.close()
    records = read_records(folder / "run" / "episodes.jsonl")
    return {
        "workers": ray_actors or workers, "ray": bool(ray_actors), "seconds": round(seconds, 1),
        "startup_s": results.get("pool_startup_s", 0.0), "startup_detail": results["workers"]["startup"],
        "episodes_per_s": round(len(records) / seconds, 3),
        "llm_calls": sum(r["llm_calls"] for r in records),
        "phases": {k: {"success_rate": v["success_rate"], "cost_per_task": v["cost_per_task"], "n": v["episodes"]} for k, v in results["phases"].items()},
        "success_rate": results["success_rate"], "cost_per_task": results["cost_per_task"],
        "checks": integrity(records, questions, folder / "memory.sqlite"),
        "_records": records,
    }


def integrity(records: list[dict[str, Any]], questions: list, memory: Path) -> dict[str, bool]:
    """Every question recorded once, in question order; no (pamphlet, episode) use or episode's lesson twice."""
    lines = [json.loads(line) for line in (memory.parent / "run" / "episodes.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    with sqlite3.connect(memory) as db:
        uses = db.execute("SELECT count(*), count(DISTINCT pamphlet_id || '/' || episode_id) FROM pamphlet_uses").fetchone()
        creators = [json.loads(p)["episode_ids"][0] for (p,) in db.execute("SELECT provenance FROM pamphlets") if json.loads(p)["episode_ids"]]
    written = [p for r in records for p in r["pamphlets_written"]]
    return {
        "every_episode_once": len(lines) == len(questions) == len({r["episode"] for r in lines}),
        "in_question_order": [r["index"] for r in lines] == list(range(len(questions))),
        "no_use_twice": uses[0] == uses[1],
        "no_lesson_twice": len(creators) == len(set(creators)) and len(written) == len(set(written)),
    }


def within_noise(base: list[dict[str, Any]], other: list[dict[str, Any]]) -> dict[str, Any]:
    """Two-sample z per third for success (binomial) and cost (per-episode spread): within noise if |z| <= 2."""
    from atlas.run_summary import thirds

    out: dict[str, Any] = {}
    for phase, (a, b) in zip(("first", "middle", "last"), zip(thirds(base).values(), thirds(other).values())):
        figures = {}
        for key, values in (("success", lambda rs: [float(r["success"]) for r in rs]), ("cost", lambda rs: [float(r["cost"]) for r in rs])):
            x, y = values(a), values(b)
            figures[key] = round(_z(x, y), 2)
        out[phase] = figures
    out["met"] = all(abs(v) <= 2.0 for phase in ("first", "middle", "last") for v in out[phase].values())
    return out


def _z(x: Sequence[float], y: Sequence[float]) -> float:
    if not x or not y:
        return 0.0
    mx, my = sum(x) / len(x), sum(y) / len(y)
    vx = sum((v - mx) ** 2 for v in x) / max(1, len(x) - 1)
    vy = sum((v - my) ** 2 for v in y) / max(1, len(y) - 1)
    se = math.sqrt(vx / len(x) + vy / len(y))
    return 0.0 if se == 0 else (my - mx) / se


def ideal_wall_s(calls: Sequence[int], workers: int, latency_s: float) -> float:
    """Makespan of the episodes (in question order, each to the first free of `workers`) if an episode
    took exactly its calls x `latency_s`: what no engine can beat with these calls."""
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    free = [0.0] * min(workers, max(1, len(calls)))
    for n in calls:
        heapq.heappush(free, heapq.heappop(free) + n * latency_s)
    return max(free)


def answerer_throughput(settings: AtlasSettings, items: int, concurrency: Sequence[int]) -> dict[str, Any]:
    """The cascade's live answerer for an `openai:` model: items/s at each concurrency."""
    from atlas.llm import make_llm
    from atlas.llm.answerers import LiveAnswerer
    from atlas.llm.classify import SENTIMENT_PROMPT

    texts = [f"review {n}: the film was {'great' if n % 2 else 'dull'} and the cast {'shone' if n % 3 else 'slept'}" for n in range(items)]
    ids = [str(n) for n in range(items)]
    out: dict[str, Any] = {"items": items}
    for width in concurrency:
        client = make_llm(LABELLER, settings, cache=False)
        answerer = LiveAnswerer(client, SENTIMENT_PROMPT, concurrency=width)
        started = time.perf_counter()
        answers = answerer(ids, texts)
        seconds = time.perf_counter() - started
        out[str(width)] = {"seconds": round(seconds, 2), "items_per_s": round(items / seconds, 2), "answered": len(answers.labels)}
    first, last = str(concurrency[0]), str(concurrency[-1])
    out["speedup"] = round(out[last]["items_per_s"] / out[first]["items_per_s"], 2)
    return out


def run_scale_bench(world: Path, out: Path, settings: AtlasSettings, episodes: int = 64, latency_s: float = 0.3, workers: Sequence[int] = (1, 4, 16),
                    ray_actors: int | None = 4, seed: int = 0, answerer_items: int = 64,
                    progress: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    _, questions_path = world_paths(world)
    questions = select_questions(read_questions(questions_path), limit=episodes, seed=seed)
    out.mkdir(parents=True, exist_ok=True)
    configs: dict[str, dict[str, Any]] = {}
    with ServerProcess(latency_s) as (url, key):
        local = endpoint_settings(settings, url, key)
        for n in workers:
            configs[f"threads_{n}"] = run_config(f"threads_{n}", world, out, local, questions, n, None, seed, progress)
        if ray_actors:
            configs[f"ray_{ray_actors}"] = run_config(f"ray_{ray_actors}", world, out, local, questions, 1, ray_actors, seed, progress)
        answerer = answerer_throughput(local, answerer_items, (1, 16)) if answerer_items else None
    base_name = f"threads_{workers[0]}"
    base = configs[base_name]
    base_calls = [r["llm_calls"] for r in base["_records"]]
    for name, config in configs.items():
        config["speedup"] = round(base["seconds"] / config["seconds"], 2)
        own = ideal_wall_s([r["llm_calls"] for r in config["_records"]], config["workers"], latency_s)
        same = ideal_wall_s(base_calls, config["workers"], latency_s)

        def ceiling(ideal_s: float) -> float | None:  # no ceiling without latency
            return round(base["seconds"] / ideal_s, 2) if ideal_s else None

        config["ideal"] = {"seconds": round(own, 1), "seconds_with_sequential_calls": round(same, 1),
                           "speedup": ceiling(own), "speedup_with_sequential_calls": ceiling(same)}
        config["speedup_without_startup"] = round(base["seconds"] / max(1e-9, config["seconds"] - config["startup_s"]), 2)
        config["learning_curve_vs_sequential"] = within_noise(base["_records"], config["_records"]) if name != base_name else None
    for config in configs.values():
        config.pop("_records")
    biggest = f"threads_{max(workers)}"
    results: dict[str, Any] = {
        "world": str(world), "episodes": len(questions), "latency_s": latency_s, "seed": seed, "configs": configs, "answerer": answerer,
        "targets": {
            f"{biggest}_speedup_at_least_12x": configs[biggest]["speedup"] >= 12.0 if max(workers) >= 16 else None,
            f"ray_{ray_actors}_speedup_at_least_3.5x": configs[f"ray_{ray_actors}"]["speedup"] >= 3.5 if ray_actors else None,
            "no_lost_or_duplicated_episodes_or_pamphlets": all(all(c["checks"].values()) for c in configs.values()),
            "answerer_16_at_least_10x": answerer["speedup"] >= 10.0 if answerer else None,
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    (out / "report.md").write_text(report(results), encoding="utf-8")
    return results


def report(results: dict[str, Any]) -> str:
    lines = [
        "# Scale-out: episodes at once against a latency-bound endpoint",
        "",
        f"{results['episodes']} episodes, stand-in model behind the fake OpenAI server with {results['latency_s'] * 1000:.0f} ms per call, seed {results['seed']}.",
        "",
        "| configuration | wall s | startup s | episodes/s | speed-up | ceiling: own calls / sequential's | LLM calls | success | cost/task ($) | curve within noise | checks |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in results["configs"].items():
        curve = c["learning_curve_vs_sequential"]
        ceiling = " / ".join("-" if v is None else str(v) for v in (c["ideal"]["speedup"], c["ideal"]["speedup_with_sequential_calls"]))
        lines.append(f"| {name} | {c['seconds']} | {c['startup_s']} | {c['episodes_per_s']} | {c['speedup']} | {ceiling} | {c['llm_calls']} | {c['success_rate']:.3f} | "
                     f"{c['cost_per_task']:.4f} | {'-' if curve is None else ('yes' if curve['met'] else 'no')} | {'ok' if all(c['checks'].values()) else c['checks']} |")
    lines += ["", "Ceiling: the speed-up of an ideal scheduler (no CPU, no start-up; episodes in question order to the first free worker, "
              "each its calls x the latency) with the configuration's own calls, and with the sequential run's. Below the first: "
              "the engine (CPU, start-up); between the two: the extra calls the concurrent run made."]
    for name, c in results["configs"].items():
        detail = c.get("startup_detail") or {}
        if detail.get("actors_s"):
            lines += ["", f"{name} start-up: the cluster {detail['cluster_s']} s, the actors' processes and imports {detail['processes_s']} s, "
                          f"their builds {min(detail['actors_s'])}-{max(detail['actors_s'])} s (at once)."]
    answerer = results.get("answerer")
    if answerer:
        lines += ["", f"Live answerer ({answerer['items']} items): concurrency 1 {answerer['1']['items_per_s']} items/s, 16 {answerer['16']['items_per_s']} items/s ({answerer['speedup']}x)."]
    lines += ["", "Targets: " + ", ".join(f"{k}: {v}" for k, v in results["targets"].items()), ""]
    return "\n".join(lines)
