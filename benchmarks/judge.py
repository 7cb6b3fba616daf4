"""How far the judges agree with hand-labelled verdicts: ``python benchmarks/judge.py [--judge NAME]``.

The cases (``benchmarks/judge_cases.jsonl``) are answers to the demo and prose suites' questions, each
labelled correct, incorrect or not_attempted by a person; only correct passes. For each judge that runs
here (the embedded ones: ``strict``, ``reference``) it prints agreement on pass/fail, the false-pass rate
(share of the answers labelled failing that the judge passed), the false-fail rate (share of those
labelled correct that it failed), Cohen's kappa, the agreement on the three grades, and the cases it gets
wrong. ``--json`` prints the figures as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from bcomc_dagster.evals.judge import Judge, ReferenceJudge, StrictJudge
from bcomc_dagster.evals.suite import Question, load_suite

CASES = Path(__file__).resolve().parent / "judge_cases.jsonl"
SUITES = ("demo", "prose")
JUDGES: dict[str, Judge] = {
    "strict": StrictJudge(q for name in SUITES for q in load_suite(name).questions),
    "reference": ReferenceJudge(),
}


@dataclass(frozen=True)
class Case:
    question: Question
    answer: str
    label: str
    kind: str
    source: str


def load_cases(path: Path = CASES) -> list[Case]:
    suites = {name: {q.id: q for q in load_suite(name).questions} for name in SUITES}
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            c = json.loads(line)
            q = suites[c["suite"]][c["id"]]
            out.append(Case(q, c["answer"], c["label"], c["kind"], c.get("source", "written")))
    return out


def kappa(pairs: list[tuple[bool, bool]]) -> float:
    """Cohen's kappa of two raters' pass/fail verdicts."""
    n = len(pairs)
    seen = sum(a == b for a, b in pairs) / n
    p_a, p_b = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    chance = p_a * p_b + (1 - p_a) * (1 - p_b)
    return round((seen - chance) / (1 - chance), 4) if chance < 1 else 1.0


def measure(judge: Judge, cases: list[Case]) -> dict[str, object]:
    verdicts = [judge.grade(c.question, c.answer) for c in cases]
    truth = [c.label == "correct" for c in cases]
    said = [v.passed for v in verdicts]
    failing, passing = truth.count(False), truth.count(True)
    false_pass = [c for c, t, s in zip(cases, truth, said, strict=True) if s and not t]
    false_fail = [c for c, t, s in zip(cases, truth, said, strict=True) if t and not s]
    wrong = [
        {
            "id": c.question.id,
            "kind": c.kind,
            "label": c.label,
            "grade": v.grade,
            "reason": v.reason,
            "answer": c.answer,
        }
        for c, v, t, s in zip(cases, verdicts, truth, said, strict=True)
        if t != s
    ]
    return {
        "judge": judge.name,
        "cases": len(cases),
        "agreement": round(sum(t == s for t, s in zip(truth, said, strict=True)) / len(cases), 4),
        "false_pass_rate": round(len(false_pass) / failing, 4) if failing else 0.0,
        "false_fail_rate": round(len(false_fail) / passing, 4) if passing else 0.0,
        "kappa": kappa(list(zip(truth, said, strict=True))),
        "grade_agreement": round(
            sum(c.label == v.grade for c, v in zip(cases, verdicts, strict=True)) / len(cases), 4
        ),
        "wrong": wrong,
        "by_kind": dict(Counter(w["kind"] for w in wrong)),
    }


def by_source(judge: Judge, cases: list[Case]) -> dict[str, dict[str, object]]:
    """The figures on each source of cases (written while the judge was built, written after, real)."""
    return {
        src: measure(judge, [c for c in cases if c.source == src])
        for src in sorted({c.source for c in cases})
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--judge", choices=sorted(JUDGES), action="append", help="default: every judge")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cases = load_cases()
    results = [measure(JUDGES[name], cases) for name in args.judge or JUDGES]
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    kinds = Counter(c.label for c in cases)
    print(f"{len(cases)} labelled cases ({', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))})\n")
    print("| judge | agreement | false-pass rate | false-fail rate | Cohen's kappa | grade agreement |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['judge']} | {r['agreement']:.1%} | {r['false_pass_rate']:.1%} | "
            f"{r['false_fail_rate']:.1%} | {r['kappa']:.3f} | {r['grade_agreement']:.1%} |"
        )
    print("\nBy source of the cases:\n")
    print("| judge | source | cases | agreement | false-pass rate | false-fail rate | kappa |")
    print("|---|---|---|---|---|---|---|")
    for name in args.judge or JUDGES:
        for src, r in by_source(JUDGES[name], cases).items():
            print(
                f"| {name} | {src} | {r['cases']} | {r['agreement']:.1%} | {r['false_pass_rate']:.1%} | "
                f"{r['false_fail_rate']:.1%} | {r['kappa']:.3f} |"
            )
    for r in results:
        print(f"\n## {r['judge']}: {len(r['wrong'])} cases graded wrong")  # type: ignore[arg-type]
        for w in r["wrong"]:  # type: ignore[attr-defined]
            print(
                f"- {w['id']} [{w['kind']}] labelled {w['label']}, graded {w['grade']} ({w['reason']}): "
                f"{w['answer']!r}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
