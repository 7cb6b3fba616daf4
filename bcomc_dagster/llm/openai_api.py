"""Any OpenAI-compatible server through the official SDK: vLLM, Ollama's ``/v1``, hosted APIs.

Structured output asks for ``response_format: json_schema`` (vLLM and Ollama enforce it by guided
decoding); the answer's JSON is parsed from the message text. 429 and 5xx are retried by the SDK.
"""

from __future__ import annotations

import os
from typing import Any

import openai

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
    openai.AuthenticationError,
    openai.PermissionDeniedError,
    openai.NotFoundError,
    openai.BadRequestError,
    openai.UnprocessableEntityError,
)


class OpenAIModel(ChatModel):
    provider = "openai"

    def __init__(self, model: str, settings: ProviderSettings):
        super().__init__(model)
        env = settings.api_key_env or "OPENAI_API_KEY"
        key = os.environ.get(env)
        if not key and settings.base_url is None:
            raise PermanentLLMError(f"openai model {model!r}: no API key in ${env} and no base_url")
        self.client = openai.OpenAI(
            api_key=key or "none",
            base_url=settings.base_url,
            max_retries=settings.max_retries,
            timeout=settings.timeout_s,
        )

    def _call(self, request: ChatRequest) -> Completion:
        messages = [{"role": "system", "content": request.system}] if request.system else []
        messages += [{"role": m.role, "content": m.content} for m in request.messages]
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if s := request.schema_:
            kwargs["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": s.name, "schema": s.json_schema},
            }
        try:
            resp = self.client.chat.completions.create(**kwargs)
        except PERMANENT as e:
            raise PermanentLLMError(f"openai model {self.model!r}: {type(e).__name__}: {e}") from e
        except openai.OpenAIError as e:
            raise TransientLLMError(f"openai model {self.model!r}: {type(e).__name__}: {e}") from e
        if not resp.choices:
            raise TransientLLMError(f"openai model {self.model!r}: the answer has no choices")
        text = resp.choices[0].message.content or ""
        u = resp.usage
        return Completion(
            text=text,
            data=parse_json_object(text) if request.schema_ else None,
            provider=self.provider,
            model=self.model,
            usage=Usage(
                input_tokens=u.prompt_tokens if u else 0, output_tokens=u.completion_tokens if u else 0
            ),
        )
