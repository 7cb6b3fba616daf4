"""The embedded base model: a small Llama built from a config, with a byte-level BPE tokenizer trained
locally. Nothing is downloaded. It is built deterministically once per spec and cached on disk.

The tokenizer learns its vocabulary from the demo and prose suites' documentation (so names are a few
tokens long); the weights are random, so the model knows none of the facts: its baseline is near zero.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

from pydantic import BaseModel, ConfigDict

from bcomc_dagster.evals.suite import BUILTIN_DIR
from bcomc_dagster.files import atomic_dir, home

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

EMBEDDED_MODEL = "bcomc-tiny"
SPECIAL_TOKENS = ["<|pad|>", "<|end|>", "<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}<|end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# the same format as a Go template, for Ollama's Modelfile TEMPLATE
OLLAMA_TEMPLATE = "{{- range .Messages }}<|{{ .Role }}|>\n{{ .Content }}<|end|>\n{{ end }}<|assistant|>\n"
GENERIC_TEXT = """What is the default of this service? Which one does it use? Tell me, please.
How long, how many, how often, how big, at most, at least, by default. The answer is the value.
Where is it? When does it run? Name the tool. Can you tell me? I need to know. For the service,
the setting, the limit, the file, the port, the period, the size, the interval, the language."""


class BaseModelSpec(BaseModel):
    """Architecture of the embedded base model; changing any field builds (and caches) a new model."""

    model_config = ConfigDict(frozen=True)

    vocab_size: int = 2000
    hidden_size: int = 256
    intermediate_size: int = 512
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    max_position_embeddings: int = 256
    seed: int = 0


# the suites whose Markdown docs the tokenizer learns from: a fixed list, so that a suite added later (forms)
# leaves the embedded base, and every figure measured on it, as it was; its words are read as sub-words
TOKENIZER_SUITES = ("demo", "prose")


def _corpus() -> list[str]:
    texts = [GENERIC_TEXT]
    for suite in TOKENIZER_SUITES:
        for doc in sorted((BUILTIN_DIR / suite).glob("docs/*.md")):
            texts.append(doc.read_text())
    return texts


def spec_fingerprint(spec: BaseModelSpec) -> str:
    h = hashlib.sha256(spec.model_dump_json().encode())
    for text in _corpus():
        h.update(text.encode())
    return h.hexdigest()[:12]


def default_cache_dir() -> Path:
    return home() / "models"


def build_tokenizer(spec: BaseModelSpec) -> PreTrainedTokenizerFast:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=spec.vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]  # unannotated in transformers
        tokenizer_object=tok,
        pad_token="<|pad|>",
        eos_token="<|end|>",
        bos_token=None,
        chat_template=CHAT_TEMPLATE,
        model_max_length=spec.max_position_embeddings,
    )


def build_base_model(spec: BaseModelSpec | None = None, cache_dir: Path | None = None) -> Path:
    """Return the folder of the embedded base model, building it on first use (atomic rename)."""
    spec = spec or BaseModelSpec()
    cache_dir = Path(cache_dir or default_cache_dir()).resolve()  # servers take relative paths for hub ids
    target = cache_dir / f"{EMBEDDED_MODEL}-{spec_fingerprint(spec)}"
    if (target / "config.json").is_file():
        return target

    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tokenizer = build_tokenizer(spec)
    eos = cast(int, tokenizer.convert_tokens_to_ids("<|end|>"))  # one token in, one id out
    pad = cast(int, tokenizer.convert_tokens_to_ids("<|pad|>"))
    # torch_dtype: not in LlamaConfig's annotated fields, still taken (transformers' backward compatibility)
    config = LlamaConfig(  # type: ignore[call-arg]
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_attention_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=pad,
        tie_word_embeddings=False,
        torch_dtype="float32",
    )
    torch.manual_seed(spec.seed)
    model = LlamaForCausalLM(config)  # type: ignore[no-untyped-call]  # unannotated in transformers
    # GenerationConfig: unannotated in transformers
    model.generation_config = GenerationConfig(  # type: ignore[no-untyped-call]
        eos_token_id=eos, pad_token_id=pad, do_sample=False
    )
    with atomic_dir(target, done="config.json") as tmp:  # another process built it first: theirs is identical
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / "bcomc_base.json").write_text(json.dumps({"name": EMBEDDED_MODEL, "spec": spec.model_dump()}))
    return target
