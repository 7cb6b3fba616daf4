"""Structured answers: ask with a JSON schema, validate, and on an invalid answer ask again with the
validation error, a bounded number of times."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from bcomc_dagster.errors import field_errors
from bcomc_dagster.llm.base import ChatRequest, Completion, Message, Schema, TransientLLMError
from bcomc_dagster.llm.client import LLMClient
from bcomc_dagster.text import clip

T = TypeVar("T")


class InvalidAnswer(TransientLLMError):
    """The model kept answering outside the schema or the rules; the message has the last error."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


def schema_of(model: type[BaseModel], name: str, description: str) -> Schema:
    return Schema(name=name, description=description, json_schema=model.model_json_schema())


def ask_structured(
    client: LLMClient,
    request: ChatRequest,
    parse: Callable[[dict[str, Any]], T],
    retries: int = 2,
) -> tuple[T, int]:
    """``parse`` turns the answer's JSON into a value or raises ValueError (pydantic's included) saying
    what is wrong; returns (value, attempts). Raises InvalidAnswer after ``retries`` corrections."""
    messages = list(request.messages)
    error = ""

    def valid(c: Completion) -> bool:  # only a valid answer is cached, so a malformed one never replays
        if c.data is None:
            return False
        try:
            parse(c.data)
        except (ValueError, ValidationError):
            return False
        return True

    for attempt in range(1, retries + 2):
        c = client.complete(request.model_copy(update={"messages": messages}), valid)
        try:
            if c.data is None:
                raise ValueError("the answer is not a JSON object")
            return parse(c.data), attempt
        except (ValueError, ValidationError) as e:
            error = _short(e)
        said = json.dumps(c.data) if c.data is not None else (c.text or "(empty)")
        messages = [
            *request.messages,
            Message(role="assistant", content=said[:4000]),
            Message(
                role="user",
                content=f"That answer is invalid: {error}. Answer again, following the schema exactly.",
            ),
        ]
    raise InvalidAnswer(
        f"{client.label}: no valid answer after {retries + 1} attempts; last error: {error}", retries + 1
    )


def _short(e: Exception) -> str:
    if isinstance(e, ValidationError):
        return clip("; ".join(field_errors(e, "answer")), 1000)
    return clip(str(e), 1000)
