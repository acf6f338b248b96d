"""All configuration in one validated place.

Settings come from built-in defaults, then ``atlas.yaml`` (if present), then a few environment
variables. Nothing else reads the environment for configuration, so a run is explained by its
settings object alone.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from atlas.errors import ConfigError

CONFIG_FILE_NAME = "atlas.yaml"

# Environment variable -> dotted settings field it overrides.
ENV_OVERRIDES: dict[str, str] = {
    "ATLAS_HOME": "home",
    "ATLAS_MODELS_DIR": "models_dir",
    "OPENAI_API_KEY": "openai.api_key",
    "OPENAI_BASE_URL": "openai.base_url",
    "ATLAS_LLM_CACHE": "cache.enabled",
    "ATLAS_UI_TOKEN": "ui.token",
    "ATLAS_SERVE_TOKEN": "serve.token",
}


class _Strict(BaseModel):
    """Unknown keys are errors: a typo in atlas.yaml must not be silently ignored."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Price(_Strict):
    """US dollars per one million tokens."""

    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)

    def dollars(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_1m + completion_tokens * self.output_per_1m) / 1e6


DEFAULT_PRICE_KEY = "default"

# Published list prices (USD per 1M tokens) for common OpenAI models; override in atlas.yaml.
DEFAULT_PRICES: dict[str, Price] = {
    "gpt-5": Price(input_per_1m=1.25, output_per_1m=10.0),
    "gpt-5-mini": Price(input_per_1m=0.25, output_per_1m=2.0),
    "gpt-5-nano": Price(input_per_1m=0.05, output_per_1m=0.40),
    "gpt-4.1": Price(input_per_1m=2.0, output_per_1m=8.0),
    "gpt-4.1-mini": Price(input_per_1m=0.40, output_per_1m=1.60),
    "gpt-4o": Price(input_per_1m=2.50, output_per_1m=10.0),
    "gpt-4o-mini": Price(input_per_1m=0.15, output_per_1m=0.60),
    "gpt-3.5-turbo": Price(input_per_1m=0.50, output_per_1m=1.50),
    # models not listed (a vLLM or Ollama model, a new release): never a silent $0; a warning names the model
    DEFAULT_PRICE_KEY: Price(input_per_1m=0.50, output_per_1m=1.50),
}


Support = Literal["auto", "on", "off"]


class OpenAISettings(_Strict):
    api_key: SecretStr | None = Field(default=None, description="key for `openai:` models (any value for local servers)")
    base_url: str | None = Field(default=None, description="any OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1; default: OpenAI")
    timeout_s: float = Field(default=60.0, gt=0, description="one request may take this long")
    deadline_s: float = Field(default=90.0, gt=0, description="one call, retries included, ends by then")
    max_retries: int = Field(default=3, ge=0, le=20, description="retries on 429, 5xx, timeouts and malformed replies")
    backoff_s: float = Field(default=0.5, ge=0, description="first retry wait, doubling each retry up to backoff_max_s, with jitter")
    backoff_max_s: float = Field(default=8.0, ge=0, description="cap on one retry's wait (before jitter)")
    reasoning_tokens: int = Field(default=2048, ge=0, description="extra completion tokens a reasoning model may think with")
    concurrency: int = Field(default=16, ge=1, le=256, description="requests in flight at once for batch work (the cascade's live answerer)")
    # Native tool calls and JSON-schema outputs: probed once per endpoint and model ("auto"), or forced.
    tools: Support = Field(default="auto", description="native tool calls: auto probes the endpoint once; on or off forces")
    structured_outputs: Support = Field(default="auto", description="JSON-schema outputs: auto probes the endpoint once; on or off forces")

    @field_validator("base_url")
    @classmethod
    def _url_has_scheme(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL, e.g. http://127.0.0.1:8000/v1")
        return value


class LocalModelSettings(_Strict):
    """The in-process model behind the `local` spec."""

    # float32 is the fast path on CPUs without native bf16; int8 quantizes the linear layers.
    dtype: Literal["float32", "bfloat16"] = Field(default="float32", description="bfloat16 is only fast on CPUs with native bf16")
    quantize: Literal["none", "int8"] = Field(default="int8", description="int8: dynamic int8 linear layers, faster on CPU")
    threads: int | None = Field(default=None, ge=1, description="torch threads; None = all cores")
    batch_size: int = Field(default=8, ge=1, description="prompts per forward pass when scoring labels")
    max_input_tokens: int = Field(default=2048, ge=16, description="longer prompts are refused with a clear error")
    # A local model costs electricity and hardware, not an invoice: declare a figure so that
    # cost comparisons with hosted models are on one scale.
    price: Price = Field(default=Price(input_per_1m=0.02, output_per_1m=0.02), description="declared cost of local tokens, so costs compare on one scale")


class CacheSettings(_Strict):
    enabled: bool = Field(default=False, description="opt-in response cache (identical calls answered from SQLite at no cost)")
    path: Path | None = Field(default=None, description="default: $ATLAS_HOME/llm_cache.sqlite")


class AgentSettings(_Strict):
    """How runs pay for supervision and learn: prices, lane choice, budgets, distillation gates."""

    # Declared prices per SQL query, so procedural and LLM runs report cost on one scale (dollars).
    student_query_usd: float = Field(default=0.0002, ge=0, description="declared dollars per SQL query by the student")
    teacher_query_usd: float = Field(default=0.002, ge=0, description="declared dollars per SQL query by the teacher")
    lam: float = Field(default=5.0, ge=0, description="lane choice maximises reward - lam * cost (dollars)")
    explore: float = Field(default=0.3, ge=0, le=1, description="lane exploration rate (fades with visits)")
    max_retries: int = Field(default=1, ge=0, le=5, description="student retries after a failed validation")
    student_steps: int = Field(default=15, ge=1, le=200, description="SQL queries per student attempt")
    teacher_steps: int = Field(default=40, ge=1, le=400, description="SQL queries per teacher attempt")
    json_repairs: int = Field(default=2, ge=0, le=10, description="repair turns per LLM attempt for malformed or cut-off replies")
    retrieve_k: int = Field(default=10, ge=1, le=50, description="pamphlets retrieved per task")
    skill_pool_k: int = Field(default=48, ge=1, le=200, description="skills retrieved per task for a student that composes its plan from them")
    memory_token_budget: int = Field(default=600, ge=0, description="tokens of pamphlets that may go into a prompt")
    # LLM agents: what one call and one episode may spend (prompt budgets fit 8k and 16k context windows)
    student_prompt_tokens: int = Field(default=6400, ge=256, description="prompt tokens per student call")
    teacher_prompt_tokens: int = Field(default=14000, ge=256, description="prompt tokens per teacher call")
    student_max_tokens: int = Field(default=512, ge=16, description="completion tokens per student call")
    teacher_max_tokens: int = Field(default=768, ge=16, description="completion tokens per teacher call")
    keep_full_observations: int = Field(default=1, ge=1, le=50, description="latest query results kept whole in a prompt (older ones compacted)")
    keep_compact_observations: int = Field(default=1, ge=0, le=50, description="query results before those kept compacted (status, header, two rows); older ones fold to one line")
    max_llm_calls: int = Field(default=64, ge=1, description="hard cap on model calls per episode")
    max_plans: int = Field(default=2, ge=1, le=10, description="alternative plans a student may try per episode")
    plan_min_score: float = Field(default=0.3, ge=-1, le=1, description="retrieval score a note needs to be offered as a plan")
    validation_steps: int = Field(default=3, ge=0, le=40, description="queries the teacher may run to check an answer")
    signal: Literal["judgment", "reward"] = Field(default="judgment", description="what learning uses: the teacher's judgment (no ground truth) or the benchmark's reward")
    audit_rate: float = Field(default=0.2, ge=0, le=1, description="share of auto-lane answers the teacher judges when learning")
    max_pamphlet_chars: int = Field(default=1500, ge=50, description="longer lessons are rejected")
    prune_after_uses: int = Field(default=4, ge=1, description="uses after which a weak pamphlet may be pruned")
    prune_below: float = Field(default=0.5, ge=0, le=1, description="prune a pamphlet whose mean reward stays below this")


class MCPSettings(_Strict):
    """`atlas memory mcp` over streamable HTTP (it has no authentication, so loopback only)."""

    host: str = Field(default="127.0.0.1", description="`atlas memory mcp --transport http` listens here (loopback only)")
    port: int = Field(default=8766, ge=1, le=65535, description="its port")


class UISettings(_Strict):
    """`atlas ui`: the local web page for the memory and the runs."""

    host: str = Field(default="127.0.0.1", description="where `atlas ui` listens")
    port: int = Field(default=8765, ge=1, le=65535, description="its port")
    token: SecretStr | None = Field(default=None, description="required when host is not a loopback address")
    runs: Path | None = Field(default=None, description="folder searched for run folders; default: $ATLAS_HOME")
    page_size: int = Field(default=100, ge=1, le=100_000, description="pamphlets per list page (per_page=all shows every one)")


class ServeSettings(_Strict):
    """`atlas cascade serve`: the cascade as an OpenAI-compatible endpoint."""

    host: str = Field(default="127.0.0.1", description="where `atlas cascade serve` listens")
    port: int = Field(default=8767, ge=1, le=65535, description="its port")
    token: SecretStr | None = Field(default=None, description="Bearer key clients must send; required when host is not a loopback address")
    save_every_s: float = Field(default=60.0, gt=0, description="how often the learned state is saved (and always at shutdown)")


class AtlasSettings(_Strict):
    home: Path = Field(default=Path(".atlas"), description="where memory, caches and models live")
    models_dir: Path | None = Field(default=None, description="default: $ATLAS_HOME/models")
    seed: int = Field(default=0, description="default seed for runs and sampling")
    openai: OpenAISettings = OpenAISettings()
    local: LocalModelSettings = LocalModelSettings()
    cache: CacheSettings = CacheSettings()
    agents: AgentSettings = AgentSettings()
    mcp: MCPSettings = MCPSettings()
    ui: UISettings = UISettings()
    serve: ServeSettings = ServeSettings()
    prices: dict[str, Price] = Field(
        default_factory=lambda: dict(DEFAULT_PRICES),
        description="dollars per 1M tokens by model name prefix; `default` prices any model not listed (with a warning)",
    )

    @field_validator("prices")
    @classmethod
    def _prices_have_a_default(cls, value: dict[str, Price]) -> dict[str, Price]:
        """A prices table from atlas.yaml extends the built-in one, so the default and list prices stay."""
        return {**DEFAULT_PRICES, **value}

    @property
    def model_cache_dir(self) -> Path:
        """Where de-quantized local model weights are cached (shareable between homes)."""
        return self.models_dir or self.home / "models"

    @property
    def cache_path(self) -> Path:
        return self.cache.path or self.home / "llm_cache.sqlite"

    def price_for(self, model: str) -> Price | None:
        """Price of a model name, matching the longest table key that prefixes it."""
        if model in self.prices and model != DEFAULT_PRICE_KEY:
            return self.prices[model]
        matches = [key for key in self.prices if key != DEFAULT_PRICE_KEY and model.startswith(key)]
        return self.prices[max(matches, key=len)] if matches else None


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    node = data
    *parents, leaf = dotted.split(".")
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = {}
            node[key] = child
        node = child
    node[leaf] = value


def _describe_errors(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(item["loc"][:-1])
            lines.append(f"  {field}: unknown setting; valid keys here: {', '.join(allowed)}")
            continue
        value = item.get("input")
        lines.append(f"  {field} = {value!r}: {item['msg']}")
    return "\n".join(lines)


def _allowed_keys(parent: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = AtlasSettings
    for part in parent:
        annotation = model.model_fields[str(part)].annotation if str(part) in model.model_fields else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return []
        model = annotation
    return sorted(model.model_fields)


def find_config_file(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Path | None:
    """The config file to read: an explicit path, $ATLAS_CONFIG, or ./atlas.yaml if present."""
    environ = dict(os.environ) if environ is None else environ
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    from_env = environ.get("ATLAS_CONFIG")
    if from_env:
        path = Path(from_env)
        if not path.is_file():
            raise ConfigError(f"ATLAS_CONFIG points to {path}, which does not exist")
        return path
    default = Path(CONFIG_FILE_NAME)
    return default if default.is_file() else None


def load_settings(
    config_file: Path | None = None,
    environ: dict[str, str] | None = None,
    **overrides: Any,
) -> AtlasSettings:
    """Defaults < atlas.yaml < environment < keyword overrides (dotted keys as ``a__b``)."""
    environ = dict(os.environ) if environ is None else environ
    path = find_config_file(config_file, environ)
    data: dict[str, Any] = {}
    source = "built-in defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path} must hold a mapping of settings, got {type(loaded).__name__}")
        data = loaded
    for variable, dotted in ENV_OVERRIDES.items():
        if environ.get(variable):
            _set_dotted(data, dotted, environ[variable])
            source += f" + ${variable}"
    for key, value in overrides.items():
        _set_dotted(data, key.replace("__", "."), value)
    try:
        return AtlasSettings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe_errors(exc, source)) from None
