"""Bringing an existing store's schema up to date when it is opened for writing.

Version 2 (this one): a use is recorded once per (pamphlet, episode), so that a graph node replayed
after a crash does not count it twice: older stores keep the first of any duplicate uses and get the
unique index; and the `lane_outcomes` table (what lane bandits learned) is added. The change runs in
one transaction under the store-creation lock, so several processes opening an old store at once
migrate it once. A read-only store is left as it is (it cannot record uses anyway).
"""

from __future__ import annotations

import logging

from sqlalchemy import Connection, Engine, select, text, update

from memory import tables as t

log = logging.getLogger(__name__)


def schema_version(conn: Connection) -> int | None:
    """The store's schema version, or None before its state row exists (a store being created)."""
    return conn.execute(select(t.store_state.c.schema_version)).scalar_one_or_none()


def migrate(engine: Engine, creation_lock) -> list[str]:  # noqa: ANN001 (the engine module's lock function)
    """Upgrade the store in place; returns a note per step taken (empty when it was current)."""
    with engine.connect() as probe:
        version = schema_version(probe)
    if version is None or version >= t.SCHEMA_VERSION:
        return []
    notes: list[str] = []
    with engine.connect() as conn:
        conn = conn.execution_options(sqlite_immediate=True)
        with conn.begin():
            creation_lock(conn)
            version = schema_version(conn)
            if version is None or version >= t.SCHEMA_VERSION:
                return []  # another process migrated it meanwhile
            t.metadata.create_all(conn)  # tables this version added (existing ones are left as they are)
            removed = conn.execute(
                text(
                    "DELETE FROM pamphlet_uses WHERE id NOT IN "
                    "(SELECT keep FROM (SELECT MIN(id) AS keep FROM pamphlet_uses GROUP BY pamphlet_id, episode_id) AS firsts)"
                )
            ).rowcount
            conn.execute(text(f"CREATE UNIQUE INDEX IF NOT EXISTS {t.USES_UNIQUE} ON pamphlet_uses (pamphlet_id, episode_id)"))
            conn.execute(update(t.store_state).where(t.store_state.c.id == 1).values(schema_version=t.SCHEMA_VERSION))
            notes.append(
                f"store schema upgraded from version {version} to {t.SCHEMA_VERSION}: one use per (pamphlet, episode)"
                + (f"; {removed} duplicate uses removed (the first of each was kept)" if removed else "")
            )
    for note in notes:
        log.info(note)
    return notes
