"""The loop as a recipe: one function per stage, read top to bottom. ``defs/`` wraps each in an asset.

Iteration 0 is the baseline. Every stage reads what it needs of earlier iterations from the artifact store
(``artifacts``: names and typed readers) and fails at once, naming the artifact, when it is missing. What
varies is chosen in the campaign config and built by ``registries``; what a campaign's state is (history,
live model, failures) is read by ``campaign_state``.

Over 300 lines on purpose: this is the recipe, the six stages, the promotion gate and the outcome in the
order they run, so that the loop reads top to bottom in one file.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bcomc_dagster import artifacts as a
from bcomc_dagster import campaign_state as state
from bcomc_dagster import costs, progress, registries
from bcomc_dagster.analysis.analyzer import Analysis
from bcomc_dagster.analysis.effectiveness import Effectiveness
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import CampaignConfig, parse_config
from bcomc_dagster.datagen import coordinator, dataset, quality
from bcomc_dagster.datagen.card import dataset_card
from bcomc_dagster.datagen.llm_worker import synthesize
from bcomc_dagster.datagen.passages import kind_of, service_title
from bcomc_dagster.datagen.schema import QAPair
from bcomc_dagster.errors import BcomcError, InputError, ServingError
from bcomc_dagster.evals.llm_judge import grounding_verdicts
from bcomc_dagster.evals.report import EvalReport
from bcomc_dagster.evals.runner import run_suite
from bcomc_dagster.evals.suite import Suite, load_suite
from bcomc_dagster.launch_checks import check_base, check_docs
from bcomc_dagster.loop import Decision, Outcome, Promotion, decide, gate
from bcomc_dagster.registries import Env
from bcomc_dagster.serving.deployer import Deployer, Deployment
from bcomc_dagster.training import sources
from bcomc_dagster.training.finetune import finetune
from bcomc_dagster.training.manifest import Manifest, TrainSettings
from bcomc_dagster.training.weights import weights_fingerprint

Log = Callable[[str], None]
_default_log = logging.getLogger("bcomc").info
PROGRESS_LINES = 4  # log lines per stage for evaluation and generation progress (about)


def _every(total: int) -> int:
    return max(1, total // PROGRESS_LINES)


# -- launch and serving ---------------------------------------------------------------------------
def store_config(store: ArtifactStore, campaign: str, data: dict[str, Any]) -> CampaignConfig:
    """Validate a campaign's launch config and keep it; a campaign keeps the config it was launched with."""
    cfg = parse_config(data, source=f"campaign {campaign!r}: launch config").resolved()
    path = store.path(campaign, None, a.CONFIG)
    if not path.exists():
        check_docs(cfg)  # checked once, at launch (a stored config is not re-checked)
        check_base(cfg)  # the weights are there
    elif store.config(campaign) != cfg:
        raise InputError(
            f"campaign {campaign!r} was launched with another config ({path}); launch a new campaign to "
            "change it"
        )
    store.write_json(campaign, None, a.CONFIG, cfg)
    return cfg


def base_model_dir(store: ArtifactStore, cfg: CampaignConfig) -> Path:
    """The trainable folder of the campaign's base (built, converted or taken from a cache on first use)."""
    name, backend = cfg.trained_model
    try:
        return sources.resolve(name, backend, store.models_dir, cfg.ollama_url)
    except ValueError as e:  # the weights went away since launch, or the server no longer has the tag
        raise InputError(
            f"{'base_weights' if cfg.base_weights else 'model_name'}: {e} (got {name!r})"
        ) from None


def deployer(store: ArtifactStore, cfg: CampaignConfig, campaign: str) -> Deployer:
    return registries.deployer(Env(store, cfg, campaign))


def serve_iteration(store: ArtifactStore, cfg: CampaignConfig, campaign: str, iteration: int) -> Deployment:
    """Make iteration ``iteration``'s checkpoint live again (0: the base model): rollback and keep-best."""
    if iteration == 0:
        base = base_model_dir(store, cfg)
        return deployer(store, cfg, campaign).ensure_base(base, cfg.model_name, weights_fingerprint(base))
    manifest = store.manifest(campaign, iteration)
    return deployer(store, cfg, campaign).deploy(store.checkpoint(campaign, iteration), manifest, iteration)


def _evaluate(
    store: ArtifactStore, cfg: CampaignConfig, campaign: str, iteration: int, dep: Deployment, log: Log
) -> EvalReport:
    suite = load_suite(cfg.eval_suite)
    every = _every(len(suite.questions))

    def on_progress(done: int, total: int) -> None:
        progress.report(f"eval it{iteration}", done, total)
        if done % every == 0 or done == total:
            log(f"eval: {done}/{total} questions answered")

    key = (os.environ.get(dep.api_key_env) if dep.api_key_env else None) or "local"
    with costs.metered(store, cfg, campaign, iteration, "eval") as meter:
        return run_suite(
            suite,
            dep.endpoint,
            dep.served_model,
            registries.judge(Env(store, cfg, campaign, meter)),
            cfg.serving.eval_concurrency,
            api_key=key,
            on_progress=on_progress,
            held_out=suite.held_out(cfg.held_out_fraction, cfg.held_out_seed),
            max_judge_error_rate=cfg.judge_max_error_rate,
            max_tokens=cfg.eval_max_tokens,
            timeout_s=cfg.serving.request_timeout_s,
            max_retries=cfg.serving.request_retries,
        )


# -- 01 EVALUATE ----------------------------------------------------------------------------------
def baseline(store: ArtifactStore, campaign: str, log: Log = _default_log) -> tuple[EvalReport, Deployment]:
    cfg = store.config(campaign)
    log(f"serving base model {cfg.model_name} on {cfg.model_backend}")
    dep = serve_iteration(store, cfg, campaign, 0)
    store.write_json(campaign, 0, a.DEPLOYMENT, dep)
    report = _evaluate(store, cfg, campaign, 0, dep, log)
    store.write_json(campaign, 0, a.REPORT, report)
    return report, dep


# -- 02 ANALYZE -----------------------------------------------------------------------------------
def analyze_failures(store: ArtifactStore, campaign: str, iteration: int) -> Analysis:
    cfg = store.config(campaign)
    d = cfg.datagen
    # the analyzer sees only the analyzed part of each report: held-out answers stay unseen
    reports = [r.analyzed() for r in state.history(store, campaign, iteration - 1)]
    gate_record = store.promotion(campaign, iteration - 1)
    regressed = sorted(gate_record.regressed) if gate_record else []  # what the last checkpoint made worse
    with costs.metered(store, cfg, campaign, iteration, "analyze") as meter:
        analysis = registries.analyzer(Env(store, cfg, campaign, meter))(reports, regressed)
    learned = dataset.rows_by_service(store.dataset(campaign, iteration - 1))
    rehearse = sorted(s for s in learned if s not in analysis.datagen_services)
    if rehearse and d.rehearsal_share > 0:
        count = max(1, round(d.rehearsal_share * analysis.datagen_count))
        analysis = analysis.model_copy(
            update={
                "rehearsal_services": rehearse,
                "rehearsal_count": count,
                "suggested_actions": [
                    *analysis.suggested_actions,
                    f"rehearse {', '.join(rehearse)}: {count} new pairs each",
                ],
            }
        )
    store.write_json(campaign, iteration, a.ANALYSIS, analysis)
    return analysis


# -- 03 GENERATE ----------------------------------------------------------------------------------
def generate_examples(
    store: ArtifactStore, campaign: str, iteration: int, log: Log = _default_log
) -> coordinator.GenerationResult:
    cfg = store.config(campaign)
    d = cfg.datagen
    analysis = store.analysis(campaign, iteration)
    suite = load_suite(cfg.eval_suite)
    previous = store.dataset(campaign, iteration - 1)
    counts = {s: analysis.datagen_count for s in analysis.datagen_services}
    counts |= {s: analysis.rehearsal_count for s in analysis.rehearsal_services}
    every = _every(sum(counts.values()))
    # the dataset's own filters, but for the judge's grounding (its verdicts are paid for once, there)
    screen_cfg = (
        cfg.quality.model_copy(update={"grounding": "off"})
        if cfg.quality.grounding == "judge"
        else cfg.quality
    )
    index, names = state.eval_index(cfg), _service_names(suite)

    def screen(pairs: list[QAPair]) -> quality.FilterResult:
        return quality.filter_pairs(pairs, previous, index, screen_cfg, names)

    def on_progress(done: int, n: int) -> None:
        progress.report(f"generate it{iteration}", done, n)
        if done % every == 0 or done == n:
            log(f"generate: {done}/{n} pairs")

    with costs.metered(store, cfg, campaign, iteration, "generate") as meter:
        env = Env(store, cfg, campaign, meter)
        result = coordinator.generate(
            suite,
            list(counts),
            counts,
            registries.generator(env),
            campaign,
            iteration,
            already=state.requests_made(store, campaign, iteration - 1),
            max_retries=d.max_retries,
            concurrency=d.concurrency,
            prompt_config=d.prompting,
            on_progress=on_progress,
            budget=d.passage_tokens,
            screen=screen,
            top_up_rounds=d.top_up_rounds,
        )
        for service, why in result.short.items():
            log(f"generate: {service} got less than half of what was asked: {why}")
        if d.synthesizer and result.pairs:
            synth = env.client("synthesizer", *d.synthesizer)
            s = synthesize(synth, result.pairs, d.prompting, d.synthesis_batch_size, d.concurrency)
            kept_raw = f"; {len(s.failed_batches)} batches kept raw" if s.failed_batches else ""
            log(f"synthesis: {s.rewritten}/{len(result.pairs)} pairs rewritten by {synth.label}{kept_raw}")
            synthesis = s.model_copy(update={"pairs": []}).model_dump()
            result = result.model_copy(update={"pairs": s.pairs, "synthesis": synthesis})
    dataset.write_jsonl(store.path(campaign, iteration, a.GENERATED), result.pairs)
    store.write_json(campaign, iteration, a.GENERATION, result.model_copy(update={"pairs": []}))
    return result


# -- cumulative dataset ---------------------------------------------------------------------------
class DatasetSummary(BaseModel):
    rows: int
    added: int
    dropped: dict[str, int]  # by reason: invalid, ungrounded, contaminated, duplicate, near_duplicate
    by_service: dict[str, int]
    path: str
    card: str


def _service_names(suite: Suite) -> dict[str, list[str]]:
    return {s: [service_title(s, doc, kind_of(suite.doc_file(s)))] for s, doc in suite.docs.items()}


def build_dataset(store: ArtifactStore, campaign: str, iteration: int) -> DatasetSummary:
    """Iteration i-1's rows plus this iteration's pairs that pass the quality filters."""
    cfg = store.config(campaign)
    suite = load_suite(cfg.eval_suite)
    previous = store.dataset(campaign, iteration - 1)
    new = dataset.read_jsonl(store.require(campaign, iteration, a.GENERATED, "the generated examples"))
    names = _service_names(suite)
    judged = None
    if cfg.quality.grounding == "judge":
        assert cfg.judge_model is not None  # the config requires it for grounding by the judge
        with costs.metered(store, cfg, campaign, iteration, "dataset") as meter:
            client = Env(store, cfg, campaign, meter).client("grounding", cfg.judge_backend, cfg.judge_model)
            judged = grounding_verdicts(client, new, cfg.datagen.concurrency)
    result = quality.filter_pairs(new, previous, state.eval_index(cfg), cfg.quality, names, judged)
    rows = previous + result.kept
    path = store.path(campaign, iteration, a.DATASET)
    dataset.write_jsonl(path, rows)
    record = quality.QualityRecord(
        rows=len(rows), added=len(result.kept), dropped_by_reason=result.counts(), dropped=result.dropped
    )
    store.write_json(campaign, iteration, a.QUALITY, record)
    card = dataset_card(campaign, iteration, rows, result)
    store.write_text(campaign, iteration, a.CARD, card)
    return DatasetSummary(
        rows=len(rows),
        added=len(result.kept),
        dropped=result.counts(),
        by_service=dataset.rows_by_service(rows),
        path=str(path),
        card=card,
    )


# -- 04 FINE-TUNE ---------------------------------------------------------------------------------
def adapter_name(campaign: str, iteration: int) -> str:
    return f"{campaign}-it{iteration}"


def train_checkpoint(
    store: ArtifactStore, campaign: str, iteration: int, log: Log = _default_log
) -> Manifest:
    cfg = store.config(campaign)
    rows = store.dataset(campaign, iteration)
    # the config's fine-tune fields, less where it runs
    settings = TrainSettings(**cfg.finetune.model_dump(exclude={"runner"}))

    def on_log(step: int, total: int, loss: float) -> None:
        progress.report(f"fine-tune it{iteration}", step, total, f"loss {loss:.3f}")
        if step % _every(total) < max(1, total // 20) or step == total:  # about five lines per run
            log(f"fine-tune: step {step}/{total} loss {loss:.4f}")

    return finetune(
        base_model_dir(store, cfg),
        [(r.question, r.answer) for r in rows],
        store.path(campaign, iteration, a.CHECKPOINT),
        settings,
        adapter_name(campaign, iteration),
        on_log=on_log,
        base_label=cfg.trained_model[0],
    )


# -- 05 DEPLOY ------------------------------------------------------------------------------------
def deploy_checkpoint(
    store: ArtifactStore, campaign: str, iteration: int, log: Log = _default_log
) -> Deployment:
    """Make this iteration's checkpoint live and verified; a failure leaves the previous model live."""
    cfg = store.config(campaign)
    manifest = store.manifest(campaign, iteration)
    serving = deployer(store, cfg, campaign)
    try:
        if serving.live() is None:  # the server went away (reboot, crash): bring the base back first
            log("nothing is live for this campaign: serving the base model again")
            serve_iteration(store, cfg, campaign, 0)
        dep = serving.deploy(store.checkpoint(campaign, iteration), manifest, iteration)
    except ServingError as e:
        now = serving.live()
        state.record_failure(store, campaign, iteration, "deploy", e, restored=now.model if now else None)
        raise
    store.write_json(campaign, iteration, a.DEPLOYMENT, dep)
    store.path(campaign, iteration, a.FAILURE).unlink(missing_ok=True)
    log(f"deployed {dep.served_model} ({dep.mode}, {dep.deploy_seconds:.1f} s); replaced {dep.replaced}")
    return dep


# -- 06 RE-EVAL -----------------------------------------------------------------------------------
def reevaluate(store: ArtifactStore, campaign: str, iteration: int, log: Log = _default_log) -> EvalReport:
    cfg = store.config(campaign)
    dep = store.deployment(campaign, iteration)
    now = deployer(store, cfg, campaign).live()
    if now is None or now.model != dep.served_model or now.fingerprint != dep.fingerprint:
        raise ServingError(
            f"campaign {campaign!r}: the endpoint no longer serves iteration {iteration} "
            f"({dep.served_model}); re-materialise its deployment before re-evaluating"
        )
    live = state.live_iteration(store, campaign, iteration - 1)  # the delta is against what was live
    try:
        report = _evaluate(store, cfg, campaign, iteration, dep, log).against(
            store.report(campaign, live), live
        )
    except Exception as e:  # the new model may be at fault: put the previous one back, then report
        restored = None
        if cfg.serving.rollback_on_failure:
            try:
                # the live model, not a checkpoint the gate rejected
                back = state.live_iteration(store, campaign, iteration - 1)
                restored = serve_iteration(store, cfg, campaign, back).served_model
                log(f"re-eval failed; rolled back to iteration {back} ({restored})")
            except BcomcError as rollback_error:
                log(f"re-eval failed and the rollback failed too: {rollback_error}")
        state.record_failure(store, campaign, iteration, "re-eval", e, restored)
        raise
    store.write_json(campaign, iteration, a.REPORT, report)
    promote(store, cfg, campaign, iteration, report, log)
    store.path(campaign, iteration, a.FAILURE).unlink(missing_ok=True)
    return report


def promote(
    store: ArtifactStore, cfg: CampaignConfig, campaign: str, iteration: int, report: EvalReport, log: Log
) -> Promotion:
    """The promotion gate (``serving.promote``): keep the checkpoint live, or serve the live model again."""
    before = state.live_iteration(store, campaign, iteration - 1)
    sv = cfg.serving
    live = store.report(campaign, before)
    p = gate(iteration, report, before, live, sv.promote, sv.promote_max_lost, sv.promote_alpha)
    if not p.promoted:
        try:
            p.restored = serve_iteration(store, cfg, campaign, before).served_model
        except BcomcError as e:  # the rejected checkpoint is still live: say so and stop here
            state.record_failure(store, campaign, iteration, "promote", e)
            raise ServingError(
                f"checkpoint of iteration {iteration} {p.reason}, and serving iteration {before} again "
                f"failed: {e}"
            ) from e
    store.write_json(campaign, iteration, a.PROMOTION, p)
    log(f"iteration {iteration} {p.reason}" + (f"; {p.restored} is live again" if p.restored else ""))
    return p


# -- outcome --------------------------------------------------------------------------------------
def conclude(store: ArtifactStore, campaign: str, log: Log = _default_log) -> Outcome:
    """Record how the campaign ended; on a final decision leave ``serving.final_model`` live."""
    cfg = store.config(campaign)
    last = state.latest_iteration(store, campaign)
    reports = {i: r for i, r in state.reports(store, campaign).items() if i <= last}
    rates = {i: r.decided_pass_rate for i, r in reports.items()}  # what the gate and the target use
    current = state.live_iteration(store, campaign, last)
    promoted = {i: r for i, r in rates.items() if i == 0 or state.live_iteration(store, campaign, i) == i}
    best = max(promoted, key=lambda i: (promoted[i], -i))
    decision = next_decision(store, campaign, last)
    serving = deployer(store, cfg, campaign)
    now = serving.live()
    final_iteration = now.iteration if now else last
    final_error = None
    if decision.final:
        want = final_iteration = {"last": current, "best": best, "base": 0}[cfg.serving.final_model]
        about_to_stop = cfg.serving.stop_at_end and serving.owns_server
        if not about_to_stop and (now is None or now.iteration != want):
            try:
                serve_iteration(store, cfg, campaign, want)
                log(f"serving.final_model={cfg.serving.final_model}: iteration {want} is live")
            except BcomcError as e:
                final_error = str(e)
                log(f"could not leave iteration {want} live: {e}")
        now = serving.live()
    stopped = bool(cfg.serving.stop_at_end and decision.final and serving.stop())
    now = None if stopped else now
    outcome = Outcome(
        campaign=campaign,
        status=decision.value if decision.final else "waiting",
        iterations=last,
        baseline_pass_rate=rates.get(0, 0.0),
        final_pass_rate=rates[current],
        best_iteration=best,
        best_pass_rate=rates[best],
        pass_rates=rates,
        held_out_pass_rates={i: r.pass_rate_held_out for i, r in reports.items()}
        if cfg.held_out_fraction > 0
        else {},
        suite_pass_rates={i: r.pass_rate for i, r in reports.items()},
        rejected=sorted(set(rates) - set(promoted)),
        final_model=cfg.serving.final_model,
        final_iteration=final_iteration,
        final_model_error=final_error,
        live_model=now.model if now else None,
        live_endpoint=now.endpoint if now else None,
        servers_stopped=stopped,
        cost_usd=costs.campaign_cost(store, campaign),
        stop_reason=costs.over_budget(cfg, store, campaign)
        if decision is Decision.BUDGET_EXHAUSTED
        else None,
        finished_at=time.time(),
    )
    store.write_json(campaign, None, a.OUTCOME, outcome)
    return outcome


def record_effectiveness(store: ArtifactStore, campaign: str) -> Effectiveness:
    """The effectiveness report over every iteration with an eval report, written beside the outcome."""
    eff = state.effectiveness_of(store, campaign)
    store.write_json(campaign, None, a.EFFECTIVENESS, eff)
    store.write_text(campaign, None, a.EFFECTIVENESS_MD, eff.markdown())
    return eff


def next_decision(
    store: ArtifactStore,
    campaign: str,
    iteration: int,
    pass_rate: float | None = None,
    auto_advance: bool | None = None,
) -> Decision:
    """The loop's rule after ``iteration``'s eval, on the live model's pass rate (the decided part: the
    held-out part drives no decision) unless ``pass_rate`` is given (a rejected checkpoint's does not
    count); auto_advance from the config unless given."""
    cfg = store.config(campaign)
    if pass_rate is None:
        live = state.live_iteration(store, campaign, iteration)
        pass_rate = store.report(campaign, live).decided_pass_rate
    auto = cfg.auto_advance if auto_advance is None else auto_advance
    over = costs.over_budget(cfg, store, campaign) is not None
    return decide(iteration, pass_rate, cfg.target_pass_rate, cfg.max_iterations, auto, over_budget=over)
