"""Ollama's own API (not its OpenAI-compatible ``/v1``), as both the base-model source (``/api/show``: which
GGUF a tag serves) and the Ollama deployer read it."""

from __future__ import annotations

from typing import Any, cast

import httpx

from bcomc_dagster.text import clip

OLLAMA_URL = "http://127.0.0.1:11434"  # Ollama's default listen address (OLLAMA_HOST)


def show(name: str, url: str, timeout_s: float = 30) -> dict[str, Any]:
    """``POST /api/show`` for ``name``; ValueError naming the server when it cannot answer."""
    try:
        r = httpx.post(f"{url.rstrip('/')}/api/show", json={"model": name}, timeout=timeout_s)
    except (httpx.HTTPError, httpx.InvalidURL) as e:
        raise ValueError(
            f"no Ollama server answered at {url} ({type(e).__name__}); start it or set serving.base_url"
        ) from e
    if r.status_code == 404:
        raise ValueError(f"the Ollama server at {url} has no model {name!r}; `ollama pull {name}` first")
    if r.status_code != 200:
        raise ValueError(f"the Ollama server at {url} answered {r.status_code} for {name!r}: {clip(r.text)}")
    return cast(dict[str, Any], r.json())  # a JSON object, /api/show's answer
