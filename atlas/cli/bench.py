"""`atlas bench soc ...`: the investigation benchmark (generate, validate, grade, inspect, show, load-db, export, query)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from atlas.cli.common import console, err_console, print_json, state, write_json

if TYPE_CHECKING:
    from atlas.llm.client import LLMClient
    from benchmarks.investigation.judge import AnswerJudge

bench_app = typer.Typer(help="Benchmarks: the synthetic security-operations investigation benchmark.", no_args_is_help=True)
soc_app = typer.Typer(help="Synthetic SOC world: log database, investigation questions, grader, SQL sandbox.", no_args_is_help=True)
bench_app.add_typer(soc_app, name="soc")

JsonOpt = typer.Option(False, "--json", help="machine-readable output")
STRICT_HELP = "fail on the first record that is not a usable question (default: skip it and list it)"
DB_HELP = "SQLAlchemy URL or SQLite file to query instead of DIR/world.db (e.g. mysql+pymysql://root@127.0.0.1:3306/test)"


def _warn_skipped(summary: dict) -> None:
    """A warning table of the records a question file could not use (on stderr, so --json stays clean)."""
    if not summary["skipped"]:
        return
    table = Table(title=f"{summary['skipped']} record(s) of {escape(summary['file'])} skipped", title_style="yellow")
    table.add_column("line", justify="right")
    table.add_column("reason")
    for record in summary["skipped_records"]:
        table.add_row(str(record["line"]), escape(record["reason"]))
    err_console.print(table)


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err_console, transient=True)


@soc_app.command()
def generate(
    out: Path = typer.Option(..., "--out", "-o", help="folder for world.db, questions.jsonl and manifest.json"),
    seed: int = typer.Option(0, "--seed", help="same seed, byte-identical output"),
    incidents: int | None = typer.Option(None, "--incidents", min=1, max=200, help="attack incidents (default: 5 small, 10 default, 20 large)"),
    size: str = typer.Option("default", "--size", help="small | default | large"),
    as_json: bool = JsonOpt,
) -> None:
    """Generate a seeded world: logs with incidents, questions proved answerable, and a manifest."""
    from benchmarks.investigation.generate import generate as run_generate
    from benchmarks.investigation.world import SIZES

    if size not in SIZES:
        raise typer.BadParameter(f"unknown size {size!r}; choose one of {', '.join(SIZES)}", param_hint="--size")
    steps = ["world built"] + [f"table {t}" for t in _table_names()] + ["questions proved answerable"]
    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("generating", total=len(steps))
        manifest = run_generate(out, seed, size, incidents, progress=lambda step: bar.update(task, advance=1, description=step))  # type: ignore[arg-type]
    seconds = time.perf_counter() - started
    if as_json:
        print_json({**manifest, "seconds": round(seconds, 2), "out": str(out)})
        return
    console.print(f"[green]world written[/] to {escape(str(out))} in {seconds:.1f} s: {manifest['total_rows']:,} rows in {manifest['tables']} tables, "
                  f"{len(manifest['incidents'])} attack incidents, {manifest['questions']['train']} train / {manifest['questions']['test']} test questions")
    console.print(f"difficulty (test): {manifest['difficulty_counts']['test']}; dropped: {manifest['dropped']}")


def _table_names() -> list[str]:
    from benchmarks.investigation.tables import ALL_TABLES

    return [t.name for t in ALL_TABLES]


@soc_app.command()
def validate(
    folder: Path = typer.Argument(..., help="a folder written by `atlas bench soc generate`"),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
    questions: Path | None = typer.Option(None, "--questions", help="question file (ours or ExCyTIn format; default DIR/questions.jsonl)"),
    out: Path | None = typer.Option(None, "--out", help="results file (default DIR/results.json)"),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
    as_json: bool = JsonOpt,
) -> None:
    """Run the reference solver on every question (from its context alone) and report the answerable fraction."""
    from benchmarks.investigation.validate import validate as run_validate

    with _progress() as bar:
        task = bar.add_task("solving", total=None)
        results = run_validate(folder, db, questions, progress=lambda n, total: bar.update(task, completed=n, total=total), strict=strict)
    _warn_skipped(results["questions_file"])
    target = out or folder / "results.json"
    write_json(target, results)
    if as_json:
        print_json(results)
        return
    colour = "green" if results["answerable_fraction"] == 1.0 else "yellow"
    console.print(f"[{colour}]answerable {results['answerable']}/{results['checked']}[/] ({results['answerable_fraction']:.3f}) on {results['database']} in {results['seconds']:.1f} s; wrote {target}")
    for failure in results["failures"][:10]:
        console.print(f"  {failure['id']}: {failure['reason']}")


@soc_app.command()
def grade(
    ctx: typer.Context,
    questions: Path = typer.Option(..., "--questions", help="question file (ours or ExCyTIn format)"),
    answers: Path = typer.Option(..., "--answers", help='JSONL: {"id": ..., "answer": ..., "observations": [...]} per line'),
    out: Path | None = typer.Option(None, "--out", help="write per-question grades and the summary here (JSON)"),
    decay: float = typer.Option(0.4, "--decay", help="partial credit factor per solution step back from the last"),
    judge: str | None = typer.Option(None, "--judge", help="also judge final answers with this model, as ExCyTIn does (e.g. openai:gpt-4o-mini); off by default"),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
    as_json: bool = JsonOpt,
) -> None:
    """Score a file of answers: normalised match (or an LLM judge's verdict), else decayed partial credit for observed solution steps."""
    from benchmarks.investigation.errors import QuestionFileError
    from benchmarks.investigation.grader import Grader
    from benchmarks.investigation.question_files import read_answers
    from benchmarks.investigation.validate import load_any_questions

    loaded = load_any_questions(questions, strict)
    by_id = {q.id: q for q in loaded.questions}
    submitted_answers = read_answers(answers)
    for submitted in submitted_answers:  # every id is checked before any judge call is paid for
        if submitted.id not in by_id:
            skipped = f" ({len(loaded.skipped)} record(s) of it were skipped)" if loaded.skipped else ""
            raise QuestionFileError(f"{answers}: answer for unknown question id {submitted.id!r} (not in {questions}{skipped})")
    grader = Grader(decay=decay, judge=_make_judge(ctx, judge) if judge else None)
    graded = []
    with _progress() as bar:
        task = bar.add_task("grading", total=len(submitted_answers))
        for submitted in submitted_answers:
            question = by_id[submitted.id]
            assessment = grader.assess(question, submitted.answer, submitted.observations)
            row = {"id": submitted.id, "difficulty": question.difficulty, "answer_type": question.answer_type,
                   **assessment.grade.to_dict(), "normalised_match": assessment.matched}  # fmt: skip
            if grader.judge is not None:
                row["judge"] = assessment.judgement.to_dict() if assessment.judgement else None
            graded.append(row)
            bar.update(task, advance=1)
    summary = _grade_summary(graded, len(by_id)) | {"questions_file": loaded.summary()}
    if grader.judge is not None:
        summary["judge"] = _judge_summary(graded, grader.judge.llm)
    _warn_skipped(loaded.summary())
    if out:
        write_json(out, {"summary": summary, "grades": graded})
    if as_json:
        print_json({"summary": summary, "grades": graded})
        return
    table = Table(title=f"{summary['answered']} answers of {summary['questions']} questions")
    for column in ("difficulty", "answers", "success rate", "mean reward"):
        table.add_column(column, justify="right")
    for difficulty, row in summary["by_difficulty"].items():
        table.add_row(difficulty, str(row["answers"]), f"{row['success_rate']:.3f}", f"{row['mean_reward']:.3f}")
    table.add_row("all", str(summary["answered"]), f"{summary['success_rate']:.3f}", f"{summary['mean_reward']:.3f}")
    console.print(table)
    if "judge" in summary:
        j = summary["judge"]
        console.print(f"judge {escape(j['model'])}: {j['judged']} judged, {j['no_verdict']} without a verdict (graded by the match); "
                      f"agrees with the normalised match on {j['agree']}/{j['judged']} ({j['agreement_rate']:.3f}); "
                      f"{j['calls']} calls, {j['tokens']:,} tokens, ${j['cost_usd']:.4f}", highlight=False)


def _make_judge(ctx: typer.Context, spec: str) -> AnswerJudge:
    from atlas.llm import make_llm
    from benchmarks.investigation.judge import AnswerJudge

    return AnswerJudge(make_llm(spec, state(ctx).settings))


def _judge_summary(graded: list[dict[str, Any]], llm: LLMClient) -> dict[str, Any]:
    """How often the judge and the normalised match agree, and what the judge cost (from its meter)."""
    verdicts = [(r["judge"]["verdict"], r["normalised_match"]) for r in graded if r.get("judge")]
    judged = [(v, m) for v, m in verdicts if v is not None]
    agree = sum(v == m for v, m in judged)
    totals = llm.meter.totals()
    return {
        "model": llm.model,
        "judged": len(judged),
        "no_verdict": len(verdicts) - len(judged),
        "agree": agree,
        "agreement_rate": agree / len(judged) if judged else 0.0,
        "judge_only": sum(v and not m for v, m in judged),
        "match_only": sum(m and not v for v, m in judged),
        "calls": totals.calls,
        "tokens": totals.total_tokens,
        "cost_usd": totals.cost_usd,
    }


def _grade_summary(graded: list[dict], questions: int) -> dict:
    def stats(rows: list[dict]) -> dict:
        n = len(rows)
        return {
            "answers": n,
            "success_rate": sum(r["success"] for r in rows) / n if n else 0.0,
            "mean_reward": sum(r["reward"] for r in rows) / n if n else 0.0,
        }

    difficulties = sorted({r["difficulty"] for r in graded})
    overall = stats(graded)
    return {
        "questions": questions,
        "answered": overall["answers"],
        "success_rate": overall["success_rate"],
        "mean_reward": overall["mean_reward"],
        "by_difficulty": {str(d): stats([r for r in graded if r["difficulty"] == d]) for d in difficulties},
    }


@soc_app.command()
def inspect(
    files: list[Path] = typer.Argument(..., help="question files or folders of them (*.json, *.jsonl), ours or ExCyTIn-Bench's"),
    strict: bool = typer.Option(False, "--strict", help=STRICT_HELP),
    as_json: bool = JsonOpt,
) -> None:
    """Per question file: questions loaded and skipped (with line and reason), inferred answer types, and how
    many answers grade 1.0 against themselves and common surface variants of themselves."""
    from benchmarks.investigation.answer_variants import self_consistency
    from benchmarks.investigation.errors import QuestionFileError
    from benchmarks.investigation.validate import load_any_questions

    paths = [p for f in files for p in (sorted([*f.glob("*.json"), *f.glob("*.jsonl")]) if f.is_dir() else [f])]
    if not paths:
        raise QuestionFileError(f"no question files (*.json, *.jsonl) in {', '.join(map(str, files))}")
    reports, everything = [], []
    for path in paths:
        loaded = load_any_questions(path, strict)
        everything.extend(loaded.questions)
        reports.append(loaded.summary() | {"answer_types": dict(Counter(q.answer_type for q in loaded.questions).most_common())})
    consistency = self_consistency(everything)
    if as_json:
        print_json({"files": reports, "self_consistency": consistency})
        return
    table = Table(title=f"{len(everything)} questions in {len(reports)} file(s)")
    table.add_column("file", overflow="fold")
    for column in ("format", "loaded", "skipped", "answer types"):
        table.add_column(column, justify="right" if column in ("loaded", "skipped") else "left")
    for report in reports:
        types = ", ".join(f"{name} {count}" for name, count in report["answer_types"].items())
        table.add_row(escape(Path(report["file"]).name), report["format"], str(report["loaded"]), str(report["skipped"]), types)
    console.print(table)
    for report in reports:
        _warn_skipped(report)
    variants = Table(title="grader self-consistency: answers that grade 1.0 against themselves written another way")
    for column in ("variant", "questions", "graded 1.0", "share"):
        variants.add_column(column, justify="left" if column == "variant" else "right")
    for name, row in consistency.items():
        variants.add_row(escape(name), str(row["questions"]), str(row["graded_1"]), f"{row['share']:.3f}")
    console.print(variants)


@soc_app.command()
def show(
    folder: Path = typer.Argument(..., help="a folder written by `atlas bench soc generate`"),
    samples: int = typer.Option(3, "--samples", min=0, help="sample questions to print"),
    as_json: bool = JsonOpt,
) -> None:
    """Print the tables, row counts, incidents and a few sample questions of a world."""
    from benchmarks.investigation.errors import WorldError
    from benchmarks.investigation.question_files import read_questions

    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise WorldError(f"{folder}: no manifest.json; generate a world with `atlas bench soc generate --out {folder}`")
    manifest = json.loads(manifest_path.read_text())
    questions = read_questions(folder / "questions.jsonl")
    spread = sorted(questions, key=lambda q: (q.split != "test", q.id))
    by_difficulty: dict[int, list] = {}
    for q in spread:
        by_difficulty.setdefault(q.difficulty, []).append(q)
    ordered = [group[n] for n in range(max(map(len, by_difficulty.values()), default=0)) for group in by_difficulty.values() if n < len(group)]
    picked = [q.task().model_dump() | {"difficulty": q.difficulty, "split": q.split} for q in ordered[:samples]]
    if as_json:
        print_json({"manifest": manifest, "samples": picked})
        return
    tables = Table(title=f"world seed {manifest['seed']} ({manifest['size']}): {manifest['total_rows']:,} rows")
    tables.add_column("table")
    tables.add_column("rows", justify="right")
    for name, count in manifest["rows"].items():
        tables.add_row(name, f"{count:,}")
    console.print(tables)
    incidents = Table(title="attack incidents")
    for column in ("number", "template", "alerts", "train", "test"):
        incidents.add_column(column)
    for incident in manifest["incidents"]:
        incidents.add_row(str(incident["number"]), incident["template"], str(incident["alerts"]), str(incident["train_questions"]), str(incident["test_questions"]))
    console.print(incidents)
    counts = Counter(q.answer_type for q in questions)
    console.print(f"questions: {manifest['questions']}; difficulty: {manifest['difficulty_counts']['all']}; answer types: {dict(counts.most_common())}")
    for sample in picked:
        console.print(f"\n[bold]{sample['id']}[/] (difficulty {sample['difficulty']}, {sample['split']})", highlight=False)
        console.print(sample["context"], highlight=False, markup=False)
        console.print(sample["question"], highlight=False, markup=False, style="cyan")


@soc_app.command("load-db")
def load_db(
    folder: Path = typer.Argument(..., help="a folder written by `atlas bench soc generate`"),
    url: str = typer.Option(..., "--url", help="SQLAlchemy URL of the target database"),
    replace: bool = typer.Option(False, "--replace", help="drop and reload tables that already exist there"),
) -> None:
    """Copy a world's tables into a SQL server (MySQL/MariaDB as ExCyTIn uses, or PostgreSQL)."""
    from benchmarks.investigation.server_copy import copy_world
    from benchmarks.investigation.tables import ALL_TABLES

    started = time.perf_counter()
    with _progress() as bar:
        task = bar.add_task("copying", total=len(ALL_TABLES))
        counts = copy_world(folder / "world.db", url, replace, progress=lambda table, _n: bar.update(task, advance=1, description=table))
    console.print(f"[green]copied[/] {sum(counts.values()):,} rows in {len(counts)} tables in {time.perf_counter() - started:.1f} s")


@soc_app.command("export-excytin")
def export_excytin(
    folder: Path = typer.Argument(..., help="a folder written by `atlas bench soc generate`"),
    out: Path = typer.Option(..., "--out", "-o", help="question file to write (a JSON list, ExCyTIn-Bench format)"),
    split: str | None = typer.Option(None, "--split", help="train | test (default: all)"),
    incident: int | None = typer.Option(None, "--incident", help="only this incident"),
) -> None:
    """Write the questions in ExCyTIn-Bench's question-file format."""
    from benchmarks.investigation.excytin import write_excytin_questions
    from benchmarks.investigation.question_files import read_questions

    if split not in (None, "train", "test"):
        raise typer.BadParameter(f"unknown split {split!r}; choose train or test", param_hint="--split")
    chosen = [q for q in read_questions(folder / "questions.jsonl") if (split is None or q.split == split) and (incident is None or q.incident == incident)]
    count = write_excytin_questions(chosen, out)
    console.print(f"wrote {count} questions to {escape(str(out))}")


@soc_app.command()
def query(
    folder: Path = typer.Argument(..., help="a world folder (or use --db)"),
    sql: str = typer.Argument(..., help="one read-only SQL statement"),
    db: str | None = typer.Option(None, "--db", help=DB_HELP),
) -> None:
    """Run one statement through the sandbox and print the observation an agent would see."""
    from benchmarks.investigation.database import open_database
    from benchmarks.investigation.models import Question
    from benchmarks.investigation.sandbox import InvestigationEnv

    with open_database(db or str(folder / "world.db")) as database:
        env = InvestigationEnv(database)
        env.reset(Question(id="manual", incident=0, difficulty=0, context="manual query", question="manual query", answer="-"))
        result = env.step(sql)
    console.print(result.observation, highlight=False, markup=False, soft_wrap=True)
    if result.status != "ok":
        raise typer.Exit(1)
