"""Cascade levels and policies for K classes, the cost knobs, the incremental API, save and resume, and
the bench command (small streams; the frontier figures come from `atlas cascade bench`)."""

from __future__ import annotations

import json
import pickle
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from sklearn.linear_model import SGDClassifier
from sklearn.naive_bayes import MultinomialNB
from typer.testing import CliRunner

from atlas.cli.main import app
from benchmarks.streams.items import load_stream
from policies.cascade.base import DeferralPolicy, Level
from policies.cascade.cascade import CascadeStateError, OnlineCascade
from policies.cascade.deferral import BudgetPolicy, OCLPolicy, ThresholdPolicy
from policies.cascade.embedding import EmbeddingLevel
from policies.cascade.hashed_text import HashedTextLevel
from policies.cascade.llm_level import LLMAnswers, LLMLevel
from policies.cascade.nb_text import NBTextLevel
from policies.cascade.replay import ReplayBuffer
from policies.cascade.sklearn_level import SklearnLevel

runner = CliRunner()
WORDS = (("wonderful", "great", "superb"), ("awful", "boring", "terrible"), ("odd", "strange", "weird"), ("funny", "silly", "comic"))
FILLER = ("film", "plot", "actor", "scene", "story", "music", "ending", "camera")


def k_stream(n: int, classes: int = 3, seed: int = 0, mixed: float = 0.3):
    """Texts of `classes` classes; a share `mixed` also carries another class's word (harder items)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n).tolist()
    texts = []
    for i, y in enumerate(labels):
        words = list(rng.choice(WORDS[y], 2)) + list(rng.choice(FILLER, 4))
        if rng.random() < mixed:
            words.append(str(rng.choice(WORDS[(y + 1 + rng.integers(0, classes - 1)) % classes])))
        rng.shuffle(words)
        texts.append(" ".join(words) + f" number {i}")
    return [f"k{i}" for i in range(n)], texts, labels


class Oracle:
    def __init__(self, ids, labels, classes: int) -> None:
        self.labels = dict(zip(ids, labels))
        self.classes = classes

    def __call__(self, ids, texts) -> LLMAnswers:
        out = [self.labels[i] for i in ids]
        return LLMAnswers(out, np.eye(self.classes)[out])


def cascade(policy, ids, labels, classes=3, levels=None, batch=16) -> OnlineCascade:
    llm = LLMLevel(Oracle(ids, labels, classes), cost=100.0)
    return OnlineCascade(levels or [NBTextLevel(classes=classes, n_features=2**16)], llm, policy, batch_size=batch)


def llm_share(run) -> float:
    return sum(o.llm_label is not None for o in run.outcomes) / len(run.outcomes)


def accuracy(run, labels) -> float:
    return float(np.mean([o.prediction == y for o, y in zip(run.outcomes, labels)]))


@pytest.mark.parametrize("classes", [2, 3, 4])
def test_nb_level_learns_k_classes_and_predicting_changes_nothing(classes: int) -> None:
    _, texts, labels = k_stream(400, classes)
    level = NBTextLevel(classes=classes, n_features=2**16)
    assert isinstance(level, Level)
    assert np.allclose(level.predict_proba(texts[:3]), 1.0 / classes)
    level.partial_fit(texts[:300], labels[:300])
    before = pickle.dumps(level)
    probs = level.predict_proba(texts[300:])
    assert pickle.dumps(level) == before  # prediction never changes state
    assert probs.shape == (100, classes) and np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == np.array(labels[300:])).mean() > 0.9


def test_nb_level_refits_on_growth_and_updates_between() -> None:
    _, texts, labels = k_stream(300, 3)
    level = NBTextLevel(classes=3, n_features=2**16, growth=0.5, min_new=10)
    level.partial_fit(texts[:20], labels[:20])
    assert level.fitted_at_ == 20
    level.partial_fit(texts[20:25], labels[20:25])
    assert level.fitted_at_ == 20 and level.n_seen_ == 25  # a small batch: one SGD pass, no refit
    level.partial_fit(texts[25:60], labels[25:60])
    assert level.fitted_at_ == 60
    with pytest.raises(ValueError, match="labels must be in 0..2"):
        level.partial_fit(texts[:2], [0, 5])


def test_nb_level_with_a_class_not_seen_yet() -> None:
    _, texts, labels = k_stream(200, 3)
    two = [(t, y) for t, y in zip(texts, labels) if y != 2][:80]
    level = NBTextLevel(classes=3, n_features=2**16)
    level.partial_fit([t for t, _ in two], [y for _, y in two])
    probs = level.predict_proba(texts[:50])
    assert probs.shape == (50, 3) and probs[:, 2].max() < 0.01


@pytest.mark.parametrize("estimator", [SGDClassifier(loss="log_loss", random_state=0), MultinomialNB()])
def test_sklearn_level_wraps_any_partial_fit_estimator(estimator) -> None:
    from sklearn.feature_extraction.text import HashingVectorizer

    _, texts, labels = k_stream(400, 4)
    vectorizer = HashingVectorizer(n_features=2**14, alternate_sign=False)
    level = SklearnLevel(estimator, vectorizer.transform, classes=4, name="any")
    level.partial_fit(texts[:300], labels[:300])
    assert (level.predict_proba(texts[300:]).argmax(axis=1) == np.array(labels[300:])).mean() > 0.85
    assert not hasattr(estimator, "classes_")  # the caller's estimator is cloned, never changed


def test_sklearn_level_refuses_an_estimator_without_partial_fit() -> None:
    from sklearn.svm import SVC

    with pytest.raises(TypeError, match="SVC has no partial_fit"):
        SklearnLevel(SVC(), lambda ts: np.zeros((len(ts), 2)))


def test_embedding_cache_is_bounded_by_the_replay_buffer() -> None:
    ids, texts, labels = k_stream(600, 2, mixed=0.0)
    vocabulary = sorted({w for group in WORDS[:2] for w in group})
    def encode(ts):
        return np.array([[t.split().count(w) for w in vocabulary] for t in ts], dtype=float)
    level = EmbeddingLevel(encode, classes=2)
    run = cascade(ThresholdPolicy(0.9), ids, labels, classes=2, levels=[HashedTextLevel(), level])
    run.replay = ReplayBuffer(size=50)
    run.run(ids, texts)
    assert 0 < level.cached <= 50  # forget(...) ran after every batch
    assert level.cached == len({t for t, _ in run.replay.items} & set(level._rows))


def test_threshold_policy_accepts_any_number_and_one_means_everything() -> None:
    probs = np.array([[0.99, 0.01], [0.6, 0.4]])
    assert ThresholdPolicy(1).defer(0, probs, 0).all()
    assert not ThresholdPolicy(0).defer(0, probs, 0).any()
    assert ThresholdPolicy([0.5, 0.95]).defer(1, probs, 0).tolist() == [False, True]
    assert isinstance(ThresholdPolicy(0.7), DeferralPolicy) and isinstance(OCLPolicy(1, [1, 100]), DeferralPolicy)
    with pytest.raises(ValueError, match="thresholds must be in"):
        ThresholdPolicy(1.5)
    with pytest.raises(ValueError, match="one cost per level"):
        OCLPolicy(2, [1.0, 100.0])


def test_two_cheap_levels_both_answer() -> None:
    ids, texts, labels = k_stream(800, 3)
    levels = [HashedTextLevel(classes=3, name="first"), NBTextLevel(classes=3, n_features=2**16, name="second")]
    run = cascade(ThresholdPolicy([0.6, 0.7]), ids, labels, levels=levels).run(ids, texts)
    shares = {name: sum(o.answered_by == name for o in run.outcomes) for name in ("first", "second", "llm")}
    assert all(shares.values()), shares
    assert all(o.levels_used[:2] == ["first", "second"] for o in run.outcomes if o.answered_by == "second")


def _shares(make, values, classes=3) -> list[float]:
    ids, texts, labels = k_stream(500, classes, seed=1)
    return [llm_share(cascade(make(v), ids, labels, classes=classes).run(ids, texts)) for v in values]


def test_ocl_mu_moves_the_llm_share_monotonically_over_the_whole_range() -> None:
    shares = _shares(lambda mu: OCLPolicy(1, [1.0, 100.0], mu=mu, warmup=32), [0.0, 0.05, 0.2, 0.5, 2.0])
    assert shares[0] == 1.0 and shares[-1] < 0.12  # warm-up (32) and exploration only, on 500 items
    assert all(a >= b for a, b in pairwise(shares)), shares


def test_threshold_and_budget_knobs_are_monotone() -> None:
    thresholds = _shares(ThresholdPolicy, [1.0, 0.9, 0.6, 0.4])
    assert thresholds[0] == 1.0 and thresholds[-1] < 0.1 and all(a >= b for a, b in pairwise(thresholds)), thresholds
    budgets = _shares(lambda f: BudgetPolicy(fraction=f, levels=1), [1.0, 0.3, 0.05])
    assert budgets[0] == 1.0 and budgets[-1] <= 0.05 and all(a >= b for a, b in pairwise(budgets)), budgets


@pytest.mark.parametrize("make", [lambda: OCLPolicy(1, [1.0, 100.0], mu=0.2, warmup=32), lambda: BudgetPolicy(fraction=0.2, levels=1)])
def test_k_class_cascade_learns_with_each_policy(make) -> None:
    ids, texts, labels = k_stream(900, 4)
    run = cascade(make(), ids, labels, classes=4).run(ids, texts)
    assert accuracy(run, labels) > 0.75 and llm_share(run) < 0.5


def test_feed_answers_batches_and_says_who_answered() -> None:
    ids, texts, labels = k_stream(200, 3)
    online = cascade(OCLPolicy(1, [1.0, 100.0], mu=0.2, warmup=32), ids, labels)
    first = online.feed(ids[:50], texts[:50])
    assert len(first.predictions) == 50 and set(first.answered_by) <= {"nb_lr", "llm"}
    assert first.answered_by[:32] == ["llm"] * 32 and online.position_ == 50
    second = online.feed(ids[50:], texts[50:])
    assert [o.index for o in second.outcomes] == list(range(50, 200))
    with pytest.raises(ValueError, match="one id per text"):
        online.feed(ids[:2], texts[:1])


def test_saved_cascade_resumes_exactly_where_it_stopped(tmp_path: Path) -> None:
    ids, texts, labels = k_stream(700, 3)
    def make():
        return cascade(OCLPolicy(1, [1.0, 100.0], mu=0.2, warmup=32), ids, labels)
    whole = make().feed(ids, texts)
    first = make()
    head = first.feed(ids[:320], texts[:320])
    first.save(tmp_path / "c.pkl")
    resumed = OnlineCascade.load(tmp_path / "c.pkl", LLMLevel(Oracle(ids, labels, 3), cost=100.0))
    tail = resumed.feed(ids[320:], texts[320:])
    assert [o.to_dict() for o in head.outcomes + tail.outcomes] == [o.to_dict() for o in whole.outcomes]


def test_loading_something_else_is_a_clear_error(tmp_path: Path) -> None:
    llm = LLMLevel(Oracle([], [], 2))
    with pytest.raises(CascadeStateError, match="no saved cascade there"):
        OnlineCascade.load(tmp_path / "none.pkl", llm)
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(CascadeStateError, match="not a saved cascade"):
        OnlineCascade.load(tmp_path / "junk.pkl", llm)
    (tmp_path / "other.pkl").write_bytes(pickle.dumps({"format": "something/9"}))
    with pytest.raises(CascadeStateError, match="not a saved cascade of format"):
        OnlineCascade.load(tmp_path / "other.pkl", llm)
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"format": "atlas-cascade/2"}))
    with pytest.raises(CascadeStateError, match="saved in format atlas-cascade/2, this version reads atlas-cascade/3; run the stream again"):
        OnlineCascade.load(tmp_path / "old.pkl", llm)
    # a file whose classes no longer exist (an earlier version's policy): the same advice, no traceback
    gone = pickle.dumps({"format": "atlas-cascade/1", "policy": OCLPolicy(1, [1.0, 100.0])}).replace(b"OCLPolicy", b"OCLGone__")
    (tmp_path / "gone.pkl").write_bytes(gone)
    with pytest.raises(CascadeStateError, match="earlier version of atlas whose classes are gone"):
        OnlineCascade.load(tmp_path / "gone.pkl", llm)


def test_shipped_gpt35_answers_cover_imdb_and_match_the_readme() -> None:
    from atlas.llm.answerers import AnnotationAnswerer
    from benchmarks.cascade.run import annotation_path

    answerer = AnnotationAnswerer(annotation_path("imdb-gpt-3.5"), 2)
    stream = load_stream("imdb", None, 0)
    ids = [i.id for i in stream.items]
    answerer.check_covers(ids)
    assert answerer.model == "gpt-3.5-turbo-1106" and len(ids) == 25000
    right = sum(a == i.label for a, i in zip(answerer.reference(ids), stream.items))
    assert right == 23538  # the provenance README's alignment check


def test_bench_cli_writes_every_point(tmp_path: Path) -> None:
    ids, texts, labels = k_stream(300, 2)
    stream = tmp_path / "toy.jsonl"
    stream.write_text("\n".join(json.dumps({"id": i, "text": t, "label": y}) for i, t, y in zip(ids, texts, labels)) + "\n")
    answers = tmp_path / "ann.jsonl"
    answers.write_text("\n".join(json.dumps({"id": i, "label": y, "probs": [1 - y, y], "model": "oracle"}) for i, y in zip(ids, labels)) + "\n")
    out = tmp_path / "bench"
    result = runner.invoke(app, ["cascade", "bench", "--stream", str(stream), "--limit", "300", "--llm", f"annotations:{answers}",
                                 "--mu", "0,0.3", "--thresholds", "0.9", "--budgets", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert [(p["policy"], p["value"]) for p in results["points"]] == [("ocl", 0.0), ("ocl", 0.3), ("threshold", 0.9), ("budget", 0.2)]
    for point in results["points"]:
        assert {"llm_fraction", "accuracy", "agreement_with_llm", "items_per_s_non_llm", "drift_detections"} <= set(point)
        assert point["refined"] is False  # two ocl values: nothing to bisect between
    assert results["points"][0]["llm_fraction"] == 1.0 and results["points"][3]["llm_fraction"] <= 0.2
    assert "| LLM share at most |" in (out / "report.md").read_text() and (out / "frontier.png").is_file()
    assert [json.loads(line) for line in (out / "points.jsonl").read_text().splitlines()] == results["points"]  # kept as measured
    bad = runner.invoke(app, ["cascade", "bench", "--stream", str(stream), "--thresholds", "1.5", "--out", str(out)])
    assert bad.exit_code == 2 and "out of range" in bad.output


def test_bench_refines_the_frontier_toward_each_share_cap() -> None:
    """A cap whose nearest point lies over a point below it gets the midpoint of the mu values either side of it,
    caps that miss their target first."""
    from benchmarks.cascade.bench import refinement

    def at(*rows):
        return [{"value": v, "llm_fraction": share, "accuracy": a} for v, share, a in rows]

    grid = at((0.5, 0.05, 0.85), (0.2, 0.38, 0.94), (0.4, 0.15, 0.90), (0.3, 0.28, 0.93))
    assert refinement(grid, {0.2, 0.3, 0.4, 0.5}) == 0.45  # 10%: the nearest below is 5%, above is 15%
    grid += at((0.45, 0.095, 0.88))
    assert refinement(grid, {0.2, 0.3, 0.4, 0.45, 0.5}) == 0.35  # 10% has 9.5% now; 20%: 15% below, 28% above
    grid += at((0.35, 0.21, 0.91))  # over the cap: the next bisection is between 0.4 and 0.35
    assert refinement(grid, {0.2, 0.3, 0.35, 0.4, 0.45, 0.5}) == 0.375
    close = at((0.45, 0.095, 0.88), (0.4, 0.195, 0.90), (0.3, 0.295, 0.93), (0.2, 0.399, 0.94), (0.1, 0.6, 0.94))
    assert refinement(close, {0.1, 0.2, 0.3, 0.4, 0.45}) is None  # every cap has a point within a point below it
    noisy = at((0.46, 0.07, 0.86), (0.44, 0.12, 0.90), (0.42, 0.11, 0.89), (0.2, 0.38, 0.94))  # the share is not monotone in mu
    assert refinement(noisy, {0.2, 0.42, 0.44, 0.46}) == 0.45  # between 0.46 and its neighbour over the cap
    noisy += at((0.45, 0.066, 0.85))  # the midpoint landed under 0.46's share: the bracket is now 0.44-0.45
    assert refinement(noisy, {0.2, 0.42, 0.44, 0.45, 0.46}) == 0.445
    noisy += at((0.445, 0.13, 0.89))  # over the cap again: the share moves by points within 0.005 of mu, so split on
    assert refinement(noisy, {0.2, 0.42, 0.44, 0.445, 0.45, 0.46}) == 0.4475
    noisy += at((0.4475, 0.092, 0.87))  # close under 10%: the 20% cap is next
    assert refinement(noisy, {0.2, 0.42, 0.44, 0.445, 0.4475, 0.45, 0.46}) == 0.31
    assert refinement(at((0.41, 0.05, 0.85), (0.4085, 0.15, 0.90)), {0.41, 0.4085}) is None  # too close to split
    # a cap whose target is met already waits for one that misses it: 20% (0.90 < 0.92) before 10% (0.89 >= 0.885)
    assert refinement(at((0.5, 0.05, 0.89), (0.4, 0.15, 0.90), (0.2, 0.38, 0.94)), {0.2, 0.4, 0.5}) == 0.3
    assert refinement(at((0.5, 0.05, 0.86), (0.4, 0.15, 0.90), (0.2, 0.38, 0.94)), {0.2, 0.4, 0.5}) == 0.45  # both miss: in order
    assert refinement(at((0.5, 0.05, None), (0.4, 0.15, 0.90)), {0.4, 0.5}) is None  # a point without accuracy does not count


def test_a_recording_of_part_of_a_source_runs_on_what_it_covers_for_any_seed(tmp_path: Path) -> None:
    """The local model answered seed 0's first 5,000 IMDB reviews: another seed's stream is not covered, and
    --covered-only runs on the recorded items in that seed's order; the bench checks coverage before it runs."""
    from atlas.config import load_settings
    from atlas.errors import AtlasError
    from benchmarks.cascade.bench import Case, run_bench
    from benchmarks.cascade.run import LOCAL_ANSWERS, CascadeOptions, annotation_path, run_cascade

    settings = load_settings(home=str(tmp_path / "home"))
    options = CascadeOptions(stream="imdb", limit=200, llm=LOCAL_ANSWERS["imdb"], policy="threshold", seed=3)
    with pytest.raises(AtlasError, match="does not cover the stream.*--covered-only"):
        run_cascade(options, settings)
    options.covered_only = True
    result = run_cascade(options, settings, tmp_path / "run")
    items = [json.loads(line) for line in (tmp_path / "run" / "items.jsonl").read_text().splitlines()]
    recorded = {json.loads(line)["id"] for line in annotation_path("imdb-local-5000.jsonl").read_text().splitlines()}
    seeded = [i.id for i in load_stream("imdb", None, 3).items if i.id in recorded][:200]
    assert result["covered_only"] and result["n"] == 200 and [i["id"] for i in items] == seeded
    with pytest.raises(AtlasError, match="--covered-only keeps the items that recorded answers cover"):
        run_cascade(CascadeOptions(llm="openai:gpt-4o-mini", covered_only=True), settings)
    uncovered = Case("imdb-local", "imdb", 200, LOCAL_ANSWERS["imdb"], {"threshold": (0.7,)})
    with pytest.raises(AtlasError, match="does not cover the stream"):  # before any point runs or any file is written
        run_bench([Case("first", "imdb", 200, LOCAL_ANSWERS["imdb"], {"threshold": (0.7,)}, covered_only=True), uncovered],
                  settings, tmp_path / "bench", seed=3, report=lambda line: None)
    assert not (tmp_path / "bench").exists()
    cli = runner.invoke(app, ["cascade", "run", "--limit", "100", "--llm", LOCAL_ANSWERS["imdb"], "--seed", "4", "--covered-only",
                              "--policy", "threshold", "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 0, cli.output
    assert json.loads((tmp_path / "cli" / "results.json").read_text())["n"] == 100


def test_bench_runs_a_case_with_and_without_unlabelled_text_and_checks_a_file_first(tmp_path: Path) -> None:
    from atlas.config import load_settings
    from benchmarks.cascade.bench import Case, run_bench
    from benchmarks.cascade.run import GPT35_IMDB
    from benchmarks.streams.items import StreamError

    settings = load_settings(home=str(tmp_path / "home"))
    plan = [Case("outside", "imdb", 300, GPT35_IMDB, {"ocl": (0.3, 0.45, 0.6)}),
            Case("inside", "imdb", 300, GPT35_IMDB, {"ocl": (0.3, 0.45, 0.6)}, unlabelled="none", refine=False)]
    results = run_bench(plan, settings, tmp_path / "bench", seed=1, report=lambda line: None, refine=2)
    inside = [p for p in results["points"] if p["case"] == "inside"]
    assert len(inside) == 3 and all(p["unlabelled_texts"] == 0 and not p["refined"] for p in inside)
    assert all(p["unlabelled_texts"] > 24000 for p in results["points"] if p["case"] == "outside")
    report = (tmp_path / "bench" / "report.md").read_text(encoding="utf-8")
    assert "topics from the stream only" in report and "topics also from the source's reviews outside the stream" in report
    missing = Case("file", "imdb", 100, GPT35_IMDB, {"ocl": (0.3,)}, unlabelled=str(tmp_path / "missing.jsonl"))
    with pytest.raises(StreamError, match="no such unlabelled text file"):  # before any point runs or any file is written
        run_bench([plan[0], missing], settings, tmp_path / "bench2", seed=1, report=lambda line: None)
    assert not (tmp_path / "bench2").exists()
    from benchmarks.cascade.run import CascadeOptions, run_cascade

    hashed = run_cascade(CascadeOptions(limit=64, levels="hashed", policy="threshold"), settings)
    assert hashed["unlabelled"]["texts"] == 0  # no level learns without labels: nothing was taken
    cli = runner.invoke(app, ["cascade", "run", "--limit", "50", "--unlabelled", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 2 and "--unlabelled" in cli.output and not (tmp_path / "cli").exists()
    cli = runner.invoke(app, ["cascade", "bench", "--unlabelled", "none", "--out", str(tmp_path / "cli")])
    assert cli.exit_code == 2 and "goes with --stream" in cli.output and not (tmp_path / "cli").exists()
