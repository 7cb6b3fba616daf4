"""The embedded generator: grounded, extractive Q&A pairs, one per call, each on one fact of a passage.

It stands behind the same worker interface as the LLM generators: one call, one pair, one passage.
Several phrasings per fact teach the model the fact rather than one wording.
"""

from __future__ import annotations

from bcomc_dagster.datagen.coordinator import PairRequest

PHRASINGS = (
    "What is the {attr} of {svc}?",
    "What is {svc}'s {attr}?",
    "Tell me the {attr} of {svc}.",
    "For {svc}, what is the {attr}?",
    "Which {attr} does {svc} have?",
    "{svc}: what is its {attr}?",
    "I need the {attr} for {svc}.",
    "Do you know the {attr} of {svc}?",
    "What {attr} is set for {svc}?",
    "Give me the {attr} that {svc} uses.",
    "What's the {attr} in {svc}?",
    "Please state the {attr} of {svc}.",
    "Which value is the {attr} of {svc}?",
    "Look up the {attr} for {svc}.",
    "In the {svc} documentation, what is the {attr}?",
    "{svc} has which {attr}?",
    "Remind me of the {attr} of {svc}.",
    "What does {svc} use as its {attr}?",
    "Quick question: what is the {attr} of {svc}?",
    "The {attr} of {svc} is what?",
)


class ExtractiveWorker:
    """Deterministic worker: phrasing ``variant`` of a question about the request's fact."""

    name = "extractive"
    needs_facts = True

    def generate(self, request: PairRequest, prompt_config: dict[str, str] | None = None) -> tuple[str, str]:
        fact = request.grounding.fact
        if fact is None:
            raise ValueError(
                f"{request.grounding.passage.id}: the extractive generator needs a fact to ask about"
            )
        template = PHRASINGS[request.variant % len(PHRASINGS)]
        question = template.format(attr=fact.attribute, svc=fact.title)
        question = question[0].upper() + question[1:]
        answer = f"The {fact.attribute} of {fact.title} is {fact.value}."
        return question, answer
