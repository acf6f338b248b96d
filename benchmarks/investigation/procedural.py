"""Procedural agents for the SOC world: no LLM, real SQL through the sandbox, never the answer.

The teacher investigates by systematic search: it finds the start alert and its incident, then
expands the alert-entity graph level by level (every entity of every reached alert) until the
nearest alert of the asked name appears. It succeeds often and costs many queries. What a solved
route teaches is distilled hop by hop into skills (`skills.py`).

The student searches too, but one entity kind per query, so each hop it follows costs one query and
its budget is small. Alone it can only look one hop around the start alert (it does not know which
pivots lead on); with skills from memory it follows the kinds the skills back, by alert name where the
names are known and by entity kinds where they are not, as deep as the question needs.

Both read only the task text and the observations their own queries return.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from atlas.agents.base import Attempt, Lesson, Review, TaskView, Tool, Validation
from benchmarks.investigation.incidents import ANSWER_COLUMNS, ANSWER_KIND, EVIDENCE_TYPE, KEY_COLUMN, KIND_OF_EVIDENCE_TYPE
from benchmarks.investigation.skills import MAX_HOPS, SKILLS_KIND, Skill, SkillBook, confidence, is_skill, skill_cue, skill_plan, skill_text
from benchmarks.investigation.solver import QUOTED, TIME

SCOPE_TAG = "benchmark:soc"
DEPTH_DECAY = 0.85  # a nearer alert is preferred: the question asks for the nearest one
ALONE = {True: 0.2, False: 0.1}  # the student's own prior for a first hop: kinds the asked alert holds first


def literal(value: Any) -> str:
    """A SQL string literal (single quotes doubled); values come from observations, not from users."""
    return "'" + str(value).replace("'", "''") + "'"


def id_list(ids: Sequence[str]) -> str:
    return ", ".join(literal(i) for i in ids)


@dataclass(frozen=True)
class Parsed:
    start: str
    time: str
    end: str
    kind: str
    column: str


def parse(task: TaskView) -> Parsed | None:
    """Start alert (quoted name and time) from the context, end alert from the question."""
    start, when, end = QUOTED.search(task.context), TIME.search(task.context), QUOTED.search(task.question)
    if not (start and when and end) or task.answer_type not in ANSWER_KIND:
        return None
    kind = ANSWER_KIND[task.answer_type]
    return Parsed(start.group(1), when.group(1), end.group(1), kind, ANSWER_COLUMNS[kind][task.answer_type])


def cue(start: str, end: str) -> str:
    return f'from alert "{start}" to the nearest "{end}"'


def kinds_of(text: Any) -> frozenset[str]:
    """Entity kinds from a comma-separated list of AlertEvidence.EntityType values."""
    return frozenset(KIND_OF_EVIDENCE_TYPE[t] for t in str(text or "").split(",") if t in KIND_OF_EVIDENCE_TYPE)


class _Investigation:
    """Queries both agents share; each returns None when the tool's budget is spent or data is missing."""

    def __init__(self, tool: Tool) -> None:
        self.tool = tool

    def rows(self, sql: str) -> list[tuple] | None:
        result = self.tool.run(sql)
        if result is None or result.status != "ok":
            return None
        return list(result.shown)

    def start_alert(self, parsed: Parsed) -> str | None:
        found = self.rows(f"SELECT SystemAlertId FROM SecurityAlert WHERE AlertName = {literal(parsed.start)} AND TimeGenerated LIKE {literal(parsed.time + '%')}")
        return str(found[0][0]) if found and len(found) == 1 else None

    def start_and_incident(self, parsed: Parsed) -> tuple[str, list[str]] | None:
        start = self.start_alert(parsed)
        if start is None:
            return None
        incident = self.rows(f"SELECT AlertIds FROM SecurityIncident WHERE AlertIds LIKE {literal('%' + start + '%')}")
        if not incident or len(incident) != 1:
            return None
        return start, [str(a) for a in json.loads(incident[0][0])]

    def read(self, alert: str, parsed: Parsed) -> str | None:
        values = self.rows(f"SELECT DISTINCT {parsed.column} FROM AlertEvidence WHERE AlertId = {literal(alert)} AND EntityType = {literal(EVIDENCE_TYPE[parsed.kind])}")
        if not values or len(values) != 1 or values[0][0] is None:
            return None
        return str(values[0][0])


class ProceduralTeacher:
    """Systematic breadth-first search over entity links: reliable, expensive."""

    name = "procedural-teacher"

    def solve(self, task: TaskView, tool: Tool, notes: Sequence[str] = ()) -> Attempt:
        parsed = parse(task)
        if parsed is None:
            return Attempt(None, reason="the task does not name a start alert, its time and an end alert")
        look = _Investigation(tool)
        found = look.start_and_incident(parsed)
        if found is None:
            return Attempt(None, reason="start alert or incident not found")
        start, incident = found
        parent: dict[str, tuple[str, str]] = {}
        names, kinds = {start: parsed.start}, {}
        visited, frontier = {start}, [start]
        seen: set[tuple[str, str]] = set()
        while frontier:
            reached: list[str] = []
            for alert in frontier:
                evidence = look.rows(f"SELECT EntityType, {', '.join(sorted(set(KEY_COLUMN.values())))} FROM AlertEvidence WHERE AlertId = {literal(alert)}")
                if evidence is None:
                    return Attempt(None, reason="query budget spent during the search")
                entities = _entities(evidence)
                kinds[alert] = sorted({kind for kind, _ in entities})
                for entity in entities:
                    if entity in seen:
                        continue
                    seen.add(entity)
                    kind, value = entity
                    others = [a for a in incident if a not in visited]
                    if not others:
                        continue
                    linked = look.rows(
                        f"SELECT DISTINCT AlertId FROM AlertEvidence WHERE EntityType = {literal(EVIDENCE_TYPE[kind])} "
                        f"AND {KEY_COLUMN[kind]} = {literal(value)} AND AlertId IN ({id_list(others)})"
                    )
                    if linked is None:
                        return Attempt(None, reason="query budget spent during the search")
                    for (other,) in linked:
                        if other not in visited:
                            visited.add(other)
                            parent[other] = (alert, kind)
                            reached.append(other)
            if not reached:
                break
            # the names of the alerts reached (the asked one first, so a cut list never hides it)
            named = look.rows(
                f"SELECT SystemAlertId, AlertName FROM SecurityAlert WHERE SystemAlertId IN ({id_list(reached)}) "
                f"ORDER BY AlertName = {literal(parsed.end)} DESC, SystemAlertId"
            )
            if named is None:
                return Attempt(None, reason="query budget spent during the search")
            names.update({str(i): str(n) for i, n in named})
            ends = [str(i) for i, n in named if n == parsed.end]
            if ends:
                end = ends[0]
                path = _path(parent, start, end)
                steps = [
                    {"from_alert": names.get(a), "from_kinds": kinds.get(a, []), "via": kind, "to_alert": names.get(b)}
                    for a, kind, b in path
                ]
                return _answer(look, parsed, start, end, [kind for _, kind, _ in path], steps)
            frontier = reached
        return Attempt(None, reason=f'no alert named "{parsed.end}" is linked to the start alert')

    def review(self, task: TaskView, plans: Sequence[dict[str, Any]]) -> Review:
        """Keep the composed plan when skills back it; say why none fits otherwise."""
        parsed = parse(task)
        fitting = [p for p in plans if parsed and p.get("kind") == SKILLS_KIND and p.get("skills")]
        if fitting:
            return Review(fitting[0], guidance="follow the skills' pivots")
        return Review(None, guidance="no stored skill fits: search one hop around the start alert")

    def validate(self, task: TaskView, attempt: Attempt, tool: Tool) -> Validation:
        """One query: is the answer in an alert of the asked name, in the start alert's incident?"""
        parsed = parse(task)
        route = attempt.route or {}
        if parsed is None or not attempt.answer or not route.get("end_id") or not route.get("start_id"):
            return Validation(False, guidance="no answer with a route to check: try another plan")
        rows = _Investigation(tool).rows(
            f"SELECT count(*) FROM SecurityAlert a JOIN AlertEvidence e ON e.AlertId = a.SystemAlertId "
            f"WHERE a.SystemAlertId = {literal(route['end_id'])} AND a.AlertName = {literal(parsed.end)} "
            f"AND e.EntityType = {literal(EVIDENCE_TYPE[parsed.kind])} AND e.{parsed.column} = {literal(attempt.answer)} "
            f"AND EXISTS (SELECT 1 FROM SecurityIncident i WHERE i.AlertIds LIKE {literal('%' + route['start_id'] + '%')} "
            f"AND i.AlertIds LIKE {literal('%' + route['end_id'] + '%')})"
        )
        ok = bool(rows and rows[0][0])
        return Validation(ok, guidance="" if ok else "the answer is not in that alert of the start alert's incident: try another plan")

    def distil(self, task: TaskView, attempt: Attempt, reward: float) -> list[Lesson]:
        """One skill per hop of a route that earned a good reward (names of alert rules and entity kinds, no values)."""
        route = attempt.route
        if reward < 0.5 or not route:
            return []
        lessons = []
        for step in route.get("steps") or []:
            if not (step.get("from_alert") and step.get("to_alert") and step.get("via") in KEY_COLUMN):
                continue  # a hop whose alert names the search did not see teaches nothing reusable
            plan = skill_plan(step["from_alert"], step.get("from_kinds") or [], step["via"], step["to_alert"])
            lessons.append(Lesson(text=skill_text(plan), cue=skill_cue(plan["from_alert"], plan["via"], plan["to_alert"]), plan=plan, tags=(SCOPE_TAG,)))
        return lessons


@dataclass
class _Group:
    """Alerts reached together by one hop: their names, the union of their entity kinds, how they were reached."""

    alerts: list[str]
    names: set[str]
    kinds: frozenset[str]
    depth: int
    skills: list[int] = field(default_factory=list)  # skills that backed the hops leading here
    hops: list[str] = field(default_factory=list)
    by_name: bool = True  # every hop leading here was backed by a skill of the alert's name
    leads: frozenset[str] = frozenset()  # the kinds of its entities that an alert not reached yet shares


@dataclass(frozen=True)
class _Reached:
    alert: str
    name: str
    kinds: frozenset[str]
    leads: frozenset[str]


class ProceduralStudent:
    """A cheap searcher: one query per hop, guided by skills; alone it looks one hop around the start."""

    name = "procedural-student"

    def cue(self, task: TaskView) -> str | None:
        parsed = parse(task)
        return cue(parsed.start, parsed.end) if parsed else None

    def plan_fits(self, task: TaskView, plan: dict[str, Any] | None) -> bool:
        return parse(task) is not None and (is_skill(plan) or bool(plan and plan.get("kind") == SKILLS_KIND))

    def compose(self, task: TaskView, retrieved: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """The retrieved skills as one plan to search with, with the lane policy's confidence in it:
        the track record of the weakest skill on a route by name from the start to the asked alert
        (untested when no route by name is known)."""
        parsed = parse(task)
        skills = [Skill.of(item) for item in retrieved if is_skill(item.get("plan"))]
        if parsed is None or not skills:
            return []
        uses, mean = confidence(SkillBook(skills), parsed.start, parsed.end)
        plan = {"kind": SKILLS_KIND, "skills": [s.to_dict() for s in skills]}
        return [{"id": skills[0].id, "plan": plan, "uses": uses, "mean_reward": mean}]

    def attempt(self, task: TaskView, tool: Tool, plan: dict[str, Any] | None, guidance: Sequence[str] = (), notes: Sequence[str] = ()) -> Attempt:
        parsed = parse(task)
        if parsed is None:
            return Attempt(None, reason="the task does not name a start alert, its time and an end alert")
        if plan is not None and plan.get("kind") != SKILLS_KIND:
            return Attempt(None, reason="the plan is not a set of skills")
        book = SkillBook([Skill.from_dict(s) for s in (plan or {}).get("skills", [])])
        look = _Investigation(tool)
        start = look.start_alert(parsed)
        if start is None:
            return Attempt(None, reason="start alert not found")
        # in one query: the incident's alerts, the start alert's entity kinds, those another alert of the
        # incident shares (where a hop can lead), and the entity kinds of the alerts of the asked name
        row = look.rows(
            f"SELECT i.AlertIds, (SELECT group_concat(DISTINCT EntityType) FROM AlertEvidence WHERE AlertId = {literal(start)}), "
            f"(SELECT group_concat(DISTINCT c.EntityType) FROM AlertEvidence c WHERE c.AlertId = {literal(start)} AND EXISTS "
            f"(SELECT 1 FROM AlertEvidence d WHERE d.AlertId <> c.AlertId AND instr(i.AlertIds, d.AlertId) > 0 AND d.EntityType = c.EntityType "
            f"AND ({_same_entity('d', 'c')}))), "
            f"(SELECT group_concat(DISTINCT e.EntityType) FROM AlertEvidence e JOIN SecurityAlert s ON s.SystemAlertId = e.AlertId "
            f"WHERE s.AlertName = {literal(parsed.end)} AND instr(i.AlertIds, s.SystemAlertId) > 0) "
            f"FROM SecurityIncident i WHERE i.AlertIds LIKE {literal('%' + start + '%')}"
        )
        if not row or len(row) != 1:
            return Attempt(None, reason="incident not found")
        incident, end_kinds = [str(a) for a in json.loads(row[0][0])], kinds_of(row[0][3])
        return self._search(parsed, look, book, start, incident, _Group([start], {parsed.start}, kinds_of(row[0][1]), 0, leads=kinds_of(row[0][2])), end_kinds)

    def _search(self, parsed: Parsed, look: _Investigation, book: SkillBook, start: str, incident: list[str], first: _Group, end_kinds: frozenset[str]) -> Attempt:
        """Best-first over (group of reached alerts, entity kind to follow); one query per expansion."""
        distance = book.distances_to(parsed.end)
        groups, visited = [first], {start}
        heap: list[tuple[Any, ...]] = []  # (-score, tie, group index, kind followed, skill, by name)

        def offer(index: int) -> None:
            group = groups[index]
            if group.depth >= MAX_HOPS:
                return
            # alone (or where no skill leads by name from here to the asked alert) the student looks one hop around
            own = group.depth == 0 and not any(book.by_from.get(name) and name in distance for name in group.names)
            for via in sorted(group.leads):
                choice = book.choose(group.names, group.kinds, via, parsed.end, end_kinds, distance)
                alone = ALONE[via in end_kinds] if own else 0.0
                score = max(choice.score, alone) * DEPTH_DECAY ** group.depth
                if score > 0:
                    by_name = choice.by == "name" and choice.score >= alone
                    heapq.heappush(heap, (-score, len(heap), index, via, choice.skill if choice.score >= alone else None, by_name))

        def hop(index: int, via: str) -> list[_Reached] | None:
            """Alerts of the incident not reached yet that share an entity of kind `via` with the group."""
            others = [a for a in incident if a not in visited]
            if not others:
                return None
            column = KEY_COLUMN[via]
            # the alerts reached, their names, and the kinds of their entities that some other alert not yet
            # reached shares (the pivots that lead on from there)
            rows = look.rows(
                f"SELECT b.AlertId, s.AlertName, group_concat(DISTINCT c.EntityType), group_concat(DISTINCT CASE WHEN EXISTS ("
                f"SELECT 1 FROM AlertEvidence d WHERE d.AlertId IN ({id_list(others)}) AND d.AlertId <> c.AlertId AND d.EntityType = c.EntityType "
                f"AND ({_same_entity('d', 'c')})) THEN c.EntityType END) FROM AlertEvidence a "
                f"JOIN AlertEvidence b ON b.EntityType = a.EntityType AND b.{column} = a.{column} "
                f"JOIN SecurityAlert s ON s.SystemAlertId = b.AlertId JOIN AlertEvidence c ON c.AlertId = b.AlertId "
                f"WHERE a.AlertId IN ({id_list(groups[index].alerts)}) AND a.EntityType = {literal(EVIDENCE_TYPE[via])} AND b.AlertId IN ({id_list(others)}) "
                f"GROUP BY b.AlertId, s.AlertName"
            )
            reached = [_Reached(str(a), str(n), kinds_of(k), kinds_of(lead)) for a, n, k, lead in rows or [] if str(a) not in visited]
            visited.update(r.alert for r in reached)
            return reached

        offer(0)
        while heap and look.tool.left > 1:  # keep one query to read the answer
            _, _, index, via, skill, by_name = heapq.heappop(heap)
            group = groups[index]
            reached = hop(index, via)
            if reached is None:
                break
            if not reached:
                continue
            trusted = group.by_name and by_name and skill in book.into(parsed.end)  # a route by name, its last skill into the asked alert
            found = self._nearest(parsed, group, via, skill, reached, [] if trusted else heap, groups, hop, end_kinds, look)
            if found is not None:
                return found if isinstance(found, Attempt) else self._finish(parsed, look, start, *found)
            groups.append(_Group([r.alert for r in reached], {r.name for r in reached}, frozenset().union(*(r.kinds for r in reached)),
                                 group.depth + 1, group.skills + ([skill] if skill is not None else []), group.hops + [via], group.by_name and by_name,
                                 frozenset().union(*(r.leads for r in reached))))
            offer(len(groups) - 1)
        return Attempt(None, route={"skill_ids": []}, reason=f'no "{parsed.end}" alert found within the query budget')

    @staticmethod
    def _nearest(
        parsed: Parsed, group: _Group, via: str, skill: int | None, reached: list[_Reached], heap: list[tuple], groups: list[_Group],
        hop: Callable[[int, str], list[_Reached] | None], end_kinds: frozenset[str], look: _Investigation,
    ) -> tuple[_Group, str, int | None, str] | Attempt | None:
        """When this hop reached an alert of the asked name: (group, kind, skill, alert) of the nearest one
        found, after trying the direct links a nearer one could have (a pending kind the asked alert holds,
        from a shallower group; `heap` is empty when skills by name led the whole way, as on a route the
        teacher's breadth-first search found); an Attempt when the nearest is ambiguous; None when none was reached."""
        ends = [r.alert for r in reached if r.name == parsed.end]
        if not ends:
            return None
        depth = group.depth + 1
        if len(ends) == 1 and depth >= 2:
            for _, _, index, other_via, other_skill, _ in sorted(heap):
                if groups[index].depth > depth - 2 or other_via not in end_kinds or look.tool.left <= 1:
                    continue
                nearer = [r.alert for r in hop(index, other_via) or [] if r.name == parsed.end]
                if len(nearer) == 1:
                    return groups[index], other_via, other_skill, nearer[0]
        if len(ends) > 1:
            return Attempt(None, route={"skill_ids": group.skills + ([skill] if skill is not None else [])}, reason=f'more than one "{parsed.end}" alert at the same hop')
        return group, via, skill, ends[0]

    @staticmethod
    def _finish(parsed: Parsed, look: _Investigation, start: str, group: _Group, via: str, skill: int | None, end: str) -> Attempt:
        skills, hops = group.skills + ([skill] if skill is not None else []), group.hops + [via]
        steps = [{"from_alert": next(iter(group.names)), "from_kinds": sorted(group.kinds), "via": via, "to_alert": parsed.end}] if len(hops) == 1 else []
        attempt = _answer(look, parsed, start, end, hops, steps)
        attempt.route = {**(attempt.route or {}), "skill_ids": skills}
        return attempt


def _answer(look: _Investigation, parsed: Parsed, start: str, end: str, hops: list[str], steps: list[dict[str, Any]]) -> Attempt:
    """Read the asked field in the end alert; the route (names, kinds, the ids seen) feeds validation and distillation."""
    answer = look.read(end, parsed)
    route = {"start_alert": parsed.start, "end_alert": parsed.end, "hops": hops, "steps": steps, "start_id": start, "end_id": end}
    return Attempt(answer, route=route, reason=None if answer else "the end alert has no single value of that type")


def _same_entity(left: str, right: str) -> str:
    """SQL: two AlertEvidence rows of the same type name the same entity (each type has its key column)."""
    return " OR ".join(
        f"({right}.EntityType = {literal(EVIDENCE_TYPE[kind])} AND {left}.{column} = {right}.{column})" for kind, column in sorted(KEY_COLUMN.items())
    )


def _entities(rows: list[tuple]) -> list[tuple[str, str]]:
    keys = sorted(set(KEY_COLUMN.values()))
    out = []
    for evidence_type, *values in rows:
        kind = KIND_OF_EVIDENCE_TYPE.get(str(evidence_type))
        value = dict(zip(keys, values)).get(KEY_COLUMN[kind]) if kind else None
        if kind and value is not None:
            out.append((kind, str(value)))
    return out


def _path(parent: dict[str, tuple[str, str]], start: str, end: str) -> list[tuple[str, str, str]]:
    """(from alert, entity kind, to alert) per hop, start first."""
    hops = []
    while end != start:
        previous, kind = parent[end]
        hops.append((previous, kind, end))
        end = previous
    return hops[::-1]
