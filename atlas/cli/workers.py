"""What a Ray actor builds for itself (`atlas run --ray`): the agents, its memory handle, its database.

The CLI is the composition root, so the recipe lives here: it knows the benchmark (procedural agents,
SOC episodes). It is plain data, pickled to every actor, which runs it once when it starts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from atlas.config import AtlasSettings


def decided_capabilities(student: Any, teacher: Any) -> dict[str, Any]:
    """Each LLM agent's model capabilities as this process decided them (procedural agents have none)."""
    return {role: agent.llm.capabilities for role, agent in (("student", student), ("teacher", teacher)) if hasattr(agent, "llm")}


@dataclass(frozen=True)
class WorkerRecipe:
    agents: str
    student: str
    teacher: str
    settings: AtlasSettings
    world_db: str
    questions: str
    memory: str | None  # the store's path or URL (the driver opened it first, so it exists)
    capabilities: dict[str, Any] = field(default_factory=dict)  # role -> the driver's Capabilities of its model: not probed again

    def __call__(self) -> Any:
        from atlas.cli.run import make_agents
        from atlas.llm.meter import Meter
        from atlas.ray_pool import WorkerParts
        from benchmarks.investigation.database import open_database
        from benchmarks.investigation.episodes import SocEpisode
        from benchmarks.investigation.question_files import read_questions
        from memory.store import MemoryStore

        meter = Meter()
        student, teacher = make_agents(self.agents, self.student, self.teacher, self.settings, meter, quiet=True, known=self.capabilities)
        store = MemoryStore.open(self.memory, index_dir=self.settings.home / "indexes") if self.memory else None
        database = open_database(self.world_db)
        by_id = {q.id: q for q in read_questions(Path(self.questions))}

        def close() -> None:
            database.close()
            if store is not None:
                store.close()

        return WorkerParts(student, teacher, store, lambda job: SocEpisode(by_id[job.task_id], database), meter, close)
