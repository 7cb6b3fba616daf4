"""LLM providers registered by name (the same ``Registry`` as every pluggable part), the alias table of
short model names, and per-provider settings.

A provider's module (and so its SDK) is imported only when a model of that provider is created. Adding
one is a ``ChatModel`` subclass and a line in ``PROVIDERS`` (or ``PROVIDERS.add`` from any module).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from bcomc_dagster.llm.base import ChatModel
from bcomc_dagster.registry import EMBEDDED, Registry
from bcomc_dagster.secrets import check_env_name, check_url

# the embedded roles (extractive generator, failure-rate analyzer, reference judge) are not chat models:
# they are registered in ``registries``
PROVIDERS: Registry[Callable[..., ChatModel]] = Registry(
    "LLM provider",
    {
        "bedrock": "bcomc_dagster.llm.bedrock:BedrockModel",
        "anthropic": "bcomc_dagster.llm.anthropic_api:AnthropicModel",
        "openai": "bcomc_dagster.llm.openai_api:OpenAIModel",
    },
)


def backends() -> list[str]:
    """Every backend a role may name: the embedded one and each provider."""
    return [EMBEDDED, *PROVIDERS.names()]


# the plan's short names -> each provider's model id (Bedrock: a model id; a cross-region inference
# profile such as "us.anthropic.claude-3-5-haiku-20241022-v1:0" may be given directly as the model)
DEFAULT_ALIASES: dict[str, dict[str, str]] = {
    "claude-3-5-haiku": {
        "bedrock": "anthropic.claude-3-5-haiku-20241022-v1:0",
        "anthropic": "claude-3-5-haiku-20241022",
    },
    "claude-3-5-sonnet": {
        "bedrock": "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "anthropic": "claude-3-5-sonnet-20241022",
    },
}


class ProviderSettings(BaseModel):
    """How to reach one provider. Credentials never go in the config: only the name of a variable."""

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)

    base_url: str | None = Field(
        None,
        description="OpenAI-compatible or Anthropic base URL; for Bedrock the endpoint_url (default: AWS's).",
    )
    api_key_env: str | None = Field(
        None,
        description="Environment variable holding the API key (default OPENAI_API_KEY / ANTHROPIC_API_KEY; "
        "Bedrock uses the standard AWS credential chain).",
    )
    region: str | None = Field(None, description="Bedrock: AWS region (default: the credential chain's).")
    requests_per_minute: float | None = Field(
        None, gt=0, le=1_000_000, description="Client-side rate limit for this provider."
    )
    max_retries: int = Field(
        4, ge=0, le=20, description="Retries of throttled or failed calls, by the SDK itself."
    )
    timeout_s: float = Field(60, gt=0, le=3600, description="Per-attempt timeout of a call.")

    _url = field_validator("base_url")(classmethod(lambda cls, v: check_url(v)))
    _env = field_validator("api_key_env")(classmethod(lambda cls, v: check_env_name(v)))


def resolve_model(backend: str, name: str, aliases: dict[str, dict[str, str]] | None = None) -> str:
    """The provider's id for ``name``: a user alias, a built-in alias, or ``name`` itself."""
    for table in (aliases or {}, DEFAULT_ALIASES):
        if name in table and backend in table[name]:
            return table[name][backend]
    return name


def create(backend: str, model: str, settings: ProviderSettings | None = None, **kwargs: Any) -> ChatModel:
    """A chat model of provider ``backend``; ``model`` is the provider's id (see ``resolve_model``)."""
    return PROVIDERS.get(backend)(model, settings or ProviderSettings(), **kwargs)
