"""Deploy time by mode (vLLM hot-swap vs restart) and re-eval throughput through an adapter vs the base.

    .venv/bin/python benchmarks/deploy.py [--repeats 3]

Prints figures; it asserts nothing. Uses the embedded base model and the demo suite on the CPU here
(or CUDA where vLLM finds a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from bcomc_dagster.evals.judge import ReferenceJudge
from bcomc_dagster.evals.runner import run_suite
from bcomc_dagster.evals.suite import load_suite
from bcomc_dagster.serving import process
from bcomc_dagster.serving.server import ServerDeployer
from bcomc_dagster.training.base_model import build_base_model
from bcomc_dagster.training.finetune import finetune
from bcomc_dagster.training.manifest import TrainSettings
from bcomc_dagster.training.weights import weights_fingerprint


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()
    suite = load_suite("demo")
    pairs = [(q.question, q.reference) for q in suite.questions]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        base = build_base_model(cache_dir=Path(".bcomc/models"))
        ckpt = tmp / "ckpt"
        manifest = finetune(base, pairs, ckpt, TrainSettings(epochs=4, learning_rate=3e-3), "bench-it0")
        rows = []

        def evaluate(dep) -> float:
            t = time.monotonic()
            run_suite(suite, dep.endpoint, dep.served_model, ReferenceJudge(), args.concurrency)
            return len(suite.questions) / (time.monotonic() - t)

        for mode in ("hot-swap", "restart"):
            d = ServerDeployer(tmp / mode, engine=process.VLLM_ENGINE, mode=mode, ready_timeout_s=600)
            try:
                t = time.monotonic()
                base_dep = d.ensure_base(base, "bcomc-tiny", weights_fingerprint(base))
                start_s = time.monotonic() - t
                base_qps = evaluate(base_dep)
                times, qps = [], []
                for i in range(1, args.repeats + 1):
                    t = time.monotonic()
                    dep = d.deploy(ckpt, manifest.model_copy(update={"adapter_name": f"bench-it{i}"}), i)
                    times.append(time.monotonic() - t)
                    qps.append(evaluate(dep))
                rows.append((mode, start_s, times, base_qps, statistics.median(qps)))
            finally:
                d.stop()
    print(
        f"\nvLLM deploy benchmark (engine {process.VLLM_ENGINE}, {args.repeats} deploys per mode, "
        f"{len(suite.questions)} eval questions, concurrency {args.concurrency})"
    )
    print(
        f"{'mode':10} {'base start s':>12} {'deploy s (median)':>18} {'deploy s (max)':>15} "
        f"{'eval q/s base':>14} {'eval q/s new':>13}"
    )
    for mode, start_s, times, base_qps, new_qps in rows:
        print(
            f"{mode:10} {start_s:12.1f} {statistics.median(times):18.2f} {max(times):15.2f} "
            f"{base_qps:14.1f} {new_qps:13.1f}"
        )
    print("deploy s includes verification: the weights fingerprint, /v1/models, and 3 probe prompts.")


if __name__ == "__main__":
    main()
