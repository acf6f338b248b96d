"""The cascade for any classification task: tasks as data, label sets checked, K classes end to end,
per-class figures, recorded answers with label names, answer words of several tokens."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from sklearn.metrics import f1_score, precision_recall_fscore_support
from typer.testing import CliRunner

from atlas.cli.main import app
from atlas.errors import AtlasError
from atlas.llm import make_llm
from atlas.llm.answerers import LiveAnswerer, parse_class, parse_label
from atlas.llm.classify import LabelPrompt, ZeroShotClassifier, can_score_exactly
from atlas.llm.client import LLMClient
from atlas.llm.meter import PriceTable
from atlas.llm.scripted import ScriptedBackend
from atlas.llm.recorded import AnnotationAnswerer, header, record
from benchmarks.streams.items import StreamError, load_stream
from benchmarks.streams.tasks import SENTIMENT, TEXT_SOURCES, TaskError, parse_words, resolve_task
from policies.cascade.cascade import OnlineCascade
from policies.cascade.deferral import BudgetPolicy, DisagreementCurve, OCLPolicy, ThresholdPolicy
from policies.cascade.hashed_text import HashedTextLevel
from policies.cascade.llm_level import LLMAnswers, LLMLevel
from policies.cascade.metrics import class_figures, summarize
from policies.cascade.task import Task
from tests.test_cli import atlas_process

runner = CliRunner()
EMOTIONS = ("joy", "fear", "anger", "sadness", "disgust", "shame", "guilt")  # ISEAR's seven
VOCAB = {
    "joy": ("delighted", "happy", "thrilled"), "fear": ("terrified", "scared", "afraid"), "anger": ("furious", "angry", "enraged"),
    "sadness": ("grieving", "sad", "tearful"), "disgust": ("revolted", "nauseated", "repelled"), "shame": ("ashamed", "humiliated", "embarrassed"),
    "guilt": ("guilty", "remorseful", "culpable"), "democrat": ("healthcare", "climate", "unions"), "republican": ("taxes", "border", "military"),
    "ham": ("meeting", "lunch", "family"), "spam": ("winner", "prize", "click"), "neutral": ("report", "schedule", "update"),
}


def keyword_stream(labels: tuple[str, ...], n: int, seed: int = 0, weights: list[float] | None = None) -> tuple[list[str], list[str], list[int]]:
    rng = np.random.default_rng(seed)
    y = rng.choice(len(labels), size=n, p=weights).tolist()
    texts = [f"{' '.join(rng.choice(VOCAB[labels[c]], 2))} and {rng.choice(VOCAB[labels[rng.integers(len(labels))]])} note {i}" for i, c in enumerate(y)]
    return [f"s{i}" for i in range(n)], texts, y


def write_stream(path: Path, labels: tuple[str, ...], ids, texts, y) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t, "label": labels[c]}) + "\n" for i, t, c in zip(ids, texts, y)))
    return path


def write_oracle(path: Path, task_name: str, labels: tuple[str, ...], ids, texts, y) -> Path:
    rows = [header(task_name, labels, "oracle", "test", 0)]
    rows += [record(i, t, labels, c, np.eye(len(labels))[c], np.eye(len(labels))[c], "oracle") for i, t, c in zip(ids, texts, y)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- tasks ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, fragment",
    [
        ({"labels": ["a"]}, "at least 2"),
        ({"labels": ["a", "A"]}, "distinct"),
        ({"labels": ["a", "b"], "prompt": "no place for the text"}, "{text} exactly once"),
        ({"labels": ["a", "b"], "prompt": "{text} {mood}"}, "unknown fields {mood}"),
        ({"labels": ["a", "b"], "prompt": "{text"}, "not a valid template"),
        ({"labels": ["a", "b"], "words": {"c": "x"}}, "not labels"),
        ({"labels": ["a", "b"], "words": {"a": "same", "b": "same"}}, "given for both"),
        ({"labels": ["a", "b"], "headline": "c"}, "headline class 'c'"),
        ({"labels": ["a", "b"], "colour": "red"}, "Extra inputs"),
    ],
)
def test_invalid_tasks_are_refused(fields: dict, fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment.replace("{", r"\{").replace("}", r"\}")):
        Task.model_validate(fields)


def test_task_files_and_flags(tmp_path: Path) -> None:
    yaml_file = tmp_path / "speeches.yaml"
    yaml_file.write_text("name: party\nlabels: [democrat, republican]\nprompt: \"Speech: {text}\\nParty ({labels})?\"\n"
                         "words:\n  democrat: [democrat, democratic]\n  republican: republican\nheadline: republican\n")
    task = resolve_task(str(yaml_file))
    assert task.labels == ("democrat", "republican") and task.answer_words() == (("democrat", "democratic"), ("republican",))
    assert task.headline_index == 1
    json_file = tmp_path / "t.json"
    json_file.write_text(json.dumps({"labels": ["ham", "spam"], "headline": "spam"}))
    assert resolve_task(str(json_file)).labels == ("ham", "spam")
    flagged = resolve_task(None, "file.csv", labels=["x", "y", "z"], words=parse_words("x=ex|eks,z=zed"))
    assert flagged.answer_words() == (("ex", "eks"), ("y",), ("zed",))
    assert resolve_task(None, "imdb") == SENTIMENT and resolve_task(None, "text-sources") == TEXT_SOURCES
    assert resolve_task(str(yaml_file), labels=["a", "b"]).labels == ("a", "b")  # flags override the file
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: [a]\n")
    with pytest.raises(TaskError, match=r"bad.yaml: invalid task: labels: .*at least 2"):
        resolve_task(str(bad))
    broken = tmp_path / "broken.json"
    broken.write_text('{"labels": ["a",\n')
    with pytest.raises(TaskError, match=r"broken.json, line 2: not valid JSON"):
        resolve_task(str(broken))
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        resolve_task("nope")
    with pytest.raises(TaskError, match="is not label=word"):
        parse_words("x")


# --- label sets -----------------------------------------------------------------------------------


def test_a_wrong_label_set_is_refused_listing_both(tmp_path: Path) -> None:
    labels = ("democrat", "republican")
    ids, texts, y = keyword_stream(labels, 20)
    path = write_stream(tmp_path / "speeches.jsonl", labels, ids, texts, y)
    with pytest.raises(StreamError) as error:
        load_stream(str(path))  # read as sentiment: negative, positive
    message = str(error.value)
    assert "The file's labels: democrat, republican" in message and "the task's labels: negative, positive" in message
    assert "--labels democrat,republican" in message
    stream = load_stream(str(path), labels=labels)
    assert [i.label for i in stream.items] == y
    with pytest.raises(StreamError, match="is labelled negative, positive, but the task's labels are democrat, republican"):
        load_stream("imdb", 5, labels=labels)


def test_unlabelled_streams_work_with_any_task(tmp_path: Path) -> None:
    path = tmp_path / "u.csv"
    path.write_text("text\nfirst\nsecond\n")
    stream = load_stream(str(path), labels=EMOTIONS)
    assert not stream.labelled and stream.labels == EMOTIONS


# --- K classes end to end ---------------------------------------------------------------------------


@pytest.mark.parametrize("labels", [("democrat", "republican"), ("ham", "spam", "neutral"), EMOTIONS])
def test_cascade_run_cli_with_k_classes(tmp_path: Path, labels: tuple[str, ...]) -> None:
    ids, texts, y = keyword_stream(labels, 600, seed=len(labels))
    stream = write_stream(tmp_path / "s.jsonl", labels, ids, texts, y)
    oracle = write_oracle(tmp_path / "oracle.jsonl", "custom", labels, ids, texts, y)
    for policy in ("ocl", "threshold", "budget"):
        out = tmp_path / policy
        result = runner.invoke(app, ["cascade", "run", "--stream", str(stream), "--labels", ",".join(labels), "--limit", "600",
                                     "--llm", f"annotations:{oracle}", "--policy", policy, "--budget", "0.3", "--mu", "1", "--out", str(out)])
        assert result.exit_code == 0, result.output
        figures = json.loads((out / "results.json").read_text())
        assert figures["labels"] == list(labels) and figures["llm_accuracy"] == 1.0 and figures["llm_macro_f1"] == 1.0
        assert set(figures["per_class"]) == set(labels) and sum(c["support"] for c in figures["per_class"].values()) == 600
        assert 0.0 < figures["macro_f1"] <= 1.0 and figures["llm_fraction"] < 1.0
        assert figures["accuracy"] > min(0.6, 1.0 / len(labels) + 0.3), (policy, figures["accuracy"])  # the levels learned the K classes (chance: 1/K)
        assert (out / "classes.png").is_file()


def test_an_imbalanced_stream_reports_the_rare_class_recall(tmp_path: Path) -> None:
    labels = ("ham", "spam")
    ids, texts, y = keyword_stream(labels, 900, seed=3, weights=[8 / 9, 1 / 9])
    assert 0.07 < np.mean(y) < 0.16
    stream = write_stream(tmp_path / "s.jsonl", labels, ids, texts, y)
    oracle = write_oracle(tmp_path / "oracle.jsonl", "spam", labels, ids, texts, y)
    out = tmp_path / "run"
    result = runner.invoke(app, ["cascade", "run", "--stream", str(stream), "--labels", "ham,spam", "--headline", "spam", "--limit", "900",
                                 "--llm", f"annotations:{oracle}", "--policy", "budget", "--budget", "0.2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    figures = json.loads((out / "results.json").read_text())
    assert figures["headline_class"] == "spam" and figures["llm_headline_recall"] == 1.0
    assert figures["headline_recall"] == figures["per_class"]["spam"]["recall"]
    assert figures["per_class"]["spam"]["support"] == sum(y)
    assert "headline_recall" in result.output


def test_seven_class_budget_cascade_holds_its_cap_and_learns() -> None:
    labels = EMOTIONS
    ids, texts, y = keyword_stream(labels, 700, seed=7)

    def oracle(batch_ids, batch_texts):
        picked = [y[int(i[1:])] for i in batch_ids]
        return LLMAnswers(picked, np.eye(len(labels))[picked])

    budget = BudgetPolicy(fraction=0.15, levels=1)
    run = OnlineCascade([HashedTextLevel(classes=7)], LLMLevel(oracle), budget, batch_size=32).run(ids, texts)
    calls = np.cumsum([o.llm_label is not None for o in run.outcomes])
    assert all(c <= np.floor(0.15 * (n + 1) + 1e-9) for n, c in enumerate(calls))  # the cap holds at every prefix
    figures = summarize(run, y, {"hashed_lr": 1.0, "llm": 100.0}, "llm", labels=labels)
    assert figures["accuracy"] > 0.3 and len(figures["confusion"]) == 7  # chance: 1/7


def test_disagreement_curve_means_the_same_for_any_k() -> None:
    for k in (2, 3, 7):  # before any label, q runs from certain agreement (surest item) to chance (least sure)
        curve = DisagreementCurve()
        curve.observe(np.vstack([np.full((1, k), 1 / k), np.eye(k)[:1], np.full((1, k), 1 / k) * 0.5 + np.eye(k)[:1] * 0.5]))
        curve.observe(np.eye(k)[:1])  # the first batch becomes the reference items
        uniform, certain = np.full((1, k), 1 / k), np.eye(k)[:1]
        assert curve.q(uniform)[0] > curve.q(certain)[0]
        assert curve.curve(k)[-1] == pytest.approx(curve.centres_[-1] * (1 - 1 / k))
    policy = OCLPolicy(1, [1.0, 100.0], warmup=0)
    assert policy.defer(0, np.full((4, 7), 1 / 7), 10).dtype == bool
    assert ThresholdPolicy(0.5).defer(0, np.eye(7)[:3], 0).tolist() == [False] * 3


def test_disagreement_curve_learns_each_bins_error_rate_and_stays_monotone() -> None:
    rng = np.random.default_rng(0)
    curve = DisagreementCurve(window=500, decay=1.0)
    top = rng.uniform(0.5, 1.0, 4000)
    probs = np.column_stack([top, 1 - top])
    curve.observe(probs[:500])
    curve.observe(probs[500:501])  # 500 reference items
    truth = (1 - top) * 0.9  # the true chance of disagreement rises with unsureness
    wrong = rng.random(4000) < truth
    curve.learn(probs[1000:], wrong[1000:])
    fitted = curve.curve()
    assert np.all(np.diff(fitted) >= 0)
    least_sure = np.argsort(top)[:400]
    assert curve.q(probs[least_sure]).mean() == pytest.approx(truth[least_sure].mean(), abs=0.05)
    assert curve.crossing(0.2) < curve.crossing(0.4) <= 1.0 and curve.crossing(2.0) == 1.0


def test_disagreement_curve_is_unbiased_when_only_unsure_items_and_a_few_random_ones_are_labelled() -> None:
    """What OCL labels: the items it defers (the least sure) plus random exploration. A model fitted on
    those items alone underestimated q at the unsure end; each bin's rate must not care."""
    rng = np.random.default_rng(1)
    curve = DisagreementCurve(window=1000, decay=1.0)
    top = rng.uniform(0.5, 1.0, 20000)
    probs = np.column_stack([top, 1 - top])
    curve.observe(probs[:1000])
    curve.observe(probs[1000:1001])
    truth = 0.03 + 0.9 * (1 - top) ** 2 * 4 * 0.5  # convex: rare disagreement when sure, ~0.48 when least sure
    wrong = rng.random(len(top)) < truth
    ranks = curve.ranks(probs)
    labelled = (ranks > 0.9) | (rng.random(len(top)) < 0.05)
    curve.learn(probs[labelled], wrong[labelled])
    for part in (ranks < 0.5, (ranks > 0.8) & (ranks < 0.9), ranks > 0.97):
        assert curve.q(probs[part]).mean() == pytest.approx(truth[part].mean(), abs=0.04)


def test_class_figures_match_scikit_learn() -> None:
    rng = np.random.default_rng(0)
    truth, predicted = rng.integers(0, 5, 400), rng.integers(0, 5, 400)
    predicted[:50] = truth[:50]
    figures = class_figures(predicted.tolist(), truth.tolist(), list("abcde"))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=range(5), zero_division=0)
    assert np.allclose([figures["per_class"][c]["precision"] for c in "abcde"], precision)
    assert np.allclose([figures["per_class"][c]["recall"] for c in "abcde"], recall)
    assert figures["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))
    never = class_figures([0, 0, 0], [0, 1, 0], ["x", "y", "z"])  # z absent, y never predicted
    assert never["per_class"]["z"]["recall"] is None and never["per_class"]["y"]["precision"] is None
    assert never["macro_f1"] == pytest.approx((0.8 + 0.0) / 2)


# --- the LLM level for any labels -----------------------------------------------------------------------


def test_chat_answers_parsed_for_any_label_set(settings) -> None:
    task = Task(labels=("positive", "very positive", "negative"), words={"negative": ("negative", "bad")})
    replies = ["Very positive!", "positive, I think", "It is bad.", "no idea", "NEGATIVE"]
    client = make_llm("scripted", settings, replies=replies, cache=False)
    answers = LiveAnswerer(client, LabelPrompt.from_task(task))(list("abcde"), list("abcde"))
    assert answers.labels == [1, 0, 2, None, 2]
    assert parse_label("very positive", ("very", "very positive")) == 1  # the longer word at the same place
    assert parse_class("a licence, clearly", (("license", "licence"), ("docs",))) == 0


def test_label_scores_are_used_only_where_the_choice_is_exact(settings) -> None:
    scorer = LLMClient(ScriptedBackend([], label_scorer=lambda messages, labels: [1.0 / len(labels)] * len(labels)), PriceTable(settings))
    assert can_score_exactly(scorer, (("negative",), ("positive",)))
    # a first-token scorer cannot tell words that start alike: chat answers are parsed instead
    assert not can_score_exactly(scorer, (("very positive",), ("very negative",)))
    assert not can_score_exactly(scorer, (("sad",), ("sadness",)))


def test_alternative_answer_words_add_up(settings) -> None:
    def scorer(messages, labels):
        table = {"license": 0.2, "licence": 0.3, "docs": 0.5}
        return [table[w] for w in labels]

    client = LLMClient(ScriptedBackend([], label_scorer=scorer), PriceTable(settings))
    prompt = LabelPrompt(labels=("license", "docs"), instruction="{text}", alternatives=(("license", "licence"), ("docs",)))
    probs = ZeroShotClassifier(client, prompt, calibration="none").raw_proba(["x"])
    assert np.allclose(probs, [[0.5, 0.5]])


# --- recorded answers ---------------------------------------------------------------------------------------


def test_recorded_answers_carry_label_names_checked_on_replay(tmp_path: Path) -> None:
    labels = ("ham", "spam", "neutral")
    ids, texts, y = keyword_stream(labels, 12)
    path = write_oracle(tmp_path / "a.jsonl", "mail", labels, ids, texts, y)
    first = json.loads(path.read_text().splitlines()[1])
    assert first["label"] == labels[y[0]] and len(first["text_sha1"]) == 12
    replay = AnnotationAnswerer(path, labels)
    replay.check_covers(ids, texts)
    assert replay.reference(ids) == y
    reordered = AnnotationAnswerer(path, ("neutral", "spam", "ham"))  # the same names in another order
    assert reordered.reference(ids) == [("neutral", "spam", "ham").index(labels[c]) for c in y]
    assert np.allclose(reordered(ids[:1], texts[:1]).probs[0], np.eye(3)[("neutral", "spam", "ham").index(labels[y[0]])])
    with pytest.raises(AtlasError, match=r"recorded for the labels ham, spam, neutral .* this run's task has negative, positive"):
        AnnotationAnswerer(path, ("negative", "positive"))
    with pytest.raises(AtlasError, match="recorded answers are for other texts"):
        replay.check_covers(ids, ["changed"] + texts[1:])
    legacy = tmp_path / "legacy.jsonl"
    legacy.write_text('{"id": "a", "label": 1, "probs": [0.2, 0.8], "model": "m"}\n')
    assert AnnotationAnswerer(legacy, ("negative", "positive")).reference(["a"]) == [1]
    with pytest.raises(AtlasError, match="2 class probabilities, but the task has 3 classes"):
        AnnotationAnswerer(legacy, labels)


def test_annotate_records_any_task_and_refuses_a_wrong_label_set(tmp_path: Path) -> None:
    labels = ("ham", "spam", "neutral")
    ids, texts, y = keyword_stream(labels, 30)
    stream = write_stream(tmp_path / "s.jsonl", labels, ids, texts, y)
    out = tmp_path / "rec.jsonl"
    annotate = ("cascade", "annotate", "--stream", str(stream), "--labels", "ham,spam,neutral", "--llm", "scripted:surely spam", "--out", str(out))
    assert atlas_process(*annotate, "--limit", "10").returncode == 0
    result = atlas_process(*annotate, "--limit", "30", "--resume")  # continues after the 10 recorded
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    # a chat-only model: its answers are parsed for the task's words
    assert rows[0]["labels"] == list(labels) and all(r["label"] == "spam" for r in rows[1:]) and len(rows) == 31
    replayed = tmp_path / "run"
    wrong = atlas_process("cascade", "run", "--stream", str(stream), "--labels", "ham,spam,other", "--llm", f"annotations:{out}",
                          "--limit", "30", "--out", str(replayed))
    assert wrong.returncode == 2 and "label 'neutral' is not in the task's label set" in " ".join(wrong.stderr.split())
    assert "Traceback" not in wrong.stderr


def test_task_flag_errors_exit_2(tmp_path: Path) -> None:
    result = atlas_process("cascade", "run", "--labels", "a,a", "--stream", "x.csv", "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "labels must be distinct" in " ".join(result.stderr.split()) and "Traceback" not in result.stderr


# --- the local model: whole continuations ----------------------------------------------------------------------


@pytest.mark.local_model
@pytest.mark.slow  # loads the local model: on a clean clone its first load de-quantizes it (about 20 s), as in test_local_backend.py
def test_multi_token_words_are_scored_as_whole_continuations() -> None:
    import torch

    from atlas.config import load_settings
    from tests.conftest import SHARED_MODELS_DIR

    settings = load_settings(environ={"ATLAS_MODELS_DIR": str(SHARED_MODELS_DIR)}, local__batch_size=2, local__quantize="none")
    backend = make_llm("local", settings, cache=False).backend
    task = Task(labels=("very positive", "very negative", "sad", "sadness"))
    prompt = LabelPrompt.from_task(task)
    texts = ["I loved it.", "It was dreadful and boring.", "ok"]
    rows, _ = backend.score_next_token([prompt.messages(t) for t in texts], list(prompt.labels))
    singles = [backend.score_next_token([prompt.messages(t)], list(prompt.labels))[0][0] for t in texts]
    assert np.allclose(rows, singles, atol=1e-4)  # batched with shared prefixes = one at a time
    assert rows[0][0] != rows[0][1]  # two words that share their first token still get their own scores

    def brute(text: str, seq: tuple[int, ...]) -> float:
        ids = backend.tokenizer(backend.prompt_text(prompt.messages(text)), add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logprobs = torch.log_softmax(backend._model(torch.tensor([ids + list(seq)])).logits[0].float(), -1)
        return float(sum(logprobs[len(ids) - 1 + j, seq[j]] for j in range(len(seq))))

    spellings = backend._label_spellings("very positive")
    assert all(len(s) >= 2 for s in spellings)
    expected = np.log(sum(np.exp(brute(texts[0], s)) for s in spellings))
    assert rows[0][0] == pytest.approx(expected, abs=1e-3)
    # "sad" excludes the continuations that go on to "sadness": its score is below the plain prefix's
    plain = np.log(sum(np.exp(brute(texts[2], s)) for s in backend._label_spellings("sad")))
    assert rows[2][2] < plain


def test_shipped_text_sources_answers_cover_the_stream_and_name_its_labels() -> None:
    from benchmarks.cascade.run import annotation_path

    stream = load_stream("text-sources", 2000, 0)
    assert stream.labels == TEXT_SOURCES.labels and len({i.id for i in stream.items}) == 2000
    assert [sum(i.label == c for i in stream.items) for c in range(4)] == [500] * 4
    answers = AnnotationAnswerer(annotation_path("text-sources-local-2000.jsonl"), TEXT_SOURCES.labels)
    answers.check_covers([i.id for i in stream.items], [i.text for i in stream.items])  # ids and text hashes
    assert answers.model.startswith("local:")
    assert [i.id for i in load_stream("text-sources", 300, 0).items] == [i.id for i in stream.items[:300]]  # prefixes
