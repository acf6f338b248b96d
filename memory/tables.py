"""SQL tables of the memory (SQLAlchemy Core). SQL is the source of truth; the vector index is a cache.

Every write bumps ``store_state.seq`` inside its transaction and stamps the rows it touches with
that number, so any process can bring its in-memory index up to date by reading rows newer than
the last number it applied.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

SCHEMA_VERSION = 2  # 2: one use per (pamphlet, episode); lane outcomes (memory/migrate.py)
metadata = MetaData()
USES_UNIQUE = "uq_uses_pamphlet_episode"
OUTCOMES_UNIQUE = "uq_lane_outcomes_episode"

store_state = Table(
    "store_state",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1
    Column("schema_version", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("embedding_model", String(200), nullable=False),
    Column("embedding_spec", String(500), nullable=False),
    Column("embedding_dim", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

pamphlets = Table(
    "pamphlets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("text", Text, nullable=False),
    Column("plan", JSON, nullable=True),
    Column("audience", String(16), nullable=False),
    Column("tags", JSON, nullable=False),
    Column("cue", Text, nullable=False),
    Column("provenance", JSON, nullable=False),
    Column("embedding", LargeBinary, nullable=False),
    Column("embedding_model", String(200), nullable=False),
    Column("embedding_dim", Integer, nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("version", Integer, nullable=False),
    Column("seq", BigInteger, nullable=False),
    Index("ix_pamphlets_seq", "seq"),
    Index("ix_pamphlets_hash", "content_hash"),
    Index("ix_pamphlets_deleted", "deleted"),
)

pamphlet_tags = Table(
    "pamphlet_tags",
    metadata,
    Column("pamphlet_id", Integer, ForeignKey("pamphlets.id", ondelete="CASCADE"), primary_key=True),
    Column("tag", String(200), primary_key=True),
    Index("ix_pamphlet_tags_tag", "tag"),
)

pamphlet_versions = Table(
    "pamphlet_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pamphlet_id", Integer, ForeignKey("pamphlets.id", ondelete="CASCADE"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("change", String(32), nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("changed_at", DateTime(timezone=True), nullable=False),
    Column("snapshot", JSON, nullable=False),
    Index("ix_versions_pamphlet", "pamphlet_id", "version"),
)

pamphlet_uses = Table(
    "pamphlet_uses",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("pamphlet_id", Integer, ForeignKey("pamphlets.id", ondelete="CASCADE"), nullable=False),
    Column("episode_id", String(200), nullable=False),
    Column("reward", Float, nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=False),
    Index("ix_uses_pamphlet", "pamphlet_id"),
    # an episode uses a pamphlet once: a node replayed after a crash records nothing twice
    Index(USES_UNIQUE, "pamphlet_id", "episode_id", unique=True),
)

# What a lane bandit learned, one row per episode (so a replayed update counts once); any run or host
# that opens the store starts from these (policies/supervision.py computes the statistics).
lane_outcomes = Table(
    "lane_outcomes",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("bandit", String(500), nullable=False),  # whose statistics: scope and agents
    Column("episode_id", String(200), nullable=False),
    Column("context", String(32), nullable=False),
    Column("lane", String(16), nullable=False),
    Column("reward", Float, nullable=False),
    Column("cost", Float, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Index(OUTCOMES_UNIQUE, "bandit", "episode_id", unique=True),
)

# Purged pamphlets leave a tombstone so that other processes drop them from their indexes.
tombstones = Table(
    "tombstones",
    metadata,
    Column("pamphlet_id", Integer, primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Index("ix_tombstones_seq", "seq"),
)
