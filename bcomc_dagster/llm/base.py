"""One small interface for chat-style generation, with usage accounting.

A provider implements ``ChatModel._call``: one request, one answer, no retries of its own beyond what
its SDK does (botocore retry modes, the Anthropic and OpenAI SDKs' retries). A request may ask for
structured output with a JSON schema; the provider enforces it with its own mechanism (Bedrock and
Anthropic tool use, OpenAI ``response_format``) and returns the parsed object in ``Completion.data``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from pydantic import BaseModel, Field

from bcomc_dagster.errors import BcomcError


class LLMError(BcomcError):
    """A model call failed; the message names the provider and model."""


class TransientLLMError(LLMError):
    """A call that failed after the SDK's own retries and may succeed later: throttling, a timeout, a bad
    answer. A role that can go on without it (a judge's verdict, a synthesis batch) records it and goes on."""


class PermanentLLMError(LLMError):
    """An error that will not heal by retrying: bad credentials, an unknown model, a refused request, the
    campaign's budget. It fails the stage at once."""


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
        )


class Message(BaseModel):
    role: str  # "user" or "assistant"
    content: str


class Schema(BaseModel):
    """Structured output: a JSON schema the answer must follow, under a name (the tool name)."""

    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    description: str
    json_schema: dict[str, Any]


class ChatRequest(BaseModel):
    messages: list[Message]
    system: str | None = None
    max_tokens: int = 512
    temperature: float = 0.0
    schema_: Schema | None = Field(None, alias="schema")

    model_config = {"populate_by_name": True}


class Completion(BaseModel):
    text: str
    data: dict[str, Any] | None = None  # the structured answer, when the request had a schema and it parsed
    usage: Usage
    provider: str
    model: str
    cached: bool = False


class ChatModel(ABC):
    """A model reachable through one provider. ``model`` is the provider's id (aliases resolved)."""

    provider: str

    def __init__(self, model: str):
        self.model = model

    @property
    def label(self) -> str:
        return f"{self.provider}:{self.model}"

    @abstractmethod
    def _call(self, request: ChatRequest) -> Completion: ...

    def complete(self, request: ChatRequest) -> Completion:
        return self._call(request)


def parse_json_object(text: str) -> dict[str, Any] | None:
    """The JSON object in a model's text (bare, or in a ```json fence); None when there is none."""
    import json

    t = text.strip()
    if t.startswith("```"):
        t = t.split("\n", 1)[1] if "\n" in t else ""
        t = t.rsplit("```", 1)[0]
    start, end = t.find("{"), t.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        out = json.loads(t[start : end + 1])
    except json.JSONDecodeError:
        return None
    return out if isinstance(out, dict) else None
