"""Input limits: ``bcomc validate`` on a large generated suite, in a child process, with its wall time and
peak memory (the child's maximum resident set).

    python benchmarks/inputs.py [--questions 100000] [--services 10]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_suite(root: Path, questions: int, services: int) -> Path:
    (root / "docs").mkdir(parents=True)
    for s in range(services):
        (root / "docs" / f"svc{s}.md").write_text(f"# Svc{s}\n\n## Reference\n- Default port: {6000 + s}\n")
    with (root / "questions.jsonl").open("w") as f:
        for i in range(questions):
            s = i % services
            q = {
                "id": f"q{i}",
                "service": f"svc{s}",
                "question": f"Port of Svc{s}?",
                "reference": str(6000 + s),
            }
            f.write(json.dumps(q) + "\n")
    config = root / "campaign.json"
    config.write_text(
        json.dumps({"model_name": "bcomc-tiny", "model_backend": "local", "eval_suite": str(root)})
    )
    return config


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--questions", type=int, default=100_000)
    p.add_argument("--services", type=int, default=10)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_suite(Path(tmp) / "suite", args.questions, args.services)
        t0 = time.monotonic()
        done = subprocess.run(
            [sys.executable, "-m", "bcomc_dagster.cli", "validate", str(config)],
            capture_output=True,
            text=True,
        )
        wall = time.monotonic() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(done.stdout.strip() or done.stderr.strip())
    print(
        f"| validate, {args.questions:,} questions | {wall:.1f} s | {peak_mb:.0f} MB peak | "
        f"exit {done.returncode} |"
    )
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
