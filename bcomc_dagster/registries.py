"""Every pluggable part of a campaign, by name: judges, generators, analyzers, deployers (the wiring:
``registry.Registry`` is the leaf every registry is made of).

A registry maps a name to a factory that builds the part for one campaign from its ``Env``; an entry
may be the ``"module:attr"`` path of one, imported on first use (a provider's SDK loads only when a
campaign uses it). The config's allowed values and its error messages come from these registries, so
adding a part is one class and one line, here or from any module::

    class ExactJudge:  # evals.judge.Judge: a name and grade(question, answer) -> Verdict
        name = "exact"
        def grade(self, question, answer): return Verdict(answer.strip() == question.reference, "exact match")

    JUDGES.add("exact", lambda env: ExactJudge())  # then "judge": "exact" in a campaign config

LLM providers (bedrock, anthropic, openai) are registered the same way in ``llm.registry``; base-model
sources in ``training.sources``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from bcomc_dagster.registry import EMBEDDED, Registry

if TYPE_CHECKING:
    from bcomc_dagster.analysis.analyzer import Analysis
    from bcomc_dagster.artifacts import ArtifactStore
    from bcomc_dagster.config import CampaignConfig
    from bcomc_dagster.datagen.coordinator import Worker
    from bcomc_dagster.evals.judge import Judge
    from bcomc_dagster.evals.report import EvalReport
    from bcomc_dagster.llm.client import LLMClient, ResponseCache
    from bcomc_dagster.llm.cost import Meter
    from bcomc_dagster.serving.deployer import Deployer

_caches: dict[Path, ResponseCache] = {}


@dataclass(frozen=True)
class Env:
    """What a factory may build a part from: the campaign, its config and store, and the stage's meter."""

    store: ArtifactStore
    cfg: CampaignConfig
    campaign: str
    meter: Meter | None = None

    def client(self, role: str, backend: str, model: str) -> LLMClient:
        """``role``'s model behind the response cache, the provider's rate limit, and the stage's meter."""
        from bcomc_dagster.llm import registry
        from bcomc_dagster.llm.client import LLMClient, ResponseCache, limiter_for
        from bcomc_dagster.llm.cost import Meter, price_of

        llm = self.cfg.llm
        settings = llm.providers.get(backend, registry.ProviderSettings())
        model_id = registry.resolve_model(backend, model, llm.aliases)
        folder = self.store.root / "llm-cache"
        if llm.cache and folder not in _caches:  # one per folder and process: it holds an open database
            _caches[folder] = ResponseCache(folder)
        cache = _caches[folder] if llm.cache else None
        limiter = limiter_for(backend, settings.requests_per_minute) if settings.requests_per_minute else None
        price = price_of([model, model_id], llm.prices)
        chat = registry.create(backend, model_id, settings)
        return LLMClient(chat, role, self.meter or Meter(role), price, cache, limiter)


Analyzer = Callable[["list[EvalReport]", "list[str]"], "Analysis"]  # (reports so far, regressed services)


# -- judges: the campaign's ``judge`` ---------------------------------------------------------------
def _strict_judge(env: Env) -> Judge:
    from bcomc_dagster.evals.judge import StrictJudge
    from bcomc_dagster.evals.suite import load_suite

    return StrictJudge(load_suite(env.cfg.eval_suite).questions)


def _reference_judge(env: Env) -> Judge:
    from bcomc_dagster.evals.judge import ReferenceJudge

    return ReferenceJudge()


def _llm_judge(env: Env) -> Judge:
    from bcomc_dagster.evals.llm_judge import LLMJudge
    from bcomc_dagster.evals.suite import load_suite

    cfg = env.cfg
    assert cfg.judge_model is not None  # the config requires it for the 'llm' judge
    domain = load_suite(cfg.eval_suite).domain or cfg.datagen.prompting.domain
    return LLMJudge(env.client("judge", cfg.judge_backend, cfg.judge_model), domain=domain)


JUDGES: Registry[Callable[[Env], Judge]] = Registry(
    "judge", {"strict": _strict_judge, "reference": _reference_judge, "llm": _llm_judge}
)


# -- generators: ``datagen.generator_model`` on the embedded backend --------------------------------
def _extractive(env: Env) -> Worker:
    from bcomc_dagster.datagen.extractive import ExtractiveWorker

    extra = env.cfg.datagen.lexicon  # the user's ways of asking first, then the dataset type's
    return ExtractiveWorker(Path(extra) if extra else None, env.cfg.datagen.prompting.lexicon)


GENERATORS: Registry[Callable[[Env], Worker]] = Registry("embedded generator", {"extractive": _extractive})


def generator(env: Env) -> Worker:
    """The campaign's generator: an embedded one by name, else the LLM worker on the backend's model."""
    from bcomc_dagster.datagen.llm_worker import LLMWorker

    d = env.cfg.datagen
    if d.generator_backend == EMBEDDED:
        return GENERATORS.get(d.generator_model)(env)
    return LLMWorker(env.client("generator", d.generator_backend, d.generator_model))


# -- analyzers: ``analyzer_model`` on the embedded backend ------------------------------------------
def _failure_rate(env: Env) -> Analyzer:
    from bcomc_dagster.analysis.analyzer import analyze

    d = env.cfg.datagen
    return lambda reports, regressed: analyze(
        reports, d.examples_per_service, d.min_services, d.max_services, regressed
    )


ANALYZERS: Registry[Callable[[Env], Analyzer]] = Registry(
    "embedded analyzer", {"failure-rate": _failure_rate}
)
DEFAULT_ANALYZER = "failure-rate"


def analyzer(env: Env) -> Analyzer:
    """The campaign's analyzer: an embedded one by name (default failure-rate), else the analyzer model."""
    from bcomc_dagster.analysis.llm_analyzer import llm_analyze

    cfg, d = env.cfg, env.cfg.datagen
    if cfg.analyzer_backend == EMBEDDED:
        return ANALYZERS.get(cfg.analyzer_model or DEFAULT_ANALYZER)(env)
    assert cfg.analyzer_model is not None  # the config requires it off the embedded backend
    client = env.client("analyzer", cfg.analyzer_backend, cfg.analyzer_model)
    return lambda reports, regressed: llm_analyze(
        client,
        reports,
        d.examples_per_service,
        d.min_services,
        d.max_services,
        cfg.analyzer_retries,
        regressed,
    )


# -- deployers: the campaign's ``model_backend`` ----------------------------------------------------
def _server(env: Env, engine: str | None) -> Deployer:
    from bcomc_dagster.serving import process
    from bcomc_dagster.serving.server import ServerDeployer

    cfg, sv = env.cfg, env.cfg.serving
    limits = process.ServerLimits(
        max_lora_rank=max(process.MIN_LORA_RANK, cfg.finetune.rank),
        max_loras=sv.max_loras,
        max_model_len=sv.max_model_len,
        gpu_memory_utilization=sv.gpu_memory_utilization,
        servers_at_once=2 if sv.mode == "restart" else 1,
    )
    workdir = env.store.campaign_dir(env.campaign) / "serving"
    return ServerDeployer(
        workdir,
        engine,
        sv.mode,
        sv.ready_timeout_s,
        limits,
        sv.base_url,
        sv.api_key_env,
        sv.request_timeout_s,
        sv.request_retries,
    )


def _local(env: Env) -> Deployer:
    """A server started here: vLLM where it is installed, else transformers serve (``serving.engine``)."""
    engine = env.cfg.serving.engine
    return _server(env, None if engine == "auto" else engine)


def _vllm(env: Env) -> Deployer:
    from bcomc_dagster.serving.process import VLLM_ENGINE

    return _server(env, VLLM_ENGINE)


def _ollama(env: Env) -> Deployer:
    from bcomc_dagster.serving.ollama import OllamaDeployer
    from bcomc_dagster.training import sources

    cfg = env.cfg
    tag = cfg.model_name if sources.is_ollama_tag(cfg.model_name, cfg.model_backend) else None
    workdir = env.store.campaign_dir(env.campaign) / "serving"
    sv = cfg.serving
    return OllamaDeployer(
        workdir,
        env.campaign,
        cfg.ollama_url,
        sv.ready_timeout_s,
        tag,
        sv.request_timeout_s,
        sv.request_retries,
    )


DEPLOYERS: Registry[Callable[[Env], Deployer]] = Registry(
    "model backend", {"local": _local, "vllm": _vllm, "ollama": _ollama}
)


def deployer(env: Env) -> Deployer:
    return DEPLOYERS.get(env.cfg.model_backend)(env)


def judge(env: Env) -> Judge:
    return JUDGES.get(env.cfg.judge)(env)
