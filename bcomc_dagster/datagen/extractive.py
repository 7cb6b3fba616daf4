"""The embedded generator: grounded, extractive Q&A pairs from one documentation snippet per call.

It stands behind the same worker interface as the LLM generators: one call, one pair, one snippet.
Several phrasings per fact teach the model the fact rather than one wording.
"""

from __future__ import annotations

from bcomc_dagster.datagen.snippets import Snippet

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
    """Deterministic worker: phrasing ``variant`` of a question about the snippet's fact."""

    name = "extractive"

    def generate(self, snippet: Snippet, variant: int, prompt_config: dict | None = None) -> tuple[str, str]:
        template = PHRASINGS[variant % len(PHRASINGS)]
        question = template.format(attr=snippet.attribute, svc=snippet.title)
        question = question[0].upper() + question[1:]
        answer = f"The {snippet.attribute} of {snippet.title} is {snippet.value}."
        return question, answer
