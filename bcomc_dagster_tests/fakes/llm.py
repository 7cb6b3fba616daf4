"""A loopback server that speaks three real wire protocols of paid model APIs, for the real clients:

- Bedrock Converse: ``POST /model/{modelId}/converse`` (boto3 ``bedrock-runtime`` with ``endpoint_url``)
- the Anthropic Messages API: ``POST /v1/messages`` (the Anthropic SDK with ``base_url``)
- OpenAI chat completions: ``POST /v1/chat/completions`` (the OpenAI SDK with ``base_url``)

Behind them a scripted "model" does what each of the project's prompts asks, recognised by the tool or
schema name: it writes a grounded pair from a snippet, rewrites a batch, analyses a failure report,
grades an answer. Usage is the word count of the prompt and of the answer. Faults are scripted per
request: throttling, 5xx, slowness, malformed answers, bad credentials, unknown models.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

FAULTS = ("throttle", "error500", "slow", "malformed", "auth", "unknown_model")


@dataclass
class Call:
    protocol: str  # bedrock / anthropic / openai
    model: str
    tool: str | None
    prompt: str
    answered: bool = False
    output_words: int = 0


@dataclass
class FakeLLM:
    latency_s: float = 0.0
    slow_s: float = 3.0
    faults: deque = field(default_factory=deque)  # one entry per request: a fault name or None
    poison: dict[str, str] = field(default_factory=dict)  # prompt substring -> fault, on every such request
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *faults: str | None) -> None:
        """The next requests' faults, in order (None: answer normally)."""
        assert all(f is None or f in FAULTS for f in faults), faults
        self.faults.extend(faults)

    def usage(self, protocol: str | None = None) -> tuple[int, int]:
        calls = [c for c in self.calls if c.answered and (protocol is None or c.protocol == protocol)]
        return sum(words(c.prompt) for c in calls), sum(c.output_words for c in calls)

    def _next_fault(self) -> str | None:
        with self.lock:
            return self.faults.popleft() if self.faults else None

    # -- the "model" -----------------------------------------------------------------------------
    def think(self, tool: str | None, system: str, user: str) -> dict | str:
        if tool == "qa_pair":
            service = re.search(r"^Service: (.+)$", user, re.M).group(1)
            n = int(re.search(r"variation (\d+)", user).group(1))
            focus = re.search(r"^Ask about: ([^:\n]+): (.+?) \(the passage states", user, re.M)
            if (
                focus is None
            ):  # a passage with no named fact: ask what it says, answer with its first sentence
                angle = re.search(r"^Ask about: (.+)$", user, re.M).group(1)
                text = re.search(r'passage \(.+?\):\n"""\n(.+?)\n"""', user, re.S).group(1)
                return {
                    "question": f"About {service}, what is {angle} (case {n})?",
                    "answer": text.split(". ")[0].rstrip(".") + ".",
                }
            attr, value = focus.groups()
            q = QUESTIONS[(n - 1) % len(QUESTIONS)].format(a=attr.lower(), s=service)
            if n > len(QUESTIONS):
                q = f"{q[:-1]} (case {n})?"
            return {"question": q, "answer": f"The {attr.lower()} of {service} is {value}."}
        if tool == "qa_pairs":
            items = re.findall(r"question: (.+)\n\s+answer: (.+)", user)
            return {"pairs": [{"question": q.replace("What is", "What's"), "answer": a} for q, a in items]}
        if tool == "failure_analysis":
            report = json.loads(user.split("(JSON):\n", 1)[1].split("\n\nChoose", 1)[0])
            lo, hi = map(int, re.search(r"Choose (\d+) to (\d+) services", user).groups())
            count = int(re.search(r"at most (\d+) pairs", user).group(1))
            rates = {s: r["pass_rate"] for s, r in report["services"].items()}
            chosen = sorted((s for s in rates if rates[s] < 100), key=lambda s: (rates[s], s))[
                : max(lo, min(hi, 3))
            ]
            return {
                "summary": f"{len(chosen)} services fail most; generate for them first.",
                "priority_services": {s: k + 1 for k, s in enumerate(chosen)},
                "datagen_services": chosen,
                "datagen_count": count,
                "suggested_actions": [f"generate pairs for {s}" for s in chosen],
                "trend_analysis": {s: r["trend"] for s, r in report["services"].items()},
            }
        if tool == "verdict":  # a lenient grader: the reference or an alias anywhere in the quoted answer
            ref = re.search(r"^Reference answer: (.+?)(?: \(also accepted: (.+)\))?$", user, re.M)
            said = norm(re.search(r"<<<ANSWER\n(.*)\nANSWER>>>", user, re.S).group(1))
            accepted = [ref.group(1)] + re.findall(r"'([^']+)'", ref.group(2) or "")
            ok = any(f" {norm(a)} " in f" {said} " for a in accepted)
            return {
                "grade": "correct" if ok else "incorrect",
                "reason": "states the reference" if ok else "does not state the reference",
            }
        if tool == "grounding":
            passage = re.search(r'^Passage:\n"""\n(.+?)\n"""$', user, re.M | re.S).group(1)
            answer = re.search(r"^Answer: (.+)$", user, re.M).group(1)
            value = (
                answer.rstrip(".").split(" is ", 1)[1] if " is " in answer else ""
            )  # "The <attr> of <svc> is <value>."
            unstated = [n for n in re.findall(r"\d+", answer) if n not in passage]
            ok = (not value or f" {norm(value)} " in f" {norm(passage)} ") and not unstated
            return {
                "supported": ok,
                "reason": "the passage states it" if ok else f"not in the passage: {unstated or value}",
            }
        return "Hello from the fake model."

    def malformed(self, tool: str | None) -> dict | str:
        return {"unexpected": True} if tool else "not json at all {"

    # -- protocols -------------------------------------------------------------------------------
    async def _respond(self, protocol: str, model: str, tool: str | None, system: str, user: str, render):
        call = Call(protocol, model, tool, f"{system}\n{user}")
        with self.lock:
            self.calls.append(call)
        fault = (
            next((f for text, f in self.poison.items() if text in call.prompt), None) or self._next_fault()
        )
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        if fault == "slow":
            await asyncio.sleep(self.slow_s)
        if fault in ("throttle", "error500", "auth", "unknown_model"):
            return ERRORS[protocol](fault, model)
        out = self.malformed(tool) if fault == "malformed" else self.think(tool, system, user)
        call.answered = True
        call.output_words = words(json.dumps(out) if isinstance(out, dict) else out)
        return JSONResponse(render(out, words(call.prompt), call.output_words))

    async def bedrock(self, request: Request):
        body = await request.json()
        model = request.path_params["model"]
        tool = body.get("toolConfig", {}).get("toolChoice", {}).get("tool", {}).get("name")
        system = " ".join(s["text"] for s in body.get("system", []))
        user = "\n".join(c["text"] for m in body["messages"] for c in m["content"] if "text" in c)

        def render(out, n_in, n_out):
            content = (
                [{"toolUse": {"toolUseId": "tu-1", "name": tool, "input": out}}]
                if isinstance(out, dict)
                else [{"text": out}]
            )
            return {
                "output": {"message": {"role": "assistant", "content": content}},
                "stopReason": "tool_use" if tool else "end_turn",
                "usage": {"inputTokens": n_in, "outputTokens": n_out, "totalTokens": n_in + n_out},
                "metrics": {"latencyMs": 1},
            }

        return await self._respond("bedrock", model, tool, system, user, render)

    async def anthropic(self, request: Request):
        body = await request.json()
        tool = (body.get("tool_choice") or {}).get("name")
        user = "\n".join(
            m["content"] if isinstance(m["content"], str) else m["content"][0]["text"]
            for m in body["messages"]
        )

        def render(out, n_in, n_out):
            block = (
                {"type": "tool_use", "id": "toolu_1", "name": tool, "input": out}
                if isinstance(out, dict)
                else {"type": "text", "text": out}
            )
            return {
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": body["model"],
                "content": [block],
                "stop_reason": "tool_use" if tool else "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": n_in, "output_tokens": n_out},
            }

        return await self._respond("anthropic", body["model"], tool, body.get("system") or "", user, render)

    async def openai(self, request: Request):
        body = await request.json()
        fmt = body.get("response_format") or {}
        tool = fmt.get("json_schema", {}).get("name") if fmt.get("type") == "json_schema" else None
        system = " ".join(m["content"] for m in body["messages"] if m["role"] == "system")
        user = "\n".join(m["content"] for m in body["messages"] if m["role"] != "system")

        def render(out, n_in, n_out):
            text = json.dumps(out) if isinstance(out, dict) else out
            return {
                "id": "cc-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
            }

        return await self._respond("openai", body["model"], tool, system, user, render)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/model/{model:path}/converse", self.bedrock, methods=["POST"]),
                Route("/v1/messages", self.anthropic, methods=["POST"]),
                Route("/v1/chat/completions", self.openai, methods=["POST"]),
            ]
        )


QUESTIONS = (
    "What is the {a} of {s}?",
    "Which {a} does {s} use?",
    "Can you tell me the {a} of {s}?",
    "I am setting up {s}: what is its {a}?",
    "Please confirm the {a} for {s}.",
    "According to the docs, what is the {a} of {s}?",
    "What {a} is configured for {s}?",
    "While debugging {s}, what {a} should I expect?",
)


def words(text: str) -> int:
    return len(text.split())


def norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w:.\-]+", " ", text.lower()).replace(". ", " ").strip(" .").split())


def _bedrock_error(fault: str, model: str) -> JSONResponse:
    status, code = {
        "throttle": (429, "ThrottlingException"),
        "error500": (500, "InternalServerException"),
        "auth": (403, "AccessDeniedException"),
        "unknown_model": (400, "ValidationException"),
    }[fault]
    msg = (
        f"The provided model identifier is invalid: {model}"
        if fault == "unknown_model"
        else f"{code} from the fake"
    )
    return JSONResponse(
        {"__type": code, "message": msg}, status_code=status, headers={"x-amzn-ErrorType": f"{code}:"}
    )


def _anthropic_error(fault: str, model: str) -> JSONResponse:
    status, kind = {
        "throttle": (429, "rate_limit_error"),
        "error500": (500, "api_error"),
        "auth": (401, "authentication_error"),
        "unknown_model": (404, "not_found_error"),
    }[fault]
    return JSONResponse(
        {"type": "error", "error": {"type": kind, "message": f"{kind} for model: {model}"}},
        status_code=status,
        headers={"retry-after-ms": "10"},
    )


def _openai_error(fault: str, model: str) -> JSONResponse:
    status, kind = {
        "throttle": (429, "rate_limit_exceeded"),
        "error500": (500, "server_error"),
        "auth": (401, "invalid_api_key"),
        "unknown_model": (404, "model_not_found"),
    }[fault]
    return JSONResponse(
        {"error": {"message": f"{kind}: {model}", "type": kind, "code": kind}},
        status_code=status,
        headers={"retry-after-ms": "10"},
    )


ERRORS = {"bedrock": _bedrock_error, "anthropic": _anthropic_error, "openai": _openai_error}
