"""Run configuration: a TOML file plus ``key=value`` overrides, validated with pydantic.

Unknown keys and bad values are errors that name the key and what is allowed; nothing is
silently dropped.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model, model_validator

from openended.domains import UnknownDomainError, domain_class
from openended.errors import UserError
from openended.operators import available_operators
from openended.textfiles import read_text


class ConfigError(UserError, ValueError):
    """The configuration is invalid; the message lists each problem by key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelConfig(_Strict):
    name: str = Field(
        "embedded",
        description="'embedded' (SmolLM2-135M-Instruct), a local transformers model directory "
        "or Hugging Face id, or the base URL of an OpenAI-compatible server (http(s)://.../v1)",
    )
    max_batch_size: int = Field(32, ge=1, description="local: most sequences decoded together")
    max_batch_tokens: int = Field(
        16384, ge=1, description="local: most prompt tokens prefilled together (rows x length)"
    )
    max_batch_mib: int = Field(
        1024,
        ge=16,
        description="local: most memory (MiB) decoding may take: the batches decoding at "
        "once (KV cache, attention: estimated from the model's config) and, on ctranslate2, "
        "a copy of the weights per sampling batch",
    )
    backend: Literal["auto", "ctranslate2", "transformers"] = Field(
        "auto",
        description="local: ctranslate2 (fast: int8, about 3x the tokens/s here) or "
        "transformers (exact speculative sampling, min-p, any device); auto = ctranslate2 "
        "where it is installed and nothing here needs transformers",
    )
    compute_type: Literal["int8", "int8_float32", "float32"] = Field(
        "int8", description="ctranslate2: weight type of the converted model"
    )
    threads: int = Field(
        0,
        ge=0,
        description="local: decoding threads (0: ctranslate2 all the cores, transformers "
        "half of them: torch's threads collapse when evaluations share the cores)",
    )
    top_p_candidates: int = Field(
        256,
        ge=0,
        description="ctranslate2: top-p keeps at most this many tokens (0: any number, "
        "exact but slower: sorting the vocabulary)",
    )
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    device: str = "cpu"
    speculative: Literal["auto", "prompt-lookup", "draft-model", "off"] = Field(
        "auto",
        description="local: exact speculative sampling; auto = prompt-lookup drafts for "
        "rewrite/diff mutations",
    )
    draft_model: str | None = Field(
        None,
        description="local: for speculative = 'draft-model', a smaller model folder "
        "(or 'embedded') sharing the tokenizer",
    )
    model_name: str | None = Field(None, description="server: model name (default: its first)")
    api_key_env: str = Field("OPENAI_API_KEY", description="server: env var with the API key")
    endpoint: Literal["auto", "chat", "completions"] = Field(
        "auto", description="server: prompts to /completions, messages to /chat/completions"
    )
    max_concurrency: int = Field(16, ge=1, description="server: most requests in flight")
    timeout: float = Field(120.0, gt=0, description="server: seconds per attempt")
    max_retries: int = Field(4, ge=0, description="server: retries on 429 / 5xx / network errors")
    cache: bool = Field(False, description="cache completions of seeded requests in SQLite")
    cache_path: Path | None = Field(None, description="cache file (default: user cache dir)")

    @property
    def is_remote(self) -> bool:
        return self.name.startswith(("http://", "https://"))

    @model_validator(mode="after")
    def _draft_model_given(self) -> ModelConfig:
        if self.speculative == "draft-model" and not self.draft_model:
            raise ValueError("speculative = 'draft-model' needs draft_model (a model folder)")
        if self.backend == "ctranslate2" and self.needs_transformers:
            raise ValueError(
                f"backend = 'ctranslate2' cannot do {self.needs_transformers}; "
                "use backend = 'transformers' (or 'auto')"
            )
        return self

    @property
    def needs_transformers(self) -> str:
        """What in this table only the transformers backend does ('' when nothing)."""
        if self.speculative in ("prompt-lookup", "draft-model"):
            return f"speculative = {self.speculative!r}"
        if self.device != "cpu":
            return f"device = {self.device!r}"
        return ""

    def local_backend(self) -> str:
        """The backend a local model runs on: ``ctranslate2`` or ``transformers``."""
        if self.backend != "auto":
            return self.backend
        if self.needs_transformers:
            return "transformers"
        try:
            import ctranslate2  # noqa: F401
        except ImportError:
            return "transformers"
        return "ctranslate2"


class OperatorConfig(_Strict):
    weight: float | None = Field(
        None, ge=0, description="relative frequency (default: the domain's choice)"
    )
    template: Path | None = Field(
        None, description="a .jinja prompt template overriding the default"
    )
    temperature: float = Field(0.9, ge=0, le=5)
    top_p: float = Field(0.95, gt=0, le=1)
    max_tokens: int | None = Field(None, ge=1, le=8192, description="default: the operator's")
    stop: list[str] | None = Field(None, description="stop sequences (default: the operator's)")
    parents: int | None = Field(None, ge=1, le=32, description="parents per prompt")


class _Operators(_Strict):
    """Variation operators, one table per registered operator (`available_operators`).
    A weight left unset takes the domain's default (symbolic regression: lmx and
    mutation; program evolution: diff, rewrite, funsearch)."""

    def items(self) -> list[tuple[str, OperatorConfig]]:
        return [(name, getattr(self, name)) for name in type(self).model_fields]

    def weights(self, defaults: Mapping[str, float]) -> dict[str, float]:
        """Each operator's weight: the config's, else the domain's default (`defaults`,
        the domain's ``default_operator_weights``), else 0 (not used)."""
        return {
            name: op.weight if op.weight is not None else float(defaults.get(name, 0.0))
            for name, op in self.items()
        }


OperatorsConfig = create_model(  # a field per registered operator
    "OperatorsConfig",
    __base__=_Operators,
    __doc__=_Operators.__doc__,
    **{
        name: (OperatorConfig, Field(default_factory=OperatorConfig))
        for name in available_operators()
    },  # type: ignore[call-overload]
)


class SearchConfig(_Strict):
    batch_size: int = Field(16, ge=1, description="children generated per batch")
    islands: int = Field(1, ge=1, description="separate sub-populations (FunSearch islands)")
    migration_interval: int = Field(
        10, ge=0, description="batches between ring migrations of each island's best; 0: never"
    )
    reject_duplicates: bool = Field(
        True, description="skip evaluating near-duplicates (when the domain can fingerprint)"
    )
    max_failed_batches: int = Field(
        5,
        ge=0,
        description="stop after this many batches in a row whose every LM request "
        "failed (the run can be resumed later); 0: never stop",
    )
    adapt_operators: bool = Field(
        True,
        description="operator weights follow each operator's valid and improving children "
        "per token (a bandit; the configured weights are the prior)",
    )
    operator_floor: float = Field(
        0.05, ge=0, le=1, description="the least share of draws an adaptive operator keeps"
    )
    max_fruitless_batches: int = Field(
        50,
        ge=0,
        description="stop after this many batches in a row of which no child could be "
        "evaluated (all unparsable, duplicates or failed requests); 0: never stop",
    )


class BudgetConfig(_Strict):
    """Limits on the whole run (all sessions of it, resumes included); 0 means no limit.

    A budget you set is the only one: the others are off unless you set them too. With no
    budget above 0, the run stops after 1000 evaluations. The resolved values are all
    written to the run's ``config.toml``, so a resume keeps exactly these budgets."""

    max_evaluations: int | None = Field(
        None, ge=0, description="candidates evaluated, seeds included (default 1000)"
    )
    max_lm_calls: int | None = Field(None, ge=0, description="LM generate calls (one per batch)")
    max_tokens: int | None = Field(None, ge=0, description="LM tokens, prompt plus completion")
    max_seconds: float | None = Field(None, ge=0, description="wall time over all sessions")
    target_score: float | None = Field(
        None,
        description="also stop once the best fitness reaches this (not a budget: unset "
        "budgets still take their defaults)",
    )

    @model_validator(mode="after")
    def _resolve(self) -> BudgetConfig:
        names = ("max_evaluations", "max_lm_calls", "max_tokens", "max_seconds")
        none_set = not any(getattr(self, name) for name in names)  # none above 0
        for name in names:
            if getattr(self, name) is None:
                value = DEFAULT_EVALUATIONS if none_set and name == "max_evaluations" else 0
                object.__setattr__(self, name, value)
        if not any(getattr(self, name) for name in names):
            raise ValueError("set at least one budget above 0 (the search would never stop)")
        return self

    def active(self) -> dict[str, float]:
        """The budgets that can stop the run: name -> limit."""
        return {
            name: float(value)
            for name, value in (
                ("evaluations", self.max_evaluations),
                ("LM calls", self.max_lm_calls),
                ("tokens", self.max_tokens),
                ("seconds", self.max_seconds),
            )
            if value
        }


DEFAULT_EVALUATIONS = 1000


class ArchiveConfig(_Strict):
    kind: Literal["grid", "cvt"] = "grid"
    cells: int = Field(64, ge=2, description="CVT centroids (kind = 'cvt')")


class ExecutorConfig(_Strict):
    """Where evaluations and local-model calls run (`openended.executor`)."""

    kind: Literal["local", "ray"] = Field(
        "local", description="local: this process; ray: evaluations as Ray tasks"
    )
    address: str = Field(
        "auto",
        description="ray: 'auto' (the cluster `ray start` made), 'host:port', "
        "'ray://host:port' (Ray Client), or 'local' (a private cluster)",
    )
    chunk_size: int = Field(4, ge=1, description="ray: genomes per evaluation task")
    task_cpus: float = Field(1.0, gt=0, description="ray: CPUs reserved per evaluation task")
    max_retries: int = Field(3, ge=0, description="ray: retries of a task whose worker died")
    lm_actors: int = Field(
        0,
        ge=0,
        description="ray: Ray actors hosting the local model (0: the model runs in the driver)",
    )
    lm_actor_cpus: float = Field(1.0, gt=0, description="ray: CPUs reserved per model actor")


class Config(_Strict):
    """The whole run configuration. Every field has a default: `Config()` is the default
    search (symbolic regression with the embedded model)."""

    name: str | None = Field(None, description="run name (default: domain and a timestamp)")
    seed: int = 0
    runs_dir: Path = Path("runs")
    model: ModelConfig = Field(default_factory=ModelConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    operators: OperatorsConfig = Field(default_factory=OperatorsConfig)  # type: ignore[valid-type]
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    domain: dict[str, Any] = Field(default_factory=lambda: {"name": "symbolic_regression"})

    @model_validator(mode="after")
    def _executor_fits(self) -> Config:
        if self.executor.lm_actors and self.executor.kind != "ray":
            raise ValueError("executor.lm_actors needs executor.kind = 'ray'")
        if self.executor.lm_actors and self.model.is_remote:
            raise ValueError(
                "executor.lm_actors: the model is a server (model.name is a URL); "
                "only a local model is hosted by Ray actors"
            )
        return self

    @property
    def domain_name(self) -> str:
        return str(self.domain.get("name", "symbolic_regression"))

    def domain_options(self) -> BaseModel:
        """The ``[domain]`` table validated by the domain's own `Config` model."""
        options = {k: v for k, v in self.domain.items() if k != "name"}
        try:
            cls = domain_class(self.domain_name)
        except UnknownDomainError as exc:
            raise ConfigError(f"domain.name: {exc}") from None
        try:
            return cls.Config.model_validate(options)
        except ValidationError as exc:
            raise ConfigError(_describe(exc, cls.Config, prefix="domain")) from None

    def to_toml(self) -> str:
        data = self.model_dump(mode="json", exclude_none=True)
        return tomli_w.dumps(data)


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """Field names of the model found at `loc` (the parent of an unknown key)."""
    current: Any = model
    for part in loc:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return None
        field = current.model_fields.get(str(part))
        if field is None:
            return None
        current = field.annotation
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return None


def _describe(exc: ValidationError, model: type[BaseModel], *, prefix: str = "") -> str:
    problems = []
    for error in exc.errors():
        loc = [str(p) for p in error["loc"]]
        key = ".".join([prefix, *loc] if prefix else loc) or "(top level)"
        if error["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, error["loc"][:-1])
            hint = f"; allowed keys: {', '.join(allowed)}" if allowed else ""
            problems.append(f"{key}: unknown key{hint}")
        else:
            value = error.get("input")
            shown = f" (got {value!r})" if not isinstance(value, dict) else ""
            problems.append(f"{key}: {error['msg']}{shown}")
    return "invalid configuration:\n  " + "\n  ".join(problems)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"a.b=3"`` -> (["a", "b"], 3). Values are TOML (numbers, booleans, strings in
    quotes, arrays); anything that is not valid TOML is taken as a plain string."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. search.batch_size=8")
    key, raw = text.split("=", 1)
    path = [p.strip() for p in key.strip().split(".")]
    if not all(path):
        raise ConfigError(f"override {text!r}: empty key component")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return path, value


def merge_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``KEY=VALUE`` overrides to a config dict (a new dict is returned)."""
    import copy

    merged = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = merged
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {text!r}: {part!r} is not a table")
            node = child
        node[path[-1]] = value
    return merged


def read_toml(path: Path) -> dict[str, Any]:
    text = read_text(path, what="config", error=ConfigError)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None


def load_config(
    source: Path | str | Mapping[str, Any] | Config | None = None,
    overrides: Sequence[str] = (),
) -> Config:
    """Build a validated `Config` from a TOML path, a dict, or nothing (the defaults),
    with ``KEY=VALUE`` overrides applied. Relative paths in a file's ``[domain]`` and
    operator templates resolve against the file's directory."""
    base_dir: Path | None = None
    if isinstance(source, Config):
        data = source.model_dump(mode="python")
    elif isinstance(source, str | Path):
        data = read_toml(Path(source))
        base_dir = Path(source).resolve().parent
    elif source is None:
        data = {}
    else:
        data = dict(source)
    data = merge_overrides(data, overrides)
    origin = f"{source}: " if isinstance(source, str | Path) else ""
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(origin + _describe(exc, Config)) from None
    config = _resolve_paths(config, base_dir or Path.cwd())
    try:
        config.domain_options()
    except ConfigError as exc:
        raise ConfigError(origin + str(exc)) from None
    defaults = domain_class(config.domain_name).default_operator_weights
    if not any(w > 0 for w in config.operators.weights(defaults).values()):
        raise ConfigError(
            f"{origin}operators: at least one operator needs a weight > 0 "
            f"(domain {config.domain_name!r} defaults: {defaults})"
        )
    return config


def _path_fields(model: type[BaseModel]) -> set[str]:
    """Names of the fields of `model` typed `Path` or `Path | None`."""
    return {
        name
        for name, field in model.model_fields.items()
        if field.annotation is Path or Path in get_args(field.annotation)
    }


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    """Make relative paths absolute against `base_dir`: the domain options typed as paths
    in the domain's own config model, and operator templates."""
    try:
        domain_paths = _path_fields(domain_class(config.domain_name).Config)
    except UnknownDomainError:
        domain_paths = set()  # reported by domain_options()
    domain = dict(config.domain)
    for key, value in domain.items():
        if key in domain_paths and isinstance(value, str) and not Path(value).is_absolute():
            domain[key] = str(base_dir / value)
    config.domain = domain
    for _, op in config.operators.items():
        if op.template is not None and not op.template.is_absolute():
            op.template = base_dir / op.template
    return config
