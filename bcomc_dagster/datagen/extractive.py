"""The embedded generator: grounded, extractive Q&A pairs, one per call, each on one fact of a passage.

It stands behind the same worker interface as the LLM generators: one call, one pair, one passage. The
question is variant ``n`` of the ways the lexicon asks for the fact (by its kind of value, by the task
its attribute names, by its attribute in other words): the model learns the fact, not one wording. The
answer states the fact as the docs do, with its unit, in the dataset type's answer template
(``presets.py``).
"""

from __future__ import annotations

from pathlib import Path

from bcomc_dagster.datagen import lexicon
from bcomc_dagster.datagen.coordinator import PairRequest
from bcomc_dagster.datagen.presets import DEFAULT, Prompting


class ExtractiveWorker:
    """Deterministic worker: question ``variant`` of the lexicon's questions about the request's fact,
    answered in the dataset type's answer template."""

    name = "extractive"
    needs_facts = True

    def __init__(self, *extra_lexicons: Path | None):
        self.lexicon = lexicon.load(*extra_lexicons)

    def generate(self, request: PairRequest, prompt_config: Prompting | None = None) -> tuple[str, str]:
        fact = request.grounding.fact
        if fact is None:
            raise ValueError(
                f"{request.grounding.passage.id}: the extractive generator needs a fact to ask about"
            )
        questions = self.lexicon.questions(fact, request.peers)
        question = questions[request.variant % len(questions)]
        return question, (prompt_config or DEFAULT).answer(fact)
