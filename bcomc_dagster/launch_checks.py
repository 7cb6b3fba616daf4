"""What only a look at the disk or a server can tell of a campaign config: run once at launch and by
``bcomc validate``, never on a stored config (``config.py`` is the schema)."""

from __future__ import annotations

from pathlib import Path

from bcomc_dagster.config import CampaignConfig
from bcomc_dagster.datagen import lexicon
from bcomc_dagster.datagen.coordinator import check_docs as check
from bcomc_dagster.errors import InputError
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.registry import EMBEDDED
from bcomc_dagster.training import sources


def check_base(cfg: CampaignConfig) -> str:
    """What only a look at the disk or a server can tell: the weights are there and readable (an Ollama tag
    on its server, a GGUF architecture transformers reads, a Hub id in the cache while offline, a chat
    template). InputError names the field. Returns the trained source's kind. Run at launch and validate."""
    if cfg.base_weights:  # the tag is still what the baseline serves: it must be there
        try:
            sources.OllamaTag.show(cfg.model_name, cfg.ollama_url)
        except ValueError as e:
            raise InputError(f"model_name: {e} (got {cfg.model_name!r})") from None
    name, backend = cfg.trained_model
    field = "base_weights" if cfg.base_weights else "model_name"
    try:
        return sources.check(name, backend, cfg.ollama_url)
    except (ValueError, OSError, RuntimeError) as e:  # OSError, RuntimeError: a path the system cannot take
        raise InputError(f"{field}: {e} (got {name!r})") from None


def check_docs(cfg: CampaignConfig) -> None:
    """Every service's doc gives the configured generator something to ground pairs in (the extractive one
    needs facts it can read); InputError names the files. Run at launch and validate."""
    d = cfg.datagen
    check(
        load_suite(cfg.eval_suite), d.generator_backend == EMBEDDED, d.passage_tokens, d.prompting.fact_forms
    )
    if cfg.datagen.lexicon is not None:
        try:
            lexicon.load(Path(cfg.datagen.lexicon))
        except InputError as e:
            raise InputError(f"datagen.lexicon: {e}") from None
