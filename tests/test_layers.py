"""The layer contract names every part of `atlas` but its composition root, so a new module is covered."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_contract_covers_every_atlas_module_but_the_cli():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    contract = next(c for c in config["tool"]["importlinter"]["contracts"] if "atlas.cli" in c["name"])
    parts = {p.stem if p.is_file() else p.name for p in (ROOT / "atlas").iterdir()
             if (p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").exists())) and p.stem not in {"__init__", "__main__", "cli"}}
    listed = {m.removeprefix("atlas.") for m in contract["source_modules"]}
    assert parts == listed, f"add {sorted(parts - listed)} / drop {sorted(listed - parts)} in pyproject's layer contract"
