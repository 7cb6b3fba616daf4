"""The judge on a chat model: a rubric prompt with the reference answer, a JSON verdict (pass, reason).

A malformed verdict is asked for again; one that stays malformed, or a call that keeps failing after the
SDK's retries, is an error: counted apart, never as a pass or a fail.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from bcomc_dagster.evals.judge import Verdict
from bcomc_dagster.evals.suite import Question
from bcomc_dagster.llm.base import ChatRequest, Message, TransientLLMError
from bcomc_dagster.llm.client import LLMClient
from bcomc_dagster.llm.structured import ask_structured, schema_of
from bcomc_dagster.text import REASON, clip

if TYPE_CHECKING:
    from bcomc_dagster.datagen.schema import QAPair


class VerdictOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    passed: bool = Field(
        alias="pass", description="True when the answer states the reference fact correctly."
    )
    reason: str = Field(min_length=1, description="One sentence: why it passes or fails.")


SCHEMA = schema_of(VerdictOut, "verdict", "Record the verdict on the answer.")
SYSTEM = (
    "You grade answers to questions about {domain} against a reference answer. Pass an answer that states "
    "the "
    "reference fact (or one of its accepted spellings) correctly; extra correct detail is fine. Fail an "
    "answer that "
    "contradicts the reference, omits it, or hedges between values. Judge only the fact, not the style."
)


class LLMJudge:
    def __init__(self, client: LLMClient, domain: str = "a software product", retries: int = 2):
        self.client, self.retries = client, retries
        self.system = SYSTEM.format(domain=domain)
        self.name = f"llm:{client.label}"

    def grade(self, question: Question, answer: str) -> Verdict:
        accepted = ", ".join(repr(a) for a in question.aliases)
        user = (
            f"Question: {question.question}\nReference answer: {question.reference}"
            + (f" (also accepted: {accepted})" if accepted else "")
            + f"\nAnswer to grade: {answer}"
        )
        req = ChatRequest(
            system=self.system, messages=[Message(role="user", content=user)], max_tokens=200, schema=SCHEMA
        )
        try:
            v, _ = ask_structured(self.client, req, VerdictOut.model_validate, self.retries)
        except TransientLLMError as e:
            return Verdict(False, clip(f"judge error: {e}", REASON), error=True)
        return Verdict(v.passed, v.reason)


class SupportOut(BaseModel):
    supported: bool = Field(
        description="True when the passage states every fact, number and name of the answer."
    )
    reason: str = Field(min_length=1, description="One sentence: what is or is not supported.")


SUPPORT = schema_of(SupportOut, "grounding", "Record whether the passage supports the answer.")
SUPPORT_SYSTEM = (
    "You check training data. Say whether the answer is fully supported by the documentation passage: "
    "every fact, "
    "number and name in the answer must be stated in the passage (or be the service's name). Paraphrase "
    "is fine."
)


def grounding_verdicts(
    client: LLMClient, pairs: list[QAPair], concurrency: int = 8, retries: int = 1
) -> dict[str, tuple[bool, str]]:
    """Pair id -> (supported, reason), one judge call per pair; a pair the judge cannot rule on is not
    taken as supported."""
    from concurrent.futures import ThreadPoolExecutor

    def one(p: QAPair) -> tuple[str, tuple[bool, str]]:
        user = (
            f'Service: {p.service}\nPassage:\n"""\n{p.provenance.snippet}\n"""\nQuestion: '
            f"{p.question}\nAnswer: {p.answer}"
        )
        req = ChatRequest(
            system=SUPPORT_SYSTEM,
            messages=[Message(role="user", content=user)],
            max_tokens=200,
            schema=SUPPORT,
        )
        try:
            v, _ = ask_structured(client, req, SupportOut.model_validate, retries)
        except TransientLLMError as e:
            return p.id, (False, clip(f"no verdict: {e}"))
        return p.id, (v.supported, v.reason)

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        return dict(pool.map(one, pairs))
