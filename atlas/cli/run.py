"""`atlas run`, `atlas bench atlas` and `atlas demo`: agents on the investigation benchmark.

This module is the composition root for runs: it builds agents (procedural ones from the
benchmark, LLM ones from atlas), the memory store and the episodes, then hands them to the runner.
"""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from atlas.cli.common import CliState, console, err_console, state
from atlas.errors import AtlasError

if TYPE_CHECKING:
    from atlas.config import AtlasSettings

AGENT_KINDS = ("procedural", "llm")
LLM_BENCH_EPISODES = 30  # default questions per arm for `bench atlas --agents llm`: five arms of real model calls add up
DEMO_INCIDENTS = 10  # two per attack template, so what is learned on one incident can transfer to another
DEMO_EPISODES = 240  # training questions per arm in the demo (its run must stay short)
DEMO_LOTO_QUESTIONS = 40  # questions per held-out attack template in the demo
DEMO_ARMS = ("student_only", "teacher_only", "atlas", "atlas_frozen_transfer", "student_only_transfer")  # atlas_no_memory only in `bench atlas`
LANE_CHOICES = ("adaptive", "auto", "paired", "coach", "escalate")


def make_agents(kind: str, student_model: str, teacher_model: str, settings: AtlasSettings, meter: Any, quiet: bool = False,
                known: Mapping[str, Any] | None = None) -> tuple[Any, Any]:
    """Procedural agents (no LLM; they know the SOC world's tables) or LLM agents over model clients.
    `known`: each role's capabilities as another process found them (a Ray actor takes the driver's, not probing again)."""
    if kind == "procedural":
        from benchmarks.investigation.procedural import ProceduralStudent, ProceduralTeacher

        return ProceduralStudent(), ProceduralTeacher()
    if kind == "llm":
        from atlas.agents.llm import LLMStudent, LLMTeacher
        from atlas.llm import make_llm
        from atlas.llm.capabilities import assume
        from benchmarks.investigation.tables import schema_summary

        from atlas.runner import preflight_agents

        schema = schema_summary()
        student = LLMStudent(make_llm(student_model, settings, meter=meter), schema, settings.agents)
        teacher = LLMTeacher(make_llm(teacher_model, settings, meter=meter), schema, settings.agents)
        for role, agent in (("student", student), ("teacher", teacher)):
            if known and role in known:
                assume(agent.llm, known[role])
        for role, how in preflight_agents(student, teacher).items():  # before any memory is opened or written
            if not quiet:
                err_console.print(f"{role}: {escape(str(how['model']))} ({how['mode']} mode, {how['decided_by']})", highlight=False)
        return student, teacher
    raise AtlasError(f"unknown --agents {kind!r}; choose one of {', '.join(AGENT_KINDS)}")


def open_memory(path: Path | str, settings: AtlasSettings, embedder: Any, create: bool = True):
    from memory.store import MemoryStore

    store = MemoryStore.open(str(path), embedder=embedder, index_dir=settings.home / "indexes", create=create)
    for notice in store.notices:
        err_console.print(f"[yellow]note:[/] {escape(str(notice))}", highlight=False, soft_wrap=True)
    return store


class StopOnCtrlC:
    """First Ctrl-C: finish the current episode, save, stop. Second Ctrl-C: abort at once."""

    def __init__(self) -> None:
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopOnCtrlC:
        self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *_exc: object) -> None:
        signal.signal(signal.SIGINT, self._previous)

    def _handle(self, _signum: int, _frame: Any) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        err_console.print("[yellow]stopping after this episode[/] (Ctrl-C again to abort now)", highlight=False)

    def __call__(self) -> bool:
        return self.requested


def _stopped(finished: int, hint: str = "run the same command with --resume to continue") -> typer.Exit:
    err_console.print(f"[yellow]interrupted[/] with {finished} episodes saved; {hint}", highlight=False)
    return typer.Exit(130)


def _progress_bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"), TimeElapsedColumn(), console=err_console)


def run_command(
    ctx: typer.Context,
    world: Path = typer.Option(..., "--world", help="a folder written by `atlas bench soc generate`"),
    split: str | None = typer.Option(None, "--split", help="train | test (default: both)"),
    incident: list[int] = typer.Option([], "--incident", help="only these incidents (repeatable)"),
    agents: str = typer.Option("procedural", "--agents", help="procedural | llm"),
    student: str = typer.Option("local", "--student", help="student model for --agents llm (local, openai:MODEL, scripted:...)"),
    teacher: str = typer.Option("local", "--teacher", help="teacher model for --agents llm"),
    episodes: int | None = typer.Option(None, "--episodes", min=1, help="at most this many questions"),
    memory: str | None = typer.Option(None, "--memory", help="memory store: a SQLite path or a PostgreSQL URL (default: $ATLAS_HOME/memory.sqlite)"),
    no_memory: bool = typer.Option(False, "--no-memory", help="run without any memory"),
    learn: bool = typer.Option(True, "--learn/--frozen", help="write what is learned into memory, or only read it"),
    lane: str = typer.Option("adaptive", "--lane", help="adaptive | auto | paired | coach | escalate"),
    embedder: str | None = typer.Option(None, "--embedder", help="embedder of a new memory store (default minilm)"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", "-o", help="run folder: episodes.jsonl, results.json, plots, checkpoints"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted run in --out"),
    workers: int = typer.Option(1, "--workers", min=1, max=256, help="episodes in flight at once (LLM calls overlap their waits)"),
    ray: str | None = typer.Option(None, "--ray", help="run the --workers on Ray actors: auto (a running cluster, else a local Ray) or a cluster ADDRESS"),
) -> None:
    """Run agents on the investigation benchmark, learning into memory between tasks."""
    from atlas.llm.meter import Meter
    from atlas.runner import RunSpec, RunStopped, read_records, run_episodes
    from benchmarks.investigation.arms import inputs_for
    from benchmarks.investigation.database import open_database
    from benchmarks.investigation.episodes import select_questions, world_paths
    from benchmarks.investigation.procedural import SCOPE_TAG
    from benchmarks.investigation.question_files import read_questions
    from benchmarks.reports import plot_arms, plot_lane_mix

    settings = state(ctx).settings
    if lane not in LANE_CHOICES:
        raise typer.BadParameter(f"unknown lane {lane!r}; choose one of {', '.join(LANE_CHOICES)}", param_hint="--lane")
    if split not in (None, "train", "test"):
        raise typer.BadParameter(f"unknown split {split!r}; choose train or test", param_hint="--split")
    db_path, questions_path = world_paths(world)
    chosen = select_questions(read_questions(questions_path), split=split, incidents=incident or None, limit=episodes, seed=seed)
    meter = Meter()
    student_agent, teacher_agent = make_agents(agents, student, teacher, settings, meter)
    store = None
    if not no_memory:
        target = memory or settings.home / "memory.sqlite"
        store = open_memory(target, settings, embedder, create=learn)
    spec = RunSpec(out.name or "run", lane=lane, learn=learn and store is not None, memory=store, scope=(SCOPE_TAG,), seed=seed, resume=resume,
                   workers=workers, ray=ray_workers(ray, workers, agents, student, teacher, settings, db_path, questions_path, store, (student_agent, teacher_agent)))
    spec.extra = {"world": str(world), "agents": agents, "student": student_agent.name, "teacher": teacher_agent.name, "questions": len(chosen)}
    started = time.perf_counter()
    try:
        with open_database(str(db_path)) as database, _progress_bar() as bar, StopOnCtrlC() as stop:
            task = bar.add_task("episodes", total=len(chosen), status="")

            def tick(record: dict) -> None:
                bar.update(task, advance=1, status=f"{record['lane']:<8} {'ok' if record['success'] else '--'}")

            results = run_episodes(inputs_for(chosen, database), student_agent, teacher_agent, settings.agents, spec, out, meter=meter, progress=tick, should_stop=stop)
    except RunStopped as stopped:
        raise _stopped(stopped.finished) from None
    except KeyboardInterrupt:
        raise _stopped(len(read_records(out / "episodes.jsonl"))) from None
    finally:
        if store is not None:
            store.close()
    records = read_records(out / "episodes.jsonl")
    plot_arms({spec.name: records}, out / "success_cost.png")
    plot_lane_mix(records, out / "lane_mix.png")
    _print_summary(results, time.perf_counter() - started, out)
    _fail_if_all_model_errors(results)


def ray_workers(address: str | None, actors: int, agents: str, student: str, teacher: str, settings: AtlasSettings, db_path: Path,
                questions_path: Path, store: Any, driver_agents: tuple[Any, Any]):
    """The Ray side of a run (None without --ray): each actor builds its own agents, memory and database
    (taking the driver's agents' model capabilities instead of probing the models again)."""
    if address is None:
        return None
    from atlas.cli.workers import WorkerRecipe, decided_capabilities
    from atlas.runner import RayWorkers

    recipe = WorkerRecipe(agents=agents, student=student, teacher=teacher, settings=settings, world_db=str(db_path),
                          questions=str(questions_path), memory=store.target if store is not None else None,
                          capabilities=decided_capabilities(*driver_agents))
    return RayWorkers(address=address, actors=actors, recipe=recipe)


def _fail_if_all_model_errors(results: dict) -> None:
    failed, total = results.get("model_errors", 0), results.get("episodes", 0)
    if failed:
        err_console.print(f"[yellow]{failed} of {total} episodes failed on a model error[/] and taught nothing (see episodes.jsonl)", highlight=False)
    if total and failed == total:
        err_console.print("[red]error:[/] every episode failed on a model error; check the endpoint (`atlas doctor`)", highlight=False)
        raise typer.Exit(1)


def _print_summary(results: dict, seconds: float, out: Path) -> None:
    table = Table(title=f"{results['episodes']} episodes in {seconds:.1f} s")
    for column in ("phase", "success", "mean reward", "cost/task ($)", "queries/task", "tokens/task", "lanes"):
        table.add_column(column)
    rows = [("all", results), *((name, results["phases"][name]) for name in ("first", "middle", "last"))]
    for name, figures in rows:
        lanes = ", ".join(f"{k} {v:.0%}" for k, v in figures["lane_mix"].items())
        table.add_row(name, f"{figures['success_rate']:.3f}", f"{figures['mean_reward']:.3f}", f"{figures['cost_per_task']:.4f}", f"{figures['queries_per_task']:.1f}", f"{figures['tokens_per_task']:.0f}", lanes)
    console.print(table)
    if results.get("judge_agreement") is not None:
        console.print(f"teacher judgments agreed with the grader on {results['judge_agreement']:.1%} of {results['judged']} judged episodes")
    for role, how in results.get("protocol", {}).items():
        console.print(f"{role}: {escape(str(how['model']))} spoken to in {how['mode']} mode ({how['decided_by']})", highlight=False)
    console.print(f"wrote {escape(str(out))}/episodes.jsonl, results.json, success_cost.png, lane_mix.png")


def bench_atlas_command(
    ctx: typer.Context,
    world: Path = typer.Option(..., "--world", help="a folder written by `atlas bench soc generate`"),
    agents: str = typer.Option("procedural", "--agents", help="procedural | llm"),
    student: str = typer.Option("local", "--student", help="student model for --agents llm"),
    teacher: str = typer.Option("local", "--teacher", help="teacher model for --agents llm"),
    episodes: int | None = typer.Option(None, "--episodes", min=1, help="at most this many training questions per arm"),
    holdout: int | None = typer.Option(None, "--holdout", help="incident held out for the transfer arms (default: the last)"),
    memory: Path | None = typer.Option(None, "--memory", help="where the atlas arm learns (default: OUT/atlas/memory.sqlite)"),
    embedder: str | None = typer.Option(None, "--embedder", help="embedder of the new memory (default minilm)"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for the arms, results.json, report.md and plots"),
    resume: bool = typer.Option(False, "--resume", help="continue an interrupted bench in --out"),
    loto_questions: int | None = typer.Option(None, "--loto-questions", min=1, help="at most this many questions per held-out attack template"),
    workers: int = typer.Option(1, "--workers", min=1, max=256, help="episodes in flight at once within each arm"),
) -> None:
    """The arms on the same questions (student_only, teacher_only, atlas_no_memory, atlas, transfer) and leave-one-template-out."""
    if agents == "llm" and episodes is None:
        episodes = LLM_BENCH_EPISODES
        err_console.print(f"--agents llm: {episodes} training questions per arm (give --episodes N for more)", highlight=False)
    results = run_bench(state(ctx), world, agents, student, teacher, episodes, holdout, memory, embedder, seed, out, resume, loto_questions=loto_questions, workers=workers)
    print_arms(results, out)


def run_bench(cli: CliState, world: Path, agents: str, student: str, teacher: str, episodes: int | None, holdout: int | None,
              memory: Path | None, embedder: str | None, seed: int, out: Path, resume: bool,
              stop_hint: str = "run the same command with --resume to continue", arms: tuple[str, ...] | None = None,
              loto_questions: int | None = None, workers: int = 1) -> dict:
    from atlas.llm.meter import Meter
    from benchmarks.investigation.arms import ARMS, run_arms
    from memory.embed import make_embedder

    settings = cli.settings
    meter = Meter()
    student_agent, teacher_agent = make_agents(agents, student, teacher, settings, meter)
    from atlas.runner import RunStopped

    counts: dict[str, int] = {}
    try:
        with _progress_bar() as bar, StopOnCtrlC() as stop:
            tasks: dict[str, Any] = {}

            def tick(arm: str, record: dict) -> None:
                if arm not in tasks:
                    tasks[arm] = bar.add_task(arm, total=None, status="")
                counts[arm] = counts.get(arm, 0) + 1
                bar.update(tasks[arm], completed=counts[arm], status=f"{record['lane']:<8}")

            embedders: dict[str, Any] = {}  # one embedder for every store of the bench (loading one costs seconds)

            def open_store(path: Path):
                spec = embedder or "minilm"
                if spec not in embedders:
                    embedders[spec] = make_embedder(spec)
                return open_memory(path, settings, embedders[spec])

            return run_arms(
                world, out, student_agent, teacher_agent, settings.agents, open_memory=open_store,
                seed=seed, episodes=episodes, holdout=holdout, meter=meter, resume=resume, progress=tick, memory_path=memory,
                should_stop=stop, arms=arms or ARMS, loto_questions=loto_questions, workers=workers,
            )
    except (RunStopped, KeyboardInterrupt):
        raise _stopped(sum(counts.values()), stop_hint) from None
    except ValueError as error:
        raise AtlasError(str(error)) from None


SHORT_ARM = {"atlas_frozen_transfer": "frozen_xfer", "student_only_transfer": "student_xfer"}
TARGET_LABELS = {
    "last_third_success_within_1pt_of_teacher": "last third: success >= teacher's - 1 pt",
    "last_third_queries_at_most_40pct_of_teacher": "last third: <= 40% of teacher's queries/task",
    "success_rises_5_points": "success rises >= 5 pts, first third to last",
    "leave_one_template_out_beats_student_by_20_points": "held-out templates: memory >= alone + 20 pts",
    "unseen_pairs_student_solves_half": "unseen pairs: student solves >= 50%, > alone",
    "transfer_beats_student": "held-out incident: memory beats alone",
}


def _target_figures(name: str, check: dict) -> str:
    if name == "last_third_queries_at_most_40pct_of_teacher":
        return f"{check['ratio']:.0%}" if check["ratio"] is not None else "n/a"
    numbers = [v for k, v in check.items() if isinstance(v, float)]
    return " vs ".join(f"{v:.3f}" for v in numbers[:2])


def print_arms(results: dict, out: Path) -> None:
    """Arms, held-out templates and targets, legible in an 80-column terminal; cost in queries first."""
    table = Table(title=f"arms: {results['training_questions']} training questions, {results['seconds']:.0f} s", box=None, padding=(0, 1))
    for column in ("arm", "n", "succ", "q/task", "last succ", "last q", "$/task", "a/p/c/e %"):
        table.add_column(column, no_wrap=True, justify="left" if column in ("arm", "a/p/c/e %") else "right")
    for name, arm in results["arms"].items():
        last = arm["phases"]["last"]
        lanes = "/".join(f"{100 * arm['lane_mix'].get(k, 0):.0f}" for k in ("auto", "paired", "coach", "escalate"))
        table.add_row(SHORT_ARM.get(name, name), str(arm["episodes"]), f"{arm['success_rate']:.3f}", f"{arm['queries_per_task']:.1f}",
                      f"{last['success_rate']:.3f}", f"{last['queries_per_task']:.1f}", f"{arm['cost_per_task']:.4f}", lanes)
    console.print(table)
    loto = results["leave_one_template_out"]
    if loto["folds"]:
        folds = Table(title="held-out attack templates (frozen student)", box=None, padding=(0, 1))
        for column in ("template", "skills", "n", "memory", "alone", "by hops: memory/alone"):
            folds.add_column(column, no_wrap=True, justify="left" if column in ("template", "by hops: memory/alone") else "right")
        for template, fold in loto["folds"].items():
            hops = " ".join(f"{fold['memory']['by_difficulty'][d]['success_rate']:.1f}/{fold['student_only']['by_difficulty'].get(d, {}).get('success_rate', 0):.1f}"
                            for d in sorted(fold["memory"]["by_difficulty"]))
            folds.add_row(template, str(fold["skills"]), str(fold["memory"]["episodes"]), f"{fold['memory']['success_rate']:.3f}", f"{fold['student_only']['success_rate']:.3f}", hops)
        folds.add_row("mean", "", "", f"{loto['memory_success']:.3f}", f"{loto['student_only_success']:.3f}", "")
        console.print(folds)
    pairs = results["pairs"]
    console.print(f"unseen (start, end) pairs: {pairs['episodes']['unseen']} episodes, {pairs['solved_share']['unseen']:.0%} of the solved ones", highlight=False)
    for name, check in results["targets"].items():
        mark = "[green]met[/]    " if check["met"] else "[red]not met[/]"
        console.print(f"{mark} {TARGET_LABELS.get(name, name)} ({_target_figures(name, check)})", highlight=False)
    console.print(f"wrote {escape(str(out))}/results.json, report.md, success_cost.png, lane_mix.png, transfer.png", highlight=False)


def demo_command(ctx: typer.Context, seed: int = typer.Option(0, "--seed")) -> None:
    """The main job: a small cached world, the five arms with procedural agents, plots, learned memory."""
    from benchmarks.investigation.generate import MANIFEST_FILE, generate

    cli = state(ctx)
    home = cli.settings.home
    world = home / "worlds" / f"small-seed{seed}-{DEMO_INCIDENTS}"
    started = time.perf_counter()
    if not (world / MANIFEST_FILE).is_file():
        console.print(f"generating a small world ({DEMO_INCIDENTS} incidents) into {escape(str(world))} ...")
        generate(world, seed, "small", incidents=DEMO_INCIDENTS)
    else:
        console.print(f"using the cached world {escape(str(world))}")
    out = home / "demo"
    if out.exists():
        shutil.rmtree(out)  # the demo's own output from a previous demo run
    default_store = home / "memory.sqlite"
    memory = default_store if not default_store.exists() else out / "memory.sqlite"
    results = run_bench(cli, world, "procedural", "local", "local", DEMO_EPISODES, None, memory, None, seed, out, False,
                        stop_hint="run `atlas demo` again to start over", arms=DEMO_ARMS, loto_questions=DEMO_LOTO_QUESTIONS)
    print_arms(results, out)
    hint = "" if memory == default_store else f" --store {memory}"
    console.print(f"learned memory: {escape(str(memory))} ({_count(memory)} pamphlets); see it with `atlas memory list{hint}`")
    console.print(f"demo finished in {time.perf_counter() - started:.0f} s")


def _count(path: Path) -> int:
    import sqlite3

    with sqlite3.connect(path) as connection:
        return int(connection.execute("SELECT count(*) FROM pamphlets WHERE deleted = 0").fetchone()[0])



def bench_standin_command(
    ctx: typer.Context,
    world: Path | None = typer.Option(None, "--world", help="a generated world (default: the demo's small world, generated once)"),
    episodes: int = typer.Option(30, "--episodes", min=1, help="questions to run"),
    seed: int = typer.Option(0, "--seed"),
    latency: float = typer.Option(0.0, "--latency", min=0.0, help="seconds the fake server waits per call"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for results.json, report.md, the run and its memory"),
) -> None:
    """The LLM agents' whole loop over HTTP against a capable stand-in model: budgets, calls, tokens, learning."""
    from benchmarks.investigation.standin_bench import STUDENT_MODEL, TEACHER_MODEL, run_standin_bench

    settings = state(ctx).settings
    if out.exists() and any(out.iterdir()):
        raise AtlasError(f"{out} is not empty; choose another --out")
    world = world or _small_world(settings.home, seed)
    with _progress_bar() as bar:
        task = bar.add_task("episodes", total=episodes, status="")
        results = run_standin_bench(world, out, settings, episodes=episodes, seed=seed, latency_s=latency,
                                    progress=lambda r: bar.update(task, completed=r["index"] + 1, status=f"{r['lane']:<8} {'ok' if r['success'] else '--'}"))
    table = Table(title=f"stand-in model over HTTP: {results['episodes']} episodes in {results['seconds']} s", box=None)
    for column in ("prompt tokens", "student p50/max", "teacher p50/max"):
        table.add_column(column, no_wrap=True)
    for label, key in (("per call", "prompt_tokens_per_call"), ("per episode", "prompt_tokens_per_episode")):
        s, t = results[key][STUDENT_MODEL], results[key][TEACHER_MODEL]
        table.add_row(label, f"{s['p50']:.0f}/{s['max']:.0f}", f"{t['p50']:.0f}/{t['max']:.0f}")
    console.print(table)
    calls = results["llm_calls_per_episode"]
    console.print(f"LLM calls per episode p50 {calls['p50']:.0f}, max {calls['max']:.0f} (cap {results['llm_call_cap']}); judge agreement {results['judge_agreement']}")
    console.print("success by third: " + ", ".join(f"{k} {v['success_rate']:.3f}" for k, v in results["phases"].items()))
    for name, met in results["targets"].items():
        console.print(f"{'[green]met[/]' if met else '[yellow]n/a[/]' if met is None else '[red]not met[/]'}  {name}", highlight=False)
    console.print(f"wrote {escape(str(out))}/results.json, report.md")


def bench_scale_command(
    ctx: typer.Context,
    world: Path | None = typer.Option(None, "--world", help="a generated world (default: the demo's small world, generated once)"),
    episodes: int = typer.Option(64, "--episodes", min=1, help="questions per configuration"),
    latency: float = typer.Option(0.3, "--latency", min=0.0, help="seconds the fake server waits per call"),
    workers: str = typer.Option("1,4,16", "--workers", help="local worker counts to compare (the first is the baseline)"),
    ray_actors: int = typer.Option(4, "--ray-actors", min=0, help="Ray actors for the Ray configuration (0: none)"),
    answerer_items: int = typer.Option(64, "--answerer-items", min=0, help="items for the live answerer's throughput (0: skip)"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", "-o", help="folder for results.json, report.md and each configuration's run"),
) -> None:
    """Episodes at once (threads, Ray) and the live answerer's concurrency against a latency-bound endpoint."""
    from benchmarks.scale_bench import run_scale_bench

    settings = state(ctx).settings
    try:
        counts = [int(part) for part in workers.split(",") if part.strip()]
    except ValueError:
        raise typer.BadParameter(f"{workers!r} is not a comma-separated list of numbers, e.g. 1,4,16", param_hint="--workers") from None
    if not counts or min(counts) < 1:
        raise typer.BadParameter("give at least one worker count, each at least 1", param_hint="--workers")
    if out.exists() and any(out.iterdir()):
        raise AtlasError(f"{out} is not empty; choose another --out")
    world = world or _small_world(settings.home, seed)
    with _progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def tick(name: str, record: dict) -> None:
            tasks.setdefault(name, bar.add_task(name, total=episodes, status=""))
            bar.update(tasks[name], advance=1, status=f"{record['lane']:<8} {'ok' if record['success'] else '--'}")

        results = run_scale_bench(world, out, settings, episodes=episodes, latency_s=latency, workers=counts, ray_actors=ray_actors or None,
                                  seed=seed, answerer_items=answerer_items, progress=tick)
    table = Table(title=f"{results['episodes']} episodes at {latency * 1000:.0f} ms per call", box=None)
    for column in ("configuration", "wall s", "startup s", "episodes/s", "speed-up", "success", "curve ok", "checks"):
        table.add_column(column, no_wrap=True)
    for name, c in results["configs"].items():
        curve = c["learning_curve_vs_sequential"]
        table.add_row(name, f"{c['seconds']}", f"{c['startup_s']}", f"{c['episodes_per_s']}", f"{c['speedup']}x", f"{c['success_rate']:.3f}",
                      "-" if curve is None else ("yes" if curve["met"] else "no"), "ok" if all(c["checks"].values()) else "FAILED")
    console.print(table)
    if results["answerer"]:
        a = results["answerer"]
        console.print(f"live answerer: {a['1']['items_per_s']} items/s at concurrency 1, {a['16']['items_per_s']} at 16 ({a['speedup']}x)")
    for name, met in results["targets"].items():
        console.print(f"{'[green]met[/]' if met else '[yellow]n/a[/]' if met is None else '[red]not met[/]'}  {name}", highlight=False)
    console.print(f"wrote {out}/results.json, report.md")


def _small_world(home: Path, seed: int) -> Path:
    from benchmarks.investigation.generate import MANIFEST_FILE, generate

    world = home / "worlds" / f"small-seed{seed}-{DEMO_INCIDENTS}"
    if not (world / MANIFEST_FILE).is_file():
        console.print(f"generating a small world ({DEMO_INCIDENTS} incidents) into {escape(str(world))} ...")
        generate(world, seed, "small", incidents=DEMO_INCIDENTS)
    return world


def bench_local_agent_command(
    ctx: typer.Context,
    world: Path | None = typer.Option(None, "--world", help="a generated world (default: the demo's small world)"),
    episodes: int = typer.Option(6, "--episodes", min=1),
    memory: Path | None = typer.Option(None, "--memory", help="a learned memory store for the with-memory arm (e.g. OUT/memory.sqlite of `bench standin`)"),
    seed: int = typer.Option(0, "--seed"),
    out: Path = typer.Option(..., "--out", "-o"),
) -> None:
    """The bundled local model as the LLM student, decoding under the action schema: valid actions, speed, success."""
    from benchmarks.investigation.local_agent_bench import run_local_agent_bench

    settings = state(ctx).settings
    if memory is not None and not memory.is_file():
        raise AtlasError(f"--memory {memory}: no such memory store")
    world = world or _small_world(settings.home, seed)
    with _progress_bar() as bar:
        tasks: dict[str, Any] = {}

        def tick(arm: str, record: dict) -> None:
            tasks.setdefault(arm, bar.add_task(arm, total=episodes, status=""))
            bar.update(tasks[arm], completed=record["index"] + 1, status="ok" if record["success"] else "--")

        results = run_local_agent_bench(world, out, settings, episodes=episodes, seed=seed, memory=memory, progress=tick)
    table = Table(title=f"{results['model']} as the LLM student ({results['decoding']})", box=None)
    for column in ("arm", "episodes", "success", "valid actions", "s/step", "queries/task"):
        table.add_column(column, no_wrap=True)
    for name, arm in results["arms"].items():
        rate = "n/a" if arm["valid_action_rate"] is None else f"{arm['valid_action_rate']:.1%}"
        table.add_row(name, str(arm["episodes"]), f"{arm['success_rate']:.3f}", rate, f"{arm['seconds_per_step']:.1f}", f"{arm['queries_per_task']:.1f}")
    console.print(table)
    console.print(f"wrote {escape(str(out))}/results.json")
