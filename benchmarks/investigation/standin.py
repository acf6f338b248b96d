"""A capable, deterministic stand-in model for the LLM agents, served behind the OpenAI API.

It reads only what a real model reads: the messages (system prompt, task, query results, memory
notes) and the tools or output format it is offered; it answers through the same API (native tool
calls, or JSON text when no tools are offered). As an investigator it works like the procedural
agents: with a remembered route for the task's pair of alert names it walks that route in a few
queries; without one, the teacher searches the alert-entity graph level by level, and the student
tries a one-hop search within its small budget. Its working notes travel in each action's
`thought` (compacted prompts drop old observations, as they would for any model). As a teacher it
checks answers with a query of its own, approves or rejects plans, and writes lessons (the route as
entity kinds, no values) or pitfalls. It exists so that the whole LLM path (protocol, budgets,
compaction, memory, lanes, distillation, resume, faults) can be exercised and measured end to end
over HTTP without a real model; it is not evidence about real models.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.fake_openai import Reply
from benchmarks.investigation.incidents import ANSWER_COLUMNS, ANSWER_KIND, EVIDENCE_TYPE, KEY_COLUMN, KIND_NOUN, KIND_OF_EVIDENCE_TYPE
from benchmarks.investigation.solver import QUOTED, TIME

DATA_BLOCK = re.compile(r"<<DATA [0-9a-f]+>>\n(.*)\n<<END [0-9a-f]+>>", re.DOTALL)
NOUN_KIND = {noun: kind for kind, noun in KIND_NOUN.items()}
ROUTE = re.compile(r"route: ([a-z ,]+?)(?:\.|$)")
KEYS = sorted(set(KEY_COLUMN.values()))
SHALLOW_LEVELS = 1  # how deep a student model searches without a remembered route
DEEP_LEVELS = 6  # how deep a teacher model searches


def literal(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def id_list(ids: Sequence[str]) -> str:
    return ", ".join(literal(i) for i in ids) or "''"


def digest(kind: str, value: str) -> str:
    """A short mark for an entity already looked up (its value need not stay in the notes)."""
    import hashlib

    return hashlib.sha1(f"{kind}:{value}".encode()).hexdigest()[:6]


def short(alert_id: str) -> str:
    """Alert ids are UUIDs: eight hex digits tell the alerts of one incident apart, and keep notes and queries short."""
    return alert_id[:8]


def by_short(column: str, ids: Sequence[str]) -> str:
    return f"substr({column}, 1, 8) IN ({id_list(ids)})"


@dataclass(frozen=True)
class TaskFacts:
    start: str
    time: str
    end: str
    kind: str
    column: str


def task_facts(text: str) -> TaskFacts | None:
    """Start alert (quoted name, time) from the context line, end alert from the question line, the asked type."""
    context = re.search(r"^Context: (.*)$", text, re.MULTILINE)
    question = re.search(r"^Question: (.*)$", text, re.MULTILINE)
    answer_type = re.search(r"^Answer type: (\w+)", text, re.MULTILINE)
    if not (context and question and answer_type):
        return None
    start, when, end = QUOTED.search(context.group(1)), TIME.search(context.group(1)), QUOTED.search(question.group(1))
    kind = ANSWER_KIND.get(answer_type.group(1))
    if not (start and when and end and kind):
        return None
    return TaskFacts(start.group(1), when.group(1), end.group(1), kind, ANSWER_COLUMNS[kind][answer_type.group(1)])


def parse_rows(observation: str) -> tuple[str, list[list[Any]]]:
    """The status line and the printed rows of a sandbox observation (cells are JSON values split by ' | ')."""
    lines = observation.splitlines()
    if not lines:
        return "", []
    status = lines[0]
    if not status.startswith("query ok") or status.startswith("query ok: 0 rows"):
        return status, []
    rows = []
    decoder = json.JSONDecoder()
    for line in lines[2:]:
        if line.startswith(("(", "[")):
            continue
        cells, rest = [], line
        while rest:
            try:
                value, end = decoder.raw_decode(rest)
            except json.JSONDecodeError:
                break
            cells.append(value)
            rest = rest[end:]
            rest = rest[3:] if rest.startswith(" | ") else ""
        rows.append(cells)
    return status, rows


def route_kinds(text: str) -> list[str] | None:
    """Entity kinds of a route written as "follow the shared account, then the shared host"."""
    found = re.search(r"follow (the shared [a-zA-Z ,]+?)(?: through AlertEvidence|\))", text)
    if not found:
        return None
    kinds = [NOUN_KIND.get(part.strip().removeprefix("the shared ").strip()) for part in found.group(1).split(", then ")]
    return [k for k in kinds if k] if all(kinds) else None


def cue(start: str, end: str) -> str:
    return f'from alert "{start}" to the nearest "{end}"'


def route_rule(kinds: Sequence[str]) -> str:
    hops = ", then ".join(f"the shared {KIND_NOUN[k]}" for k in kinds)
    return (f"find the start alert by name and time, take its incident from SecurityIncident.AlertIds, follow {hops} "
            "through AlertEvidence within that incident, and read the asked field in the end alert's evidence")


def in_incident(alias: str, start: str) -> str:
    return f"EXISTS (SELECT 1 FROM SecurityIncident i WHERE i.AlertIds LIKE {literal('%' + short(start) + '%')} AND i.AlertIds LIKE '%' || {alias}.AlertId || '%')"


class StandInModel:
    """A `Responder` for the fake OpenAI server: the whole request in, a reply (tool call or text) out.

    Model names decide its strength, as they would on a real endpoint: a name containing one of
    `deep_markers` (default "teacher" or "deep") searches deep; any other name searches one hop."""

    def __init__(self, deep_markers: Sequence[str] = ("teacher", "deep")) -> None:
        self.deep_markers = tuple(deep_markers)
        self._local = threading.local()  # the server answers requests in parallel threads

    @property
    def _depth(self) -> int:
        return self._local.depth

    def __call__(self, request: dict[str, Any]) -> Reply:
        messages = request.get("messages", [])
        self._local.depth = DEEP_LEVELS if any(m in str(request.get("model", "")) for m in self.deep_markers) else SHALLOW_LEVELS
        tools = {t["function"]["name"] for t in request.get("tools") or []}
        system = messages[0].get("content") or "" if messages and messages[0].get("role") == "system" else ""
        first_user = next((m.get("content") or "" for m in messages if m.get("role") == "user"), "")
        if "Call the ping tool" in first_user:
            return self._act(tools, "ping", {"word": "ok"})
        if first_user.startswith("Is two more than one?"):
            return Reply(content=json.dumps({"yes": True}))
        if first_user == "Say ok.":
            return Reply(content="ok")
        if system.startswith("You are a security analyst investigating"):
            return self._investigate(messages, tools, system)
        if system.startswith("You are a senior security analyst checking"):
            return self._validate(messages, tools)
        if system.startswith("You are a senior security analyst reviewing"):
            return self._review(first_user, tools)
        if system.startswith("You write short, general lessons"):
            return self._lesson(first_user, tools)
        return Reply(content="I cannot help with that request.")

    # ------------------------------------------------------------ replies
    def _act(self, tools: set[str], name: str, args: dict[str, Any]) -> Reply:
        if tools:
            return Reply(tool_calls=[(name, args)])
        return Reply(content=json.dumps({"action": name, "arguments": args}))

    def _sql(self, tools: set[str], sql: str, state: dict[str, Any]) -> Reply:
        """A query, with the working notes it needs next time (terse: empty fields left out)."""
        notes = {k: v for k, v in state.items() if v not in (None, [], {}, "")}
        return self._act(tools, "run_sql", {"thought": "state: " + json.dumps(notes, separators=(",", ":")), "sql": sql})

    def _submit(self, tools: set[str], answer: str, note: str) -> Reply:
        return self._act(tools, "submit_answer", {"thought": note, "answer": answer})

    # ------------------------------------------------------------ investigation
    def _investigate(self, messages: list[dict[str, Any]], tools: set[str], system: str) -> Reply:
        task = messages[1].get("content") or ""
        facts = task_facts(task)
        if facts is None:
            return self._submit(tools, "unknown", "the task does not name a start alert, its time and an end alert")
        state, observation = _last_state(messages)
        if state is None:
            state = {"p": "start", "route": _remembered_route(task, facts), "depth": self._depth}
            return self._sql(tools, f"SELECT SystemAlertId FROM SecurityAlert WHERE AlertName = {literal(facts.start)} AND TimeGenerated LIKE {literal(facts.time + '%')}", state)
        may_query = "run_sql" in tools if tools else "[no queries left" not in observation
        if not may_query:  # no queries left: answer with what is known
            return self._submit(tools, "unknown", "out of queries before the end alert was found")
        return self._advance(tools, facts, state, observation)

    def _advance(self, tools: set[str], facts: TaskFacts, state: dict[str, Any], observation: str) -> Reply:
        status, rows = parse_rows(observation)
        phase = state["p"]
        if phase == "start":
            if len(rows) != 1:
                return self._submit(tools, "unknown", "the start alert is not unique")
            start = str(rows[0][0])
            state.update(s=start, front=[short(start)], par={}, seen=[short(start)] if state.get("route") else [])
            if state.get("route"):
                return self._walk(tools, facts, state, hop=0)
            return self._expand(tools, facts, state, level=1)
        if phase == "walk":
            found = [short(str(r[0])) for r in rows]
            if not found:
                return self._submit(tools, "unknown", "the remembered route leads nowhere here")
            state["seen"] = sorted(set(state["seen"]) | set(found))
            state["front"] = found
            if state["hop"] + 1 < len(state["route"]):
                return self._walk(tools, facts, state, hop=state["hop"] + 1)
            return self._name_check(tools, facts, state)
        if phase == "evidence":
            ents = []
            for row in rows:
                kind = KIND_OF_EVIDENCE_TYPE.get(str(row[0])) if row else None
                value = dict(zip(KEYS, row[1:])).get(KEY_COLUMN[kind]) if kind else None
                if kind and value is not None and digest(kind, str(value)) not in state["done"]:
                    ents.append([kind, str(value)])  # all from the alert being expanded ("cur")
            state["ents"] += ents
            return self._next_lookup(tools, facts, state)
        if phase == "link":
            kind, via = state.pop("look"), state["cur"]
            for (alert,) in (r[:1] for r in rows if r):
                alert = short(str(alert))
                if alert not in _seen(state):
                    state["par"][alert] = f"{via} {kind}"
                    state["next"].append(alert)
            return self._next_lookup(tools, facts, state)
        if phase == "named":
            if rows:
                end = str(rows[0][0])
                state.update(p="read", end=end, hops=_hops(state, short(end)))
                return self._sql(tools, f"SELECT DISTINCT {facts.column} FROM AlertEvidence WHERE AlertId = {literal(end)} AND EntityType = {literal(EVIDENCE_TYPE[facts.kind])}", state)
            if state.get("route"):
                return self._submit(tools, "unknown", "the remembered route does not end at that alert name")
            if state["level"] >= state["depth"] or not state["next"]:
                return self._submit(tools, "unknown", "no alert of that name within reach")
            state["front"] = state["next"]
            return self._expand(tools, facts, state, level=state["level"] + 1)
        if phase == "read":
            if len(rows) != 1 or rows[0][0] is None:
                return self._submit(tools, "unknown", "the end alert has no single value of that type")
            hops = state.get("hops") or state.get("route") or []
            return self._submit(tools, str(rows[0][0]), f"read in alert {state['end']} from start {state['s']}; route: {', '.join(hops)}.")
        return self._submit(tools, "unknown", f"lost track ({status[:60]})")

    def _walk(self, tools: set[str], facts: TaskFacts, state: dict[str, Any], hop: int) -> Reply:
        kind = state["route"][hop]
        column = KEY_COLUMN[kind]
        state.update(p="walk", hop=hop)
        sql = (
            f"SELECT DISTINCT b.AlertId FROM AlertEvidence a JOIN AlertEvidence b ON b.EntityType = a.EntityType AND b.{column} = a.{column} "
            f"WHERE {by_short('a.AlertId', state['front'])} AND a.EntityType = {literal(EVIDENCE_TYPE[kind])} "
            f"AND NOT {by_short('b.AlertId', state['seen'])} AND {in_incident('b', state['s'])}"
        )
        return self._sql(tools, sql, state)

    def _expand(self, tools: set[str], facts: TaskFacts, state: dict[str, Any], level: int) -> Reply:
        state.update(level=level, queue=list(state["front"]), next=[], ents=[], done=state.get("done", []))
        return self._next_alert(tools, facts, state)

    def _next_alert(self, tools: set[str], facts: TaskFacts, state: dict[str, Any]) -> Reply:
        if not state["queue"]:
            return self._name_check(tools, facts, state)
        state["cur"] = state["queue"].pop(0)
        state["p"] = "evidence"
        return self._sql(tools, f"SELECT EntityType, {', '.join(KEYS)} FROM AlertEvidence WHERE {by_short('AlertId', [state['cur']])} AND {in_incident('AlertEvidence', state['s'])}", state)

    def _next_lookup(self, tools: set[str], facts: TaskFacts, state: dict[str, Any]) -> Reply:
        if not state["ents"]:
            return self._next_alert(tools, facts, state)
        kind, value = state["ents"].pop(0)
        state["done"].append(digest(kind, value))
        state.update(p="link", look=kind)
        sql = (
            f"SELECT DISTINCT e.AlertId FROM AlertEvidence e WHERE e.EntityType = {literal(EVIDENCE_TYPE[kind])} AND e.{KEY_COLUMN[kind]} = {literal(value)} "
            f"AND NOT {by_short('e.AlertId', _seen(state))} AND {in_incident('e', state['s'])}"
        )
        return self._sql(tools, sql, state)

    def _name_check(self, tools: set[str], facts: TaskFacts, state: dict[str, Any]) -> Reply:
        reached = state["front"] if state.get("route") else state["next"]
        if not reached:
            return self._submit(tools, "unknown", "the search reached no further alert")
        state["p"] = "named"
        state.pop("next_done", None)
        return self._sql(tools, f"SELECT SystemAlertId FROM SecurityAlert WHERE {by_short('SystemAlertId', reached)} AND AlertName = {literal(facts.end)} "
                                f"AND EXISTS (SELECT 1 FROM SecurityIncident i WHERE i.AlertIds LIKE {literal('%' + state['s'] + '%')} AND i.AlertIds LIKE '%' || SystemAlertId || '%')", state)

    # ------------------------------------------------------------ teacher work
    def _validate(self, messages: list[dict[str, Any]], tools: set[str]) -> Reply:
        prompt = messages[1].get("content") or ""
        facts = task_facts(prompt)
        answer = re.search(r"^The analyst's answer \(data\): (.*)$", prompt, re.MULTILINE)
        conclusion = re.search(r"read in alert ([0-9a-f-]+) from start ([0-9a-f-]+)", prompt)
        answered = json.loads(answer.group(1)) if answer else ""
        asked = any(m.get("role") == "assistant" for m in messages[2:])
        if facts is None or not conclusion or not answered or answered == "unknown":
            return self._act(tools, "give_verdict", {"rationale": "the answer does not rest on a traced route to an alert of the asked name", "correct": False, "guidance": "find the start alert, then follow shared entities within its incident"})
        end, start = conclusion.group(1), conclusion.group(2)
        if not asked and ("run_sql" in tools if tools else True):
            sql = (
                f"SELECT count(*) FROM SecurityAlert a JOIN AlertEvidence e ON e.AlertId = a.SystemAlertId "
                f"WHERE a.SystemAlertId = {literal(end)} AND a.AlertName = {literal(facts.end)} "
                f"AND e.EntityType = {literal(EVIDENCE_TYPE[facts.kind])} AND e.{facts.column} = {literal(answered)} "
                f"AND EXISTS (SELECT 1 FROM SecurityIncident i WHERE i.AlertIds LIKE {literal('%' + start + '%')} AND i.AlertIds LIKE {literal('%' + end + '%')})"
            )
            return self._act(tools, "run_sql", {"thought": "check the answer in that alert", "sql": sql})
        _, rows = parse_rows(_last_observation(messages))
        ok = bool(rows and rows[0] and rows[0][0])
        rationale = "the answer is in that alert's evidence, and the alert has the asked name in the start alert's incident" if ok else "the answer is not in an alert of the asked name in the start alert's incident"
        return self._act(tools, "give_verdict", {"rationale": rationale, "correct": ok, "guidance": "" if ok else "try another route"})

    def _review(self, prompt: str, tools: set[str]) -> Reply:
        facts = task_facts(prompt)
        approach = re.search(r"Proposed approach, from memory \(data\): (.*)$", prompt, re.MULTILINE)
        text = json.loads(approach.group(1)) if approach else ""
        fits = bool(facts and cue(facts.start, facts.end) in text and route_kinds(text))
        return self._act(tools, "give_review", {"approve": fits, "guidance": "follow it" if fits else "it is for another pair of alerts: search from the start alert"})

    def _lesson(self, prompt: str, tools: set[str]) -> Reply:
        facts = task_facts(prompt)
        worked = "judged correct" in prompt
        route = ROUTE.search(prompt)
        kinds = [k.strip() for k in route.group(1).split(",")] if route else []
        if facts is None or not kinds or not all(k in KIND_NOUN for k in kinds):
            return self._act(tools, "write_lesson", {"applies_when": "", "rule": "", "expected_effect": "", "worth_keeping": False})
        if worked:
            return self._act(tools, "write_lesson", {"applies_when": cue(facts.start, facts.end), "rule": route_rule(kinds),
                                                      "expected_effect": "a few queries instead of a search", "worth_keeping": True})
        return self._act(tools, "write_lesson", {"applies_when": cue(facts.start, facts.end), "rule": f"the route {route_rule(kinds)} reached a wrong alert",
                                                  "expected_effect": "search level by level from the start alert", "worth_keeping": True})


def _memory_texts(task: str) -> list[str]:
    """The suggested approach and the notes of a task message (each a quoted JSON string)."""
    texts = []
    for line in task.splitlines():
        quoted = line[2:] if line.startswith("- ") else line.split(": ", 1)[1] if line.startswith("Suggested approach, from memory") else None
        if quoted is None:
            continue
        try:
            value = json.loads(quoted)
        except json.JSONDecodeError:
            continue
        if isinstance(value, str):
            texts.append(value)
    return texts


def _remembered_route(task: str, facts: TaskFacts) -> list[str] | None:
    """A route from memory for exactly this pair of alert names, unless memory also warns against it."""
    wanted = cue(facts.start, facts.end)
    texts = _memory_texts(task)
    pitfalls = [route_kinds(t) for t in texts if t.startswith("Pitfall when " + wanted)]
    for text in texts:
        if text.startswith("When " + wanted):
            kinds = route_kinds(text)
            if kinds and kinds not in pitfalls:
                return kinds
    return None


EMPTY_STATE: dict[str, Any] = {"route": None, "seen": [], "front": [], "par": {}, "queue": [], "next": [], "ents": [], "done": []}


def _last_state(messages: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, str]:
    """The state noted in the model's latest action, and the observation that answered it."""
    for index in range(len(messages) - 1, 1, -1):
        message = messages[index]
        if message.get("role") != "assistant":
            continue
        args = _action_args(message)
        thought = str(args.get("thought", ""))
        if thought.startswith("state: "):
            return {**json.loads(json.dumps(EMPTY_STATE)), **json.loads(thought[len("state: "):])}, _observation_text(messages[index + 1]) if index + 1 < len(messages) else ""
    return None, ""


def _last_observation(messages: list[dict[str, Any]]) -> str:
    for message in reversed(messages[2:]):
        if message.get("role") in ("tool", "user"):
            return _observation_text(message)
    return ""


def _action_args(message: dict[str, Any]) -> dict[str, Any]:
    calls = message.get("tool_calls") or []
    try:
        if calls:
            return json.loads(calls[0]["function"]["arguments"])
        data = json.loads(message.get("content") or "{}")
    except json.JSONDecodeError:
        return {}
    return data.get("arguments", data) if isinstance(data, dict) else {}


def _observation_text(message: dict[str, Any]) -> str:
    text = message.get("content") or ""
    block = DATA_BLOCK.search(text)
    return block.group(1) if block else text


def _seen(state: dict[str, Any]) -> list[str]:
    """Alerts reached so far: a route walk lists them; a search knows them as the start and its parent links."""
    return state["seen"] if state.get("route") else [short(state["s"]), *state["par"]]


def _hops(state: dict[str, Any], end: str) -> list[str]:
    if state.get("route"):
        return list(state["route"])
    kinds = []
    while end != short(state["s"]):
        end, kind = state["par"][end].split(" ")
        kinds.append(kind)
    return kinds[::-1]
