"""One function per stage of the loop, over the artifact store. ``defs/`` wraps each in an asset.

Iteration 0 is the baseline. Every stage reads what it needs of earlier iterations explicitly from the
store and fails at once, naming the artifact, when it is missing.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from bcomc_dagster import costs, progress
from bcomc_dagster.analysis.analyzer import Analysis, analyze
from bcomc_dagster.analysis.effectiveness import Effectiveness, effectiveness
from bcomc_dagster.analysis.llm_analyzer import llm_analyze
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import CampaignConfig, check_base, check_docs, parse_config
from bcomc_dagster.datagen import coordinator, dataset, quality
from bcomc_dagster.datagen.card import dataset_card
from bcomc_dagster.datagen.extractive import ExtractiveWorker
from bcomc_dagster.datagen.llm_worker import LLMWorker, synthesize
from bcomc_dagster.datagen.passages import kind_of, service_title
from bcomc_dagster.errors import BcomcError, InputError, PredecessorMissing, ServingError
from bcomc_dagster.evals.judge import Judge, ReferenceJudge
from bcomc_dagster.evals.llm_judge import LLMJudge, grounding_verdicts
from bcomc_dagster.evals.report import EvalReport
from bcomc_dagster.evals.runner import run_suite
from bcomc_dagster.evals.suite import Suite, load_suite
from bcomc_dagster.llm import registry
from bcomc_dagster.llm.client import LLMClient, ResponseCache, limiter_for
from bcomc_dagster.llm.cost import Meter, price_of
from bcomc_dagster.loop import Decision, Promotion, decide, gate
from bcomc_dagster.secrets import redact
from bcomc_dagster.serving import ollama, process
from bcomc_dagster.serving.deployer import Deployer, Deployment, Live
from bcomc_dagster.serving.server import ServerDeployer
from bcomc_dagster.training import sources
from bcomc_dagster.training.finetune import Manifest, TrainSettings, finetune
from bcomc_dagster.training.weights import weights_fingerprint

Log = Callable[[str], None]
_default_log = logging.getLogger("bcomc").info

CONFIG = "campaign.json"
REPORT = "eval_report.json"
ANALYSIS = "failure_analysis.json"
GENERATED = "generated_examples.jsonl"
GENERATION = "generation.json"
DATASET = "training_dataset.jsonl"
QUALITY = "dataset_quality.json"
CARD = "dataset_card.md"
CHECKPOINT = "checkpoint"
DEPLOYMENT = "deployment.json"
OUTCOME = "outcome.json"
EFFECTIVENESS = "effectiveness.json"
EFFECTIVENESS_MD = "effectiveness.md"
FAILURE = "failure.json"
PROMOTION = "promotion.json"


def store_config(store: ArtifactStore, campaign: str, data: dict) -> CampaignConfig:
    """Validate a campaign's launch config and keep it; a campaign keeps the config it was launched with."""
    cfg = parse_config(data, source=f"campaign {campaign!r}: launch config").resolved()
    path = store.path(campaign, None, CONFIG)
    if not path.exists():
        check_docs(cfg)  # checked once, at launch (a stored config is not re-checked)
        check_base(cfg)  # the weights are there
    if path.exists() and load_campaign(store, campaign) != cfg:
        raise InputError(f"campaign {campaign!r} was launched with another config ({path}); launch a new campaign to change it")
    store.write_json(campaign, None, CONFIG, cfg)
    return cfg


def load_campaign(store: ArtifactStore, campaign: str) -> CampaignConfig:
    path = store.require(campaign, None, CONFIG, "the launch config")
    return parse_config(path.read_text(), source=str(path))


def suite_of(cfg: CampaignConfig) -> Suite:
    return load_suite(cfg.eval_suite)


def base_model_dir(store: ArtifactStore, cfg: CampaignConfig) -> Path:
    """The trainable folder of the campaign's base (built, converted or taken from a cache on first use)."""
    name, backend = cfg.trained_model
    try:
        return sources.resolve(name, backend, store.models_dir, cfg.ollama_url)
    except ValueError as e:  # the weights went away since launch, or the server no longer has the tag
        raise InputError(f"{'base_weights' if cfg.base_weights else 'model_name'}: {e} (got {name!r})") from None


def deployer(store: ArtifactStore, cfg: CampaignConfig, campaign: str) -> Deployer:
    workdir, sv = store.campaign_dir(campaign) / "serving", cfg.serving
    if cfg.model_backend == "ollama":
        tag = cfg.model_name if sources.is_ollama_tag(cfg.model_name, cfg.model_backend) else None
        return ollama.OllamaDeployer(workdir, campaign, cfg.ollama_url, sv.ready_timeout_s, base_tag=tag)
    engine = process.VLLM_ENGINE if cfg.model_backend == "vllm" else (None if sv.engine == "auto" else sv.engine)
    limits = process.ServerLimits(
        max_lora_rank=max(process.MIN_LORA_RANK, cfg.finetune.rank), max_loras=sv.max_loras, max_model_len=sv.max_model_len,
        gpu_memory_utilization=sv.gpu_memory_utilization,
    )
    return ServerDeployer(workdir, engine, sv.mode, sv.ready_timeout_s, limits, sv.base_url, sv.api_key_env)


def serve_base(store: ArtifactStore, cfg: CampaignConfig, campaign: str) -> Deployment:
    base = base_model_dir(store, cfg)
    return deployer(store, cfg, campaign).ensure_base(base, cfg.model_name, weights_fingerprint(base))


def serve_iteration(store: ArtifactStore, cfg: CampaignConfig, campaign: str, iteration: int) -> Deployment:
    """Make iteration ``iteration``'s checkpoint live again (0: the base model): rollback and keep-best."""
    if iteration == 0:
        return serve_base(store, cfg, campaign)
    manifest = read_manifest(store, campaign, iteration)
    return deployer(store, cfg, campaign).deploy(store.path(campaign, iteration, CHECKPOINT), manifest, iteration)


def live(store: ArtifactStore, campaign: str) -> Live | None:
    """What the campaign's endpoint serves now (None: nothing, or the server is down)."""
    return deployer(store, load_campaign(store, campaign), campaign).live()


class Failure(BaseModel):
    iteration: int
    stage: str
    error: str
    restored: str | None = None  # what was made live again
    at: float


def record_failure(store: ArtifactStore, campaign: str, iteration: int, stage: str, error: Exception, restored: str | None = None) -> None:
    failure = Failure(iteration=iteration, stage=stage, error=redact(str(error))[:2000], restored=restored, at=time.time())
    store.write_json(campaign, iteration, FAILURE, failure)


def last_failure(store: ArtifactStore, campaign: str) -> Failure | None:
    """The failure of an iteration after the newest eval report, if any: the campaign is stuck there."""
    try:
        done = latest_iteration(store, campaign)
    except PredecessorMissing:
        done = -1
    fails = [i for i in store.iterations(campaign, having=FAILURE) if i > done]
    return Failure.model_validate(store.read_json(campaign, fails[-1], FAILURE, "the failure")) if fails else None


def read_report(store: ArtifactStore, campaign: str, iteration: int) -> EvalReport:
    what = "the baseline eval report" if iteration == 0 else "the eval report"
    return EvalReport.model_validate(store.read_json(campaign, iteration, REPORT, what))


def history(store: ArtifactStore, campaign: str, upto: int) -> list[EvalReport]:
    """Reports 0..upto; ``upto`` must exist, earlier ones are included where present."""
    last = read_report(store, campaign, upto)
    earlier = [
        read_report(store, campaign, i) for i in range(upto) if store.path(campaign, i, REPORT).exists()
    ]
    return [*earlier, last]


_caches: dict[Path, ResponseCache] = {}


def llm_client(store: ArtifactStore, cfg: CampaignConfig, role: str, backend: str, model: str, meter: Meter) -> LLMClient:
    """``role``'s model behind the response cache, the provider's rate limit, and the stage's meter."""
    settings = cfg.llm.providers.get(backend, registry.ProviderSettings())
    model_id = registry.resolve_model(backend, model, cfg.llm.aliases)
    cache = None
    if cfg.llm.cache:
        cache = _caches.setdefault(store.root / "llm-cache", ResponseCache(store.root / "llm-cache"))
    limiter = limiter_for(backend, settings.requests_per_minute) if settings.requests_per_minute else None
    price = price_of([model, model_id], cfg.llm.prices)
    return LLMClient(registry.create(backend, model_id, settings), role, meter, price, cache, limiter)


def judge_of(store: ArtifactStore, cfg: CampaignConfig, meter: Meter) -> Judge:
    if cfg.judge == "reference":
        return ReferenceJudge()
    client = llm_client(store, cfg, "judge", cfg.judge_backend, cfg.judge_model, meter)
    return LLMJudge(client, domain=suite_of(cfg).domain or cfg.datagen.prompt_config.domain or "a software product")


def _evaluate(store: ArtifactStore, cfg: CampaignConfig, campaign: str, iteration: int, dep: Deployment, log: Log) -> EvalReport:
    suite = suite_of(cfg)
    step = max(1, len(suite.questions) // 4)

    def on_progress(done: int, total: int) -> None:
        progress.report(f"eval it{iteration}", done, total)
        if done % step == 0 or done == total:
            log(f"eval: {done}/{total} questions answered")

    key = (os.environ.get(dep.api_key_env) if dep.api_key_env else None) or "local"
    meter = costs.meter(store, cfg, campaign, iteration, "eval")
    try:
        return run_suite(
            suite, dep.endpoint, dep.served_model, judge_of(store, cfg, meter), cfg.serving.eval_concurrency,
            api_key=key, on_progress=on_progress, held_out=suite.held_out(cfg.held_out_fraction, cfg.held_out_seed),
            max_judge_error_rate=cfg.judge_max_error_rate, max_tokens=cfg.eval_max_tokens,
        )  # fmt: skip
    finally:  # what was spent counts against the budget even when the eval failed
        costs.write(store, campaign, iteration, meter.cost)


# -- 01 EVALUATE ----------------------------------------------------------------------------------
def baseline(store: ArtifactStore, campaign: str, log: Log = _default_log) -> tuple[EvalReport, Deployment]:
    cfg = load_campaign(store, campaign)
    log(f"serving base model {cfg.model_name} on {cfg.model_backend}")
    dep = serve_base(store, cfg, campaign)
    store.write_json(campaign, 0, DEPLOYMENT, dep)
    report = _evaluate(store, cfg, campaign, 0, dep, log)
    store.write_json(campaign, 0, REPORT, report)
    return report, dep


# -- 02 ANALYZE -----------------------------------------------------------------------------------
def analyze_failures(store: ArtifactStore, campaign: str, iteration: int) -> Analysis:
    cfg = load_campaign(store, campaign)
    reports = [r.analyzed() for r in history(store, campaign, iteration - 1)]  # held-out answers stay unseen
    gate_record = read_promotion(store, campaign, iteration - 1)
    regressed = sorted(gate_record.regressed) if gate_record else []  # what the last checkpoint made worse
    d = cfg.datagen
    if cfg.analyzer_backend == registry.EMBEDDED:
        analysis = analyze(reports, d.examples_per_service, d.min_services, d.max_services, regressed)
    else:
        meter = costs.meter(store, cfg, campaign, iteration, "analyze")
        try:
            client = llm_client(store, cfg, "analyzer", cfg.analyzer_backend, cfg.analyzer_model, meter)
            analysis = llm_analyze(
                client, reports, d.examples_per_service, d.min_services, d.max_services, cfg.analyzer_retries, regressed
            )
        finally:
            costs.write(store, campaign, iteration, meter.cost)
    learned = dataset.rows_by_service(previous_dataset(store, campaign, iteration))
    rehearse = sorted(s for s in learned if s not in analysis.datagen_services)
    if rehearse and d.rehearsal_share > 0:
        count = max(1, round(d.rehearsal_share * analysis.datagen_count))
        analysis = analysis.model_copy(update={
            "rehearsal_services": rehearse, "rehearsal_count": count,
            "suggested_actions": [*analysis.suggested_actions, f"rehearse {', '.join(rehearse)}: {count} new pairs each"],
        })  # fmt: skip
    store.write_json(campaign, iteration, ANALYSIS, analysis)
    return analysis


# -- 03 GENERATE ----------------------------------------------------------------------------------
def previous_dataset(store: ArtifactStore, campaign: str, iteration: int) -> list:
    if iteration <= 1:
        return []
    return dataset.read_jsonl(store.require(campaign, iteration - 1, DATASET, "the training dataset"))


def generate_examples(
    store: ArtifactStore, campaign: str, iteration: int, log: Log = _default_log
) -> coordinator.GenerationResult:
    cfg = load_campaign(store, campaign)
    analysis = Analysis.model_validate(store.read_json(campaign, iteration, ANALYSIS, "the failure analysis"))
    already = dataset.rows_by_service(previous_dataset(store, campaign, iteration))
    counts = {s: analysis.datagen_count for s in analysis.datagen_services}
    counts |= {s: analysis.rehearsal_count for s in analysis.rehearsal_services}
    total = sum(counts.values())
    step = max(1, total // 4)

    def on_progress(done: int, n: int) -> None:
        progress.report(f"generate it{iteration}", done, n)
        if done % step == 0 or done == n:
            log(f"generate: {done}/{n} pairs")

    d = cfg.datagen
    meter = costs.meter(store, cfg, campaign, iteration, "generate")
    try:
        worker = (
            ExtractiveWorker() if d.generator_backend == registry.EMBEDDED
            else LLMWorker(llm_client(store, cfg, "generator", d.generator_backend, d.generator_model, meter))
        )  # fmt: skip
        result = coordinator.generate(
            suite_of(cfg), list(counts), counts, worker, campaign, iteration,
            already=already, max_retries=d.max_retries, concurrency=d.concurrency,
            prompt_config=d.prompt_config.model_dump(), on_progress=on_progress, budget=d.passage_tokens,
        )  # fmt: skip
        if d.synthesizer and result.pairs:
            synth = llm_client(store, cfg, "synthesizer", *d.synthesizer, meter)
            s = synthesize(synth, result.pairs, d.prompt_config.model_dump(), d.synthesis_batch_size, d.concurrency)
            log(f"synthesis: {s.rewritten}/{len(result.pairs)} pairs rewritten by {synth.label}"
                + (f"; {len(s.failed_batches)} batches kept raw" if s.failed_batches else ""))  # fmt: skip
            result = result.model_copy(update={"pairs": s.pairs, "synthesis": s.model_copy(update={"pairs": []}).model_dump()})
    finally:
        costs.write(store, campaign, iteration, meter.cost)
    dataset.write_jsonl(store.path(campaign, iteration, GENERATED), result.pairs)
    store.write_json(campaign, iteration, GENERATION, result.model_copy(update={"pairs": []}))
    return result


# -- cumulative dataset ---------------------------------------------------------------------------
class DatasetSummary(BaseModel):
    rows: int
    added: int
    dropped: dict[str, int]  # by reason: invalid, ungrounded, contaminated, duplicate, near_duplicate
    by_service: dict[str, int]
    path: str
    card: str


def eval_index(cfg: CampaignConfig) -> quality.EvalIndex:
    """Every eval question, held out or not: no training question may resemble any of them."""
    suite = suite_of(cfg)
    q = cfg.quality
    return quality.EvalIndex({x.id: x.question for x in suite.questions}, q.decontamination_ngram, q.decontamination_threshold)


def build_dataset(store: ArtifactStore, campaign: str, iteration: int) -> DatasetSummary:
    """Iteration i-1's rows plus this iteration's pairs that pass the quality filters."""
    cfg = load_campaign(store, campaign)
    suite = suite_of(cfg)
    previous = previous_dataset(store, campaign, iteration)
    new = dataset.read_jsonl(store.require(campaign, iteration, GENERATED, "the generated examples"))
    names = {s: [service_title(s, doc, kind_of(suite.doc_file(s)))] for s, doc in suite.docs.items()}
    judged = None
    if cfg.quality.grounding == "judge":
        meter = costs.meter(store, cfg, campaign, iteration, "dataset")
        try:
            client = llm_client(store, cfg, "grounding", cfg.judge_backend, cfg.judge_model, meter)
            judged = grounding_verdicts(client, new, cfg.datagen.concurrency)
        finally:
            costs.write(store, campaign, iteration, meter.cost)
    result = quality.filter_pairs(new, previous, eval_index(cfg), cfg.quality, names, judged)
    rows = previous + result.kept
    path = store.path(campaign, iteration, DATASET)
    dataset.write_jsonl(path, rows)
    store.write_json(campaign, iteration, QUALITY, {"dropped_by_reason": result.counts(), "dropped": [d.model_dump() for d in result.dropped]})
    card = dataset_card(campaign, iteration, rows, result)
    store.write_text(campaign, iteration, CARD, card)
    return DatasetSummary(
        rows=len(rows), added=len(result.kept), dropped=result.counts(), by_service=dataset.rows_by_service(rows),
        path=str(path), card=card,
    )  # fmt: skip


def skipped_services(store: ArtifactStore, campaign: str) -> dict[int, list[str]]:
    """Per iteration, the services whose generation kept failing and were skipped."""
    out = {}
    for i in store.iterations(campaign, having=GENERATION):
        if skipped := store.read_json(campaign, i, GENERATION, "the generation summary")["skipped_services"]:
            out[i] = sorted(skipped)
    return out


def contamination(store: ArtifactStore, campaign: str, iteration: int) -> list[dict]:
    cfg = load_campaign(store, campaign)
    rows = dataset.read_jsonl(store.require(campaign, iteration, DATASET, "the training dataset"))
    return quality.contaminated(rows, eval_index(cfg))


# -- 04 FINE-TUNE ---------------------------------------------------------------------------------
def adapter_name(campaign: str, iteration: int) -> str:
    return f"{campaign}-it{iteration}"


def train_checkpoint(store: ArtifactStore, campaign: str, iteration: int, log: Log = _default_log) -> Manifest:
    cfg = load_campaign(store, campaign)
    rows = dataset.read_jsonl(store.require(campaign, iteration, DATASET, "the training dataset"))
    ft = cfg.finetune
    settings = TrainSettings(**ft.model_dump(exclude={"runner"}))  # the same fields, less where it runs

    def on_log(step: int, total: int, loss: float) -> None:
        progress.report(f"fine-tune it{iteration}", step, total, f"loss {loss:.3f}")
        if step % max(1, total // 4) < max(1, total // 20) or step == total:  # about five lines per run
            log(f"fine-tune: step {step}/{total} loss {loss:.4f}")

    return finetune(
        base_model_dir(store, cfg),
        [(r.question, r.answer) for r in rows],
        store.path(campaign, iteration, CHECKPOINT),
        settings,
        adapter_name(campaign, iteration),
        on_log=on_log,
        base_label=cfg.trained_model[0],
    )


def read_manifest(store: ArtifactStore, campaign: str, iteration: int) -> Manifest:
    path = store.require(campaign, iteration, CHECKPOINT, "the checkpoint") / "manifest.json"
    if not path.is_file():
        raise PredecessorMissing(f"{path}: the checkpoint has no manifest; it is incomplete")
    return Manifest.model_validate_json(path.read_text())


# -- 05 DEPLOY ------------------------------------------------------------------------------------
def deploy_checkpoint(store: ArtifactStore, campaign: str, iteration: int, log: Log = _default_log) -> Deployment:
    """Make this iteration's checkpoint live and verified; a failure leaves the previous model live."""
    cfg = load_campaign(store, campaign)
    manifest = read_manifest(store, campaign, iteration)
    dep_ = deployer(store, cfg, campaign)
    try:
        if dep_.live() is None:  # the server went away (reboot, crash): bring the base back first
            log("nothing is live for this campaign: serving the base model again")
            serve_base(store, cfg, campaign)
        dep = dep_.deploy(store.path(campaign, iteration, CHECKPOINT), manifest, iteration)
    except ServingError as e:
        now = dep_.live()
        record_failure(store, campaign, iteration, "deploy", e, restored=now.model if now else None)
        raise
    store.write_json(campaign, iteration, DEPLOYMENT, dep)
    store.path(campaign, iteration, FAILURE).unlink(missing_ok=True)
    log(f"deployed {dep.served_model} ({dep.mode}, {dep.deploy_seconds:.1f} s); replaced {dep.replaced}")
    return dep


# -- 06 RE-EVAL -----------------------------------------------------------------------------------
def reevaluate(store: ArtifactStore, campaign: str, iteration: int, log: Log = _default_log) -> EvalReport:
    cfg = load_campaign(store, campaign)
    dep = Deployment.model_validate(store.read_json(campaign, iteration, DEPLOYMENT, "the deployment"))
    now = deployer(store, cfg, campaign).live()
    if now is None or now.model != dep.served_model or now.fingerprint != dep.fingerprint:
        raise ServingError(
            f"campaign {campaign!r}: the endpoint no longer serves iteration {iteration} "
            f"({dep.served_model}); re-materialise its deployment before re-evaluating"
        )
    previous = read_report(store, campaign, iteration - 1)
    try:
        report = _evaluate(store, cfg, campaign, iteration, dep, log).with_previous(previous)
    except Exception as e:  # the new model may be at fault: put the previous one back, then report
        restored = None
        if cfg.serving.rollback_on_failure:
            try:
                back = live_iteration(store, campaign, iteration - 1)  # the live model, not a rejected checkpoint
                restored = serve_iteration(store, cfg, campaign, back).served_model
                log(f"re-eval failed; rolled back to iteration {back} ({restored})")
            except BcomcError as rollback_error:
                log(f"re-eval failed and the rollback failed too: {rollback_error}")
        record_failure(store, campaign, iteration, "re-eval", e, restored)
        raise
    store.write_json(campaign, iteration, REPORT, report)
    promote(store, cfg, campaign, iteration, report, log)
    store.path(campaign, iteration, FAILURE).unlink(missing_ok=True)
    return report


def promote(store: ArtifactStore, cfg: CampaignConfig, campaign: str, iteration: int, report: EvalReport, log: Log) -> Promotion:
    """The promotion gate (``serving.promote``): keep the checkpoint live, or serve the live model again."""
    before = live_iteration(store, campaign, iteration - 1)
    p = gate(iteration, report, before, read_report(store, campaign, before), cfg.serving.promote, cfg.serving.promote_margin)
    if not p.promoted:
        try:
            p.restored = serve_iteration(store, cfg, campaign, before).served_model
        except BcomcError as e:  # the rejected checkpoint is still live: say so and stop here
            record_failure(store, campaign, iteration, "promote", e)
            raise ServingError(f"checkpoint of iteration {iteration} {p.reason}, and serving iteration {before} again failed: {e}") from e
    store.write_json(campaign, iteration, PROMOTION, p)
    log(f"iteration {iteration} {p.reason}" + (f"; {p.restored} is live again" if p.restored else ""))
    return p


def read_promotion(store: ArtifactStore, campaign: str, iteration: int) -> Promotion | None:
    path = store.path(campaign, iteration, PROMOTION)
    return Promotion.model_validate_json(path.read_text()) if path.exists() else None


def live_iteration(store: ArtifactStore, campaign: str, upto: int) -> int:
    """The newest iteration up to ``upto`` whose checkpoint was promoted (0: the base). An iteration with a
    report and no promotion record (a campaign from before the gate) counts as promoted."""
    for i in range(upto, 0, -1):
        if store.path(campaign, i, REPORT).exists():
            p = read_promotion(store, campaign, i)
            if p is None or p.promoted:
                return i
    return 0


# -- outcome --------------------------------------------------------------------------------------
class Outcome(BaseModel):
    campaign: str
    status: str  # target_reached / max_iterations_reached / budget_exhausted / waiting
    iterations: int
    baseline_pass_rate: float
    final_pass_rate: float  # the live model's: the last promoted checkpoint's (serving.promote)
    best_iteration: int
    best_pass_rate: float
    pass_rates: dict[int, float]  # every checkpoint's re-eval, promoted or not
    rejected: list[int] = []  # iterations whose checkpoint the promotion gate rejected
    final_model: str  # serving.final_model: last / best / base
    final_iteration: int  # the iteration final_model chose (0 = base); live unless the servers were stopped
    final_model_error: str | None = None
    live_model: str | None
    live_endpoint: str | None
    servers_stopped: bool
    cost_usd: float = 0.0  # every model call of the campaign (generator, synthesizer, analyzer, judge)
    stop_reason: str | None = None  # budget_exhausted: the spend and the estimate that stopped the loop
    finished_at: float


def latest_iteration(store: ArtifactStore, campaign: str) -> int:
    done = store.iterations(campaign, having=REPORT)
    if not done:
        raise PredecessorMissing(f"campaign {campaign!r}: no eval report yet (not even the baseline)")
    return max(done)


def conclude(store: ArtifactStore, campaign: str, log: Log = _default_log) -> Outcome:
    """Record how the campaign ended; on a final decision leave ``serving.final_model`` live."""
    cfg = load_campaign(store, campaign)
    last = latest_iteration(store, campaign)
    reports = {i: read_report(store, campaign, i) for i in range(last + 1) if store.path(campaign, i, REPORT).exists()}
    rates = {i: r.pass_rate for i, r in reports.items()}
    current = live_iteration(store, campaign, last)
    promoted = {i: r for i, r in rates.items() if i == 0 or live_iteration(store, campaign, i) == i}
    best = max(promoted, key=lambda i: (promoted[i], -i))
    decision = next_decision(store, campaign, last)
    dep = deployer(store, cfg, campaign)
    now = dep.live()
    final_iteration = now.iteration if now else last
    final_error = None
    if decision.final:
        want = final_iteration = {"last": current, "best": best, "base": 0}[cfg.serving.final_model]
        about_to_stop = cfg.serving.stop_at_end and dep.owns_server
        if not about_to_stop and (now is None or now.iteration != want):
            try:
                serve_iteration(store, cfg, campaign, want)
                log(f"serving.final_model={cfg.serving.final_model}: iteration {want} is live")
            except BcomcError as e:
                final_error = str(e)
                log(f"could not leave iteration {want} live: {e}")
        now = dep.live()
    stopped = bool(cfg.serving.stop_at_end and decision.final and dep.stop())
    now = None if stopped else now
    outcome = Outcome(
        campaign=campaign, status=decision.value if decision.final else "waiting", iterations=last,
        baseline_pass_rate=rates.get(0, 0.0), final_pass_rate=rates[current], best_iteration=best,
        best_pass_rate=rates[best], pass_rates=rates, rejected=sorted(set(rates) - set(promoted)),
        final_model=cfg.serving.final_model,
        final_iteration=final_iteration, final_model_error=final_error, live_model=now.model if now else None,
        live_endpoint=now.endpoint if now else None, servers_stopped=stopped, cost_usd=costs.campaign_cost(store, campaign),
        stop_reason=costs.over_budget(cfg, store, campaign) if decision is Decision.BUDGET_EXHAUSTED else None,
        finished_at=time.time(),
    )  # fmt: skip
    store.write_json(campaign, None, OUTCOME, outcome)
    return outcome


def campaign_effectiveness(store: ArtifactStore, campaign: str) -> Effectiveness:
    """The effectiveness report over every iteration with an eval report; written beside the outcome."""
    cfg = load_campaign(store, campaign)
    last = latest_iteration(store, campaign)
    reports = {i: read_report(store, campaign, i) for i in range(last + 1) if store.path(campaign, i, REPORT).exists()}
    targeted = {
        i: Analysis.model_validate(store.read_json(campaign, i, ANALYSIS, "the analysis")).datagen_services
        for i in reports if i > 0 and store.path(campaign, i, ANALYSIS).exists()
    }
    added: dict[int, int] = {}
    contaminated = None
    if last > 0 and store.path(campaign, last, DATASET).exists():
        rows = dataset.read_jsonl(store.path(campaign, last, DATASET))
        for r in rows:
            added[r.provenance.iteration] = added.get(r.provenance.iteration, 0) + 1
        contaminated = len(quality.contaminated(rows, eval_index(cfg)))
    dropped: dict[str, int] = {}
    for i in range(1, last + 1):
        if store.path(campaign, i, QUALITY).exists():
            for reason, n in store.read_json(campaign, i, QUALITY, "the quality report")["dropped_by_reason"].items():
                dropped[reason] = dropped.get(reason, 0) + n
    promoted = {i: p.promoted for i in reports if (p := read_promotion(store, campaign, i)) is not None}
    eff = effectiveness(
        campaign, cfg.target_pass_rate, reports, targeted, added, contaminated, dropped, promoted, cfg.serving.promote_margin
    )
    store.write_json(campaign, None, EFFECTIVENESS, eff)
    store.write_text(campaign, None, EFFECTIVENESS_MD, eff.markdown())
    return eff


def next_decision(
    store: ArtifactStore, campaign: str, iteration: int, pass_rate: float | None = None, auto_advance: bool | None = None
) -> Decision:
    """The loop's rule after ``iteration``'s eval, on the live model's pass rate unless ``pass_rate`` is given
    (a rejected checkpoint's does not count); auto_advance from the config unless given."""
    cfg = load_campaign(store, campaign)
    if pass_rate is None:
        pass_rate = read_report(store, campaign, live_iteration(store, campaign, iteration)).pass_rate
    auto = cfg.auto_advance if auto_advance is None else auto_advance
    over = costs.over_budget(cfg, store, campaign) is not None
    return decide(iteration, pass_rate, cfg.target_pass_rate, cfg.max_iterations, auto, over_budget=over)
