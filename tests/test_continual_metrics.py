"""Continual-learning metrics on hand-made accuracy matrices, and the scenarios' contents and errors."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.continual.metrics import average_accuracy, backward_transfer, forgetting, forward_transfer, mean_std, summarize
from benchmarks.continual.scenarios import ScenarioError, check_scenario, permuted_digits, split_digits

# R[i][j]: accuracy on task j after training tasks 0..i
R = np.array([
    [0.9, 0.1, 0.2],
    [0.6, 0.8, 0.3],
    [0.5, 0.7, 0.95],
])
BASELINE = np.array([0.1, 0.2, 0.1])


def test_average_accuracy_is_the_mean_of_the_last_row() -> None:
    assert average_accuracy(R) == pytest.approx((0.5 + 0.7 + 0.95) / 3)


def test_backward_transfer_compares_final_with_just_trained() -> None:
    assert backward_transfer(R) == pytest.approx(((0.5 - 0.9) + (0.7 - 0.8)) / 2)


def test_forward_transfer_compares_before_training_with_the_baseline() -> None:
    assert forward_transfer(R, BASELINE) == pytest.approx(((0.1 - 0.2) + (0.3 - 0.1)) / 2)


def test_forgetting_uses_the_best_earlier_accuracy() -> None:
    # task 0: best 0.9 -> 0.5; task 1: best 0.8 -> 0.7
    assert forgetting(R) == pytest.approx(((0.9 - 0.5) + (0.8 - 0.7)) / 2)
    improving = np.array([[0.5, 0.0], [0.7, 0.9]])  # learning task 1 helped task 0
    assert forgetting(improving) == pytest.approx(-0.2)
    assert backward_transfer(improving) == pytest.approx(0.2)


def test_no_forgetting_and_perfect_memory() -> None:
    perfect = np.tril(np.ones((4, 4)))  # each task perfect once trained, never forgotten
    assert average_accuracy(perfect) == 1.0
    assert backward_transfer(perfect) == 0.0
    assert forgetting(perfect) == 0.0
    assert forward_transfer(perfect, np.zeros(4)) == 0.0


def test_single_task_has_no_transfer() -> None:
    one = [[0.8]]
    assert summarize(one, [0.1]) == {"acc": 0.8, "bwt": 0.0, "fwt": 0.0, "forgetting": 0.0}


def test_bad_matrices_are_refused() -> None:
    with pytest.raises(ValueError, match="square"):
        average_accuracy([[0.1, 0.2]])
    with pytest.raises(ValueError, match="one accuracy per task"):
        forward_transfer(R, [0.1, 0.2])


def test_mean_and_std_over_seeds_elementwise() -> None:
    mean, std = mean_std([0.2, 0.4])  # sample standard deviation: sqrt(2 * 0.1**2 / 1)
    assert mean == pytest.approx(0.3) and std == pytest.approx(0.1 * np.sqrt(2))
    mean, std = mean_std([np.eye(2), np.zeros((2, 2))])
    assert mean.tolist() == [[0.5, 0.0], [0.0, 0.5]] and std == pytest.approx(np.eye(2) * np.sqrt(0.5))
    mean, std = mean_std([0.7])
    assert mean == pytest.approx(0.7) and std == 0.0


def test_split_digits_has_five_two_class_tasks_with_disjoint_splits() -> None:
    scenario = split_digits("class-il", seed=0)
    assert [t.classes for t in scenario.tasks] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    for task in scenario.tasks:
        assert set(task.y_train) == set(task.y_test) == set(task.classes)
        train_rows = {row.tobytes() for row in task.X_train}
        assert not any(row.tobytes() in train_rows for row in task.X_test)
    assert scenario.n_features == 64 and 0.0 <= scenario.tasks[0].X_train.min() and scenario.tasks[0].X_train.max() <= 1.0
    assert scenario.spec(1, 32).heads is None
    assert split_digits("task-il", seed=0).spec(1, 32).heads == ((0, 1), (2, 3), (4, 5), (6, 7), (8, 9))


def test_permuted_digits_permutes_pixels_per_task() -> None:
    scenario = permuted_digits(6, seed=3)
    assert len(scenario.tasks) == 6 and scenario.protocol == "domain-il"
    first, second = scenario.tasks[0], scenario.tasks[1]
    assert np.array_equal(np.sort(first.X_train, axis=1), np.sort(second.X_train, axis=1))  # same pixels, moved
    assert not np.array_equal(first.X_train, second.X_train)
    assert np.array_equal(permuted_digits(6, seed=3).tasks[4].X_test, scenario.tasks[4].X_test)


def test_unknown_scenario_and_unsupported_protocol_list_the_choices() -> None:
    with pytest.raises(ScenarioError, match="split-digits, permuted-digits, text-domains"):
        check_scenario("split-mnist")
    with pytest.raises(ScenarioError, match="supports domain-il"):
        check_scenario("permuted-digits", "class-il")
    with pytest.raises(ScenarioError, match="supports class-il, task-il"):
        split_digits("domain-il")
    assert check_scenario("split-digits") == "class-il"
    with pytest.raises(ScenarioError, match="at least 2 tasks"):
        permuted_digits(1)
