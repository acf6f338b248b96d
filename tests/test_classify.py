"""Calibration maths on a scripted double with known label probabilities (no model needed)."""

import numpy as np
import pytest

from atlas.llm import LLMClient, ScriptedBackend, ZeroShotClassifier
from atlas.llm.classify import LabelPrompt, normalise_label_logprobs
from atlas.llm.meter import PriceTable

PROMPT = LabelPrompt(labels=("neg", "pos"), instruction="{text} -> {labels}?", max_words=3, answer_prefix="Label:")


def classifier(settings, probs_by_text, calibration="batch"):
    scorer = lambda msgs, labels: probs_by_text[msgs[0].content.split(" -> ")[0]]  # noqa: E731
    client = LLMClient(ScriptedBackend([], label_scorer=scorer), PriceTable(settings))
    return ZeroShotClassifier(client, PROMPT, calibration=calibration)


def test_prompt_truncates_and_prefills():
    msgs = PROMPT.messages("one two three four five")
    assert msgs[0].content == "one two three ... -> neg or pos?"
    assert msgs[-1].role == "assistant" and msgs[-1].content == "Label:"


def test_normalise_handles_missing_labels():
    probs = normalise_label_logprobs(np.array([[np.log(0.2), -np.inf], [np.log(0.1), np.log(0.3)]]))
    assert np.allclose(probs, [[1.0, 0.0], [0.25, 0.75]])


def test_batch_calibration_uses_only_items_seen_so_far(settings):
    probs = {"a": [0.2, 0.8], "b": [0.4, 0.6], "c": [0.9, 0.1]}
    clf = classifier(settings, probs)
    first = clf.predict_proba(["a"])
    assert np.allclose(first, [[0.5, 0.5]])  # an item alone is divided by itself
    both = clf.predict_proba(["b", "c"])
    mean_ab = np.array([0.3, 0.7])
    expected_b = np.array([0.4, 0.6]) / mean_ab
    assert np.allclose(both[0], expected_b / expected_b.sum())  # b sees a and b, not c
    assert clf.n_seen_ == 3 and np.allclose(clf.label_sum_, [1.5, 1.5])


def test_content_free_calibration(settings):
    probs = {"N/A": [0.1, 0.9], "": [0.1, 0.9], "[MASK]": [0.1, 0.9], "x": [0.3, 0.7]}
    clf = classifier(settings, probs, calibration="content_free")
    out = clf.predict_proba(["x"])[0]
    expected = np.array([0.3 / 0.1, 0.7 / 0.9])
    assert np.allclose(out, expected / expected.sum())
    assert out[0] > 0.5  # the model's pull towards "pos" is divided out


def test_no_calibration_is_raw(settings):
    clf = classifier(settings, {"x": [0.3, 0.7]}, calibration="none")
    assert np.allclose(clf.predict_proba(["x"]), [[0.3, 0.7]])
    assert clf.predict(["x"]).tolist() == [1]


def test_unknown_calibration(settings):
    with pytest.raises(ValueError, match="not one of none, content_free, batch"):
        classifier(settings, {}, calibration="platt")
