"""The first minutes on a GPU host, as one command (``make gpu-check``): install the CUDA builds and prove
they work, measure the fine-tune stage on the embedded bases and a 1 B Llama-shaped model (random
weights), run one hot-swap campaign on smollm2-135m with vLLM's CUDA build, and print one table: card,
tokens/s, MFU, peak memory, hot-swap latency, pass rates.

    python benchmarks/gpu_check.py [--dry-run] [--skip-install] [--pairs 2000] [--batch-size 64]

``--dry-run`` prints the commands it would run and the table's columns, and runs nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = ROOT / ".venv" / "bin" / "python"
BCOMC = ROOT / ".venv" / "bin" / "bcomc"
COLUMNS = "| card | model | precision | tokens/s | MFU | peak memory | hot-swap latency | pass rates |"


def plan(work: Path, a: argparse.Namespace) -> list[tuple[str, list[str]]]:
    steps = []
    if not a.skip_install:
        steps.append(("install the CUDA builds and prove them", ["make", "-C", str(ROOT), "install-gpu"]))
    steps += [
        ("the install check", [str(PY), "-m", "bcomc_dagster.gpu"]),
        (
            "fine-tune throughput: tiny, 135m and a 1 B Llama shape",
            [
                str(PY),
                str(ROOT / "benchmarks" / "finetune.py"),
                "--sizes",
                "tiny,135m,1b",
                "--pairs",
                str(a.pairs),
                "--batch-size",
                str(a.batch_size),
                "--json",
                str(work / "finetune.json"),
            ],
        ),
        (
            "one hot-swap campaign on smollm2-135m (vLLM's CUDA build)",
            [str(BCOMC), "demo", "--model", "smollm2-135m", "--campaign", "gpu-check", "--json"],
        ),
    ]
    return steps


def table(work: Path, home: Path, outcome: dict[str, object]) -> str:
    rows = json.loads((work / "finetune.json").read_text())
    camp = home / "campaigns" / "gpu-check"
    swaps = [
        json.loads(p.read_text()).get("deploy_seconds")
        for p in sorted(camp.glob("*/deployment.json"))
        if p.parent.name != "0"
    ]
    latency = ", ".join(f"{s:.1f} s" for s in swaps if s is not None) or "n/a"
    rates = " → ".join(f"{v:.1f}" for v in dict(outcome.get("pass_rates") or {}).values())  # type: ignore[call-overload]
    lines = [COLUMNS, "|---|---|---|---:|---:|---:|---|---|"]
    for r in (r for r in rows if r["settings"] == "after"):
        mfu = f"{r['mfu']:.1%}" if r.get("mfu") is not None else "n/a"
        lines.append(
            f"| {r['device']} | {r['model']} | {r['precision']} | {r['tokens_per_second']:,.0f} | {mfu} | "
            f"{r['peak_memory_mb']:,.0f} MB | {latency if r['model'] == '135m' else ''} | "
            f"{rates if r['model'] == '135m' else ''} |"
        )
    return "\n".join(lines)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--skip-install", action="store_true")
    p.add_argument("--pairs", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=64)
    a = p.parse_args()
    work = (
        Path(tempfile.gettempdir(), "gpu-check-DIR")
        if a.dry_run
        else Path(tempfile.mkdtemp(prefix="gpu-check-"))
    )
    home = work / "home"
    steps = plan(work, a)
    if a.dry_run:
        for what, cmd in steps:
            print(f"# {what}\n{' '.join(cmd)}")
        print(f"\nthen one table:\n{COLUMNS}")
        return 0
    env = {**os.environ, "BCOMC_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    outcome: dict[str, object] = {}
    t0 = time.monotonic()
    for what, cmd in steps:
        print(f"[{time.monotonic() - t0:5.0f} s] {what}", flush=True)
        done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output="--json" in cmd[-1:], text=True)
        if done.returncode not in (0, 3):  # 3: the campaign stopped short of its target (still a figure)
            print(done.stdout or "", done.stderr or "", file=sys.stderr)
            print(f"gpu-check: {what} failed (exit {done.returncode})", file=sys.stderr)
            return 1
        if cmd[-1] == "--json":
            outcome = json.loads(done.stdout)
    print(f"\n{table(work, home, outcome)}\n\n{time.monotonic() - t0:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
