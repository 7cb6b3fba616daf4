"""Generation on a chat model: one call per pair, each given one passage of the docs and the fact (or,
where the passage states none that the extractive reader finds, the angle) to ask about; and the optional
synthesis pass, in which a stronger model rewrites batches of raw pairs without adding facts.

The dataset type's preset with ``prompt_config``'s overrides (``presets.Prompting``: domain, persona,
doc label, question styles, answer style, system template) shapes both prompts.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pydantic import BaseModel, Field

from bcomc_dagster.datagen.coordinator import PairRequest
from bcomc_dagster.datagen.presets import DEFAULT, GENERAL_STYLES, Prompting
from bcomc_dagster.datagen.schema import QAPair
from bcomc_dagster.llm.base import ChatRequest, Message, TransientLLMError
from bcomc_dagster.llm.client import LLMClient
from bcomc_dagster.llm.structured import ask_structured, schema_of
from bcomc_dagster.text import clip

STYLES = GENERAL_STYLES  # qa-grounded's; each dataset type has its own (presets.py)
# the generator paraphrases: a question in the docs' own words teaches the docs' wording, not the fact
PARAPHRASE = (
    "Word the question the way that person would ask it, in your own words: do not copy the passage's "
    "sentence or the setting's label; use other words for it (what it does, what it is for, or a "
    "synonym). "
)
# what to ask about, per variant, in a passage that names no fact to ask about
ANGLES = (
    "the main fact the passage states",
    "a number, limit or default the passage gives",
    "a name, tool or setting the passage mentions",
    "how or when to use what the passage describes",
    "what happens in the case the passage describes",
)


class PairOut(BaseModel):
    question: str = Field(
        min_length=10, max_length=500, description="The question, as the persona would ask it."
    )
    answer: str = Field(
        min_length=1,
        max_length=1000,
        description="One sentence that names the service and states the answer.",
    )


class BatchOut(BaseModel):
    pairs: list[PairOut] = Field(description="The rewritten pairs, as many as given and in the same order.")


PAIR = schema_of(PairOut, "qa_pair", "Record one question-and-answer pair grounded in the passage.")
BATCH = schema_of(BatchOut, "qa_pairs", "Record the rewritten question-and-answer pairs, in the given order.")


def pair_request(
    request: PairRequest, prompt_config: Prompting | None = None, temperature: float = 0.7
) -> ChatRequest:
    """The generator's prompt for one pair: the dataset type's system prompt, one passage, the fact or
    angle to ask about, and one of its question styles per variant."""
    pc = prompt_config or DEFAULT
    label = pc.doc_label
    g, variant = request.grounding, request.variant
    focus = (
        f'{g.fact.attribute}: {g.fact.value} (the passage states: "{g.fact.text}")'
        if g.fact
        else ANGLES[variant % len(ANGLES)]
    )
    user = (
        f"Service: {g.passage.title}\n{label.capitalize()} passage "
        f'({g.passage.path}):\n"""\n{g.passage.text}\n"""\n'
        f"Ask about: {focus}\n{PARAPHRASE}Write {pc.style(variant)} (variation {variant + 1})."
    )
    return ChatRequest(
        system=pc.system,
        messages=[Message(role="user", content=user)],
        max_tokens=300,
        temperature=temperature,
        schema=PAIR,
    )


class LLMWorker:
    """A generator worker on a chat model: one call, one pair, one passage."""

    needs_facts = False

    def __init__(self, client: LLMClient, temperature: float = 0.7):
        self.client, self.temperature = client, temperature
        self.name = client.label

    def generate(self, request: PairRequest, prompt_config: Prompting | None = None) -> tuple[str, str]:
        req = pair_request(request, prompt_config, self.temperature)
        pair, _ = ask_structured(self.client, req, PairOut.model_validate, retries=1)
        return pair.question.strip(), pair.answer.strip()


class SynthesisResult(BaseModel):
    pairs: list[QAPair]
    batches: int
    rewritten: int
    failed_batches: dict[int, str]  # batch index -> why its raw pairs were kept


def synthesize(
    client: LLMClient,
    pairs: list[QAPair],
    prompt_config: Prompting | None = None,
    batch_size: int = 10,
    concurrency: int = 4,
) -> SynthesisResult:
    """Rewrite pairs in batches for clarity and variety; a batch whose answer stays invalid keeps its raw
    pairs (and is reported). Facts stay those of each pair's passage: the quality filters check it again."""
    pc = prompt_config or DEFAULT
    system = (
        f"You improve training data for an assistant about {pc.domain}. Rewrite each question so that it "
        f"reads as {pc.persona} would ask it, and each answer as one clear sentence. Keep every fact "
        f"exactly as its {pc.doc_label} passage states it; add nothing. {pc.answer_style} Return as many "
        "pairs as given, in the same order."
    )
    batches = [pairs[i : i + batch_size] for i in range(0, len(pairs), batch_size)]

    def one(batch: list[QAPair]) -> list[QAPair] | str:
        lines = "\n".join(
            f"{k + 1}. passage: {' '.join(p.provenance.snippet.split())}\n   question: {p.question}\n   "
            f"answer: {p.answer}"
            for k, p in enumerate(batch)
        )

        def parse(data: dict[str, Any]) -> list[PairOut]:
            out = BatchOut.model_validate(data).pairs
            if len(out) != len(batch):
                raise ValueError(f"expected {len(batch)} pairs, got {len(out)}")
            return out

        req = ChatRequest(
            system=system,
            messages=[Message(role="user", content=lines)],
            max_tokens=200 * len(batch) + 200,
            temperature=0.3,
            schema=BATCH,
        )
        try:
            out, _ = ask_structured(client, req, parse, retries=1)
        except TransientLLMError as e:
            return str(e)
        return [
            QAPair(
                service=p.service,
                question=o.question.strip(),
                answer=o.answer.strip(),
                provenance=p.provenance.model_copy(update={"synthesizer": client.label}),
            )
            for p, o in zip(batch, out, strict=True)
        ]

    kept: list[QAPair] = []
    failed: dict[int, str] = {}
    rewritten = 0
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        for k, (batch, res) in enumerate(zip(batches, pool.map(one, batches), strict=True)):
            if isinstance(res, str):
                failed[k] = clip(res)
                kept += batch
            else:
                rewritten += len(res)
                kept += res
    return SynthesisResult(pairs=kept, batches=len(batches), rewritten=rewritten, failed_batches=failed)
