"""Errors of the memory store. Messages say what was wrong, where, and what to do."""


class MemoryStoreError(Exception):
    """Base class for problems a user can act on."""


class PamphletNotFound(MemoryStoreError):
    pass


class ConcurrentEdit(MemoryStoreError):
    """Another writer changed the pamphlet between our read and our write; nothing was written."""


class EmbedderMismatch(MemoryStoreError):
    """The store was built with another embedding model; mixing vector spaces is refused."""


class ImportValidationError(MemoryStoreError):
    """A JSONL import had bad lines; nothing was imported."""

    def __init__(self, path: str, problems: list[tuple[int, str]]) -> None:
        self.problems = problems
        shown = "\n".join(f"  line {line}: {problem}" for line, problem in problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(
            f"{path}: {len(problems)} bad line(s); nothing was imported "
            f"(fix them, or import with skip_invalid / --skip-invalid):\n{shown}{more}"
        )


class ReadOnlyStore(MemoryStoreError):
    """The store's file or folder cannot be written: reads work, writes are refused before they start."""
