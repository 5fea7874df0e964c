"""The convergence rule shared by every policy: when the hypothesize-verify-reflect loop must stop."""

from __future__ import annotations

import time
from collections.abc import Sequence

from agent.context import RunContext
from agent.state import Budget, RoundStat


def run_seconds(budget: Budget, context: RunContext, now: float | None = None) -> float:
    """Seconds the run has been running: wall time since it started, less the time it spent interrupted."""
    return (time.time() if now is None else now) - budget.started_at - context.paused_s


def stop_reason(history: Sequence[RoundStat], budget: Budget, context: RunContext, now: float | None = None) -> str:
    """Return why the loop must stop now, or ``""`` to go on.

    Stops when the best AUROC reaches the ceiling (from the second verified round on: the first round's
    hypotheses get one chance to be sharpened, since a saturated AUROC says nothing about specificity); when,
    over the last round, neither the best AUROC nor
    the mean of the top k improved by at least ``convergence_delta``; at the round budget; when the time
    or token budget is spent. ``history`` holds one entry per verified round.
    """
    if not history:
        return ""
    last = history[-1]
    if last.best_auroc >= context.auroc_ceiling and len(history) >= 2:
        return f"best AUROC {last.best_auroc:.3f} reached the ceiling {context.auroc_ceiling:.3f}"
    if len(history) >= context.max_rounds:
        return f"round budget of {context.max_rounds} rounds spent"
    spent = budget_spent(budget, context, now)
    if spent:
        return spent
    if len(history) >= 2:
        prev = history[-2]
        gain_best = last.best_auroc - prev.best_auroc
        gain_topk = last.topk_mean - prev.topk_mean
        if gain_best < context.convergence_delta and gain_topk < context.convergence_delta:
            return (
                f"converged: best AUROC {prev.best_auroc:.3f} -> {last.best_auroc:.3f} and top-{context.top_k} mean "
                f"{prev.topk_mean:.3f} -> {last.topk_mean:.3f} improved less than {context.convergence_delta}"
            )
    return ""


def budget_spent(budget: Budget, context: RunContext, now: float | None = None) -> str:
    """Why the run's time or token budget is spent, or ``""`` (also checked before each LLM agent turn)."""
    elapsed = run_seconds(budget, context, now)
    if elapsed >= context.time_budget_s:
        return f"time budget of {context.time_budget_s:.0f} s spent ({elapsed:.0f} s)"
    if context.token_budget and budget.tokens >= context.token_budget:
        return f"token budget of {context.token_budget} spent ({budget.tokens})"
    return ""
