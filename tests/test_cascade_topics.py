"""Latent topics of answered texts (`policies/cascade/topics.py`) and the default level's topic head: fitted
without labels on texts already answered only, they carry a few labels over to words that occur together."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from policies.cascade.cascade import OnlineCascade
from policies.cascade.deferral import ThresholdPolicy
from policies.cascade.llm_level import LLMAnswers, LLMLevel
from policies.cascade.nb_text import NBTextLevel
from policies.cascade.topics import LatentTopics

POSITIVE, NEGATIVE = ("wonderful", "superb", "moving", "brilliant"), ("awful", "dreary", "clumsy", "tedious")
FRESH_POSITIVE, FRESH_NEGATIVE = ("radiant", "luminous", "masterful", "gripping"), ("turgid", "leaden", "inept", "plodding")
FILLER = ("film", "plot", "actor", "scene", "story", "music", "ending", "camera", "cast", "script")


def review(rng: np.random.Generator, known: tuple[str, ...], fresh: tuple[str, ...], known_words: int, fresh_words: int) -> str:
    words = list(rng.choice(known, known_words)) + list(rng.choice(fresh, fresh_words)) + list(rng.choice(FILLER, 5))
    rng.shuffle(words)
    return " ".join(words)


def test_topics_fit_on_answered_texts_at_doublings_from_a_bounded_sample() -> None:
    rng = np.random.default_rng(0)
    texts = [review(rng, POSITIVE if n % 2 else NEGATIVE, FRESH_POSITIVE if n % 2 else FRESH_NEGATIVE, 2, 2) for n in range(1300)]
    topics = LatentTopics(components=4, max_docs=300, first_fit=200, seed=1)
    with pytest.raises(RuntimeError, match="not fitted yet"):
        topics.transform(texts[:1])
    fits = [n + 100 for n in range(0, 1300, 100) if topics.observe(texts[n:n + 100])]
    assert fits == [200, 400, 800] and topics.ready and len(topics.sample_) == 300  # first at 200, then each doubling
    vectors = topics.transform(texts[:5])
    assert vectors.shape == (5, 4) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    again = LatentTopics(components=4, max_docs=300, first_fit=200, seed=1)
    for n in range(0, 1300, 100):
        again.observe(texts[n:n + 100])
    assert np.allclose(again.transform(texts[:5]), vectors)  # the same seed, the same topics


def test_a_stream_of_one_repeated_text_leaves_the_topics_unfitted() -> None:
    topics = LatentTopics(components=4, first_fit=10)
    assert not topics.observe(["the same words again"] * 50) and not topics.ready
    with pytest.raises(ValueError, match="at least 2"):
        LatentTopics(components=1)
    with pytest.raises(ValueError, match="topics 0"):
        NBTextLevel(topics=1)


def test_the_topic_head_carries_labels_over_to_words_never_labelled() -> None:
    """Labels only on reviews with the known words; unlabelled reviews pair them with fresh words; test reviews
    have fresh words only. The n-gram head has never seen them, the topic head has."""
    rng = np.random.default_rng(3)
    answered = [review(rng, POSITIVE if n % 2 else NEGATIVE, FRESH_POSITIVE if n % 2 else FRESH_NEGATIVE, 2, 2) for n in range(600)]
    labelled = [(review(rng, POSITIVE if n % 2 else NEGATIVE, FRESH_POSITIVE, 2, 0), n % 2) for n in range(60)]
    tests = [(review(rng, FRESH_POSITIVE if n % 2 else FRESH_NEGATIVE, FRESH_POSITIVE, 3, 0), n % 2) for n in range(100)]
    scores = {}
    for topics in (0, 8):
        level = NBTextLevel(n_features=2**16, topics=topics, seed=0)
        level.partial_fit([t for t, _ in labelled], [y for _, y in labelled])
        level.observe(answered)
        before = pickle.dumps(level)
        probs = level.predict_proba([t for t, _ in tests])
        assert pickle.dumps(level) == before  # prediction changes nothing
        scores[topics] = float(np.mean(probs.argmax(axis=1) == np.array([y for _, y in tests])))
    assert scores[8] >= 0.9 and scores[0] <= 0.65


class Recorder(NBTextLevel):
    """Notes the order in which the cascade asks and shows it texts."""

    def __init__(self) -> None:
        super().__init__(n_features=2**14, topics=4)
        self.calls: list[tuple[str, tuple[str, ...]]] = []

    def predict_proba(self, texts):
        self.calls.append(("predict", tuple(texts)))
        return super().predict_proba(texts)

    def observe(self, texts) -> None:
        self.calls.append(("observe", tuple(texts)))
        super().observe(texts)


def test_the_cascade_shows_a_level_only_texts_it_has_answered() -> None:
    rng = np.random.default_rng(1)
    texts = [review(rng, POSITIVE if n % 2 else NEGATIVE, FILLER, 2, 1) + f" item {n}" for n in range(96)]
    labels = {f"r{n}": n % 2 for n in range(96)}
    level = Recorder()
    llm = LLMLevel(lambda ids, _texts: LLMAnswers([labels[i] for i in ids], np.eye(2)[[labels[i] for i in ids]]), cost=100.0)
    OnlineCascade([level], llm, ThresholdPolicy(0.9), batch_size=32).run(list(labels), texts)
    answered: set[str] = set()
    for kind, batch in level.calls:
        if kind == "observe":
            answered |= set(batch)
        else:
            assert not answered & set(batch), "a batch was shown to observe before it was answered"
    assert answered == set(texts)


def test_k_classes_with_topics_give_probabilities_over_every_class() -> None:
    words = (POSITIVE, NEGATIVE, ("odd", "strange", "weird", "eerie"))
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 3, 900).tolist()
    texts = [review(rng, words[y], FILLER, 2, 2) for y in labels]
    level = NBTextLevel(classes=3, n_features=2**16, topics=6, seed=0)
    level.observe(texts[:600])
    level.partial_fit(texts[:300], labels[:300])
    assert level.topic_head_ is not None and list(level.topic_head_.classes_) == [0, 1, 2]
    probs = level.predict_proba(texts[600:])
    assert probs.shape == (300, 3) and np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == np.array(labels[600:])).mean() > 0.9


# --- unlabelled text from outside the stream -------------------------------------------------------------------


def test_unlabelled_text_from_outside_the_stream_gives_the_topics_before_the_first_item() -> None:
    """A corpus handed over before the stream fits the topics at once, so the very first labels train the topic
    head; the corpus teaches no labels, and the stream's own texts join it in the reservoir afterwards."""
    rng = np.random.default_rng(7)
    corpus = [review(rng, POSITIVE if n % 2 else NEGATIVE, FRESH_POSITIVE if n % 2 else FRESH_NEGATIVE, 2, 2) for n in range(600)]
    stream = [review(rng, POSITIVE if n % 2 else NEGATIVE, FILLER, 2, 1) + f" item {n}" for n in range(64)]
    labels = {f"r{n}": n % 2 for n in range(64)}
    llm = LLMLevel(lambda ids, _texts: LLMAnswers([labels[i] for i in ids], np.eye(2)[[labels[i] for i in ids]]), cost=100.0)
    level = NBTextLevel(n_features=2**16, topics=6, seed=0)
    cascade = OnlineCascade([level], llm, ThresholdPolicy(1.0), batch_size=32)
    cascade.observe_unlabelled(corpus)
    assert level.topics_ is not None and level.topics_.ready and level.topics_.observed_ == 600
    assert not level.heads_ and level.topic_head_ is None and cascade.position_ == 0  # no label, no item
    cascade.run(list(labels), stream)
    assert level.topic_head_ is not None and level.topics_.observed_ == 664
    without = NBTextLevel(n_features=2**16, topics=6, seed=0)
    OnlineCascade([without], llm, ThresholdPolicy(1.0), batch_size=32).run(list(labels), stream)
    assert without.topic_head_ is None  # 64 answered texts: under the first fit's 500


def test_auto_unlabelled_text_is_the_sources_reviews_the_stream_does_not_hold() -> None:
    from benchmarks.streams.items import load_stream, unlabelled_texts
    from benchmarks.streams.movie_reviews import load_reviews

    stream = load_stream("imdb", 300, seed=4)
    texts, dropped = unlabelled_texts("auto", stream)
    everything = load_reviews("imdb")
    assert len(texts) + dropped == len(everything) - 300 and not set(texts) & {item.text for item in stream.items}
    both = load_stream("imdb-then-rt", 200, seed=4)
    texts, dropped = unlabelled_texts("auto", both)
    assert len(texts) + dropped == len(everything) + len(load_reviews("rotten_tomatoes")) - 200
    assert unlabelled_texts("none", stream) == ([], 0) and unlabelled_texts("auto", load_stream("text-sources", 50, seed=0)) == ([], 0)


def test_an_unlabelled_file_drops_stream_items_and_never_reads_labels(tmp_path) -> None:
    import json

    from benchmarks.streams.items import StreamError, load_stream, unlabelled_texts

    stream_file = tmp_path / "stream.jsonl"
    stream_file.write_text("".join(json.dumps({"text": t, "label": "positive"}) + "\n" for t in ("a fine film", "a dull film")), encoding="utf-8")
    stream = load_stream(str(stream_file))
    corpus = tmp_path / "corpus.csv"
    corpus.write_text('text,label,id\n"a dull film",whatever,1\n"another film, long and odd",not-a-label,\nmore words here,,{}\n'
                      '"A  Fine<br />FILM ",,\n', encoding="utf-8")  # ids and labels are never read; a copy differing in case and spacing is caught
    assert unlabelled_texts(str(corpus), stream) == (["another film, long and odd", "more words here"], 2)
    assert unlabelled_texts("auto", stream) == ([], 0)  # a file stream has no source to draw from
    with pytest.raises(StreamError, match="no such unlabelled text file"):
        unlabelled_texts(str(tmp_path / "missing.csv"), stream)
    (tmp_path / "empty.jsonl").write_text("\n", encoding="utf-8")
    with pytest.raises(StreamError, match="the unlabelled text is empty"):
        unlabelled_texts(str(tmp_path / "empty.jsonl"), stream)
    with pytest.raises(StreamError, match="give auto, none, or a .csv/.jsonl file"):
        unlabelled_texts("imdb-rest", stream)
