"""The online cascade: levels, deferral policies, budget caps, drift, streams, recorded answers, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from atlas.cli.main import app
from atlas.errors import AtlasError
from atlas.llm import make_llm
from atlas.llm.answerers import AnnotationAnswerer, LiveAnswerer, parse_label
from atlas.llm.classify import SENTIMENT_PROMPT
from benchmarks.streams.items import StreamError, load_stream
from policies.cascade.cascade import OnlineCascade
from policies.cascade.deferral import BudgetPolicy, OCLPolicy, ThresholdPolicy
from policies.cascade.drift import DisagreementDrift
from policies.cascade.embedding import EmbeddingLevel
from policies.cascade.hashed_text import HashedTextLevel
from policies.cascade.llm_level import LLMAnswers, LLMLevel
from policies.cascade.metrics import summarize
from tests.test_cli import atlas_process

runner = CliRunner()
GOOD = ("wonderful", "great", "superb", "loved")
BAD = ("awful", "boring", "terrible", "hated")


def toy_stream(n: int, seed: int = 0) -> tuple[list[str], list[str], list[int]]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n).tolist()
    texts = [f"{' '.join(rng.choice(GOOD if y else BAD, 3))} film number {i}" for i, y in enumerate(labels)]
    return [f"t{i}" for i in range(n)], texts, labels


class Oracle:
    """A perfect LLM for the toy stream; `unparsed` positions answer with no label."""

    def __init__(self, labels: dict[str, int], unparsed: set[str] = frozenset()) -> None:
        self.labels = labels
        self.unparsed = unparsed

    def __call__(self, ids, texts) -> LLMAnswers:
        out = [None if i in self.unparsed else self.labels[i] for i in ids]
        return LLMAnswers(out, np.array([[0.5, 0.5] if y is None else np.eye(2)[y] for y in out]))


def cascade_for(policy, ids, labels, unparsed=frozenset()) -> tuple[OnlineCascade, LLMLevel]:
    llm = LLMLevel(Oracle(dict(zip(ids, labels)), set(unparsed)), cost=100.0)
    return OnlineCascade([HashedTextLevel(cost=1.0)], llm, policy, batch_size=16, drift=DisagreementDrift()), llm


def test_hashed_level_learns_a_separable_task() -> None:
    _, texts, labels = toy_stream(200)
    level = HashedTextLevel()
    assert np.allclose(level.predict_proba(texts[:3]), 0.5)  # knows nothing before it learns
    level.partial_fit(texts[:150], labels[:150])
    assert (level.predict_proba(texts[150:]).argmax(1) == np.array(labels[150:])).mean() > 0.95


def test_embedding_level_with_any_encoder() -> None:
    _, texts, labels = toy_stream(120)
    def encode(ts):
        return np.array([[t.count(w) for w in GOOD + BAD] for t in ts], dtype=float)
    level = EmbeddingLevel(encode)
    level.partial_fit(texts[:80], labels[:80])
    assert (level.predict_proba(texts[80:]).argmax(1) == np.array(labels[80:])).mean() > 0.95


def test_ocl_cascade_imitates_the_llm_and_defers_less_over_time() -> None:
    ids, texts, labels = toy_stream(1500)
    policy = OCLPolicy(1, [1.0, 100.0], mu=0.3, warmup=50)
    cascade, llm = cascade_for(policy, ids, labels)
    run = cascade.run(ids, texts)
    figures = summarize(run, labels, {"hashed_lr": 1.0, "llm": 100.0}, "llm")
    assert figures["accuracy"] > 0.9
    asked = [o.llm_label is not None for o in run.outcomes]
    assert all(asked[:50])  # warm-up: the LLM answers
    assert sum(asked[-500:]) < sum(asked[50:550])
    assert figures["llm_fraction"] < 0.5 and figures["cost"] < figures["cost_llm_only"]


def test_levels_never_learn_an_item_before_answering_it() -> None:
    ids, texts, labels = toy_stream(300)
    seen: list[str] = []

    class Watching(HashedTextLevel):
        def predict_proba(self, batch):
            seen.extend(batch)
            return super().predict_proba(batch)

        def partial_fit(self, batch, ys):
            assert all(t in seen for t in batch)
            super().partial_fit(batch, ys)

    llm = LLMLevel(Oracle(dict(zip(ids, labels))), cost=100.0)
    OnlineCascade([Watching()], llm, ThresholdPolicy(0.9), batch_size=16).run(ids, texts)


@pytest.mark.parametrize("fraction", [0.0, 0.05, 0.1, 1.0])
def test_budget_is_never_exceeded_at_any_point(fraction: float) -> None:
    ids, texts, labels = toy_stream(600)
    cascade, llm = cascade_for(BudgetPolicy(fraction=fraction, levels=1), ids, labels)
    run = cascade.run(ids, texts)
    calls = 0
    for outcome in run.outcomes:
        calls += outcome.llm_label is not None or outcome.llm_unparsed
        assert calls <= math.floor(fraction * (outcome.index + 1) + 1e-9)
    if fraction == 1.0:
        assert calls == 600
    if fraction == 0.0:
        assert calls == 0 and llm.calls_ == 0


def test_budget_per_window() -> None:
    ids, texts, labels = toy_stream(500)
    cascade, _ = cascade_for(BudgetPolicy(fraction=None, per_window=5, window=50, levels=1), ids, labels)
    asked = [o.index for o in cascade.run(ids, texts).outcomes if o.llm_label is not None]
    assert asked and all(sum(1 for a in asked if p - 50 < a <= p) <= 5 for p in range(500))


def test_unparsable_llm_answers_are_counted_not_fatal() -> None:
    ids, texts, labels = toy_stream(200)
    cascade, llm = cascade_for(ThresholdPolicy(0.99), ids, labels, unparsed={"t3", "t7", "t11"})
    run = cascade.run(ids, texts)
    assert sum(o.llm_unparsed for o in run.outcomes) == 3 and llm.unparsed_ == 3
    assert summarize(run, labels, {"hashed_lr": 1.0, "llm": 100.0}, "llm")["llm_unparsed"] == 3


def test_drift_detector_fires_on_a_jump_only() -> None:
    drift = DisagreementDrift(window=50, margin=0.2, min_items=100)
    rng = np.random.default_rng(0)
    assert not any(drift.update(rng.random() < 0.2, n) for n in range(400))
    assert any(drift.update(rng.random() < 0.7, 400 + n) for n in range(200))


def test_drift_detector_ignores_a_change_in_which_items_are_labelled() -> None:
    """A policy that labels sure items for a while (q 0.1), then unsure ones (q 0.5): the raw rate jumps on a
    stream that has not changed. Given what the policy expected, nothing fires; a real rise still does."""
    rng = np.random.default_rng(0)
    raw, aware = DisagreementDrift(window=50, margin=0.2, min_items=100), DisagreementDrift(window=50, margin=0.2, min_items=100)
    items = [(0.1, rng.random() < 0.1) for _ in range(300)] + [(0.5, rng.random() < 0.5) for _ in range(300)]
    assert any(raw.update(wrong, n) for n, (_, wrong) in enumerate(items))
    assert not any(aware.update(wrong, n, q) for n, (q, wrong) in enumerate(items))
    assert any(aware.update(rng.random() < 0.9, 600 + n, 0.5) for n in range(200))


def test_cascade_gives_the_drift_detector_the_policys_expected_disagreement() -> None:
    """OCL's curve says how often each labelled item was expected to disagree; the detector sees the excess."""
    ids, texts, labels = toy_stream(600)
    seen: list[float] = []

    class Recording(DisagreementDrift):
        def update(self, disagreed: bool, position: int, expected: float | None = None) -> bool:
            seen.append(expected)
            return super().update(disagreed, position, expected)

    policy = OCLPolicy(1, [1.0, 100.0], mu=0.3, warmup=50)
    llm = LLMLevel(Oracle(dict(zip(ids, labels))), cost=100.0)
    OnlineCascade([HashedTextLevel(cost=1.0)], llm, policy, batch_size=16, drift=Recording()).run(ids, texts)
    assert seen and all(0.0 <= q <= 1.0 for q in seen) and max(seen) > 0.0  # from the curve, not the raw-rate default
    seen.clear()
    OnlineCascade([HashedTextLevel(cost=1.0)], LLMLevel(Oracle(dict(zip(ids, labels))), cost=100.0), ThresholdPolicy(0.99),
                  batch_size=16, drift=Recording()).run(ids, texts)
    assert seen and set(seen) == {None}  # a policy without an estimate: the raw rate against its own history


def test_bad_policy_arguments() -> None:
    with pytest.raises(ValueError, match="budget fraction"):
        BudgetPolicy(fraction=1.5)
    with pytest.raises(ValueError, match="give a budget"):
        BudgetPolicy(fraction=None, per_window=None)
    with pytest.raises(ValueError, match="mu must be"):
        OCLPolicy(1, [1.0, 100.0], mu=-1)


# --- streams and recorded answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, content, fragment",
    [
        ("a.csv", "body,label\nx,1\n", "line 1: the header needs a 'text' column"),
        ("b.jsonl", '{"text": "fine", "label": 1}\n{oops\n', "line 2: not valid JSON"),
        ("c.jsonl", "", "the stream is empty"),
        ("d.csv", "text,label\ngood,positive\nbad,neutral\n", "line 3: label 'neutral' is not in the task's label set"),
        ("e.jsonl", '{"text": "", "label": 0}\n', "line 1: missing or empty 'text'"),
    ],
)
def test_malformed_streams_name_the_line(tmp_path: Path, name: str, content: str, fragment: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(StreamError, match=fragment):
        load_stream(str(path))


def test_unlabelled_file_stream_reports_agreement_only(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps({"id": f"u{i}", "text": f"great film {i}"}) for i in range(40)) + "\n")
    stream = load_stream(str(path))
    assert not stream.labelled and stream.items[0].id == "u0"
    ids, texts = [i.id for i in stream.items], [i.text for i in stream.items]
    cascade, _ = cascade_for(ThresholdPolicy(0.9), ids, [1] * 40)
    figures = summarize(cascade.run(ids, texts), [None] * 40, {"hashed_lr": 1.0, "llm": 100.0}, "llm")
    assert figures["accuracy"] is None and figures["agreement_with_llm"] is not None


def test_shift_stream_and_length_order() -> None:
    shifted = load_stream("imdb-then-rt", limit=20)
    assert [i.source for i in shifted.items] == ["imdb"] * 10 + ["rotten_tomatoes"] * 10
    by_length = load_stream("imdb-by-length", limit=30)
    assert [len(i.text) for i in by_length.items] == sorted(len(i.text) for i in by_length.items)


def test_annotations_must_cover_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "ann.jsonl"
    path.write_text('{"id": "a", "label": 1, "probs": [0.2, 0.8], "model": "m"}\n')
    answerer = AnnotationAnswerer(path, 2)
    answerer.check_covers(["a"])
    with pytest.raises(AtlasError, match="does not cover the stream: 1 of 2 items .*'b' at position 1"):
        answerer.check_covers(["a", "b"])
    path.write_text('{"id": "a", "label": 7, "probs": [0.2, 0.8]}\n')
    with pytest.raises(AtlasError, match="line 1: label 7 is outside 0..1"):
        AnnotationAnswerer(path, 2)


def test_shipped_annotations_cover_the_seeded_imdb_stream() -> None:
    from benchmarks.cascade.run import annotation_path

    answerer = AnnotationAnswerer(annotation_path("imdb-local-5000.jsonl"), 2)
    ids = [i.id for i in load_stream("imdb", 5000, 0).items]
    answerer.check_covers(ids)
    assert answerer.model.startswith("local:")


def test_live_answerer_parses_chat_answers(settings) -> None:
    replies = ["It is positive.", "Negative, clearly", "I cannot tell"]
    client = make_llm("scripted", settings, replies=replies, cache=False)
    answers = LiveAnswerer(client, SENTIMENT_PROMPT)(["x", "y", "z"], ["a", "b", "c"])
    assert answers.labels == [1, 0, None]
    assert parse_label("POSITIVE!", ("negative", "positive")) == 1 and parse_label("neither", ("negative", "positive")) is None


# --- CLI ----------------------------------------------------------------------------------------


def test_cascade_run_cli_on_a_file_stream(tmp_path: Path) -> None:
    ids, texts, labels = toy_stream(300)
    stream = tmp_path / "toy.jsonl"
    stream.write_text("\n".join(json.dumps({"id": i, "text": t, "label": y}) for i, t, y in zip(ids, texts, labels)) + "\n")
    annotations = tmp_path / "ann.jsonl"
    annotations.write_text("\n".join(json.dumps({"id": i, "label": y, "probs": [1 - y, y], "model": "oracle"}) for i, y in zip(ids, labels)) + "\n")
    out = tmp_path / "run"
    result = runner.invoke(app, ["cascade", "run", "--stream", str(stream), "--limit", "300", "--llm", f"annotations:{annotations}", "--policy", "budget", "--budget", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    for key in ("n", "accuracy", "llm_accuracy", "agreement_with_llm", "llm_fraction", "cost", "cost_llm_only", "items_per_s_non_llm", "level_shares"):
        assert key in results
    assert results["n"] == 300 and results["llm_fraction"] <= 0.2 and results["llm_accuracy"] == 1.0
    assert len((out / "items.jsonl").read_text().splitlines()) == 300
    assert (out / "llm_rate.png").is_file() and (out / "level_shares.png").is_file()
    swept = runner.invoke(app, ["cascade", "sweep", "--mu", "1,5", "--stream", str(stream), "--limit", "300", "--llm", f"annotations:{annotations}", "--out", str(tmp_path / "sweep")])
    assert swept.exit_code == 0, swept.output
    frontier = json.loads((tmp_path / "sweep" / "frontier.json").read_text())
    assert [p["mu"] for p in frontier["points"]] == [1.0, 5.0] and (tmp_path / "sweep" / "frontier.png").is_file()


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--policy", "magic"], "unknown policy 'magic'"),
        (["--budget", "1.5", "--policy", "budget"], "budget must be a fraction"),
        (["--stream", "nowhere.csv"], "no such stream file"),
        (["--llm", "annotations:{tmp}/short.jsonl", "--limit", "3"], "does not cover the stream"),
    ],
)
def test_cascade_user_errors_exit_2(tmp_path: Path, args: list[str], fragment: str) -> None:
    (tmp_path / "short.jsonl").write_text('{"id": "imdb-0", "label": 1, "probs": [0.1, 0.9], "model": "m"}\n')
    full = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = atlas_process("cascade", "run", "--out", str(tmp_path / "o"), *full)
    assert result.returncode == 2, result.stdout + result.stderr
    assert fragment in " ".join(result.stderr.split()) and "Traceback" not in result.stderr
