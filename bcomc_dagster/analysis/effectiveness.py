"""Did the loop work? Pass rate per service per iteration, gains on the services each iteration targeted
vs the rest, regressions, iterations to target, and training pairs per point of pass rate gained.

Each checkpoint is compared with the model that was live before it (the last promoted one): that is what
the promotion gate compares, and a rejected checkpoint never changes what users are served. Pass rates
are those of the decided part of the suite (what the gate, the stop rule and the target use); the
held-out part, which drives no decision, is shown beside them as the unbiased figure."""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from bcomc_dagster.evals.report import EvalReport


class IterationGain(BaseModel):
    iteration: int
    pass_rate: float  # the decided part (the whole suite when nothing is held out)
    delta: float
    targeted: list[str]
    targeted_gain: float | None  # mean change of the targeted services' pass rates vs the previous iteration
    untargeted_gain: float | None
    pairs_added: int
    pairs_asked: int | None = None  # what the generation plan asked for (pairs_added: what was kept)
    pass_rate_analyzed: float | None = None
    pass_rate_held_out: float | None = None  # unbiased: drives no decision
    promoted: bool = True  # False: the promotion gate rejected the checkpoint; the live model stayed
    pass_rate_suite: float | None = None  # the whole suite, held-out part included


class Regression(BaseModel):
    iteration: int
    service: str
    before: float  # the live model's pass rate before this checkpoint
    after: float
    promoted: bool = True  # False: the checkpoint was rejected, users never saw the drop


class Effectiveness(BaseModel):
    campaign: str
    target: float
    baseline_pass_rate: float  # the decided part
    final_pass_rate: float
    iterations_to_target: int | None
    baseline_held_out: float | None = None  # the held-out part (None: nothing is held out)
    final_held_out: float | None = None
    per_service: dict[str, dict[int, float]]  # service -> iteration -> pass rate
    iterations: list[IterationGain]
    regressions: list[Regression]
    ever_targeted_gain: float | None  # baseline -> last, services targeted at least once
    never_targeted_gain: float | None
    pairs_total: int
    pairs_per_point: float | None  # training pairs per percentage point gained since the baseline
    regression_margin: float = 10.0  # the no-regression target: no service that passed loses more, live
    contaminated_pairs: int | None = None  # training pairs of the last dataset that resemble an eval question
    dropped_by_reason: dict[str, int] = {}  # generated pairs the quality filters dropped, all iterations

    @property
    def live_regressions(self) -> list[Regression]:
        """Drops beyond the margin that users saw: in promoted checkpoints, of services that passed before."""
        return [
            r
            for r in self.regressions
            if r.promoted and r.before > 0 and r.before - r.after > self.regression_margin
        ]

    def held_out_line(self) -> str:
        """Which figure is which: the decided part against the unbiased held-out part."""
        if self.final_held_out is None or self.baseline_held_out is None:
            return (
                "Every question decides (no held-out part): there is no unbiased figure; set "
                "held_out_fraction for one."
            )
        return (
            f"These are the decided part's figures (the gate, the stop rule and the target use them); the "
            f"held-out part, which drives no decision, went {self.baseline_held_out:.1f}% → "
            f"{self.final_held_out:.1f}% (the unbiased estimate)."
        )

    def service_table(self) -> pd.DataFrame:
        df = pd.DataFrame(self.per_service).T.sort_index()
        df.columns = [f"it{c}" for c in df.columns]
        return df

    def iteration_table(self) -> pd.DataFrame:
        """One row per iteration: pass rate, delta, what it targeted and gained, pairs added."""
        rejected = [g.iteration for g in self.iterations if not g.promoted]
        return pd.DataFrame(
            [
                {
                    "iteration": g.iteration,
                    "pass rate": g.pass_rate,
                    "delta": g.delta,
                    "targeted": ", ".join(g.targeted),
                    "targeted gain": g.targeted_gain,
                    "untargeted gain": g.untargeted_gain,
                    "pairs added": g.pairs_added,
                    **({"pairs asked": g.pairs_asked} if g.pairs_asked is not None else {}),
                    **(
                        {"held out": g.pass_rate_held_out, "whole suite": g.pass_rate_suite}
                        if g.pass_rate_held_out is not None
                        else {}
                    ),
                    **({"promoted": "yes" if g.promoted else "no"} if rejected else {}),
                }
                for g in self.iterations
            ]
        )

    def markdown(self) -> str:
        gains = self.iteration_table()
        reached = (
            f"iteration {self.iterations_to_target}"
            if self.iterations_to_target is not None
            else "not reached"
        )
        lines = [
            f"# Loop effectiveness — campaign `{self.campaign}`",
            "",
            f"Pass rate {self.baseline_pass_rate:.1f}% → {self.final_pass_rate:.1f}%; target "
            f"{self.target:g}%: {reached}. {self.held_out_line()}",
            f"Services ever targeted gained {_pts(self.ever_targeted_gain)} on average; never targeted: "
            f"{_pts(self.never_targeted_gain)}. {self.pairs_total} training pairs, "
            + (
                f"{self.pairs_per_point:.1f} per point gained."
                if self.pairs_per_point
                else "no gain to divide by."
            ),
            f"Drops users saw (a service that passed losing more than {self.regression_margin:g} points in "
            "a promoted checkpoint): "
            + (f"{len(self.live_regressions)}" if self.live_regressions else "none")
            + " (the gate judges drops on the same questions, paired: one flipped question of four is 25 "
            "points, and no regression).",
            *(
                [f"Contamination: {self.contaminated_pairs} training pairs resemble an eval question."]
                if self.contaminated_pairs is not None
                else []
            ),
            *(
                [
                    "Dropped by the quality filters: "
                    + (", ".join(f"{k} {v}" for k, v in self.dropped_by_reason.items() if v) or "none")
                    + "."
                ]
                if self.dropped_by_reason
                else []
            ),
            "",
            "## Iterations",
            "",
            gains.to_markdown(index=False, floatfmt=".1f") if len(gains) else "(baseline only)",
            "",
            "## Pass rate per service",
            "",
            self.service_table().to_markdown(floatfmt=".1f"),
            "",
            "## Regressions",
            "",
        ]
        lines += [
            f"- iteration {r.iteration}: **{r.service}** {r.before:.1f}% → {r.after:.1f}%"
            + ("" if r.promoted else " (checkpoint rejected: the live model stayed)")
            for r in self.regressions
        ] or ["none"]
        return "\n".join(lines) + "\n"


def _pts(v: float | None) -> str:
    return "n/a" if v is None else f"{v:+.1f} points"


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 2) if xs else None


def effectiveness(
    campaign: str,
    target: float,
    reports: dict[int, EvalReport],
    targeted: dict[int, list[str]],
    pairs_added: dict[int, int],
    contaminated_pairs: int | None = None,
    dropped_by_reason: dict[str, int] | None = None,
    promoted: dict[int, bool] | None = None,
    regression_margin: float = 10.0,
    pairs_asked: dict[int, int] | None = None,
) -> Effectiveness:
    """``reports`` by iteration (0 = baseline); ``targeted[i]``: the services iteration i generated for;
    ``promoted[i]``: whether the gate kept iteration i's checkpoint live (default: yes)."""
    its = sorted(reports)
    ok = {i: (promoted or {}).get(i, True) for i in its}
    rates = {i: {s: r.pass_rate for s, r in reports[i].results_by_service.items()} for i in its}
    services = sorted({s for i in its for s in rates[i]})
    gains, regressions = [], []
    prev = its[0]  # the live model before each checkpoint
    for i in its[1:]:
        deltas = {s: rates[i][s] - rates[prev][s] for s in services if s in rates[i] and s in rates[prev]}
        tgt = targeted.get(i, [])
        gains.append(
            IterationGain(
                iteration=i,
                pass_rate=reports[i].decided_pass_rate,
                delta=round(reports[i].decided_pass_rate - reports[prev].decided_pass_rate, 2),
                pass_rate_suite=reports[i].pass_rate,
                targeted=tgt,
                targeted_gain=_mean([d for s, d in deltas.items() if s in tgt]),
                untargeted_gain=_mean([d for s, d in deltas.items() if s not in tgt]),
                pairs_added=pairs_added.get(i, 0),
                pairs_asked=(pairs_asked or {}).get(i),
                pass_rate_analyzed=reports[i].pass_rate_analyzed,
                pass_rate_held_out=reports[i].pass_rate_held_out,
                promoted=ok[i],
            )
        )
        regressions += [
            Regression(iteration=i, service=s, before=rates[prev][s], after=rates[i][s], promoted=ok[i])
            for s, d in deltas.items()
            if d < 0
        ]
        prev = i if ok[i] else prev
    first, last = its[0], prev  # the baseline and the model live at the end
    ever = {s for i in its for s in targeted.get(i, [])}
    total_gain = {
        s: rates[last][s] - rates[first][s] for s in services if s in rates[last] and s in rates[first]
    }
    reached = [i for i in its if reports[i].decided_pass_rate >= target and ok[i]]
    pairs = sum(pairs_added.values())
    gained = reports[last].decided_pass_rate - reports[first].decided_pass_rate
    return Effectiveness(
        campaign=campaign,
        target=target,
        baseline_pass_rate=reports[first].decided_pass_rate,
        final_pass_rate=reports[last].decided_pass_rate,
        baseline_held_out=reports[first].pass_rate_held_out,
        final_held_out=reports[last].pass_rate_held_out,
        iterations_to_target=reached[0] if reached else None,
        per_service={s: {i: rates[i][s] for i in its if s in rates[i]} for s in services},
        iterations=gains,
        regressions=regressions,
        ever_targeted_gain=_mean([d for s, d in total_gain.items() if s in ever]),
        never_targeted_gain=_mean([d for s, d in total_gain.items() if s not in ever]),
        pairs_total=pairs,
        pairs_per_point=round(pairs / gained, 2) if gained > 0 else None,
        contaminated_pairs=contaminated_pairs,
        dropped_by_reason=dropped_by_reason or {},
        regression_margin=regression_margin,
    )
