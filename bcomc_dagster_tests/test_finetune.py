import json

import pytest
from safetensors import safe_open

from bcomc_dagster.training.chat import encode_pairs
from bcomc_dagster.training.finetune import TrainSettings, finetune
from bcomc_dagster.training.weights import weights_fingerprint

PAIRS = [(f"What is the port of svc{i}?", f"The port of svc{i} is {1000 + i}.") for i in range(12)]


def test_loss_is_on_answer_tokens_only(tiny_base):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_base)
    row = encode_pairs(tok, PAIRS[:1], 128)[0][0]
    answer_ids = [t for t in row["labels"] if t != -100]
    assert tok.decode(answer_ids) == PAIRS[0][1] + "<|end|>"
    assert row["labels"][0] == -100 and len(row["labels"]) == len(row["input_ids"])


def test_finetune_writes_adapter_merged_and_manifest(tiny_base, tmp_path):
    out = tmp_path / "ckpt"
    m = finetune(tiny_base, PAIRS, out, TrainSettings(epochs=8, learning_rate=5e-3, batch_size=4, threads=2), "c-it1")
    assert (out / "adapter" / "adapter_config.json").is_file()
    assert (out / "merged" / "config.json").is_file() and (out / "merged" / "tokenizer.json").is_file()
    saved = json.loads((out / "manifest.json").read_text())
    assert saved["data_rows"] == 12 and saved["adapter_name"] == "c-it1" and saved["steps"] == 24
    assert m.loss_curve[-1][1] < m.loss_curve[0][1]  # it learned something
    assert m.merged_fingerprint != m.base_fingerprint == weights_fingerprint(tiny_base)
    with safe_open(out / "adapter" / "adapter_model.safetensors", "pt") as f:
        names = list(f.keys())
        assert any("lora_A" in k for k in names) and not any("embed_tokens" in k for k in names)
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written folder left


def test_empty_dataset_is_refused(tiny_base, tmp_path):
    with pytest.raises(ValueError, match="dataset is empty"):
        finetune(tiny_base, [], tmp_path / "x", TrainSettings(), "n")
