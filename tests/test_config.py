from pathlib import Path

import pytest

from atlas.config import AtlasSettings, load_settings
from atlas.errors import ConfigError


def test_defaults_need_no_file_and_no_environment():
    settings = load_settings(environ={})
    assert settings.home == Path(".atlas")
    assert settings.cache.enabled is False
    assert settings.model_cache_dir == Path(".atlas/models")
    assert settings.openai.api_key is None


def test_yaml_then_environment_overrides(tmp_path):
    config = tmp_path / "atlas.yaml"
    config.write_text("home: from-yaml\nopenai:\n  base_url: http://yaml.example/v1\n  max_retries: 5\n")
    settings = load_settings(config, environ={"OPENAI_BASE_URL": "http://127.0.0.1:9/v1", "OPENAI_API_KEY": "sk-secret-123"})
    assert settings.home == Path("from-yaml")
    assert settings.openai.base_url == "http://127.0.0.1:9/v1"  # environment wins
    assert settings.openai.max_retries == 5  # yaml kept where the environment is silent
    assert settings.openai.api_key.get_secret_value() == "sk-secret-123"
    assert "sk-secret-123" not in repr(settings)  # secrets never print


def test_atlas_yaml_in_working_directory_is_found(tmp_path):
    (tmp_path / "atlas.yaml").write_text("seed: 7\n")
    assert load_settings(environ={}).seed == 7


def test_invalid_value_names_field_value_and_expected_form(tmp_path):
    config = tmp_path / "atlas.yaml"
    config.write_text("openai:\n  timeout_s: soon\n")
    with pytest.raises(ConfigError) as info:
        load_settings(config, environ={})
    message = str(info.value)
    assert "openai.timeout_s" in message and "'soon'" in message and "number" in message
    assert str(config) in message


def test_bad_url_explains_the_form():
    with pytest.raises(ConfigError, match=r"openai.base_url = 'localhost:8000'.*http://"):
        load_settings(environ={"OPENAI_BASE_URL": "localhost:8000"})


def test_unknown_key_lists_valid_keys(tmp_path):
    config = tmp_path / "atlas.yaml"
    config.write_text("local:\n  dtpye: float32\n")
    with pytest.raises(ConfigError, match=r"local.dtpye: unknown setting; valid keys here: .*dtype"):
        load_settings(config, environ={})


def test_enum_value_lists_choices(tmp_path):
    config = tmp_path / "atlas.yaml"
    config.write_text("local:\n  dtype: float16\n")
    with pytest.raises(ConfigError, match=r"local.dtype = 'float16'.*'float32' or 'bfloat16'"):
        load_settings(config, environ={})


@pytest.mark.parametrize("text, fragment", [("home: [unclosed", "not valid YAML"), ("- a\n- b\n", "mapping")])
def test_unreadable_yaml(tmp_path, text, fragment):
    config = tmp_path / "atlas.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=fragment):
        load_settings(config, environ={})


def test_missing_explicit_config_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml", environ={})


def test_price_lookup_prefers_longest_prefix():
    settings = AtlasSettings()
    assert settings.price_for("gpt-4o-mini-2024-07-18").input_per_1m == 0.15
    assert settings.price_for("gpt-4o-2024-08-06").input_per_1m == 2.50
    assert settings.price_for("my-vllm-model") is None
