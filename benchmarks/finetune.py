"""Throughput of the fine-tune stage: tokens/s, peak memory and MFU, old settings against new, per model size.

    python benchmarks/finetune.py                      # tiny and 135m on whatever device is present
    python benchmarks/finetune.py --sizes tiny,135m,1b --pairs 2000 --batch-size 64   # on a GPU host

Models are random-weight Llama configs (no download): ``tiny`` is the embedded bcomc-tiny's shape,
``135m`` SmolLM2-135M's, ``1b`` a 1.1 B Llama (TinyLlama's shape, 32 k vocabulary). The pairs are the demo
suite's questions with their reference answers, repeated to ``--pairs``. "before" is the stage as it was
(CPU, fp32, padded batches); "after" is the stage now (device and precision chosen by ``auto``, packed
batches). Both train on the same data with the same seed, so their loss curves are comparable.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bcomc_dagster.evals.suite import BUILTIN_DIR  # noqa: E402
from bcomc_dagster.training.base_model import BaseModelSpec, build_base_model  # noqa: E402
from bcomc_dagster.training.finetune import finetune  # noqa: E402
from bcomc_dagster.training.manifest import TrainSettings

SHAPES = {  # hidden, intermediate, layers, heads, kv heads, vocabulary
    "135m": (576, 1536, 30, 9, 3, 49152),
    "1b": (2048, 5632, 22, 32, 4, 32000),
}


def model_folder(size: str, root: Path) -> Path:
    tiny = build_base_model(BaseModelSpec(), root / "tiny")
    if size == "tiny":
        return tiny
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    hidden, inter, layers, heads, kv, vocab = SHAPES[size]
    tok = AutoTokenizer.from_pretrained(tiny)
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=inter,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=2048,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.eos_token_id,
    )
    torch.manual_seed(0)
    out = root / size
    LlamaForCausalLM(config).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def pairs(n: int) -> list[tuple[str, str]]:
    rows = [json.loads(x) for x in (BUILTIN_DIR / "demo" / "questions.jsonl").read_text().splitlines() if x]
    base = [(r["question"], f"The answer is {r['reference']}.") for r in rows]
    return [base[i % len(base)] for i in range(n)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="tiny,135m")
    p.add_argument("--pairs", type=int, default=128)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--batch-size", type=int, default=16, help="the new settings' batch (before: 16)")
    p.add_argument("--json", help="also write the rows to this file (make gpu-check reads it)")
    a = p.parse_args()
    rows = []
    data = pairs(a.pairs)
    runs = {
        "before": TrainSettings(
            epochs=a.epochs, batch_size=16, max_length=128, device="cpu", precision="fp32", packing=False
        ),
        "after": TrainSettings(epochs=a.epochs, batch_size=a.batch_size, max_length=1024),
    }
    print(f"{len(data)} pairs, {a.epochs:g} epoch(s)\n")
    print(
        "| model | settings | device | precision | batch | tokens/s | peak MB | MFU | seconds | final loss |"
    )
    print("|---|---|---|---|---:|---:|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes.split(","):
            folder = model_folder(size, Path(tmp))
            for label, settings in runs.items():
                m = finetune(folder, data, Path(tmp) / f"ck-{size}-{label}", settings, f"{size}-{label}")
                hw = m.hardware
                mfu = f"{hw.mfu:.1%}" if hw.mfu is not None else "n/a"
                print(
                    f"| {size} | {label} | {hw.device} | {hw.precision} | {settings.batch_size} | "
                    f"{hw.tokens_per_second:,.0f} | {hw.peak_memory_mb:,.0f} | {mfu} | "
                    f"{m.train_seconds:.1f} | {m.final_loss:.4f} |",
                    flush=True,
                )
                rows.append({"model": size, "settings": label, **hw.model_dump(), "seconds": m.train_seconds})
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
