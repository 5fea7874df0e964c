"""Structured LLM outputs (pydantic), kept apart from the graph state.

The LLM policy asks for these with structured output; a malformed answer is repaired or retried a bounded
number of times (``RunContext.max_repairs``) and whatever is valid is kept.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tools.domain import GroupLabel, Hypothesis

Action = Literal["refine", "zoom", "describe_more", "read_reports", "stop"]


class ProposedHypothesis(BaseModel):
    """One proposed difference, as the LLM writes it."""

    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=3, max_length=200, description="The difference as a radiologist would write it.")
    group: GroupLabel = Field(description="'A' if more present in group A, 'B' if more present in group B.")
    rationale: str = Field(default="", max_length=600, description="Evidence seen that supports it.")
    contrast: str | None = Field(default=None, max_length=200, description="The negated statement, e.g. 'no X'.")
    region: str | None = Field(default=None, description="Anatomical region key, if localized.")

    def to_hypothesis(self, source: str) -> Hypothesis:
        """Convert to the domain model, tagging where it came from."""
        return Hypothesis(
            text=self.text.strip(),
            group=self.group,
            rationale=self.rationale,
            contrast=self.contrast,
            region=self.region,
            source=source,
        )


class Proposal(BaseModel):
    """The hypothesize step's answer: several candidate differences."""

    hypotheses: list[ProposedHypothesis] = Field(description="Candidate differences, most likely first.")


class Decision(BaseModel):
    """The reflect step's answer: what to do next, and refinements to test."""

    action: Action = Field(description="refine | zoom | describe_more | read_reports | stop")
    reason: str = Field(default="", max_length=800, description="Why this action.")
    region: str | None = Field(default=None, description="Region key to zoom into (action 'zoom').")
    hypotheses: list[ProposedHypothesis] = Field(
        default_factory=list, description="Refined or new hypotheses to verify next (action 'refine')."
    )
