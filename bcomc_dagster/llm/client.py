"""What a stage holds: a chat model behind the response cache, the provider's rate limit and the meter.

The cache is keyed by (provider, model, request) and stored on disk (diskcache, safe across threads and
processes), so re-running an iteration after a crash pays only for the calls that never finished.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from pathlib import Path

import diskcache
from pyrate_limiter import Duration, Limiter, Rate

from bcomc_dagster.llm.base import ChatModel, ChatRequest, Completion
from bcomc_dagster.llm.cost import Meter, Price

_limiters: dict[tuple[str, float], Limiter] = {}
_limiters_lock = threading.Lock()


def limiter_for(provider: str, requests_per_minute: float) -> Limiter:
    """One limiter per provider and rate in this process, shared by every stage and thread that calls it."""
    with _limiters_lock:
        key = (provider, requests_per_minute)
        if key not in _limiters:
            # a per-second window keeps bursts small: 120/min means 2 per second, not 120 at once
            per_s = requests_per_minute / 60
            rate = (
                Rate(max(1, round(per_s)), Duration.SECOND)
                if per_s >= 1
                else Rate(1, Duration.SECOND * round(1 / per_s))
            )
            _limiters[key] = Limiter(rate)
        return _limiters[key]


class ResponseCache:
    def __init__(self, directory: Path):
        self.cache = diskcache.Cache(str(directory))

    @staticmethod
    def key(label: str, request: ChatRequest) -> str:
        body = json.dumps([label, request.model_dump(mode="json", by_alias=True)], sort_keys=True)
        return hashlib.sha256(body.encode()).hexdigest()

    def get(self, key: str) -> Completion | None:
        raw = self.cache.get(key)
        return Completion.model_validate_json(raw) if raw else None

    def put(self, key: str, completion: Completion) -> None:
        self.cache.set(key, completion.model_dump_json())


class LLMClient:
    """One role's model (e.g. the generator) as a stage uses it."""

    def __init__(
        self,
        model: ChatModel,
        role: str,
        meter: Meter,
        price: Price | None = None,
        cache: ResponseCache | None = None,
        limiter: Limiter | None = None,
    ):
        self.model, self.role, self.meter, self.price = model, role, meter, price
        self.cache, self.limiter = cache, limiter

    @property
    def label(self) -> str:
        return self.model.label

    def complete(self, request: ChatRequest, valid: Callable[[Completion], bool] | None = None) -> Completion:
        """The model's completion, from the cache when it holds one; with ``valid``, only a completion
        that passes it is cached or taken from the cache (a malformed answer is asked for again)."""
        key = ResponseCache.key(self.model.label, request) if self.cache else ""
        if self.cache and (hit := self.cache.get(key)) and (valid is None or valid(hit)):
            self.meter.add(self.role, self.label, hit.usage, self.price, cached=True)
            return hit.model_copy(update={"cached": True})
        self.meter.check()
        if self.limiter:
            self.limiter.try_acquire(self.model.provider)
        out = self.model.complete(request)
        self.meter.add(self.role, self.label, out.usage, self.price, cached=False)
        if self.cache and (valid is None or valid(out)):
            self.cache.put(key, out)
        return out
