"""The Anthropic API through the official SDK. Throttling (429), overload (529) and 5xx are retried by
the SDK itself (honouring ``retry-after``); structured output is a forced tool call."""

from __future__ import annotations

import os
from typing import Any

import anthropic

from bcomc_dagster.llm.base import (
    ChatModel,
    ChatRequest,
    Completion,
    PermanentLLMError,
    TransientLLMError,
    Usage,
    parse_json_object,
)
from bcomc_dagster.llm.registry import ProviderSettings

PERMANENT = (
    anthropic.AuthenticationError,
    anthropic.PermissionDeniedError,
    anthropic.NotFoundError,
    anthropic.BadRequestError,
    anthropic.UnprocessableEntityError,
)


class AnthropicModel(ChatModel):
    provider = "anthropic"

    def __init__(self, model: str, settings: ProviderSettings):
        super().__init__(model)
        env = settings.api_key_env or "ANTHROPIC_API_KEY"
        key = os.environ.get(env)
        if not key:
            raise PermanentLLMError(f"anthropic model {model!r}: no API key in ${env}")
        self.client = anthropic.Anthropic(
            api_key=key,
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            timeout=settings.timeout_s,
        )

    def _call(self, request: ChatRequest) -> Completion:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": request.max_tokens,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            # the wire API takes temperature (Claude 3.5 models); recent SDKs no longer have the keyword
            "extra_body": {"temperature": request.temperature},
        }
        if request.system:
            kwargs["system"] = request.system
        if s := request.schema_:
            kwargs["tools"] = [{"name": s.name, "description": s.description, "input_schema": s.json_schema}]
            kwargs["tool_choice"] = {"type": "tool", "name": s.name}
        try:
            resp = self.client.messages.create(**kwargs)
        except PERMANENT as e:
            raise PermanentLLMError(f"anthropic model {self.model!r}: {type(e).__name__}: {e}") from e
        except anthropic.APIError as e:
            raise TransientLLMError(f"anthropic model {self.model!r}: {type(e).__name__}: {e}") from e
        text = "".join(b.text for b in resp.content if b.type == "text")
        data = next((dict(b.input) for b in resp.content if b.type == "tool_use"), None)
        if data is None and request.schema_:
            data = parse_json_object(text)
        return Completion(
            text=text,
            data=data,
            provider=self.provider,
            model=self.model,
            usage=Usage(input_tokens=resp.usage.input_tokens, output_tokens=resp.usage.output_tokens),
        )
