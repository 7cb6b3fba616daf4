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
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from bcomc_dagster import gpu
from bcomc_dagster.files import atomic_dir
from bcomc_dagster.training import child, hardware
from bcomc_dagster.training.chat import encode_pairs
from bcomc_dagster.training.manifest import (
    Manifest,
    TrainSettings,
    write_manifest,
)
from bcomc_dagster.training.weights import base_name, weights_fingerprint

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import PreTrainedModel, TrainerControl, TrainerState, TrainingArguments

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
WARMUP_STEPS, LOG_POINTS = (
    10,
    20,
)  # warmup: at most 10 steps (a tenth of short runs); about 20 loss points per run


def _context_length(base_dir: Path) -> int | None:
    config = json.loads((Path(base_dir) / "config.json").read_text())
    return cast("int | None", config.get("max_position_embeddings"))  # config.json: JSON


def _base_dtype(base_dir: Path) -> str:
    config = json.loads((Path(base_dir) / "config.json").read_text())
    return str(config.get("dtype") or config.get("torch_dtype") or "float32")


def finetune(
    base_dir: Path,
    pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    settings: TrainSettings,
    adapter_name: str,
    on_log: Callable[[int, int, float], None] | None = None,
    base_label: str | None = None,
) -> Manifest:
    """Train a LoRA adapter on ``pairs`` and write adapter, merged weights and manifest to ``out_dir``
    (``base_label``: the base's name in the manifest, e.g. the campaign's model_name).

    On a host with GPUs (and a device other than 'cpu') training runs in a child process that sees one
    card, leased for it (``gpu.Allocator``): no DataParallel by accident, another job's card left alone,
    and all its GPU memory freed when it exits, before a model server needs it."""
    if settings.device != "cpu" and not child.IN_CHILD and (found := gpu.cards()):
        args = (Path(base_dir), list(pairs), Path(out_dir), settings, adapter_name, base_label)
        result = child.run_on_card(found, "finetune", _on_card, args, on_log)
        return Manifest.model_validate_json(result)
    try:
        return _train(base_dir, pairs, out_dir, settings, adapter_name, on_log, base_label)
    finally:
        _free_gpu()  # in this process (a CUDA host without nvidia-smi): give a server the memory back


def _free_gpu() -> None:
    import gc
    import sys

    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_initialized():
        gc.collect()
        torch.cuda.empty_cache()


def _on_card(queue: Any, args: tuple[Any, ...]) -> None:
    """The spawned process's work (``training.child``): train, stream the loss lines, send the manifest."""
    base_dir, pairs, out_dir, settings, adapter_name, base_label = args
    manifest = _train(
        base_dir,
        pairs,
        out_dir,
        settings,
        adapter_name,
        lambda s, t, loss: queue.put(("log", s, t, loss)),
        base_label,
    )
    queue.put(("done", manifest.model_dump_json()))


def _train(
    base_dir: Path,
    pairs: Sequence[tuple[str, str]],
    out_dir: Path,
    settings: TrainSettings,
    adapter_name: str,
    on_log: Callable[[int, int, float], None] | None = None,
    base_label: str | None = None,
) -> Manifest:
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # unannotated in transformers
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        DataCollatorWithFlattening,
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
    if tokenizer.pad_token is None:  # padding is masked out of the loss: any token will do
        tokenizer.pad_token = tokenizer.eos_token
    base_dtype = _base_dtype(base_dir)
    # the base model, then (get_peft_model) the peft model wrapping it
    model: PreTrainedModel | PeftModel = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    params = sum(p.numel() for p in model.parameters())
    device = hardware.choose_device(settings.device, params)
    precision = hardware.choose_precision(settings.precision, device)
    if precision in (
        "bf16",
        "fp16",
    ):  # frozen weights in half precision; the LoRA weights train under autocast
        # transformers' decorator on PreTrainedModel.to hides torch's signature (a dtype is fine)
        model = model.to({"bf16": torch.bfloat16, "fp16": torch.float16}[precision])  # type: ignore[arg-type]
    lora = LoraConfig(
        r=settings.rank,
        lora_alpha=settings.alpha or 2 * settings.rank,
        lora_dropout=0.0,
        target_modules=LORA_TARGETS,
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    max_length = min(settings.max_length, _context_length(base_dir) or settings.max_length)
    dataset, truncated = encode_pairs(tokenizer, pairs, max_length)
    steps_per_epoch = math.ceil(len(dataset) / settings.batch_size)
    # the budget follows the data: at least min_steps optimizer steps, however few the rows
    by_epochs = max(1, math.ceil(steps_per_epoch * settings.epochs))
    total_steps = max(by_epochs, settings.min_steps)
    floored = total_steps > by_epochs  # the floor decides: max_steps; else epochs, as the Trainer counts
    epochs = total_steps / steps_per_epoch if floored else settings.epochs
    curve: list[tuple[int, float]] = []
    clock: dict[str, float] = {}  # the training loop's own time: from the end of its first step

    class _Log(TrainerCallback):
        def on_step_end(
            self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
        ) -> None:
            if state.global_step == 1:
                clock["first_step_end"] = time.monotonic()

        def on_log(
            self,
            args: TrainingArguments,
            state: TrainerState,
            control: TrainerControl,
            logs: dict[str, float] | None = None,
            **kw: Any,
        ) -> None:
            if logs and "loss" in logs:
                curve.append((state.global_step, float(logs["loss"])))
                if on_log:
                    on_log(state.global_step, total_steps, float(logs["loss"]))

    out_dir = Path(out_dir)
    with atomic_dir(out_dir, replace=True) as work:
        args = TrainingArguments(
            output_dir=str(work / "trainer"),
            per_device_train_batch_size=settings.batch_size,
            num_train_epochs=epochs,
            max_steps=total_steps if floored else -1,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="linear",
            warmup_steps=min(WARMUP_STEPS, total_steps // 10),
            logging_steps=max(1, total_steps // LOG_POINTS),
            save_strategy="no",
            report_to=[],
            use_cpu=device == "cpu",
            bf16=precision == "bf16" and device == "cuda",
            fp16=precision == "fp16",
            seed=settings.seed,
            data_seed=settings.seed,
            dataloader_num_workers=0,
            disable_tqdm=True,
            gradient_checkpointing=settings.gradient_checkpointing,
        )
        # packed: each batch is one sequence of its examples back to back, position ids restarting per example
        # (transformers masks attention across them), so no step computes on padding; the loss is the same
        # mean over answer tokens as with padded batches
        padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=-100)
        collator = DataCollatorWithFlattening() if settings.packing else padded  # type: ignore[no-untyped-call]
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=dataset,
            data_collator=collator,
            callbacks=[_Log()],
        )
        trainer.remove_callback(PrinterCallback)  # progress goes through on_log, not stdout
        if device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        t_train = time.monotonic()
        result = trainer.train()
        t_end = time.monotonic()
        # rows seen: whole passes, then the batches of the last pass (the last batch of a pass is short)
        passes, rest = divmod(result.global_step, steps_per_epoch)
        seen = passes * len(dataset) + min(rest * settings.batch_size, len(dataset))
        tokens = seen * sum(len(r["input_ids"]) for r in dataset) / len(dataset)
        # set-up and the first (warm-up) step left out of the rate: the steps after it, and their tokens
        steps = max(1, result.global_step)
        timed = (t_end - clock["first_step_end"], tokens * (steps - 1) / steps) if steps > 1 else None
        figures = hardware.hardware(
            device,
            precision,
            hardware.compute_params(model),
            sum(p.numel() for p in model.parameters() if p.requires_grad),
            tokens,
            timed or (t_end - t_train, tokens),
        )
        shutil.rmtree(work / "trainer", ignore_errors=True)

        # peft annotates save_directory as str; it takes any path (os.path.join)
        model.save_pretrained(work / "adapter", safe_serialization=True)  # type: ignore[arg-type]
        if precision in (
            "bf16",
            "fp16",
        ):  # merge into full-precision weights: a half-precision base would round them
            from peft import PeftModel

            full = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
            model = PeftModel.from_pretrained(full, work / "adapter")
        merged = model.merge_and_unload().to(
            getattr(torch, base_dtype, torch.float32)
        )  # then the base's dtype
        merged.save_pretrained(work / "merged", safe_serialization=True)
        tokenizer.save_pretrained(work / "merged")
        tokenizer.save_pretrained(work / "adapter")

        data_hash = hashlib.sha256(json.dumps(list(pairs)).encode()).hexdigest()
        manifest = Manifest(
            base_model=base_label or base_name(base_dir),
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
            truncated=truncated,
            max_length=max_length,
            merged_dtype=base_dtype,
            hardware=figures,
        )
        write_manifest(work, manifest)
    return manifest
