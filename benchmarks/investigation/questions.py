"""Questions from the alert-entity graph: start at one alert, walk shared entities, ask about another.

A question gives the start alert (name, time, a few of its own entities) and names the end alert;
its meaning is "the closest alert of that name in this incident". Intermediate entities are never
shown, and difficulty is the number of alert hops between start and end (1 to 4).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from benchmarks.investigation.grader import normalize_answer
from benchmarks.investigation.graph import AlertGraph
from benchmarks.investigation.incidents import ANSWER_COLUMNS, KIND_NOUN, Entity
from benchmarks.investigation.models import AnswerType, Question, SolutionStep, is_answer_type
from benchmarks.investigation.world import Alert, World

MAX_HOPS = 4
TYPE_PHRASES: dict[str, tuple[str, ...]] = {
    "account_name": ("account name", "name of the user account"),
    "account_sid": ("SID of the user account", "security identifier (SID) of the account"),
    "account_upn": ("user principal name of the account", "UPN of the user account"),
    "account_object_id": ("Entra ID object id of the account", "AAD object id of the user account"),
    "host_name": ("host name of the device", "name of the machine"),
    "device_id": ("Defender device id of the machine", "device id of the host"),
    "ip": ("IP address", "IP address recorded as evidence"),
    "url": ("URL", "URL recorded as evidence"),
    "file_name": ("name of the file", "file name"),
    "sha256": ("SHA-256 hash of the file", "SHA256 of the file"),
    "command_line": ("command line of the process", "full process command line"),
    "mailbox": ("mailbox address", "email address of the mailbox"),
    "cloud_app": ("cloud application", "name of the cloud app"),
    "oauth_app_id": ("application (client) id of the OAuth app", "OAuth application id"),
}
CONTEXTS = (
    'At {time}, the alert "{name}" ({severity}) was raised: {summary}{entities}',
    'An analyst is triaging "{name}", raised at {time} with severity {severity}. {summary}{entities}',
    'Alert "{name}" fired at {time}. {summary}{entities}',
    'Our SOC received the {severity}-severity alert "{name}" at {time}. {summary}{entities}',
)
QUESTIONS = (
    'Following the entities of this alert through the incident, you reach the closest related alert "{end}". What is the {phrase} in that alert?',
    'Which {phrase} appears in the "{end}" alert that is most closely linked to this one in the same incident?',
    'The same incident contains a related alert "{end}" (the nearest one to this alert). Identify the {phrase} it involves.',
    'Investigate the incident this alert belongs to: what {phrase} is recorded in its nearest "{end}" alert?',
)


@dataclass(frozen=True)
class Candidate:
    incident: int
    template: str
    start: Alert
    end: Alert
    path: tuple[str, ...]
    answer_entity: Entity
    answer_type: AnswerType
    answer: str
    hidden: tuple[Entity, ...] = ()  # the answer's entity and every intermediate entity of the path

    @property
    def difficulty(self) -> int:
        return (len(self.path) - 1) // 2


def candidates(world: World) -> Iterator[Candidate]:
    """Every well-posed (start, end, answer type) of every attack incident, in a fixed order."""
    for incident in world.attack_incidents:
        alerts = [world.alerts[a] for a in incident.alert_ids]
        graph = AlertGraph({a.id: [e.node for e in a.entities] for a in alerts})
        names = {a.id: a.name for a in alerts}
        by_id = {a.id: a for a in alerts}
        entity_of = {e.node: e for a in alerts for e in a.entities}
        for start in alerts:
            reach = graph.reach(start.id)
            for end in alerts:
                hops = reach.distance.get(end.id, 0)
                if not 1 <= hops <= MAX_HOPS or graph.nearest_named(reach, names, end.name) != [end.id]:
                    continue
                if sum(1 for a in alerts if a.name == end.name and a.id != start.id) < 2:
                    continue  # the name alone would identify the end alert: no walk needed
                path = tuple(reach.path(end.id))
                for entity in end.entities:
                    if not _answer_entity_ok(entity, end, hops, reach.distance, graph):
                        continue
                    for answer_type, column in ANSWER_COLUMNS[entity.kind].items():
                        assert is_answer_type(answer_type), answer_type  # ANSWER_COLUMNS names answer types only
                        value = entity.value(column)
                        if value in (None, ""):
                            continue
                        hidden = (entity, *(entity_of[node] for node in path[1::2]))
                        yield Candidate(incident.number, incident.template, start, by_id[end.id], path, entity, answer_type, str(value), hidden)


def _answer_entity_ok(entity: Entity, end: Alert, hops: int, distance: dict[str, int], graph: AlertGraph) -> bool:
    """Unique of its kind in the end alert, and seen in no alert closer to the start than the end."""
    if sum(1 for e in end.entities if e.kind == entity.kind) != 1:
        return False
    return all(distance.get(alert, MAX_HOPS + 1) >= hops for alert in graph.alerts_of[entity.node])


def aliases(entity: Entity) -> set[str]:
    """Every way the entity can be written: each identifying field, and an address's local part."""
    values = {str(v) for k, v in entity.fields if isinstance(v, str) and len(v) >= 3}
    values |= {v.split("@", 1)[0] for v in values if "@" in v}
    return {_plain(v) for v in values if len(v) >= 3}


def phrase(candidate: Candidate, rng: random.Random) -> tuple[str, str]:
    """Context and question text; entities shown are the start alert's own that share no identifier
    (name, address, SID, IP, ...) with the answer or an intermediate entity."""
    start = candidate.start
    secrets = set().union(*(aliases(e) for e in candidate.hidden)) if candidate.hidden else set()
    shown = [e for e in start.entities if not aliases(e) & secrets and not any(s in _plain(e.mention()) for s in secrets)]
    rng.shuffle(shown)
    listed = ", ".join(e.mention() for e in shown[:3])
    entities = f" Entities in the alert include {listed}." if listed else ""
    time = start.draft.time.strftime("%Y-%m-%dT%H:%M:%SZ")
    context = rng.choice(CONTEXTS).format(time=time, name=start.name, severity=start.draft.severity, summary=start.draft.summary, entities=entities)
    question = rng.choice(QUESTIONS).format(end=candidate.end.name, phrase=rng.choice(TYPE_PHRASES[candidate.answer_type]))
    return context, question


def solution(candidate: Candidate, names: dict[str, str]) -> list[SolutionStep]:
    """One step per hop (the shared entity that leads on), then the answer in the end alert."""
    steps = []
    path = candidate.path
    for k in range(1, len(path), 2):
        previous, node, following = path[k - 1], path[k], path[k + 1]
        kind, value = node.split(":", 1)
        steps.append(SolutionStep(lookup=f'the {KIND_NOUN[kind]} that alert "{names[previous]}" shares with alert "{names[following]}"', value=value))
    noun = TYPE_PHRASES[candidate.answer_type][0]
    steps.append(SolutionStep(lookup=f'the {noun} in alert "{candidate.end.name}"', value=candidate.answer))
    return steps


def leaks(candidate: Candidate, context: str, question: str) -> bool:
    """True when the answer (in any accepted form) or an intermediate entity shows in the text."""
    text = _plain(f"{context} {question}")
    return any(_plain(value) in text for value in hidden_values(candidate))


def hidden_values(candidate: Candidate) -> list[str]:
    """The answer (as given and normalised), every identifier of its entity, and of each intermediate entity."""
    hidden = {candidate.answer, normalize_answer(candidate.answer, candidate.answer_type)}
    hidden |= {node.split(":", 1)[1] for node in candidate.path[1::2]}
    for entity in candidate.hidden:
        hidden |= aliases(entity)
    return sorted(value for value in hidden if value)


def _plain(text: str) -> str:
    return " ".join(text.casefold().split())


def build_questions(
    world: World,
    per_difficulty: int = 20,
    test_fraction: float = 0.5,
    check: Callable[[Question], str | None] | None = None,
) -> tuple[list[Question], Counter]:
    """Pick a balanced set per incident and difficulty, prove each answerable, split train/test.

    `check` returns None when a question is answerable from its context, else the reason it is not;
    such questions are dropped and counted.
    """
    rng = random.Random(f"questions:{world.seed}")
    pool: dict[tuple[int, int], list[Candidate]] = {}
    for candidate in candidates(world):
        pool.setdefault((candidate.incident, candidate.difficulty), []).append(candidate)
    names = {a.id: a.name for a in world.alerts.values()}
    dropped: Counter = Counter()
    kept: dict[int, list[Question]] = {}
    for (incident, difficulty), items in sorted(pool.items()):
        rng.shuffle(items)
        chosen: list[Question] = []
        pairs: Counter = Counter()
        types: Counter = Counter()
        while items and len(chosen) < per_difficulty:
            best = min(range(len(items)), key=lambda n: (pairs[(items[n].start.id, items[n].end.id)], types[items[n].answer_type], n))
            candidate = items.pop(best)
            context, question_text = phrase(candidate, rng)
            if leaks(candidate, context, question_text):
                dropped["leak"] += 1
                continue
            question = Question(
                id=f"pending-{incident}-{difficulty}-{len(chosen)}",
                incident=incident,
                difficulty=difficulty,
                context=context,
                question=question_text,
                answer=candidate.answer,
                answer_type=candidate.answer_type,
                solution=solution(candidate, names),
                path=list(candidate.path),
                start_alert=candidate.start.id,
                end_alert=candidate.end.id,
                template=candidate.template,
            )
            reason = check(question) if check else None
            if reason:
                dropped["unanswerable"] += 1
                continue
            pairs[(candidate.start.id, candidate.end.id)] += 1
            types[candidate.answer_type] += 1
            chosen.append(question)
        kept.setdefault(incident, []).extend(chosen)
    return _split(kept, test_fraction, rng, world.seed), dropped


def _split(kept: dict[int, list[Question]], test_fraction: float, rng: random.Random, seed: int) -> list[Question]:
    """Per incident, whole answer groups go to test or train, so no test answer is a train answer
    of the same incident; groups are assigned to keep each difficulty near the test fraction."""
    out: list[Question] = []
    for incident in sorted(kept):
        groups: dict[str, list[Question]] = {}
        for question in kept[incident]:
            groups.setdefault(_plain(question.answer), []).append(question)
        order = sorted(groups)
        rng.shuffle(order)
        target = Counter(q.difficulty for q in kept[incident])
        in_test: Counter = Counter()
        chosen: list[Question] = []
        for key in order:
            group = groups[key]
            need = sum(target[q.difficulty] * test_fraction - in_test[q.difficulty] for q in group)
            split = "test" if need > len(group) / 2 else "train"
            if split == "test":
                in_test.update(q.difficulty for q in group)
            chosen.extend(q.model_copy(update={"split": split}) for q in group)
        chosen.sort(key=lambda q: (q.difficulty, q.id))
        rng.shuffle(chosen)
        out.extend(q.model_copy(update={"id": f"soc{seed}-{incident:02d}-{n:04d}"}) for n, q in enumerate(chosen))
    return out
