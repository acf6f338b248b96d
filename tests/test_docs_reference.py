"""The generated references in docs/reference/ match the settings model and the CLI as they are now."""

from atlas.cli.reference import references


def test_generated_references_are_current():
    stale = [path.name for path, text in references().items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    assert not stale, f"docs/reference/{', '.join(stale)} out of date: run `python -m atlas.cli.reference` (or `make docs`)"


def test_every_setting_and_command_is_documented():
    texts = {path.name: text for path, text in references().items()}
    settings, cli = texts["settings.md"], texts["cli.md"]
    assert "`agents.max_llm_calls`" in settings and "`openai.deadline_s`" in settings and "| `default` |" in settings
    for command in ("atlas memory search", "atlas bench soc grade", "atlas cascade run", "atlas ui", "atlas run"):
        assert f"## `{command}`" in cli, command
