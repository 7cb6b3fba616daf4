"""LoRA fine-tuning with peft on transformers, from the base model, on the cumulative dataset.

Each iteration retrains from the base on all data so far (LLM2LLM: this beats continuing from the last
checkpoint) and writes, atomically, one folder:

    adapter/        the peft adapter (what vLLM hot-swaps)
    merged/         base + adapter merged, safetensors + tokenizer (what a restart serves)
    manifest.json   base model, data rows and hash, weight fingerprints, loss curve
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import BaseModel, Field

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


class TrainSettings(BaseModel):
    rank: int = 16
    alpha: int | None = Field(None, description="LoRA alpha; default 2 x rank.")
    epochs: float = 3
    learning_rate: float = 2e-4
    batch_size: int = 16
    max_length: int = 128
    seed: int = 0
    threads: int | None = None


class Manifest(BaseModel):
    base_model: str
    base_fingerprint: str
    data_rows: int
    data_sha256: str
    adapter_name: str
    adapter_fingerprint: str
    merged_fingerprint: str
    settings: TrainSettings
    steps: int
    final_loss: float
    loss_curve: list[tuple[int, float]]
    train_seconds: float


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_fingerprint(folder: Path) -> str:
    """Hash of every safetensors file in a folder: the identity of a set of weights."""
    h = hashlib.sha256()
    files = sorted(Path(folder).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{folder}: no .safetensors weights")
    for f in files:
        h.update(f.name.encode())
        h.update(file_sha256(f).encode())
    return h.hexdigest()[:16]


def encode_pairs(tokenizer, pairs: Sequence[tuple[str, str]], max_length: int) -> list[dict]:
    """Chat-format each (question, answer); the loss sees only the answer tokens."""
    rows = []
    for question, answer in pairs:
        prompt = tokenizer.apply_chat_template(
            [{"role": "user", "content": question}], add_generation_prompt=True, tokenize=False
        )
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        answer_ids = tokenizer(answer + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
        ids = (prompt_ids + answer_ids)[:max_length]
        labels = ([-100] * len(prompt_ids) + answer_ids)[:max_length]
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels})
    return rows


def finetune(
    base_dir: Path,
    pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    settings: TrainSettings,
    adapter_name: str,
    on_log: Callable[[int, int, float], None] | None = None,
) -> Manifest:
    """Train a LoRA adapter on ``pairs`` and write adapter, merged weights and manifest to ``out_dir``."""
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        PrinterCallback,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    if not pairs:
        raise ValueError("finetune: the dataset is empty; nothing to train on")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    started = time.monotonic()
    torch.manual_seed(settings.seed)
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    lora = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha or 2 * settings.rank,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    dataset = encode_pairs(tokenizer, pairs, settings.max_length)
    steps_per_epoch = math.ceil(len(dataset) / settings.batch_size)
    total_steps = max(1, math.ceil(steps_per_epoch * settings.epochs))
    curve: list[tuple[int, float]] = []

    class _Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                curve.append((state.global_step, float(logs["loss"])))
                if on_log:
                    on_log(state.global_step, total_steps, float(logs["loss"]))

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}-"))
    try:
        args = TrainingArguments(
            output_dir=str(work / "trainer"),
            per_device_train_batch_size=settings.batch_size,
            num_train_epochs=settings.epochs,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="linear",
            warmup_steps=min(10, total_steps // 10),
            logging_steps=max(1, total_steps // 20),
            save_strategy="no",
            report_to=[],
            use_cpu=True,
            seed=settings.seed,
            data_seed=settings.seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100),
            callbacks=[_Log()],
        )
        trainer.remove_callback(PrinterCallback)  # progress goes through on_log, not stdout
        result = trainer.train()
        shutil.rmtree(work / "trainer", ignore_errors=True)

        model.save_pretrained(work / "adapter", safe_serialization=True)
        merged = model.merge_and_unload()
        merged.save_pretrained(work / "merged", safe_serialization=True)
        tokenizer.save_pretrained(work / "merged")
        tokenizer.save_pretrained(work / "adapter")

        data_hash = hashlib.sha256(json.dumps(list(pairs)).encode()).hexdigest()
        base_meta = base_dir / "bcomc_base.json"
        manifest = Manifest(
            base_model=json.loads(base_meta.read_text())["name"] if base_meta.is_file() else str(base_dir),
            base_fingerprint=weights_fingerprint(base_dir),
            data_rows=len(pairs),
            data_sha256=data_hash,
            adapter_name=adapter_name,
            adapter_fingerprint=weights_fingerprint(work / "adapter"),
            merged_fingerprint=weights_fingerprint(work / "merged"),
            settings=settings,
            steps=result.global_step,
            final_loss=curve[-1][1] if curve else float(result.training_loss),
            loss_curve=curve,
            train_seconds=round(time.monotonic() - started, 2),
        )
        (work / "manifest.json").write_text(manifest.model_dump_json(indent=2))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        work.rename(out_dir)
        return manifest
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
