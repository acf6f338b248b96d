"""`atlas cl run`: the files it writes, the real MiniLM text scenario with its cache, and bad arguments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from atlas.cli.main import app
from benchmarks.continual.scenarios import ScenarioError
from tests.test_cli import atlas_process

runner = CliRunner()
KEYS = {"acc", "bwt", "fwt", "forgetting", "time_s", "acc_matrix"}


def test_run_writes_results_table_traces_and_heatmaps(tmp_path: Path) -> None:
    out = tmp_path / "cl"
    result = runner.invoke(app, ["cl", "run", "--scenario", "split-digits", "--protocol", "class-il", "--learners", "naive,ncm,replay",
                                 "--seeds", "2", "--epochs", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert (results["scenario"], results["protocol"], results["seeds"]) == ("split-digits", "class-il", [0, 1])
    assert list(results["learners"]) == ["naive", "ncm", "replay"]
    for entry in results["learners"].values():
        assert KEYS <= set(entry) and KEYS <= set(entry["std"])
        assert len(entry["acc_matrix"]) == 5 and all(len(row) == 5 for row in entry["acc_matrix"])
        assert [row["seed"] for row in entry["per_seed"]] == [0, 1]
        assert entry["acc"] == pytest.approx(sum(row["acc"] for row in entry["per_seed"]) / 2)
    assert results["learners"]["ncm"]["acc"] > results["learners"]["naive"]["acc"] + 0.4
    assert results["learners"]["ncm"]["fwt"] is None and "class-IL" in results["notes"]["fwt"]  # see README
    assert "| ncm | gradient-free |" in (out / "report.md").read_text()
    assert len((out / "runs.jsonl").read_text().splitlines()) == 6
    for name in ("acc_matrices.png", "acc_matrix-naive.png", "acc_matrix-ncm.png", "acc_matrix-replay.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert "ncm" in result.stdout and "wrote" in result.stdout


def test_online_single_pass_on_permuted_digits(tmp_path: Path) -> None:
    out = tmp_path / "perm"
    result = runner.invoke(app, ["cl", "run", "--scenario", "permuted-digits", "--tasks", "3", "--learners", "ewc,joint",
                                 "--seeds", "1", "--online", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert results["online"] is True and results["epochs"] == 1 and results["batch_size"] == 10
    assert results["protocol"] == "domain-il" and len(results["tasks"]) == 3
    assert isinstance(results["learners"]["ewc"]["fwt"], float) and results["notes"] == {}


@pytest.mark.slow
def test_text_domains_on_real_minilm_vectors_are_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATLAS_HOME", str(tmp_path / "home"))
    args = ["cl", "run", "--scenario", "text-domains", "--learners", "ncm,ridge", "--seeds", "1", "--per-domain", "24"]
    first = runner.invoke(app, [*args, "--out", str(tmp_path / "a")])
    assert first.exit_code == 0, first.output
    cached = sorted((tmp_path / "home" / "cache" / "continual").glob("*.npy"))
    assert [p.name.split("-")[0] for p in cached] == ["imdb", "rotten_tomatoes"]
    assert all("all-MiniLM-L6-v2-384" in p.name for p in cached)
    second = runner.invoke(app, [*args, "--out", str(tmp_path / "b")])
    assert second.exit_code == 0, second.output
    a, b = (json.loads((tmp_path / d / "results.json").read_text()) for d in ("a", "b"))
    assert a["tasks"] == ["imdb", "rotten_tomatoes"] and a["train_sizes"] == [16, 16]
    assert a["learners"]["ncm"]["acc_matrix"] == b["learners"]["ncm"]["acc_matrix"]


@pytest.mark.parametrize(("args", "message"), [
    (["--learners", "naive,gem"], "unknown learner(s) 'gem'; choose from naive, ewc, si, lwf, replay, agem, ncm, knn, ridge, joint"),
    (["--scenario", "split-mnist"], "unknown scenario 'split-mnist'; choose one of split-digits, permuted-digits, text-domains"),
    (["--scenario", "permuted-digits", "--protocol", "class-il"], "does not support protocol 'class-il'; it supports domain-il"),
    (["--protocol", "domain-il"], "scenario split-digits does not support protocol 'domain-il'; it supports class-il, task-il"),
    (["--tasks", "4"], "applies only to permuted-digits"),
    (["--scenario", "permuted-digits", "--tasks", "1"], "at least 2 tasks"),
    (["--per-domain", "100"], "applies only to text-domains"),
    (["--seeds", "0"], "--seeds must be at least 1"),
    (["--learners", "all,ncm"], "use all on its own"),
])
def test_bad_arguments_name_the_valid_choices(tmp_path: Path, args: list[str], message: str) -> None:
    result = runner.invoke(app, ["cl", "run", *args, "--out", str(tmp_path / "x")])
    assert isinstance(result.exception, ScenarioError) and message in str(result.exception)
    assert not (tmp_path / "x").exists()


def test_console_prints_the_error_and_exits_2(tmp_path: Path) -> None:
    done = atlas_process("cl", "run", "--learners", "ncm,foo", "--out", str(tmp_path / "x"))
    assert done.returncode == 2
    assert "error: unknown learner(s) 'foo'" in done.stderr and "Traceback" not in done.stderr
