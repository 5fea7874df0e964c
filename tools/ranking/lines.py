"""One formatter for every line that states a hypothesis, a difference or a co-varying signal.

Terminal summaries, result.md, the chat app, the trace, the LLM's briefs and tool results all state a claim the
same way: ``<text> (more in <group>) [<region>]: <prevalence>; AUROC 0.912 (95% CI 0.850-0.970, q=0.001)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from tools.domain import CovaryingSignal, Difference, Prevalence, ScoredHypothesis


def claim_text(text: str, group: str, region: str | None = None) -> str:
    """``<text> (more in <group>)``, with `` [<region>]`` for a zoomed score."""
    return f"{text} (more in {group})" + (f" [{region}]" if region else "")


def evidence_text(
    auroc: float,
    ci: tuple[float, float] | None = None,
    *,
    q_value: float | None = None,
    p_value: float | None = None,
) -> str:
    """``AUROC 0.912 (95% CI 0.850-0.970, q=0.001)``; the CI and the q- (or p-) value only when given."""
    inside = [f"95% CI {ci[0]:.3f}-{ci[1]:.3f}"] if ci is not None else []
    if q_value is not None:
        inside.append(f"q={q_value:.2g}")
    if p_value is not None:
        inside.append(f"p={p_value:.2g}")
    return f"AUROC {auroc:.3f}" + (f" ({', '.join(inside)})" if inside else "")


def hypothesis_line(item: ScoredHypothesis, *, ci: bool = True, test: Literal["q", "p"] | None = "q") -> str:
    """One tested hypothesis: its claim (text, group, region), AUROC in the claimed direction, its 95% CI and its
    q-value (``test="p"``: the uncorrected p-value of a single test; None: neither)."""
    return f"{claim_text(item.hypothesis.text, item.hypothesis.group, item.region)}: " + evidence_text(
        item.directional_auroc,
        item.directional_ci if ci else None,
        q_value=item.score.q_value if test == "q" else None,
        p_value=item.score.p_value if test == "p" else None,
    )


def prevalence_text(items: Sequence[Prevalence]) -> str:
    """'reports: pleural effusion 30/30 vs 0/30, moderate right pleural effusion 28/30 vs 0/30; scorer: ... 27/30
    vs 2/30 (uncalibrated)': each channel's counts, the finding first, then with the wording's attributes."""
    by_channel: dict[str, list[str]] = {}
    for p in items:
        text = (f"{p.claim} " if p.claim else "") + p.counts() + ("" if p.calibrated else " (uncalibrated)")
        by_channel.setdefault(p.channel, []).append(text)
    return "; ".join(f"{channel}: {', '.join(texts)}" for channel, texts in by_channel.items())


def difference_line(item: Difference) -> str:
    """One difference: text, group, prevalence per channel, AUROC with its 95% CI and q-value."""
    found = prevalence_text(item.prevalence)
    stats = evidence_text(item.auroc, (item.ci_low, item.ci_high), q_value=item.q_value)
    return claim_text(item.text, item.group) + (f": {found}" if found else "") + f"; {stats}"


def covarying_line(item: CovaryingSignal) -> str:
    """One co-varying signal: text, group, AUROC and q-value, and why it is not a difference."""
    return f"{claim_text(item.text, item.group)}: AUROC {item.auroc:.3f}, q={item.q_value:.2g}: {item.reason}"
