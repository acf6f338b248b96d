"""Leave-one-template-out folds, seen/unseen pair accounting, cost in queries, the demo table's width."""

from __future__ import annotations

from pathlib import Path

from atlas.cli.common import console
from atlas.cli.run import print_arms
from benchmarks.investigation.arms import targets
from benchmarks.investigation.generalisation import fold_questions, fold_tag, pair_accounting, tag_folds
from benchmarks.investigation.models import Question
from benchmarks.investigation.procedural import SCOPE_TAG
from memory.schema import PamphletIn, Provenance
from memory.store import MemoryStore


def _question(qid: str, template: str, start: str = "A", end: str = "B", difficulty: int = 1) -> Question:
    return Question(
        id=qid, incident=1, difficulty=difficulty, context=f'Alert "{start}" fired at 2024-01-01T00:00:00Z.',
        question=f'What is the IP address in the nearest "{end}" alert?', answer="10.0.0.1", answer_type="ip", template=template,
    )


def test_a_fold_never_holds_a_skill_learned_only_on_its_template(tmp_path: Path) -> None:
    store = MemoryStore.open(str(tmp_path / "m.sqlite"), embedder="hash:64", index_dir=tmp_path / "indexes")
    templates = {"q1": "bec", "q2": "spray", "q3": "bec"}
    learned = {
        "only bec": ["teacher_only:00000:q1", "teacher_only:00002:q3"],
        "only spray": ["teacher_only:00001:q2"],
        "both": ["teacher_only:00000:q1", "teacher_only:00001:q2"],
    }
    ids = {}
    for text, episodes in learned.items():
        plan = {"kind": "soc-hop", "from_alert": text, "from_kinds": ["ip"], "via": "ip", "to_alert": "B"}
        ids[text] = store.add(PamphletIn(text=f"skill {text}", plan=plan, audience="student", tags=[SCOPE_TAG], provenance=Provenance(episode_ids=episodes))).id
    counts = tag_folds(store, templates, ["bec", "spray"], (SCOPE_TAG,))
    assert counts == {"bec": 2, "spray": 2}
    for fold, banned in (("bec", "only bec"), ("spray", "only spray")):
        found = {hit.pamphlet.id for hit in store.search("skill", k=10, audience="student", tags=[SCOPE_TAG, fold_tag(fold)])}
        assert found == set(ids.values()) - {ids[banned]}
    assert tag_folds(store, templates, ["bec", "spray"], (SCOPE_TAG,)) == counts  # tagging again changes nothing
    store.close()
    questions = [_question("q1", "bec"), _question("q2", "spray"), _question("q3", "bec")]
    assert [q.id for q in fold_questions(questions, "bec", None)] == ["q1", "q3"] and [q.id for q in fold_questions(questions, "bec", 1)] == ["q1"]


def _record(index: int, qid: str, success: bool, solved_by: str = "student") -> dict:
    return {"index": index, "question": qid, "success": success, "solved_by": solved_by, "queries": {"student": 5, "teacher": 1}, "meta": {"difficulty": 1}}


def test_pairs_seen_before_in_the_run_are_told_apart() -> None:
    questions = {q.id: q for q in [_question("q1", "bec", "A", "B"), _question("q2", "bec", "A", "B"), _question("q3", "bec", "A", "C"), _question("q4", "bec", "C", "B")]}
    records = [_record(0, "q1", True, "teacher"), _record(1, "q2", True), _record(2, "q3", True), _record(3, "q4", False, "teacher")]
    alone = [_record(0, "q1", False), _record(1, "q2", False), _record(2, "q3", True), _record(3, "q4", False)]
    pairs = pair_accounting(records, alone, questions)
    assert pairs["episodes"] == {"seen": 1, "unseen": 3}
    assert pairs["solved_share"] == {"seen": 1 / 3, "unseen": 2 / 3}
    assert pairs["student_solved_unseen"] == 1 / 3 and pairs["student_alone_unseen"] == 1 / 3  # q3: solved by the student both ways


def _arm(success: float, queries: float, cost: float, first: float | None = None) -> dict:
    phase = {"success_rate": success, "queries_per_task": queries, "cost_per_task": cost, "lane_mix": {"paired": 1.0}, "episodes": 30}
    return {"episodes": 90, "success_rate": success, "mean_reward": success, "cost_per_task": cost, "tokens_per_task": 0.0, "queries_per_task": queries,
            "lane_mix": {"paired": 0.5, "escalate": 0.5}, "phases": {"first": {**phase, "success_rate": first if first is not None else success}, "middle": phase, "last": phase}}


def _results() -> dict:
    arms = {"student_only": _arm(0.3, 5.0, 0.001), "teacher_only": _arm(0.96, 24.0, 0.048), "atlas": _arm(0.96, 9.0, 0.004, first=0.90),
            "atlas_frozen_transfer": _arm(0.9, 8.0, 0.0016), "student_only_transfer": _arm(0.25, 5.0, 0.001)}
    fold = {"skills": 40, "memory": {"episodes": 10, "success_rate": 0.8, "queries_per_task": 7.0, "by_difficulty": {"1": {"episodes": 10, "success_rate": 0.8}}},
            "student_only": {"episodes": 10, "success_rate": 0.3, "queries_per_task": 5.0, "by_difficulty": {"1": {"episodes": 10, "success_rate": 0.3}}}}
    return {
        "training_questions": 90, "seconds": 12.0, "arms": arms,
        # the atlas arm's last third: 9 queries against the teacher's 24 (37.5%); in dollars it is 8% (a teacher query is priced at 10x)
        "last_third": {"atlas": {"episodes": 30, "success_rate": 0.96, "queries_per_task": 9.0, "cost_per_task": 0.004},
                       "teacher_only": {"episodes": 30, "success_rate": 0.965, "queries_per_task": 24.0, "cost_per_task": 0.048}},
        "leave_one_template_out": {"folds": {t: fold for t in ("bec", "malware", "oauth", "ransomware", "spray")}, "memory_success": 0.8, "student_only_success": 0.3},
        "pairs": {"episodes": {"seen": 60, "unseen": 30}, "solved_share": {"seen": 0.66, "unseen": 0.34}, "success_rate": {"seen": 0.97, "unseen": 0.95},
                  "student_solved_unseen": 0.7, "student_alone_unseen": 0.3},
    }


def test_cost_is_counted_in_queries_first() -> None:
    results = _results()
    checks = targets(results)
    cost = checks["last_third_queries_at_most_40pct_of_teacher"]
    assert cost["ratio"] == 9.0 / 24.0 and cost["met"] and round(cost["dollar_ratio"], 4) == round(0.004 / 0.048, 4)
    results["last_third"]["atlas"]["queries_per_task"] = 10.0  # 42% of the teacher's queries, though still 8% of its dollars
    assert not targets(results)["last_third_queries_at_most_40pct_of_teacher"]["met"]
    assert checks["success_rises_5_points"]["met"] and checks["last_third_success_within_1pt_of_teacher"]["met"]
    assert checks["leave_one_template_out_beats_student_by_20_points"]["met"] and checks["unseen_pairs_student_solves_half"]["met"]
    results["pairs"]["student_alone_unseen"] = 0.65  # not clearly more than without memory
    assert not targets(results)["unseen_pairs_student_solves_half"]["met"]


def test_the_demo_table_fits_80_columns(tmp_path: Path) -> None:
    results = _results()
    results["targets"] = targets(results)
    width = console.width
    console.width = 80
    try:
        with console.capture() as captured:
            print_arms(results, tmp_path / "a-rather-long-folder-name" / "demo")
    finally:
        console.width = width
    lines = captured.get().splitlines()
    assert max(len(line) for line in lines) <= 80
    assert any("atlas" in line and "9.0" in line for line in lines)  # the row is whole: queries per task shown
    assert any("spray" in line and "0.800" in line for line in lines)
