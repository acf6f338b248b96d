"""Investigation skills: what one hop of a solved investigation teaches, and how skills compose.

A skill is one hop: from an alert of some name (holding some entity kinds), follow the entity of one
kind through AlertEvidence to an alert of another name. Skills are distilled from every successful
route (teacher's or student's), stored as pamphlets, and carry the memory's track record. They are
read on two levels:

- by name: skills chain into a graph over alert names, so a route between two names that were never
  asked together is found by a bounded search (at most MAX_HOPS hops) over skills seen in other tasks;
- by kind: for alerts whose names no skill knows (another attack template), the skills whose source
  alert held similar entity kinds, and that followed a kind the asked alert also holds, still say
  which pivot tends to lead on.

Nothing here holds entity values: names of alert rules and entity kinds only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.investigation.incidents import KEY_COLUMN, KIND_NOUN

SKILL_KIND = "soc-hop"  # a pamphlet's plan: one hop
SKILLS_KIND = "soc-skills"  # a composed plan: the skills a student searches with
MAX_HOPS = 4
UNTESTED = 0.6  # the track record a skill counts with before its first use
NAME_DECAY = 0.7  # each further hop to the asked alert in the name graph
KIND_WEIGHT = 0.5  # evidence from entity kinds only counts less than evidence from names


def skill_cue(from_alert: str, via: str, to_alert: str) -> str:
    return f'from alert "{from_alert}" via the shared {KIND_NOUN[via]} to alert "{to_alert}"'


def skill_plan(from_alert: str, from_kinds: Iterable[str], via: str, to_alert: str) -> dict[str, Any]:
    return {"kind": SKILL_KIND, "from_alert": from_alert, "from_kinds": sorted(set(from_kinds)), "via": via, "to_alert": to_alert}


def skill_text(plan: dict[str, Any]) -> str:
    """What a reader sees: the cue first (retrieval matches on it), then how the hop is done."""
    kinds = ", ".join(KIND_NOUN[k] for k in plan["from_kinds"]) or "no recorded entities"
    return (
        f"{skill_cue(plan['from_alert'], plan['via'], plan['to_alert'])}: in AlertEvidence, take the start alert's "
        f"{plan['via']} entity ({KEY_COLUMN[plan['via']]}) and find the other alerts of the same incident with that "
        f"value in {KEY_COLUMN[plan['via']]}. The source alert held: {kinds}."
    )


def is_skill(plan: dict[str, Any] | None) -> bool:
    return bool(
        plan and plan.get("kind") == SKILL_KIND and plan.get("via") in KEY_COLUMN
        and isinstance(plan.get("from_alert"), str) and isinstance(plan.get("to_alert"), str)
        and all(k in KEY_COLUMN for k in plan.get("from_kinds", []))
    )


@dataclass(frozen=True)
class Skill:
    id: int
    from_alert: str
    from_kinds: frozenset[str]
    via: str
    to_alert: str
    uses: int
    mean_reward: float | None

    @property
    def track(self) -> float:
        return self.mean_reward if self.uses and self.mean_reward is not None else UNTESTED

    @classmethod
    def of(cls, item: dict[str, Any]) -> Skill:
        plan = item["plan"]
        return cls(int(item["id"]), plan["from_alert"], frozenset(plan["from_kinds"]), plan["via"], plan["to_alert"], int(item.get("uses") or 0), item.get("mean_reward"))

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "from_alert": self.from_alert, "from_kinds": sorted(self.from_kinds), "via": self.via, "to_alert": self.to_alert, "uses": self.uses, "mean_reward": self.mean_reward}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Skill:
        return cls(int(data["id"]), data["from_alert"], frozenset(data["from_kinds"]), data["via"], data["to_alert"], int(data["uses"]), data["mean_reward"])


def jaccard(a: frozenset[str] | set[str], b: frozenset[str] | set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 0.0


@dataclass(frozen=True)
class Choice:
    """How strongly the skills back following one entity kind from a group of alerts, and which skill does."""

    score: float
    skill: int | None
    by: str  # "name", "kind" or "none"


class SkillBook:
    """The skills one task's plan is composed from: a name graph for routes, kinds for unknown names."""

    def __init__(self, skills: Sequence[Skill]) -> None:
        self.skills = list(skills)
        self.by_from: dict[str, list[Skill]] = {}
        self.by_via: dict[str, list[Skill]] = {}
        for skill in self.skills:
            self.by_from.setdefault(skill.from_alert, []).append(skill)
            self.by_via.setdefault(skill.via, []).append(skill)

    def into(self, name: str) -> set[int]:
        """Ids of the skills that lead to an alert of this name."""
        return {s.id for s in self.skills if s.to_alert == name}

    def distances_to(self, end: str) -> dict[str, int]:
        """Hops from each known alert name to `end` in the name graph (a bounded backward search)."""
        into: dict[str, set[str]] = {}
        for skill in self.skills:
            into.setdefault(skill.to_alert, set()).add(skill.from_alert)
        distance, queue = {end: 0}, deque([end])
        while queue:
            name = queue.popleft()
            if distance[name] >= MAX_HOPS:
                continue
            for source in into.get(name, ()):
                if source not in distance:
                    distance[source] = distance[name] + 1
                    queue.append(source)
        return distance

    def route(self, start: str, end: str) -> list[Skill] | None:
        """The best-tracked chain of skills from `start` to `end` by name (shortest first), or None."""
        distance = self.distances_to(end)
        if start not in distance or start == end:
            return None
        chain, name = [], start
        while name != end:
            steps = [s for s in self.by_from.get(name, []) if distance.get(s.to_alert, MAX_HOPS + 1) == distance[name] - 1]
            best = max(steps, key=lambda s: (s.track, s.uses, -s.id))
            chain.append(best)
            name = best.to_alert
        return chain

    def choose(self, names: set[str], kinds: frozenset[str], via: str, end: str, end_kinds: frozenset[str], distance: dict[str, int]) -> Choice:
        """Support for following `via` from alerts with these names and entity kinds toward `end`."""
        best = Choice(0.0, None, "none")
        for skill in self.by_via.get(via, []):
            if skill.from_alert in names:
                if skill.to_alert == end:
                    score = skill.track
                elif skill.to_alert in distance:
                    score = skill.track * NAME_DECAY ** distance[skill.to_alert]
                else:
                    score = 0.1 * skill.track  # it leads somewhere, not known to lead on
                choice = Choice(score, skill.id, "name")
            else:
                similar = jaccard(kinds, skill.from_kinds)
                toward = 1.0 if via in end_kinds else 0.5
                choice = Choice(KIND_WEIGHT * skill.track * similar * toward, skill.id, "kind")
            if choice.score > best.score:
                best = choice
        return best


def confidence(book: SkillBook, start: str, end: str) -> tuple[int, float | None]:
    """(uses, mean reward) for the lane policy: the weakest skill of the name route, or untested."""
    chain = book.route(start, end)
    if not chain:
        return 0, None
    if any(s.uses == 0 or s.mean_reward is None for s in chain):
        return 0, None
    weakest = min(chain, key=lambda s: s.track)
    return min(s.uses for s in chain), weakest.track
