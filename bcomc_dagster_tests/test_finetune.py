import json

import pytest
from safetensors import safe_open

from bcomc_dagster.training.chat import encode_pairs
from bcomc_dagster.training.finetune import finetune
from bcomc_dagster.training.manifest import TrainSettings
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
    m = finetune(
        tiny_base, PAIRS, out, TrainSettings(epochs=8, learning_rate=5e-3, batch_size=4, threads=2), "c-it1"
    )
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


def test_device_and_precision_follow_the_hardware(monkeypatch):
    import torch

    from bcomc_dagster.training.hardware import GPU_MIN_PARAMS, choose_device, choose_precision

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on CI's machine, also on a GPU host

    assert choose_device("auto", 10 * GPU_MIN_PARAMS) == "cpu"  # no CUDA here: auto trains on the CPU
    assert choose_precision("auto", "cpu") == "fp32" and choose_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="finetune.device: 'cuda' asked for, but torch sees no CUDA device"):
        choose_device("cuda", 1)
    with pytest.raises(ValueError, match="finetune.precision: 'fp16' needs a GPU"):
        choose_precision("fp16", "cpu")


def test_merged_weights_keep_the_bases_dtype_and_the_manifest_says_what_ran(tiny_base, tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    half = tmp_path / "bf16-base"
    AutoModelForCausalLM.from_pretrained(tiny_base, dtype=torch.bfloat16).save_pretrained(half)
    AutoTokenizer.from_pretrained(tiny_base).save_pretrained(half)
    tok = AutoTokenizer.from_pretrained(tiny_base)
    rows, _ = encode_pairs(tok, PAIRS, 128)
    cut = (
        max(r["labels"].index(next(t for t in r["labels"] if t != -100)) for r in rows) + 1
    )  # one answer token left
    m = finetune(half, PAIRS, tmp_path / "ck", TrainSettings(epochs=1, batch_size=4, max_length=cut), "c-it1")
    with safe_open(tmp_path / "ck" / "merged" / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}  # noqa: SIM118 - not a dict
    assert (
        m.merged_dtype == "bfloat16" and m.max_length == cut and m.truncated == len(PAIRS)
    )  # every pair is longer
    hw = m.hardware
    assert hw.device == "cpu" and hw.precision == "fp32" and hw.mfu is None
    assert hw.tokens == cut * len(PAIRS) and hw.tokens_per_second > 0 and hw.peak_memory_mb > 0


def test_packing_keeps_every_answer_label_masks_prompts_and_trains_like_padding(tiny_base, tmp_path):
    from transformers import AutoTokenizer, DataCollatorWithFlattening

    tok = AutoTokenizer.from_pretrained(tiny_base)
    rows, _ = encode_pairs(tok, PAIRS[:3], 128)
    batch = DataCollatorWithFlattening()(rows)
    assert batch["input_ids"].shape == (1, sum(len(r["input_ids"]) for r in rows))  # one sequence, no padding
    assert batch["labels"][0].tolist() == [t for r in rows for t in [-100, *r["labels"][1:]]]
    starts = [i for i, p in enumerate(batch["position_ids"][0].tolist()) if p == 0]
    assert starts == [0, len(rows[0]["input_ids"]), len(rows[0]["input_ids"]) + len(rows[1]["input_ids"])]
    answers = [tok.decode([t for t in r["labels"] if t != -100]) for r in rows]
    assert answers == [a + "<|end|>" for _, a in PAIRS[:3]]
    settings = TrainSettings(epochs=3, learning_rate=5e-3, batch_size=4, threads=2)
    packed = finetune(tiny_base, PAIRS, tmp_path / "packed", settings, "p")
    padded = finetune(
        tiny_base, PAIRS, tmp_path / "padded", settings.model_copy(update={"packing": False}), "q"
    )
    assert packed.hardware.tokens == padded.hardware.tokens
    assert packed.loss_curve[0][1] == pytest.approx(
        padded.loss_curve[0][1], rel=1e-3
    )  # the same loss, step for step
    assert packed.final_loss == pytest.approx(padded.final_loss, rel=0.05)


def test_a_step_floor_trains_a_small_dataset_longer(tiny_base, tmp_path):
    """12 rows, batch 4, 1 epoch: 3 steps; min_steps 10 makes it 10 (the budget follows the data)."""
    settings = TrainSettings(epochs=1, learning_rate=5e-3, batch_size=4, threads=2, min_steps=10)
    m = finetune(tiny_base, PAIRS, tmp_path / "ckpt", settings, "c-it1")
    assert m.steps == 10 and m.settings.min_steps == 10
    assert m.hardware is not None and m.hardware.tokens > 3 * sum(len(q) for q, _ in PAIRS) // 4
