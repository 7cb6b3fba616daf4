"""The campaign launch schema (docs/architecture.md, section 4), typed and validated before anything runs.

Over 300 lines on purpose: it is the one schema a user reads, every field with its description and
bounds, and the rules across fields beside them; split up, the launch schema would have no single page.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bcomc_dagster.datagen import presets
from bcomc_dagster.datagen.passages import DEFAULT_BUDGET, MIN_BUDGET
from bcomc_dagster.datagen.quality import QualityConfig
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import resolve_suite_path
from bcomc_dagster.llm.cost import Price
from bcomc_dagster.llm.registry import ProviderSettings, backends
from bcomc_dagster.registries import ANALYZERS, DEPLOYERS, GENERATORS, JUDGES
from bcomc_dagster.registry import EMBEDDED
from bcomc_dagster.secrets import check_env_name, check_url, redact

DEMO_CONFIG = Path(__file__).resolve().parent / "suites" / "demo" / "campaign.json"
# `bcomc demo --model NAME`: the demo suite on each embedded base, with the settings that base needs
DEMO_CONFIGS = {"bcomc-tiny": DEMO_CONFIG, "smollm2-135m": DEMO_CONFIG.with_name("campaign-smollm2.json")}
# the same loop on documentation written as prose (Markdown, plain text, HTML), with the demo's settings
PROSE_DEMO_CONFIG = DEMO_CONFIG.parent.parent / "prose" / "campaign.json"
# five council forms (prose and field tables), generated as the form-qa dataset type
FORMS_DEMO_CONFIG = DEMO_CONFIG.parent.parent / "forms" / "campaign.json"

VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)


class _Strict(BaseModel):
    # strict: a number field takes numbers only (no true for 1, no "5" for 5); unknown keys are errors
    # allow_inf_nan: JSON's Infinity and NaN are refused (a stored config must re-read as written)
    model_config = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)


class PromptConfig(_Strict):
    """What the generators are told; a field left out (or empty) is the dataset type's preset."""

    domain: str | None = Field(None, description="What the data is about, e.g. 'cloud services'.")
    persona: str | None = Field(None, description="Who asks the questions, e.g. 'an SRE on call'.")
    doc_label: str | None = Field(
        None, description="What the documentation is called in prompts, e.g. 'service docs'."
    )
    question_styles: list[str] | None = Field(
        None,
        min_length=1,
        description="The styles an LLM generator asks in, one per call on a fact (e.g. 'a question "
        "while troubleshooting').",
    )
    answer_style: str | None = Field(
        None, description="What an LLM generator is told about the answer (its {answer_style})."
    )
    system_template: str | None = Field(
        None,
        description="An LLM generator's system prompt; placeholders "
        f"{sorted('{' + f + '}' for f in presets.SYSTEM_FIELDS)}. Required for dataset_type 'custom'.",
    )
    answer_template: str | None = Field(
        None,
        description="The embedded generator's answer; placeholders "
        f"{sorted('{' + f + '}' for f in presets.ANSWER_FIELDS)} ({{section}}: the heading of the passage; "
        "{where}: ' (Part 2, box 5)' for a form field, else empty). Required for dataset_type 'custom'.",
    )

    @field_validator("question_styles")
    @classmethod
    def _styles(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and not all(s.strip() for s in v):
            raise ValueError("expected non-empty styles")
        return v

    @field_validator("system_template")
    @classmethod
    def _system(cls, v: str | None) -> str | None:
        return v and presets.check_template(v, presets.SYSTEM_FIELDS)

    @field_validator("answer_template")
    @classmethod
    def _answer(cls, v: str | None) -> str | None:
        return v and presets.check_template(v, presets.ANSWER_FIELDS)


def rendered(description: str | None) -> str | None:
    """A field's description with the registries' names as they are now in its ``{backends}``,
    ``{deployers}``, ``{judges}``, ``{analyzers}`` and ``{generators}``: a part registered after this module
    was imported shows where the schema is rendered (the launchpad)."""
    if not description:
        return description
    names = {
        "backends": backends(),
        "deployers": DEPLOYERS.names(),
        "judges": JUDGES.names(),
        "analyzers": ANALYZERS.names(),
        "generators": GENERATORS.names(),
    }
    for key, value in names.items():
        description = description.replace("{" + key + "}", str(value))
    return description


def _backend(v: str) -> str:
    if v not in backends():
        raise ValueError(f"unknown backend {v!r}; expected one of {backends()}")
    return v


class DatagenConfig(_Strict):
    generator_model: str = Field(
        "extractive",
        description="Model that writes pairs (one call per pair): 'extractive' on the embedded "
        "backend, else a model id or alias of the backend (e.g. 'claude-3-5-haiku').",
    )
    generator_backend: str = Field("embedded", description="One of {backends}.")
    synthesizer_enabled: bool = Field(False, description="Run a synthesis pass with a stronger model.")
    synthesizer_model: str | None = Field(
        None, description="Model of the synthesis pass (e.g. 'claude-3-5-sonnet')."
    )
    synthesizer_backend: str | None = Field(
        None, description="Backend of the synthesizer; default: the generator's."
    )
    synthesis_batch_size: int = Field(
        10, ge=1, le=50, description="Raw pairs rewritten per synthesizer call."
    )
    examples_per_service: int = Field(
        50, ge=1, le=10_000, description="Pairs per targeted service per iteration."
    )
    dataset_type: str = Field(
        "qa-grounded",
        description="Shape of the generated data, a preset of prompt_config, question styles, answer "
        "style and the facts read: "
        + "; ".join(f"'{p.name}': {p.description}" for p in presets.PRESETS.values())
        + ".",
    )
    prompt_config: PromptConfig = Field(
        default_factory=PromptConfig, description="Overrides of the dataset type's preset."
    )
    max_retries: int = Field(2, ge=0, le=10, description="Retries of a failing service before it is skipped.")
    top_up_rounds: int = Field(
        3,
        ge=0,
        le=20,
        description="When a service's pairs that pass the quality filters (duplicates, contamination, "
        "validation, grounding) fall short of what was asked, ask again in new phrasings, facts and "
        "passages, up to this many more rounds; the stage reports asked, delivered and dropped by reason, "
        "and warns when a service got less than half.",
    )
    lexicon: str | None = Field(
        None,
        description="A TOML file that extends the embedded generator's lexicon (kinds of value, "
        "situations, synonyms and question templates; the shipped one is "
        "bcomc_dagster/datagen/lexicon.toml): its kinds are tried first, its questions added.",
    )
    concurrency: int = Field(8, ge=1, le=256, description="Worker calls in flight at once.")
    rehearsal_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Each iteration also generates this share of examples_per_service, in new "
        "phrasings, for every service already in the dataset that is not targeted, so that retraining "
        "from the base "
        "on a dataset that grows elsewhere does not forget it. 0 turns rehearsal off.",
    )
    passage_tokens: int = Field(
        DEFAULT_BUDGET,
        ge=MIN_BUDGET,
        le=8192,
        description="Most tokens (words and punctuation) of one passage, its "
        "heading path included: the docs are cut at sections, then at the largest unit that fits.",
    )
    min_services: int = Field(
        3, ge=1, le=1000, description="Fewest services targeted per iteration (when that many fail)."
    )
    max_services: int = Field(5, ge=1, le=1000, description="Most services targeted per iteration.")

    _backends = field_validator("generator_backend", "synthesizer_backend")(
        classmethod(lambda cls, v: v and _backend(v))
    )

    @field_validator("dataset_type")
    @classmethod
    def _dataset_type(cls, v: str) -> str:
        if v not in presets.PRESETS:
            raise ValueError(f"unknown dataset type {v!r}; expected one of {list(presets.DATASET_TYPES)}")
        return v

    @model_validator(mode="after")
    def _custom_templates(self) -> DatagenConfig:
        if self.dataset_type == "custom":
            missing = [
                f"datagen.prompt_config.{f}"
                for f in ("system_template", "answer_template")
                if not getattr(self.prompt_config, f)
            ]
            if missing:
                raise ValueError(f"{' and '.join(missing)}: required when dataset_type is 'custom'")
        return self

    @property
    def prompting(self) -> presets.Prompting:
        """The dataset type's preset with prompt_config's fields in its place."""
        return presets.prompting(self.dataset_type, **self.prompt_config.model_dump())

    @model_validator(mode="after")
    def _services_in_order(self) -> DatagenConfig:
        if self.min_services > self.max_services:
            raise ValueError(
                f"datagen.min_services ({self.min_services}) is above datagen.max_services "
                f"({self.max_services})"
            )
        return self

    @model_validator(mode="after")
    def _models_fit_backends(self) -> DatagenConfig:
        if self.generator_backend == EMBEDDED and self.generator_model not in GENERATORS:
            raise ValueError(
                f"datagen.generator_model: the embedded backend's generators are {GENERATORS.names()}"
            )
        if self.generator_backend != EMBEDDED and self.generator_model in GENERATORS:
            raise ValueError(
                f"datagen.generator_model: name a model of the {self.generator_backend!r} backend"
            )
        if self.synthesizer_enabled:
            if not self.synthesizer_model:
                raise ValueError("datagen.synthesizer_model: required when synthesizer_enabled is true")
            if (self.synthesizer_backend or self.generator_backend) == EMBEDDED:
                raise ValueError(
                    "datagen.synthesizer_backend: the synthesis pass needs a model backend, not 'embedded'"
                )
        return self

    @property
    def synthesizer(self) -> tuple[str, str] | None:
        """(backend, model) of the synthesis pass, when it runs."""
        if not self.synthesizer_enabled or not self.synthesizer_model:
            return None
        return self.synthesizer_backend or self.generator_backend, self.synthesizer_model


class FinetuneConfig(_Strict):
    rank: int = Field(
        16, ge=1, le=512, description=f"LoRA rank; one of {VLLM_LORA_RANKS} (what vLLM can serve)."
    )
    alpha: int | None = Field(None, ge=1, le=4096, description="LoRA alpha; default 2 x rank.")
    epochs: float = Field(
        4,
        gt=0,
        le=1000,
        description="Passes over the cumulative dataset. Default for a pretrained base; the embedded "
        "bcomc-tiny (random weights) defaults to 12.",
    )
    learning_rate: float = Field(
        1e-3,
        gt=0,
        lt=1,
        description="Peak learning rate (linear decay). Default for a pretrained base (the plan's 2e-4 "
        "teaches new facts too slowly at tens of pairs per service); bcomc-tiny defaults to 0.003.",
    )
    batch_size: int = Field(16, ge=1, le=4096)
    min_steps: int = Field(
        0,
        ge=0,
        le=1_000_000,
        description="Fewest optimizer steps: when `epochs` over a small dataset make fewer, training "
        "runs more passes until it makes this many, so that the training budget follows the data. "
        "0: epochs alone decide.",
    )
    threads: int | None = Field(
        None, ge=1, le=1024, description="CPU threads for training; default: torch's choice."
    )
    max_length: int = Field(
        1024,
        ge=16,
        le=131_072,
        description="Tokens per training example (prompt, chat template and answer); longer "
        "examples are cut, and counted in the checkpoint's metadata. Capped at the base model's context "
        "length.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto",
        description="Where to train: 'auto' takes CUDA when torch sees a GPU and the base has 20 M "
        "parameters or "
        "more (smaller models train faster on the CPU), else the CPU.",
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto",
        description="'auto': bf16 on a GPU that has it (else fp16), fp32 on the CPU. Merged weights keep "
        "the base's dtype.",
    )
    packing: bool = Field(
        True,
        description="Each batch as one sequence of its examples back to back (attention kept within each "
        "example): no compute on padding, the same loss as padded batches.",
    )
    gradient_checkpointing: bool = Field(
        False, description="Recompute activations in the backward pass: less memory, more time."
    )
    runner: Literal["in-process", "pipes"] = Field(
        "in-process",
        description="'pipes': train in a Dagster Pipes process (the `finetune_pipes` resource: a "
        "subprocess by default, a Kubernetes or ECS Pipes client for a GPU machine), its logs streamed "
        "into the run.",
    )

    @model_validator(mode="after")
    def _device_present(self) -> FinetuneConfig:
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError("finetune.precision: 'fp16' needs a GPU; use 'fp32' or 'bf16' with device 'cpu'")
        if (
            self.device == "cuda" and self.runner == "in-process"
        ):  # a Pipes runner may train on another machine
            import torch

            if not torch.cuda.is_available():
                raise ValueError(
                    "finetune.device: 'cuda', but torch sees no CUDA device here; use 'auto' or 'cpu', "
                    "or install the [gpu] extra on a GPU host"
                )
        return self

    @field_validator("rank")
    @classmethod
    def _servable_rank(cls, v: int) -> int:
        if v not in VLLM_LORA_RANKS:
            raise ValueError(f"expected one of {list(VLLM_LORA_RANKS)}")
        return v


class ServingConfig(_Strict):
    @model_validator(mode="before")
    @classmethod
    def _legacy(cls, data: Any) -> Any:
        """Stored configs from before the paired gate hold promote_margin (points): no longer a rule."""
        if isinstance(data, dict) and "promote_margin" in data:
            data = {k: v for k, v in data.items() if k != "promote_margin"}
        return data

    engine: Literal["auto", "vllm", "transformers"] = Field(
        "auto",
        description="Local server (model_backend 'local'): vLLM's CPU build where installed, else "
        "`transformers serve`.",
    )
    mode: Literal["hot-swap", "restart"] = Field(
        "hot-swap",
        description="vLLM: 'hot-swap' loads each LoRA adapter into the running server; 'restart' starts a "
        "new "
        "server on the merged checkpoint and stops the old one once the new one is verified.",
    )
    base_url: str | None = Field(
        None,
        description="A server you run (vLLM with runtime LoRA updating, or Ollama), e.g. "
        "http://gpu-host:8000. "
        "Default: vLLM is started here; Ollama at http://127.0.0.1:11434. Adapters are loaded by path, so a "
        "remote vLLM must see the artifact folder at the same path.",
    )
    api_key_env: str | None = Field(None, description="Environment variable holding the API key of base_url.")
    final_model: Literal["last", "best", "base"] = Field(
        "last",
        description="What is left live when the campaign ends: the last checkpoint, the best-scoring one, "
        "or the base.",
    )
    promote: Literal["always", "if_better"] = Field(
        "if_better",
        description="'if_better': a new checkpoint stays live only if its re-eval beats the live model's "
        "on the decided part of the suite and shows no regression on the same questions (live vs "
        "candidate, paired): no service loses more than promote_max_lost questions net, and neither the "
        "suite nor any service loses more questions than it gains beyond chance (an exact one-sided "
        "McNemar test at promote_alpha). Else the live model is served again and the checkpoint is "
        "recorded as rejected. 'always': every checkpoint stays live.",
    )
    promote_max_lost: int = Field(
        1,
        ge=0,
        le=10_000,
        description="Questions a service may lose net (lost minus gained) in a promoted checkpoint; one "
        "flipped question is noise on a service of four.",
    )
    promote_alpha: float = Field(
        0.05,
        gt=0,
        le=0.5,
        description="Significance of the paired test: a regression is rejected when losing that many "
        "more questions than gained has a chance below this under no change.",
    )
    rollback_on_failure: bool = Field(
        True,
        description="When a re-eval fails, serve the previous iteration's model again (a failed deploy "
        "never replaces it).",
    )
    ready_timeout_s: float = Field(
        300, gt=0, le=86_400, description="Deadline for a server to be ready, or a model to be listed."
    )
    max_tokens: int | None = Field(
        None,
        ge=1,
        le=32_768,
        description="Longest answer generated per eval question; default 48 for the embedded "
        "bcomc-tiny (its answers are one short sentence), 256 for any other base.",
    )
    max_model_len: int | None = Field(
        None,
        ge=64,
        le=1_048_576,
        description="Context length of a vLLM server started here; default: the base's, at most 4096.",
    )
    max_loras: int = Field(
        2, ge=1, le=64, description="Adapters a vLLM server started here holds at once (hot-swap)."
    )
    gpu_memory_utilization: float | None = Field(
        None,
        gt=0,
        le=1,
        description="vLLM's CUDA build: the share of the card's memory a server started here may take. "
        "Default: from the card and the base (weights, a KV cache as large, a tenth more), at most half "
        "the card (the fine-tune may share it), at most 0.45 in 'restart' mode (two servers, briefly), "
        "and never more than 90 % of what is free.",
    )
    eval_concurrency: int = Field(8, ge=1, le=256, description="Eval requests in flight at once.")
    request_timeout_s: float = Field(
        120,
        gt=0,
        le=86_400,
        description="Per-attempt timeout of a request to the served model (eval answers, deploy probes).",
    )
    request_retries: int = Field(
        3, ge=0, le=20, description="Retries of a failed request to the served model."
    )
    stop_at_end: bool = Field(True, description="Stop the servers this campaign started when it ends.")

    _url = field_validator("base_url")(classmethod(lambda cls, v: check_url(v)))
    _env = field_validator("api_key_env")(classmethod(lambda cls, v: check_env_name(v)))


class LLMConfig(_Strict):
    providers: dict[str, ProviderSettings] = Field(
        default_factory=dict, description="How to reach each provider: bedrock, anthropic, openai."
    )
    aliases: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="Short model names -> {provider: model id}; adds to the built-in table.",
    )
    prices: dict[str, Price] = Field(
        default_factory=dict,
        description="USD per 1M input/output tokens by alias or model id; adds to the plan's prices.",
    )
    cache: bool = Field(
        True, description="Keep answers on disk so a re-run pays only for calls that never finished."
    )

    @field_validator("providers")
    @classmethod
    def _known_providers(cls, v: dict[str, ProviderSettings]) -> dict[str, ProviderSettings]:
        for name in v:
            if name == EMBEDDED:
                raise ValueError("'embedded' needs no settings")
            _backend(name)
        return v


class TrackingConfig(_Strict):
    """MLflow tracking of a campaign: one experiment, a run for the campaign and one per iteration."""

    enabled: bool | None = Field(
        None,
        description="Track the campaign in MLflow (true with no uri: the local store). Default: on when "
        "uri is given or MLFLOW_TRACKING_URI is set at launch.",
    )
    uri: str | None = Field(
        None,
        description="MLflow tracking URI (http(s)://, sqlite:///, file:, postgresql://, ...). Default: "
        "MLFLOW_TRACKING_URI at launch, else a local store under the campaign home "
        "(sqlite:///$BCOMC_HOME/mlflow/mlflow.db).",
    )
    experiment: str | None = Field(None, description="Experiment name; default 'bcomc/<campaign>'.")
    registered_model: str | None = Field(
        None, description="Registered model the final model becomes a version of; default the campaign."
    )
    log_models: bool = Field(
        True,
        description="Log each promoted checkpoint's LoRA adapter as an MLflow model, and register the "
        "final model as a version.",
    )
    request_timeout_s: int = Field(
        30, ge=1, le=600, description="Timeout in seconds of one request to a tracking server."
    )
    request_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed request to a tracking server."
    )

    @field_validator("uri")
    @classmethod
    def _uri(cls, v: str | None) -> str | None:
        schemed = v is not None and ("://" in v or v.startswith(("file:", "databricks")))
        if v is not None and (not v.strip() or not schemed):
            raise ValueError(
                "expected an MLflow tracking URI (http://host:5000, sqlite:///mlflow.db, file:/path)"
            )
        return v

    def resolved(self, env_uri: str | None) -> TrackingConfig:
        """On or off, and where, as decided at launch: on when ``uri`` or MLFLOW_TRACKING_URI
        (``env_uri``) is set, unless ``enabled`` says otherwise; a relative sqlite or file path made
        absolute."""
        enabled = bool(self.uri or env_uri) if self.enabled is None else self.enabled
        uri = (self.uri or env_uri or None) if enabled else self.uri
        if uri and uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
            uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).expanduser().resolve())
        elif uri and uri.startswith("file:") and not uri.startswith("file:/"):
            uri = Path(uri.removeprefix("file:")).expanduser().resolve().as_uri()
        return self.model_copy(update={"enabled": enabled, "uri": uri})


class CampaignConfig(_Strict):
    model_name: str = Field(
        "bcomc-tiny",
        description="Base model: an embedded name ('bcomc-tiny', random weights; 'smollm2-135m', "
        "SmolLM2-135M-Instruct), a local model folder, a .gguf file, a Hugging Face Hub id (org/name), or "
        "with "
        "model_backend 'ollama' an Ollama tag (e.g. 'llama3.2:3b', evaluated as served; trained on its "
        "GGUF blob).",
    )
    model_backend: str = Field(
        "local",
        description="Where the model is served; one of {deployers} ('local': a server started "
        "here, vLLM where installed, else "
        "transformers serve; 'vllm': vLLM, started here or at serving.base_url; 'ollama': an Ollama server).",
    )
    base_weights: str | None = Field(
        None,
        description="Ollama only: the trainable weights of model_name when its GGUF blob cannot be read here "
        "(a folder, a .gguf file or a Hub id, e.g. 'meta-llama/Llama-3.2-3B-Instruct'); the baseline "
        "still serves model_name.",
    )
    eval_suite: str = Field("demo", description="A built-in suite name or a suite folder.")
    target_pass_rate: float = Field(
        80, gt=0, le=100, description="Stop once the pass rate (percent) reaches it."
    )
    max_iterations: int = Field(5, ge=1, le=100, description="Stop after this many iterations.")
    auto_advance: bool = Field(True, description="Let the sensor start the next iteration by itself.")
    judge: str = Field(
        "strict",
        description="Grader of answers; one of {judges} ('llm': judge_backend/judge_model).",
    )
    judge_backend: str = Field(EMBEDDED, description="Backend of the LLM judge; one of {backends}.")
    judge_model: str | None = Field(None, description="Model of the LLM judge.")
    judge_max_error_rate: float = Field(
        0.05, ge=0, le=1, description="Share of answers the judge may fail to grade before the eval fails."
    )
    analyzer_backend: str = Field(EMBEDDED, description="One of {backends}.")
    analyzer_model: str | None = Field(
        None,
        description="Model of the analyzer; on the embedded backend one of {analyzers} (the default).",
    )
    analyzer_retries: int = Field(
        2, ge=0, le=10, description="Corrections asked of the analyzer model before the fallback."
    )
    budget_usd: float | None = Field(
        None,
        gt=0,
        le=1_000_000,
        description="Campaign budget: the loop stops before an iteration that would exceed it.",
    )
    llm: LLMConfig = Field(
        default_factory=LLMConfig, description="Providers, model aliases, prices and the response cache."
    )
    held_out_fraction: float = Field(
        0,
        ge=0,
        lt=1,
        description="Share of each service's eval questions kept from the analyzer and only measured "
        "(reports show both parts' pass rates; teaching to the test shows up as a gap). The target "
        "applies to all questions.",
    )
    held_out_seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed of the held-out choice.")
    quality: QualityConfig = Field(
        default_factory=QualityConfig, description="Filters between generation and training."
    )
    datagen: DatagenConfig = Field(default_factory=DatagenConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    tracking: TrackingConfig = Field(
        default_factory=TrackingConfig, description="MLflow tracking (off unless turned on)."
    )

    @model_validator(mode="before")
    @classmethod
    def _base_defaults(cls, data: Any) -> Any:
        """A base model's own defaults (the random-weight bcomc-tiny needs far more epochs and a higher
        learning
        rate than a pretrained base) under what the user wrote."""
        from bcomc_dagster.training.sources import config_defaults

        if not isinstance(data, dict) or not isinstance(data.get("model_name", "bcomc-tiny"), str):
            return data
        return _merge(config_defaults(data.get("model_name", "bcomc-tiny")), data)

    @model_validator(mode="after")
    def _serving_fits_backend(self) -> CampaignConfig:
        sv = self.serving
        if sv.mode == "restart" and self.model_backend == "ollama":
            raise ValueError("serving.mode: 'restart' is a vLLM mode; Ollama creates a model per checkpoint")
        if sv.mode == "restart" and sv.base_url:
            raise ValueError("serving.mode: 'restart' starts vLLM here; with serving.base_url use 'hot-swap'")
        if sv.mode == "restart" and self.model_backend == "local" and sv.engine == "transformers":
            raise ValueError(
                "serving.mode: 'restart' is a vLLM mode; serving.engine 'transformers' serves by path"
            )
        if sv.mode == "restart" and (sv.gpu_memory_utilization or 0) > 0.45:
            raise ValueError(
                "serving.gpu_memory_utilization: at most 0.45 in 'restart' mode (two servers share the "
                "GPU while one replaces the other)"
            )
        if sv.base_url and self.model_backend == "local":
            raise ValueError(
                "serving.base_url: set model_backend to 'vllm' or 'ollama' to use a server you run"
            )
        return self

    @field_validator("model_backend")
    @classmethod
    def _known_model_backend(cls, v: str) -> str:
        return DEPLOYERS.check(v)

    @field_validator("judge")
    @classmethod
    def _known_judge(cls, v: str) -> str:
        return JUDGES.check(v)

    _backends = field_validator("analyzer_backend", "judge_backend")(classmethod(lambda cls, v: _backend(v)))

    @model_validator(mode="after")
    def _roles_have_models(self) -> CampaignConfig:
        if self.analyzer_backend != EMBEDDED and not self.analyzer_model:
            raise ValueError(f"analyzer_model: required with analyzer_backend {self.analyzer_backend!r}")
        if self.analyzer_backend == EMBEDDED and self.analyzer_model and self.analyzer_model not in ANALYZERS:
            raise ValueError(f"analyzer_model: the embedded backend's analyzers are {ANALYZERS.names()}")
        if self.judge == "llm" and (self.judge_backend == EMBEDDED or not self.judge_model):
            raise ValueError(
                "judge_backend, judge_model: the 'llm' judge needs a backend other than 'embedded' and a "
                "model"
            )
        if self.quality.grounding == "judge" and (self.judge_backend == EMBEDDED or not self.judge_model):
            raise ValueError(
                "quality.grounding: 'judge' needs judge_backend (not 'embedded') and judge_model"
            )
        return self

    @field_validator("eval_suite")
    @classmethod
    def _known_suite(cls, v: str) -> str:
        resolve_suite_path(v)  # raises, naming the built-in suites
        return v

    @model_validator(mode="after")
    def _known_model(self) -> CampaignConfig:
        """Which source each name is (its form alone); what the disk or a server says is ``check_base``'s."""
        from bcomc_dagster.training import sources

        for field, name, backend in (
            ("model_name", self.model_name, self.model_backend),
            ("base_weights", self.base_weights, "local"),
        ):
            if name is None:
                continue
            try:
                kind = sources.source_of(name, backend).kind
            except ValueError as e:
                raise ValueError(f"{field}: {e} (got {name!r})") from None
            if field == "base_weights" and kind == "ollama":
                raise ValueError("base_weights: a folder, a .gguf file or a Hub id, not an Ollama tag")
        if self.base_weights is not None and not sources.is_ollama_tag(self.model_name, self.model_backend):
            raise ValueError(
                "base_weights: only with an Ollama tag as model_name (elsewhere model_name is what is "
                "trained)"
            )
        return self

    @property
    def ollama_url(self) -> str:
        from bcomc_dagster.serving.ollama_api import OLLAMA_URL

        return self.serving.base_url or OLLAMA_URL

    def resolved(self) -> CampaignConfig:
        """The config with relative paths made absolute (from the current folder), as it is stored at launch:
        a later step may run in another folder, or on another machine (the daemon, a worker, a Pipes
        process)."""
        from bcomc_dagster.evals.suite import BUILTIN_DIR
        from bcomc_dagster.training import sources

        def absolute(name: str | None, backend: str) -> str | None:
            if name is None or sources.source_of(name, backend).kind not in ("folder", "gguf"):
                return name
            return str(Path(name).expanduser().resolve())

        suite = self.eval_suite
        if not (BUILTIN_DIR / suite / "questions.jsonl").is_file():
            suite = str(Path(suite).expanduser().resolve())
        lexicon = self.datagen.lexicon
        datagen = self.datagen.model_copy(
            update={"lexicon": str(Path(lexicon).expanduser().resolve()) if lexicon else None}
        )
        return self.model_copy(
            update={
                "eval_suite": suite,
                "model_name": absolute(self.model_name, self.model_backend),
                "base_weights": absolute(self.base_weights, "local"),
                "datagen": datagen,
                "tracking": self.tracking.resolved(os.environ.get("MLFLOW_TRACKING_URI")),
            }
        )

    @property
    def trained_model(self) -> tuple[str, str]:
        """(name, backend) of what is fine-tuned: base_weights where given, else model_name."""
        return (self.base_weights, "local") if self.base_weights else (self.model_name, self.model_backend)

    @property
    def eval_max_tokens(self) -> int:
        from bcomc_dagster.training.base_model import EMBEDDED_MODEL

        return self.serving.max_tokens or (48 if self.model_name == EMBEDDED_MODEL else 256)


def _merge(defaults: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for k, v in defaults.items():
        if k not in out:
            out[k] = copy.deepcopy(v)
        elif isinstance(v, dict) and isinstance(out[k], dict):
            out[k] = _merge(v, out[k])
    return out


def _describe(e: ValidationError, source: str) -> str:
    lines = []
    for err in e.errors():
        msg = err["msg"].removeprefix("Value error, ")
        if not err["loc"]:  # a rule across fields: the message names them
            lines.append(f"  {msg}")
            continue
        field = ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        got = (
            ""
            if err["type"] in ("missing", "extra_forbidden") or isinstance(err.get("input"), dict)
            else f" (got {redact(repr(err.get('input')))})"
        )
        lines.append(
            f"  {msg}{got}" if msg.startswith(f"{field}.") else f"  {field}: {msg}{got}"
        )  # a rule across fields names them
    return f"{source}: invalid campaign config\n" + "\n".join(lines)


def parse_config(data: dict[str, Any] | str, source: str = "campaign config") -> CampaignConfig:
    """Validate a config (a dict or JSON text); InputError names every bad field and what was expected."""
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except json.JSONDecodeError as e:
            raise InputError(f"{source}: not valid JSON ({e})") from e
        except RecursionError:
            raise InputError(
                f"{source}: JSON nested too deeply; a campaign config is a few levels deep"
            ) from None
    if not isinstance(data, dict):
        raise InputError(f"{source}: expected a JSON object, got {type(data).__name__}")
    try:
        return CampaignConfig.model_validate(data)
    except ValidationError as e:
        raise InputError(_describe(e, source)) from e
    except InputError as e:  # raised inside a validator (unknown suite)
        raise InputError(f"{source}: invalid campaign config\n  {e}") from e


def load_config(path: str | Path) -> CampaignConfig:
    """A config file: a regular file of UTF-8 JSON (a byte-order mark allowed)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such config file")
    if not path.is_file():
        raise InputError(f"{path}: not a regular file; expected a JSON config file")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(
            f"{path}: not UTF-8 text (byte {e.start}: {e.reason}); save the config as UTF-8"
        ) from None
    return parse_config(text, source=str(path))
