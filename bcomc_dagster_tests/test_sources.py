"""Base models from every source: embedded names, folders, GGUF files, a Hub cache built here (offline),
and Ollama tags resolved through a loopback server that speaks Ollama's API. Nothing is downloaded."""

import json
import shutil
from pathlib import Path

import pytest

from bcomc_dagster import cli
from bcomc_dagster.config import parse_config
from bcomc_dagster.errors import InputError
from bcomc_dagster.launch_checks import check_base
from bcomc_dagster.serving.ollama import parse_parameters
from bcomc_dagster.training import from_gguf, sources
from bcomc_dagster.training.chat import encode_pairs, end_of_turn
from bcomc_dagster.training.weights import weights_fingerprint

from .conftest import MODELS
from .fakes import serve
from .fakes.ollama import FakeOllama

SMOL_TEMPLATE = "{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n{{ end }}..."


@pytest.fixture(scope="session")
def smollm2() -> Path:
    return sources.resolve("smollm2-135m", "local", MODELS)


@pytest.fixture
def ollama(tmp_path):
    fake = FakeOllama(tmp_path / "ollama")
    fake.pull("smollm2:135m", sources._smollm2_gguf(), SMOL_TEMPLATE, ["<|im_start|>", "<|im_end|>"])
    with serve(fake.app) as url:
        yield fake, url


def test_smollm2_converts_to_plain_safetensors_that_end_turns_on_the_templates_token(smollm2):
    from transformers import AutoTokenizer

    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config and config["architectures"] == ["LlamaForCausalLM"]
    tok = AutoTokenizer.from_pretrained(smollm2)
    eot = tok.convert_tokens_to_ids("<|im_end|>")
    assert end_of_turn(tok) == "<|im_end|>" == tok.eos_token and tok.pad_token is not None
    assert eot in json.loads((smollm2 / "generation_config.json").read_text())["eos_token_id"]
    assert json.loads((smollm2 / "bcomc_base.json").read_text())["gguf"] == str(
        sources._smollm2_gguf().resolve()
    )
    built = (smollm2 / "model.safetensors").stat().st_mtime_ns
    assert sources.resolve("smollm2-135m", "local", MODELS) == smollm2  # cached: the same folder, not rebuilt
    assert (smollm2 / "model.safetensors").stat().st_mtime_ns == built


def test_the_end_of_a_turn_comes_from_the_template_not_the_eos_token(smollm2):
    """transformers 5.17 converts SmolLM2's tokenizer with eos <|im_start|>; training still ends on im_end."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm2)
    tok.eos_token = "<|im_start|>"  # what 5.17 gives
    assert end_of_turn(tok) == "<|im_end|>"
    (row,), truncated = encode_pairs(tok, [("What is the port?", "The port is 6120.")], 512)
    answer = [t for t in row["labels"] if t != -100]
    assert tok.decode(answer) == "The port is 6120.<|im_end|>" and truncated == 0
    assert tok.decode(row["input_ids"][: row["labels"].index(answer[0])]).endswith("<|im_start|>assistant\n")
    (_, n) = encode_pairs(tok, [("What is the port?", "The port is 6120. " * 40)], 64)
    assert n == 1  # cut examples are counted


def test_unknown_names_and_bad_folders_name_the_field_and_the_options(tiny_base, tmp_path):
    with pytest.raises(
        InputError, match=r"model_name: expected an embedded model \('bcomc-tiny', 'smollm2-135m'\)"
    ):
        parse_config({"model_name": "nonsense"})
    (tmp_path / "m").mkdir()
    with pytest.raises(InputError, match=r"model_name: .*/m: not a model folder \(no config.json\)"):
        check_base(parse_config({"model_name": str(tmp_path / "m")}))
    (tmp_path / "m" / "config.json").write_text("{}")
    with pytest.raises(InputError, match=r"no \*.safetensors weights"):
        check_base(parse_config({"model_name": str(tmp_path / "m")}))
    shutil.copy(tiny_base / "model.safetensors", tmp_path / "m")
    with pytest.raises(InputError, match=r"no chat template .* an instruct model's folder is needed"):
        check_base(parse_config({"model_name": str(tmp_path / "m")}))
    with pytest.raises(InputError, match=r"base_weights: only with an Ollama tag as model_name"):
        parse_config({"base_weights": "smollm2-135m"})
    for odd in ("~nosuchuser1234/m", "/" + "x" * 300):  # paths the system cannot take: still a clear error
        with pytest.raises(InputError, match=r"model_name: "):
            check_base(parse_config({"model_name": odd}))


def test_gguf_files_of_an_architecture_transformers_cannot_read_are_refused_at_validate(tmp_path):
    import gguf
    import numpy as np

    path = tmp_path / "odd.gguf"
    w = gguf.GGUFWriter(path, "rwkv6")
    w.add_tensor("token_embd.weight", np.zeros((4, 4), dtype=np.float32))
    w.write_header_to_file(), w.write_kv_data_to_file(), w.write_tensors_to_file()
    w.close()
    with pytest.raises(
        InputError,
        match=r"model_name: .*GGUF architecture 'rwkv6' cannot be read by transformers \(it reads .*llama",
    ):
        check_base(parse_config({"model_name": str(path)}))
    (tmp_path / "junk.gguf").write_bytes(b"not gguf at all")
    with pytest.raises(InputError, match=r"not a readable GGUF file"):
        check_base(parse_config({"model_name": str(tmp_path / "junk.gguf")}))


def _hub_cache(root: Path, repo: str, folder: Path) -> Path:
    """The layout huggingface_hub keeps: refs/main names a snapshot folder holding the files."""
    entry = root / f"models--{repo.replace('/', '--')}"
    snapshot = entry / "snapshots" / ("0" * 40)
    shutil.copytree(folder, snapshot)
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text("0" * 40)
    return snapshot


def test_a_hub_id_loads_from_an_offline_cache_and_trains(tiny_base, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from bcomc_dagster.training.finetune import finetune
    from bcomc_dagster.training.manifest import TrainSettings

    assert constants.HF_HUB_OFFLINE  # conftest: no test reaches the Hub
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    snapshot = _hub_cache(tmp_path / "hub", "bcomc-test/tiny-llama", tiny_base)
    cfg = parse_config({"model_name": "bcomc-test/tiny-llama"})
    assert check_base(cfg) == "hub"
    folder = sources.resolve("bcomc-test/tiny-llama", "local", tmp_path / "models")
    assert folder == snapshot and weights_fingerprint(folder) == weights_fingerprint(tiny_base)
    m = finetune(
        folder,
        [("What is the port of a?", "6120.")] * 4,
        tmp_path / "ck",
        TrainSettings(epochs=1, batch_size=4),
        "h-it1",
    )
    assert m.base_fingerprint == weights_fingerprint(tiny_base) and m.steps == 1
    with pytest.raises(
        InputError,
        match=r"model_name: Hub id 'bcomc-test/absent' is not in the Hugging Face cache .* HF_HUB_OFFLINE=1",
    ):
        check_base(parse_config({"model_name": "bcomc-test/absent"}))


def test_the_plans_launch_config_validates_except_for_an_unreachable_ollama(tmp_path, write_suite, capsys):
    suite = write_suite(
        {"svc": "# Svc\n- default port: 6120\n"},
        [{"id": "q1", "service": "svc", "question": "Port?", "reference": "6120"}],
    )
    plan = {
        "model_name": "llama3.2:3b",
        "model_backend": "ollama",
        "eval_suite": str(suite),
        "target_pass_rate": 80,
        "max_iterations": 5,
        "serving": {"base_url": "http://127.0.0.1:9"},
    }
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    assert cli.main(["validate", str(path)]) == cli.EXIT_INPUT
    assert "model_name: no Ollama server answered at http://127.0.0.1:9" in capsys.readouterr().err


def test_an_ollama_tag_resolves_to_its_gguf_blob(ollama, smollm2, tmp_path, capsys):
    fake, url = ollama
    cfg = parse_config(
        {"model_name": "smollm2:135m", "model_backend": "ollama", "serving": {"base_url": url}}
    )
    assert check_base(cfg) == "ollama" and ("POST", "/api/show") in fake.requests
    folder = sources.resolve(
        "smollm2:135m", "ollama", tmp_path / "models", url
    )  # converted from the blob itself
    assert weights_fingerprint(folder) == weights_fingerprint(
        smollm2
    )  # the same GGUF content: the same weights
    assert json.loads((folder / "bcomc_base.json").read_text())["gguf"] == str(fake.pulled["smollm2:135m"])
    for absent, why in (("llama3.2:3b", r"has no model 'llama3.2:3b'; `ollama pull llama3.2:3b` first"),):
        with pytest.raises(InputError, match=why):
            check_base(
                parse_config({"model_name": absent, "model_backend": "ollama", "serving": {"base_url": url}})
            )
    # a blob this machine cannot read (the server runs elsewhere): say so, and how to name the weights
    fake.pulled["smollm2:135m"] = Path("/nonexistent/blobs/sha256-0123")
    with pytest.raises(
        InputError,
        match=r"serves 'smollm2:135m' from /nonexistent/blobs/sha256-0123, which this machine cannot read; "
        r"name the trainable weights with base_weights",
    ):
        check_base(cfg)
    with_weights = parse_config({**cfg.model_dump(), "base_weights": "smollm2-135m"})
    assert check_base(with_weights) == "embedded" and with_weights.trained_model == ("smollm2-135m", "local")


def test_ollama_parameters_text_becomes_create_parameters():
    text = 'stop                           "<|im_start|>"\nstop "<|im_end|>"\ntemperature 0.2\nnum_ctx 4096'
    assert parse_parameters(text) == {
        "stop": ["<|im_start|>", "<|im_end|>"],
        "temperature": 0.2,
        "num_ctx": 4096,
    }
    # Go's %q quoting: escapes decoded; stop values stay strings; a broken line is kept, not a crash
    assert parse_parameters('stop "\\n"\nstop "true"\nstop "oops')["stop"] == ["\n", "true", '"oops']


def test_converted_gguf_is_keyed_by_content(tmp_path, smollm2):
    copy = tmp_path / "renamed.gguf"
    shutil.copy(sources._smollm2_gguf(), copy)
    assert from_gguf.convert(copy, MODELS) == smollm2
    # an Ollama blob's name is its digest: taken from the name, the file is not hashed again
    blob = tmp_path / f"sha256-{json.loads((smollm2 / 'bcomc_base.json').read_text())['gguf_sha256']}"
    blob.symlink_to(copy)
    assert from_gguf.content_sha256(blob, tmp_path / "memo") == blob.name.removeprefix("sha256-")
    assert not (tmp_path / "memo").exists()
