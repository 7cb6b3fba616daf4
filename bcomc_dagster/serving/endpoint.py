"""The one client for a served model's OpenAI-compatible API (vLLM, transformers serve, Ollama's ``/v1``).

Every call to a model this project serves goes through it: the eval's answers, the deploy probes, the
model list, and vLLM's adapter routes. It is the official OpenAI SDK, with the campaign's timeout and
retries (``serving.request_timeout_s``, ``serving.request_retries``); a failure is a ServingError that
names the endpoint and the call.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
import openai

from bcomc_dagster.errors import ServingError
from bcomc_dagster.text import clip

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_RETRIES = 3
NO_KEY = "local"  # servers started here take any key


def api_key(env_name: str | None) -> str:
    """The key in ``$env_name`` when one is named and set, else a placeholder the local servers accept."""
    return (os.environ.get(env_name) if env_name else None) or NO_KEY


class Endpoint:
    def __init__(
        self,
        base_url: str,
        key: str = NO_KEY,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_RETRIES,
    ):
        self.url = base_url.rstrip("/")  # …/v1
        self.sdk = openai.OpenAI(base_url=self.url, api_key=key, timeout=timeout_s, max_retries=max_retries)

    def chat(self, model: str, prompt: str, max_tokens: int) -> str:
        """The model's answer to one user message, at temperature 0."""
        try:
            resp = self.sdk.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": prompt}],
                temperature=0,
                max_tokens=max_tokens,
            )
        except openai.OpenAIError as e:
            raise ServingError(f"{self.url}: chat with {model!r} failed: {e}") from e
        if not resp.choices:
            raise ServingError(f"{self.url}: chat with {model!r} returned no choices")
        return resp.choices[0].message.content or ""

    def models(self) -> dict[str, dict[str, Any]]:
        """The served models by id, with the server's own fields (vLLM: ``root``, ``parent``)."""
        try:
            return {m.id: m.model_dump() for m in self.sdk.models.list()}
        except openai.OpenAIError as e:
            raise ServingError(f"{self.url}/models: {e}") from e

    def post(self, path: str, body: dict[str, Any], check: bool = True) -> None:
        """POST to one of the server's own routes under ``/v1`` (vLLM's ``/load_lora_adapter``)."""
        try:
            self.sdk.post(path, body=body, cast_to=httpx.Response)
        except openai.APIStatusError as e:
            if check:
                raise ServingError(
                    f"{self.url}{path} answered {e.status_code}: {clip(e.response.text)}"
                ) from e
        except openai.OpenAIError as e:
            raise ServingError(f"{self.url}{path}: {e}") from e
