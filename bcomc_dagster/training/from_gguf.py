"""GGUF files (Ollama's blobs, llama.cpp's models) as trainable Hugging Face folders.

transformers reads a GGUF file's weights (de-quantised), its tokenizer and its chat template. The
result is saved once as plain safetensors under ``models/gguf-<sha>``, keyed by the file's content, so
every stage and every campaign that names the same file shares it. The saved tokenizer and generation
config end turns on the chat template's end-of-turn token (see ``chat.end_of_turn``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bcomc_dagster.files import atomic_dir
from bcomc_dagster.training.weights import BASE_META, file_sha256


def architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF file; ValueError if it is not a GGUF file."""
    from gguf import GGUFReader

    try:
        field = GGUFReader(path).fields["general.architecture"]
    except (KeyError, ValueError, OSError) as e:
        raise ValueError(f"{path}: not a readable GGUF file ({e})") from e
    return bytes(field.parts[field.data[0]]).decode()


def supported_architectures() -> list[str]:
    from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

    return sorted(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))


def check(path: Path) -> str:
    """The file's architecture, if transformers can read it from GGUF; ValueError naming the options."""
    arch = architecture(path)
    if arch not in supported_architectures():
        raise ValueError(
            f"{path}: GGUF architecture {arch!r} cannot be read by transformers (it reads "
            f"{', '.join(supported_architectures())}); name the weights as a Hugging Face folder or Hub "
            "id instead"
        )
    return arch


@contextlib.contextmanager
def gguf_named(path: Path) -> Iterator[Path]:
    """``path`` under a name ending in ``.gguf``, which transformers needs to read it as GGUF: Ollama's blobs
    are named ``sha256-<digest>``."""
    if path.suffix == ".gguf":
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="bcomc-gguf-") as tmp:
        link = Path(tmp) / "model.gguf"
        link.symlink_to(path)
        yield link


CONVERTER_VERSION = 1  # part of the cache key: a change to the conversion converts again
OLLAMA_BLOB = re.compile(r"sha256-([0-9a-f]{64})")  # Ollama names a blob by its content's digest


def content_sha256(path: Path, cache_dir: Path) -> str:
    """The file's SHA-256: from an Ollama blob's name, else hashed once per (path, size, mtime) and kept."""
    if m := OLLAMA_BLOB.fullmatch(path.name):
        return m.group(1)
    st = path.stat()
    key = hashlib.sha256(f"{path}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:24]
    memo = Path(cache_dir) / "gguf-hashes" / key
    if memo.is_file():
        return memo.read_text().strip()
    digest = file_sha256(path)
    memo.parent.mkdir(parents=True, exist_ok=True)
    memo.write_text(digest)
    return digest


def convert(path: Path, cache_dir: Path) -> Path:
    """The folder of ``path``'s weights as safetensors (float32), converting on first use (atomic rename).
    Keyed by the file's content, so every name for one file (an embedded name, an Ollama tag, a path)
    shares one folder; its ``bcomc_base.json`` records the file it was made from."""
    path = Path(path).resolve()
    sha = content_sha256(path, cache_dir)
    target = Path(cache_dir).resolve() / f"gguf-{sha[:16]}-v{CONVERTER_VERSION}"
    if (target / "config.json").is_file():
        return target
    check(path)

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from bcomc_dagster.training.chat import end_of_turn

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
    with gguf_named(path) as named, contextlib.redirect_stderr(io.StringIO()):  # a bar no setting turns off
        tokenizer = AutoTokenizer.from_pretrained(named.parent, gguf_file=named.name)
        model = AutoModelForCausalLM.from_pretrained(named.parent, gguf_file=named.name, dtype=torch.float32)
    if hasattr(model.config, "quantization_config"):  # the weights are de-quantised now: plain safetensors
        del model.config.quantization_config
    model.hf_quantizer = None  # type: ignore[assignment]  # undeclared: torch types it Tensor | Module
    eot = end_of_turn(tokenizer)
    eot_id = tokenizer.convert_tokens_to_ids(eot)
    stops = sorted({eot_id, *([tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else [])})
    tokenizer.eos_token = eot
    if tokenizer.pad_token is None:
        tokenizer.pad_token = eot
    model.config.eos_token_id = eot_id
    model.config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = stops
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    # another process that converted it first: theirs is kept (it holds config.json)
    with atomic_dir(target, done="config.json") as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        meta = {"name": path.name, "gguf": str(path), "gguf_sha256": sha, "end_of_turn": eot}
        (tmp / BASE_META).write_text(json.dumps(meta, indent=2))
    return target
