"""Every continual learner on tiny, trivially separable tasks; buffers, determinism, parameters."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.continual.evaluation import TrainingPlan, compare, run_learner
from benchmarks.continual.scenarios import Scenario, Task, split_digits
from policies.learners import LEARNERS, AGEM, ExperienceReplay, StreamSpec, make_learner
from policies.learners.buffer import Reservoir


def _blobs(seed: int, classes: tuple[int, ...], n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated Gaussian blobs, one per class, in 8 dimensions."""
    rng = np.random.default_rng(seed)
    centres = np.eye(8)[list(classes)] * 4.0
    y = np.repeat(np.array(classes), n // len(classes))
    return (centres[np.searchsorted(classes, y)] + rng.normal(0, 0.3, (len(y), 8))).astype(np.float32), y


def _separable(protocol: str) -> Scenario:
    tasks = []
    for task_id, classes in enumerate([(0, 1), (2, 3)]):
        X_train, y_train = _blobs(task_id, classes)
        X_test, y_test = _blobs(100 + task_id, classes)
        tasks.append(Task(task_id, f"t{task_id}", classes, X_train, y_train, X_test, y_test))
    return Scenario("blobs", protocol, tuple(tasks), 8, 4)


@pytest.mark.parametrize("name", list(LEARNERS))
def test_each_learner_learns_a_separable_task(name: str) -> None:
    run = run_learner(name, make_learner(name), _separable("task-il"), seed=0, plan=TrainingPlan(epochs=5, batch_size=10))
    assert run.acc_matrix[0, 0] >= 0.95, run.acc_matrix  # the first task, right after training it
    assert run.acc_matrix[1, 1] >= 0.95, run.acc_matrix
    assert run.memory_bytes > 0 and run.time_s >= 0


@pytest.mark.parametrize("name", ["replay", "ncm", "knn", "ridge", "joint"])
def test_methods_that_keep_data_or_statistics_remember_in_class_il(name: str) -> None:
    run = run_learner(name, make_learner(name), _separable("class-il"), seed=0, plan=TrainingPlan(epochs=5, batch_size=10))
    assert run.acc_matrix[1, 0] >= 0.8, run.acc_matrix


def test_naive_forgets_in_class_il() -> None:
    run = run_learner("naive", make_learner("naive"), _separable("class-il"), seed=0, plan=TrainingPlan(epochs=5, batch_size=10))
    assert run.acc_matrix[0, 0] >= 0.95 and run.acc_matrix[1, 0] <= 0.2


def test_replay_buffer_stays_at_its_size() -> None:
    learner = ExperienceReplay(buffer_size=25).setup(StreamSpec(8, 4, "class-il"))
    for task_id, classes in enumerate([(0, 1), (2, 3)]):
        learner.begin_task(task_id, classes)
        X, y = _blobs(task_id, classes, n=100)
        for start in range(0, 100, 10):
            learner.observe(X[start:start + 10], y[start:start + 10], task_id)
            assert len(learner.buffer_) == min(25, 10 * (start // 10 + 1) + 100 * task_id)
        learner.end_task(task_id)
    assert len(learner.buffer_) == 25 and learner.buffer_.seen == 200
    assert set(learner.buffer_.task.tolist()) == {0, 1}  # both tasks are represented


def test_reservoir_keeps_every_example_with_equal_chance() -> None:
    kept = np.zeros(100)
    for trial in range(400):
        reservoir = Reservoir(10, 1, np.random.default_rng(trial))
        reservoir.add(np.arange(100, dtype=np.float32)[:, None], np.arange(100), 0)
        kept[reservoir.stored()[1]] += 1
    assert kept.sum() == 4000
    share = kept / 400  # expected 0.1 for every position
    assert share[:50].mean() == pytest.approx(0.1, abs=0.02) and share[50:].mean() == pytest.approx(0.1, abs=0.02)
    with pytest.raises(ValueError, match="at least 1"):
        Reservoir(0, 1, np.random.default_rng(0))


def test_agem_memory_holds_only_finished_tasks_within_its_size() -> None:
    learner = AGEM(buffer_size=30).setup(StreamSpec(8, 6, "class-il"))
    for task_id, classes in enumerate([(0, 1), (2, 3), (4, 5)]):
        learner.begin_task(task_id, classes)
        X, y = _blobs(task_id, classes, n=60)
        learner.observe(X, y, task_id)
        assert set(learner.memory_) == set(range(task_id))
        learner.end_task(task_id)
        assert learner.memory_size() <= 30
    assert [len(y) for _, y in learner.memory_.values()] == [10, 10, 10]


@pytest.mark.parametrize("name", ["ewc", "si", "replay", "knn", "ridge"])
def test_same_seed_same_numbers(name: str) -> None:
    plan = TrainingPlan(epochs=2)
    first = compare({name: make_learner(name)}, lambda s: split_digits("class-il", s), [1], plan)[0]
    again = compare({name: make_learner(name)}, lambda s: split_digits("class-il", s), [1], plan)[0]
    assert np.array_equal(first.acc_matrix, again.acc_matrix) and np.array_equal(first.init_acc, again.init_acc)
    assert first.memory_bytes == again.memory_bytes


def test_different_seeds_differ() -> None:
    plan = TrainingPlan(epochs=2)
    runs = compare({"naive": make_learner("naive")}, lambda s: split_digits("class-il", s), [0, 1], plan)
    assert not np.array_equal(runs[0].acc_matrix, runs[1].acc_matrix)


def test_parameters_are_in_init_and_clone_is_unfitted() -> None:
    learner = make_learner("ewc", ewc_lambda=7.0)
    assert learner.get_params()["ewc_lambda"] == 7.0
    twin = learner.clone(random_state=3)
    assert twin.get_params() == {**learner.get_params(), "random_state": 3}
    assert not hasattr(twin, "net_")
    assert "OnlineEWC(ewc_lambda=7.0" in repr(learner)


def test_bad_learner_and_parameters_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="choose from naive, ewc, si, lwf, replay, agem, ncm, knn, ridge, joint"):
        make_learner("gem")
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'; choose one of adam, sgd"):
        make_learner("naive", optimizer="rmsprop").setup(StreamSpec(8, 2, "domain-il"))
    with pytest.raises(ValueError, match="unknown protocol"):
        StreamSpec(8, 2, "online-il")
    with pytest.raises(ValueError, match="heads"):
        StreamSpec(8, 2, "task-il")
    with pytest.raises(ValueError, match="alpha must be positive"):
        make_learner("ridge", alpha=0).setup(StreamSpec(8, 2, "domain-il"))
    with pytest.raises(ValueError, match="n_neighbors"):
        make_learner("knn", n_neighbors=0).setup(StreamSpec(8, 2, "domain-il"))


def test_prediction_before_training_and_task_il_restriction() -> None:
    X, _ = _blobs(0, (0, 1))
    for name in LEARNERS:
        learner = make_learner(name).setup(StreamSpec(8, 4, "task-il", heads=((0, 1), (2, 3))))
        assert set(learner.predict(X, task_id=1).tolist()) <= {2, 3}, name  # only the task's head, even untrained
        learner.begin_task(0, (0, 1))
        learner.observe(*_blobs(0, (0, 1)), 0)
        learner.end_task(0)
        assert set(learner.predict(X, task_id=1).tolist()) <= {2, 3}, name


def test_class_il_prediction_never_names_an_unseen_class() -> None:
    for name in LEARNERS:
        learner = make_learner(name).setup(StreamSpec(8, 4, "class-il", epochs=2, batch_size=10))
        learner.begin_task(0, (0, 1))
        X, y = _blobs(0, (0, 1))
        learner.observe(X, y, 0)
        learner.end_task(0)
        assert set(learner.predict(_blobs(5, (2, 3))[0]).tolist()) <= {0, 1}, name


@pytest.mark.parametrize("name", ["replay", "agem", "ewc"])
def test_buffers_take_each_example_once_across_epochs(name: str) -> None:
    learner = make_learner(name).setup(StreamSpec(8, 4, "class-il", epochs=3))
    learner.begin_task(0, (0, 1))
    X, y = _blobs(0, (0, 1), n=40)
    for epoch in range(3):
        learner.begin_epoch(epoch)
        for start in range(0, 40, 10):
            learner.observe(X[start:start + 10], y[start:start + 10], 0)
    buffer = {"replay": "buffer_", "agem": "incoming_", "ewc": "task_sample_"}[name]
    stored = getattr(learner, buffer)
    assert stored.seen == 40 and len({row.tobytes() for row in stored.stored()[0]}) == len(stored) == 40


def test_agem_refuses_a_buffer_smaller_than_the_task_count() -> None:
    learner = AGEM(buffer_size=2).setup(StreamSpec(8, 6, "class-il"))
    with pytest.raises(ValueError, match="buffer_size 2 is smaller than the number of tasks \\(3\\)"):
        for task_id, classes in enumerate([(0, 1), (2, 3), (4, 5)]):
            learner.begin_task(task_id, classes)
            learner.observe(*_blobs(task_id, classes, n=20), task_id)
            learner.end_task(task_id)


def test_si_importance_is_never_negative() -> None:
    learner = make_learner("si").setup(StreamSpec(8, 4, "domain-il"))
    for task_id, classes in enumerate([(0, 1), (2, 3)]):
        learner.begin_task(task_id, classes)
        learner.observe(*_blobs(task_id, classes), task_id)
        learner.end_task(task_id)
    assert all(float(w.min()) >= 0.0 for w in learner.importance_) and any(float(w.max()) > 0 for w in learner.importance_)


def test_misuse_gives_errors_that_say_what_to_do() -> None:
    X, y = _blobs(0, (0, 1))
    with pytest.raises(RuntimeError, match="call setup\\(spec\\) first"):
        make_learner("ncm").predict(X)
    learner = make_learner("naive").setup(StreamSpec(8, 4, "task-il", heads=((0, 1), (2, 3))))
    with pytest.raises(ValueError, match="task-il predictions need a task id in 0..1, got None"):
        learner.predict(X)
    with pytest.raises(ValueError, match="got 5"):
        learner.predict(X, task_id=5)
    with pytest.raises(ValueError, match="task 0 was not begun"):
        learner.observe(X, y, 0)
    learner.begin_task(0, (0, 1))
    with pytest.raises(ValueError, match="labels \\[2, 3\\] are not among task 0's classes \\[0, 1\\]"):
        learner.observe(*_blobs(1, (2, 3)), 0)
    with pytest.raises(ValueError, match="expected X of shape \\(n, 8\\)"):
        learner.observe(X[:, :4], y, 0)
    with pytest.raises(ValueError, match="outside 0..3"):
        StreamSpec(8, 4, "task-il", heads=((0, 1), (4, 5)))
    with pytest.raises(ValueError, match="subset of 0..3"):
        learner.begin_task(1, (3, 9))
