"""The training-pair schema shared by generators, the cumulative dataset and fine-tuning."""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from bcomc_dagster.text import normalise


class Provenance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    campaign: str
    iteration: int
    model: str = Field(description="Generator that wrote the pair.")
    attempt: int = 1
    snippet: str = Field(
        description="The documentation the pair is grounded in: its passage (heading path and text)."
    )
    passage: str | None = Field(None, description="The passage's id: docs/<file>#<n>.")
    fact: str | None = Field(
        None, description="The statement of the passage the question asks about, if one was named."
    )
    synthesizer: str | None = Field(
        None, description="Model of the synthesis pass that rewrote the pair, if any."
    )


class QAPair(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = ""
    service: str
    question: str = Field(min_length=3)
    answer: str = Field(min_length=1)
    provenance: Provenance

    def model_post_init(self, _ctx: Any) -> None:
        if not self.id:
            self.id = pair_id(self.service, self.question, self.answer)


def pair_id(service: str, question: str, answer: str) -> str:
    """Stable id of a pair's content: the same pair generated twice has the same id."""
    key = "\x1f".join((service, normalise(question), normalise(answer)))
    return hashlib.sha256(key.encode()).hexdigest()[:16]
