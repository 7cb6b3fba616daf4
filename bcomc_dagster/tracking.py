"""MLflow tracking of a campaign, read from its artifact store (``tracking.*`` in the config).

One experiment per campaign (``bcomc/<campaign>``). A parent run named after the campaign holds the
config, flattened, as params and, once the campaign ends, its outcome, effectiveness report and report
page; each iteration (the baseline is iteration 0) is a child run with its pass rates (whole, decided and
held-out parts, per service), delta, training loss by step, throughput, pairs asked, added and dropped by
reason, cost by stage and its artifacts. A promoted checkpoint's LoRA adapter is logged as an MLflow
model; the final model is registered as a version of the campaign's registered model.

``sync`` brings MLflow up to date with what the store holds: an iteration logged from the same eval report
is left alone, a re-run one (a backfill) replaces its run. It never fails a stage: a tracking error is
logged once and the stage goes on.

Over 300 lines on purpose: it is the one map from the store's records to MLflow's runs, metrics,
artifacts and models; split, a figure's path from record to metric would span modules.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from bcomc_dagster import artifacts as a
from bcomc_dagster import costs
from bcomc_dagster.artifacts import ArtifactStore
from bcomc_dagster.config import CampaignConfig, TrackingConfig
from bcomc_dagster.reports.campaign import HTML, MARKDOWN
from bcomc_dagster.secrets import redact

Log = Callable[[str], None]
ROLE, CAMPAIGN, ITERATION = "bcomc.role", "bcomc.campaign", "bcomc.iteration"
SOURCE, MODEL_ID, CONCLUDED = "bcomc.source", "bcomc.model_id", "bcomc.concluded"
PARENT = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under its parent
MAX_PARAM = 6000  # MLflow's limit on a param's value
_KEY = re.compile(r"[^\w\-. /]")  # what MLflow allows in a metric or param key


class Tracked(BaseModel):
    """Where a campaign is tracked, as ``sync`` left it."""

    uri: str
    experiment_id: str
    campaign_run: str
    iteration_runs: dict[int, str]
    model_version: str | None = None  # the final model's version of ``registered_model``, once registered
    registered_model: str | None = None


def tracking_uri(t: TrackingConfig, store: ArtifactStore) -> str:
    """The configured URI, or the local store under the campaign home."""
    return t.uri or "sqlite:///" + str(store.root / "mlflow" / "mlflow.db")


def experiment_name(t: TrackingConfig, campaign: str) -> str:
    return t.experiment or f"bcomc/{campaign}"


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config values as dotted params (``datagen.examples_per_service``), credentials redacted."""
    out: dict[str, str] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out |= flatten(v, key + ".")
        else:
            text = redact(v if isinstance(v, str) else json.dumps(v, sort_keys=True))
            out[key] = text if len(text) <= MAX_PARAM else text[: MAX_PARAM - 1] + "…"
    return out


def _key(name: str) -> str:
    return _KEY.sub("_", name)


@contextmanager
def _requests(t: TrackingConfig) -> Iterator[None]:
    """MLflow's HTTP timeout and retries from the config, unless the environment sets them (MLflow's
    defaults, 120 s and 7 retries with backoff, can hold a stage for minutes when a server is gone)."""
    wanted = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(t.request_timeout_s),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(t.request_retries),
    }
    added = [k for k in wanted if k not in os.environ]
    os.environ.update({k: wanted[k] for k in added})
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def sync(store: ArtifactStore, campaign: str, log: Log, cfg: CampaignConfig | None = None) -> Tracked | None:
    """Log what is new of ``campaign`` to MLflow; None when tracking is off or failed (logged once)."""
    cfg = cfg or store.config(campaign)
    t = cfg.tracking
    if not t.enabled:
        return None
    uri = tracking_uri(t, store)
    try:
        with _requests(t):
            return _Sync(store, campaign, cfg, uri).run()
    except Exception as e:  # noqa: BLE001 -- a tracking failure never fails a stage
        log(
            f"tracking: MLflow at {redact(uri)} failed; the campaign goes on, and the next stage logs what "
            f"is missing ({type(e).__name__}: {redact(str(e))[:300]})"
        )
        return None


class _Sync:
    def __init__(self, store: ArtifactStore, campaign: str, cfg: CampaignConfig, uri: str):
        from mlflow import MlflowClient

        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.store, self.campaign, self.cfg, self.t, self.uri = store, campaign, cfg, cfg.tracking, uri
        self.client = MlflowClient(tracking_uri=uri, registry_uri=uri)

    def run(self) -> Tracked:
        exp = self._experiment()
        parent = self._campaign_run(exp)
        runs = {
            i: self._iteration_run(exp, parent, i)
            for i in self.store.iterations(self.campaign, having=a.REPORT)
        }
        tracked = Tracked(uri=redact(self.uri), experiment_id=exp, campaign_run=parent, iteration_runs=runs)
        outcome = self.store.outcome(self.campaign)
        if outcome is not None and outcome.status != "waiting":
            tracked = self._conclude(parent, runs, tracked)
        return tracked

    # -- the experiment and the campaign's run ------------------------------------------------------
    def _experiment(self) -> str:
        name = experiment_name(self.t, self.campaign)
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            if exp.lifecycle_stage == "deleted":
                self.client.restore_experiment(exp.experiment_id)
            return str(exp.experiment_id)
        root = None
        if self.uri.startswith("sqlite:///"):  # artifacts beside the database, not in the current folder
            root = (Path(self.uri.removeprefix("sqlite:///")).parent / "artifacts" / self.campaign).as_uri()
        return str(
            self.client.create_experiment(name, artifact_location=root, tags={CAMPAIGN: self.campaign})
        )

    def _find(self, exp: str, **tags: str) -> list[Any]:
        where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in tags.items())
        return list(self.client.search_runs([exp], filter_string=where, max_results=1000))

    def _campaign_run(self, exp: str) -> str:
        found = self._find(exp, **{ROLE: "campaign"})
        if found:
            return str(found[0].info.run_id)
        run = self.client.create_run(
            exp, run_name=self.campaign, tags={ROLE: "campaign", CAMPAIGN: self.campaign}
        )
        params = flatten(self.cfg.model_dump(mode="json"))
        if self.store.has(self.campaign, 0, a.DEPLOYMENT):
            base = self.store.deployment(self.campaign, 0)
            params |= {"base.served_model": base.served_model, "base.fingerprint": base.fingerprint or ""}
        self._log(run.info.run_id, params=params)
        return str(run.info.run_id)

    # -- one run per iteration -----------------------------------------------------------------------
    def _iteration_run(self, exp: str, parent: str, i: int) -> str:
        report = self.store.report(self.campaign, i)
        promotion = self.store.promotion(self.campaign, i)
        source = f"{report.run_id}:{int(promotion is not None)}"
        existing = self._find(exp, **{ROLE: "iteration", ITERATION: str(i)})
        for r in existing:
            if r.data.tags.get(SOURCE) == source and r.info.status == "FINISHED":
                return str(r.info.run_id)
        for r in existing:  # a re-run iteration (a backfill) or a sync cut short: replaced
            if model := r.data.tags.get(MODEL_ID):
                self.client.delete_logged_model(model)
            self.client.delete_run(r.info.run_id)
        name = "baseline" if i == 0 else f"iteration {i}"
        run = self.client.create_run(
            exp,
            run_name=name,
            tags={ROLE: "iteration", CAMPAIGN: self.campaign, ITERATION: str(i), PARENT: parent},
        )
        rid = run.info.run_id
        metrics, series, params = self._figures(i)
        self._log(rid, params=params, metrics=metrics, series=series)
        for name in (a.REPORT, a.ANALYSIS, a.GENERATION, a.QUALITY, a.CARD, a.PROMOTION, a.DEPLOYMENT):
            if self.store.has(self.campaign, i, name):
                self.client.log_artifact(rid, str(self.store.path(self.campaign, i, name)))
        if promotion is not None and promotion.promoted and self.t.log_models:
            self.client.set_tag(rid, MODEL_ID, self._log_adapter(exp, rid, i))
        self.client.set_tag(rid, SOURCE, source)  # last: a run without it is logged again next time
        self.client.set_terminated(rid, "FINISHED")
        return str(rid)

    def _figures(self, i: int) -> tuple[dict[str, float], dict[str, list[tuple[int, float]]], dict[str, str]]:
        """(metrics, metrics by step, params) of iteration ``i``."""
        store, c = self.store, self.campaign
        report = store.report(c, i)
        m: dict[str, float] = {"pass_rate": report.pass_rate, "decided_pass_rate": report.decided_pass_rate}
        if report.pass_rate_held_out is not None:
            m["held_out_pass_rate"] = report.pass_rate_held_out
        if report.improvement_delta is not None:
            m["delta"] = report.improvement_delta
        m |= {f"pass_rate/{s}": r.pass_rate for s, r in report.results_by_service.items()}
        m |= {f"delta/{s}": d for s, d in report.service_deltas.items()}
        m |= {"eval_seconds": report.seconds, "judge_errors": report.judge_errors}
        for stage in costs.STAGES:
            if cost := costs.stage_cost(store, c, i, stage):
                m[f"cost_usd/{stage}"] = cost.cost_usd
        m["cost_usd"] = costs.iteration_cost(store, c, i)
        params = {"iteration": str(i), "model": report.model, "judge": report.judge}
        series: dict[str, list[tuple[int, float]]] = {}
        if gen := store.generation(c, i):
            m |= {
                "pairs_asked": sum(gen.asked.values()),
                "pairs_requested": sum(gen.requested.values()),
                "pairs_made": sum(gen.produced.values()),
                "pairs_delivered": sum(gen.delivered.values()),
                "generation_rounds": gen.rounds,
                "services_skipped": len(gen.skipped_services),
            }
        if store.has(c, i, a.QUALITY):
            q = store.quality(c, i)
            m |= {f"pairs_dropped/{k}": n for k, n in q.dropped_by_reason.items()}
            if q.rows is not None and q.added is not None:
                m |= {"pairs_added": q.added, "dataset_rows": q.rows}
        if i > 0 and store.has(c, i, a.CHECKPOINT):
            man = store.manifest(c, i)
            series["train_loss"] = [(step, loss) for step, loss in man.loss_curve]
            m |= {"final_loss": man.final_loss, "train_steps": man.steps, "train_seconds": man.train_seconds}
            if man.hardware:
                m |= {
                    "tokens_per_second": man.hardware.tokens_per_second,
                    "train_tokens": man.hardware.tokens,
                }
                m["peak_memory_mb"] = man.hardware.peak_memory_mb
            params |= {
                "base_model": man.base_model,
                "base_fingerprint": man.base_fingerprint,
                "adapter_name": man.adapter_name,
                "data_rows": str(man.data_rows),
                "data_sha256": man.data_sha256,
            }
            params |= flatten(man.settings.model_dump(mode="json"), "finetune.")
        if promotion := store.promotion(c, i):
            m["promoted"] = float(promotion.promoted)
        return m, series, params

    def _log_adapter(self, exp: str, run_id: str, i: int) -> str:
        """The checkpoint's adapter as a logged MLflow model (the merged weights stay in the store)."""
        man = self.store.manifest(self.campaign, i)
        model = self.client.create_logged_model(
            exp,
            name=man.adapter_name,
            source_run_id=run_id,
            model_type="peft-lora",
            tags={CAMPAIGN: self.campaign, ITERATION: str(i)},
            params={"base_model": man.base_model, "base_fingerprint": man.base_fingerprint},
        )
        adapter = self.store.checkpoint(self.campaign, i) / "adapter"
        self.client.log_model_artifacts(model.model_id, str(adapter))
        self.client.finalize_logged_model(model.model_id, "READY")
        return str(model.model_id)

    # -- the end -------------------------------------------------------------------------------------
    def _conclude(self, parent: str, runs: dict[int, str], tracked: Tracked) -> Tracked:
        store, c = self.store, self.campaign
        outcome = store.outcome(c)
        assert outcome is not None
        key = f"{outcome.finished_at}:{int(store.has(c, None, HTML))}"
        tags = self.client.get_run(parent).data.tags
        name = self.t.registered_model or c
        if tags.get(CONCLUDED) == key:
            return tracked.model_copy(
                update={"model_version": tags.get("bcomc.model_version"), "registered_model": name}
            )
        self._log(
            parent,
            metrics={
                "baseline_pass_rate": outcome.baseline_pass_rate,
                "final_pass_rate": outcome.final_pass_rate,
                "best_pass_rate": outcome.best_pass_rate,
                "best_iteration": outcome.best_iteration,
                "iterations": outcome.iterations,
                "cost_usd": outcome.cost_usd,
            },
        )
        self.client.set_tag(parent, "bcomc.status", outcome.status)
        for art in (a.OUTCOME, a.EFFECTIVENESS, a.EFFECTIVENESS_MD, HTML, MARKDOWN):
            if store.has(c, None, art):
                self.client.log_artifact(parent, str(store.path(c, None, art)))
        version = tags.get("bcomc.model_version")
        final = outcome.final_iteration
        if version is None and self.t.log_models and final > 0 and final in runs:
            version = self._register(name, runs[final], final)
            self.client.set_tag(parent, "bcomc.model_version", version)
        self.client.set_tag(parent, CONCLUDED, key)
        self.client.set_terminated(parent, "FINISHED")
        return tracked.model_copy(update={"model_version": version, "registered_model": name})

    def _register(self, name: str, run_id: str, iteration: int) -> str:
        from mlflow.exceptions import MlflowException

        model_id = self.client.get_run(run_id).data.tags.get(MODEL_ID)
        if model_id is None:
            raise ValueError(f"iteration {iteration} is final but its adapter was not logged as a model")
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(
                name, tags={CAMPAIGN: self.campaign}, description=f"Final models of campaign {self.campaign}"
            )
        mv = self.client.create_model_version(
            name,
            # where the adapter's files are (``models:/<id>`` would be resolved in the global tracking
            # store, not this client's)
            source=self.client.get_logged_model(model_id).artifact_location,
            run_id=run_id,
            model_id=model_id,
            tags={CAMPAIGN: self.campaign, ITERATION: str(iteration)},
            description=f"campaign {self.campaign}, iteration {iteration}: the model it left live",
        )
        return str(mv.version)

    def _log(
        self,
        run_id: str,
        params: dict[str, str] | None = None,
        metrics: dict[str, float] | None = None,
        series: dict[str, list[tuple[int, float]]] | None = None,
    ) -> None:
        """Params and metrics in batches within MLflow's limits (100 params, 1000 metrics a request)."""
        from mlflow.entities import Metric, Param

        now = int(time.time() * 1000)
        ps = [Param(_key(k), v) for k, v in (params or {}).items()]
        ms = [Metric(_key(k), float(v), now, 0) for k, v in (metrics or {}).items()]
        ms += [Metric(_key(k), float(v), now, step) for k, pts in (series or {}).items() for step, v in pts]
        for n in range(0, len(ps), 100):
            self.client.log_batch(run_id, params=ps[n : n + 100])
        for n in range(0, len(ms), 1000):
            self.client.log_batch(run_id, metrics=ms[n : n + 1000])
