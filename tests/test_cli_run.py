"""`atlas run`, `atlas bench atlas` and `atlas demo` as a user drives them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atlas.cli.main import app
from atlas.runner import read_records
from benchmarks.investigation.generate import generate
from tests.test_cli import atlas_process

runner = CliRunner()


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runcli") / "world"
    generate(out, seed=2, size="small", incidents=10)
    return out


def test_run_writes_episodes_results_and_plots(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = runner.invoke(app, ["run", "--world", str(world), "--agents", "procedural", "--episodes", "25", "--memory", str(tmp_path / "m.sqlite"),
                                 "--embedder", "hash:64", "--lane", "adaptive", "--seed", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["episodes"] == 25 and set(results["phases"]) == {"first", "middle", "last"}
    assert len(read_records(out / "episodes.jsonl")) == 25
    assert (out / "success_cost.png").is_file() and (out / "lane_mix.png").is_file()
    listed = runner.invoke(app, ["memory", "list", "--store", str(tmp_path / "m.sqlite"), "--json"])
    assert listed.exit_code == 0 and json.loads(listed.stdout)


@pytest.mark.slow
def test_ctrl_c_then_resume(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    total = 150
    args = ["run", "--world", str(world), "--agents", "procedural", "--lane", "escalate", "--no-memory", "--episodes", str(total), "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "atlas.cli.main", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    episodes = out / "episodes.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not episodes.is_file() or len(episodes.read_text().splitlines()) < 5):
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "stopping after this episode" in stderr
    done_before = len(read_records(episodes))
    assert 5 <= done_before < total
    resumed = atlas_process(*args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    records = read_records(episodes)
    assert [r["index"] for r in records] == list(range(total))
    assert json.loads((out / "results.json").read_text())["episodes"] == total


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--frozen", "--memory", "{tmp}/absent.sqlite"], "no memory store at"),
        (["--memory", "{tmp}/built.sqlite", "--embedder", "hash:32"], "hash-64"),
        (["--lane", "boss"], "unknown lane 'boss'"),
        (["--agents", "wizard"], "unknown --agents 'wizard'"),
    ],
)
def test_bad_runs_are_clear_errors(world: Path, tmp_path: Path, extra: list[str], fragment: str) -> None:
    built = runner.invoke(app, ["memory", "add", "a note", "--store", str(tmp_path / "built.sqlite"), "--embedder", "hash:64"])
    assert built.exit_code == 0, built.output
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    result = atlas_process("run", "--world", str(world), "--episodes", "2", "--out", str(tmp_path / "o"), *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in " ".join(result.stderr.split()) and "Traceback" not in result.stderr


def test_missing_world_is_a_clear_error(tmp_path: Path) -> None:
    result = atlas_process("run", "--world", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "atlas bench soc generate" in result.stderr


@pytest.mark.slow
def test_bench_atlas_cli(world: Path, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    result = runner.invoke(app, ["bench", "atlas", "--world", str(world), "--agents", "procedural", "--episodes", "40", "--embedder", "hash:64", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert set(results["arms"]) >= {"student_only", "teacher_only", "atlas_no_memory", "atlas", "atlas_frozen_transfer", "student_only_transfer"}
    assert "targets" in results and (out / "report.md").read_text().startswith("# atlas bench")


@pytest.mark.slow
def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    env = {**os.environ, "ATLAS_HOME": str(tmp_path / "home")}
    env["COLUMNS"] = "80"
    result = subprocess.run([sys.executable, "-m", "atlas.cli.main", "demo"], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "learned memory" in result.stdout and max(len(line) for line in result.stdout.splitlines()) <= 80
    results = json.loads((tmp_path / "home" / "demo" / "results.json").read_text())
    for target in ("transfer_beats_student", "last_third_queries_at_most_40pct_of_teacher", "leave_one_template_out_beats_student_by_20_points",
                   "unseen_pairs_student_solves_half", "last_third_success_within_1pt_of_teacher"):
        assert results["targets"][target]["met"], target
    listed = subprocess.run([sys.executable, "-m", "atlas.cli.main", "memory", "list", "--json"], capture_output=True, text=True, env=env, timeout=120)
    assert listed.returncode == 0 and json.loads(listed.stdout)
