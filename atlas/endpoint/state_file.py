"""The endpoint's state on disk: written atomically (a temporary file, fsync, rename), read back
through an unpickler that only rebuilds the kinds of objects a cascade holds (numpy arrays,
scikit-learn estimators, the cascade's policies and replay buffer), so a corrupt or foreign file
is a clear error, and a file naming any other function or class is refused before it is called."""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

from atlas.errors import AtlasError

FORMAT = "atlas-cascade-endpoint"
VERSION = 2  # 2: the OCL policy keeps a calibration curve per level (with a deque of recent items)
CLASS_MODULES = ("sklearn", "policies.cascade")  # classes only: estimators, losses, policies, the replay buffer
NUMPY_REBUILDERS = {"_frombuffer", "_reconstruct", "scalar"}  # how numpy pickles arrays and scalars
BUILTINS = {"set", "frozenset", "slice", "range", "complex", "bytearray", "list", "dict", "tuple", "int", "float", "str", "bool"}


class StateFileError(AtlasError):
    """The state file cannot be used: unreadable, corrupt, or learned for another cascade."""


def _allowed(module: str, name: str, found: Any) -> bool:
    if module == "builtins":
        return name in BUILTINS
    if module in ("random", "numpy", "collections"):
        return (module, name) in (("random", "Random"), ("numpy", "dtype"), ("numpy", "ndarray"), ("collections", "deque"))
    if module.startswith(("numpy._core.", "numpy.core.")):
        return name in NUMPY_REBUILDERS
    return any(module == m or module.startswith(m + ".") for m in CLASS_MODULES) and isinstance(found, type)


class _CascadeUnpickler(pickle.Unpickler):
    """Rebuilds only what a cascade state holds; anything else (a function to call, another
    module's class) stops the load."""

    def find_class(self, module: str, name: str) -> Any:
        found = super().find_class(module, name) if module.split(".")[0] in ("builtins", "random", "numpy", "collections", "sklearn", "policies") else None
        if found is None or not _allowed(module, name, found):
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a cascade state never holds")
        return found


def dumps(payload: dict[str, Any]) -> bytes:
    return pickle.dumps({"format": FORMAT, "version": VERSION, **payload}, protocol=pickle.HIGHEST_PROTOCOL)


def write_atomic(path: Path, blob: bytes) -> None:
    """Replace ``path`` with ``blob`` so that a reader (or a crash) sees the old file or the new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with temporary.open("wb") as sink:
        sink.write(blob)
        sink.flush()
        os.fsync(sink.fileno())
    os.replace(temporary, path)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)


def read(path: Path) -> dict[str, Any] | None:
    """The saved payload, or None when there is no file yet."""
    if not path.exists():
        return None
    if not path.is_file():
        raise StateFileError(f"state file {path} is not a file; pass --state with a file path")
    try:
        blob = path.read_bytes()
    except OSError as error:
        raise StateFileError(f"cannot read state file {path}: {error.strerror}") from None
    try:
        payload = _CascadeUnpickler(io.BytesIO(blob)).load()
    except Exception as error:  # pickle raises many kinds for a damaged file; each means the same here
        raise StateFileError(
            f"state file {path} is corrupt or not a cascade endpoint state ({type(error).__name__}: {error}); "
            "nothing was changed: move it away to start from scratch, or pass another --state"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise StateFileError(f"state file {path} is not a cascade endpoint state; move it away or pass another --state")
    if payload.get("version") != VERSION:
        raise StateFileError(f"state file {path} has format version {payload.get('version')!r}; this atlas reads version {VERSION}")
    return payload
