"""A deployer with no model server, for the fast tier: ``model_backend: "scripted"``.

The endpoint is a loopback server that speaks the OpenAI chat-completions and models routes (real HTTP,
so the eval runs through the real OpenAI client and ``serving.endpoint``). What each served model answers
is scripted by the test: per iteration, the ids of the suite's questions its checkpoint gets right (the
reference is the answer) — every other question gets "I do not know." (not attempted). So the promotion
gate, rollback, keep-best, the outcome and the sensor's decisions run on real training and real stages
in seconds. It checks what the real deployers check of a checkpoint before it goes live (its merged
weights are intact: ``deployer.intact``), keeps its state in the campaign's serving folder as they do
(so a deployer built by a later stage finds what is live), and can be told to fail a deploy.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bcomc_dagster.errors import ServingError
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.files import atomic_write
from bcomc_dagster.registries import DEPLOYERS, Env
from bcomc_dagster.serving.deployer import Deployment, Live, intact
from bcomc_dagster.training.manifest import Manifest

from . import chat_completion, serve

NAME = "scripted"
UNKNOWN = "I do not know."


@dataclass
class Script:
    """What each iteration's model answers right (0: the base), and which deploys fail."""

    suite: str = "demo"
    right: dict[int, set[str]] = field(default_factory=dict)
    fail_deploy: set[int] = field(default_factory=set)
    url: str = ""
    calls: list[tuple[str, str]] = field(default_factory=list)  # (model, question) as asked

    def answer(self, model: str, question: str) -> str:
        iteration = int(model.rsplit("-it", 1)[1]) if "-it" in model else 0
        q = self._by_text().get(question)
        self.calls.append((model, question))
        return q.reference if q is not None and q.id in self.right.get(iteration, set()) else UNKNOWN

    def _by_text(self):
        return {q.question: q for q in load_suite(self.suite).questions}


SCRIPT = Script()  # the scripted server's answers; a test sets it through ``scripted()``


def _app(script: Script) -> Starlette:
    async def chat(request: Request) -> JSONResponse:
        body = await request.json()
        return chat_completion(body["model"], script.answer(body["model"], body["messages"][-1]["content"]))

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": []})

    return Starlette(
        routes=[Route("/v1/chat/completions", chat, methods=["POST"]), Route("/v1/models", models)]
    )


@contextmanager
def scripted(suite: str = "demo") -> Iterator[Script]:
    """Serve the scripted endpoint and register the ``scripted`` deployer for as long as the block runs."""
    script = Script(suite=suite)
    with serve(_app(script)) as url:
        script.url = url
        global SCRIPT
        previous, SCRIPT = SCRIPT, script
        DEPLOYERS.add(NAME, ScriptedDeployer.of)
        try:
            yield script
        finally:
            DEPLOYERS.remove(NAME)
            SCRIPT = previous


class ScriptedDeployer:
    engine = NAME
    owns_server = True

    def __init__(self, workdir: Path, campaign: str, script: Script):
        self.state_file = Path(workdir) / "scripted.json"
        self.campaign, self.script = campaign, script

    @classmethod
    def of(cls, env: Env) -> ScriptedDeployer:
        return cls(env.store.campaign_dir(env.campaign) / "serving", env.campaign, SCRIPT)

    def _save(self, live: Live | None, stopped: bool = False) -> None:
        data = {"live": live.model_dump() if live else None, "stopped": stopped}
        atomic_write(self.state_file, json.dumps(data))

    def live(self) -> Live | None:
        if not self.state_file.is_file():
            return None
        data = json.loads(self.state_file.read_text())
        return None if data["stopped"] or data["live"] is None else Live.model_validate(data["live"])

    def _go_live(self, model: str, iteration: int, fingerprint: str, mode: str) -> Deployment:
        before = self.live()
        now = Live(
            endpoint=f"{self.script.url}/v1", model=model, iteration=iteration, fingerprint=fingerprint
        )
        self._save(now)
        return Deployment(
            endpoint=now.endpoint,
            served_model=model,
            iteration=iteration,
            engine=NAME,
            mode=mode,  # type: ignore[arg-type]
            fingerprint=fingerprint,
            replaced=before.model if before else None,
            server_started=before is None,
        )

    def ensure_base(self, base_dir: Path, base_name: str, fingerprint: str) -> Deployment:
        return self._go_live(base_name, 0, fingerprint, "base")

    def deploy(self, checkpoint_dir: Path, manifest: Manifest, iteration: int) -> Deployment:
        if iteration in self.script.fail_deploy:
            raise ServingError(f"scripted: the deploy of iteration {iteration} fails, as the test asked")
        intact(checkpoint_dir / "merged", "config.json", manifest.merged_fingerprint)
        return self._go_live(
            f"{self.campaign}-it{iteration}", iteration, manifest.merged_fingerprint, "by-path"
        )

    def stop(self) -> bool:
        self._save(self.live(), stopped=True)
        return True
