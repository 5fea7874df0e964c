"""The domain model: studies, study sets, comparisons, hypotheses, scores and run results.

This is the one place where these concepts are defined; every layer (tools, agent, graphs, evals, CLI)
imports them from here. Models are pydantic v2 and validate on construction, so a bad comparison is
rejected with a one-line :class:`InputError` before any work is done.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GroupLabel = Literal["A", "B"]
"""Which group of a comparison: ``"A"`` (the first set) or ``"B"`` (the second set)."""


class RadDiffError(Exception):
    """Base class of every error this project raises on purpose."""


class InputError(RadDiffError):
    """Bad user input: a missing or corrupt file, an empty group, an unknown column. One line, names the thing."""


class StudyMetadata(BaseModel):
    """Per-study metadata used by confounder checks and filters. Unknown fields land in ``extra``."""

    model_config = ConfigDict(extra="forbid")

    view_position: str | None = Field(default=None, description="Projection, e.g. 'PA', 'AP', 'LATERAL'.")
    sex: str | None = Field(default=None, description="Patient sex as recorded, e.g. 'F', 'M'.")
    age: float | None = Field(default=None, ge=0, le=130, description="Patient age in years.")
    extra: dict[str, str | float | int | bool | None] = Field(
        default_factory=dict, description="Any other per-study fields (devices, site, scanner...)."
    )

    def as_flat_dict(self) -> dict[str, Any]:
        """Return all metadata as one flat mapping (typed fields first, then ``extra``), dropping ``None``."""
        flat: dict[str, Any] = {"view_position": self.view_position, "sex": self.sex, "age": self.age}
        flat.update(self.extra)
        return {k: v for k, v in flat.items() if v is not None}


class Study(BaseModel):
    """One study: an id, image files, a report, or both (at least one of them), and metadata.

    A study with a report and no image is a *report-only* study: a comparison made only of such studies runs
    in report-only mode (hypotheses scored on report text); mixing them with image studies is refused.
    """

    model_config = ConfigDict(extra="forbid")

    study_id: str = Field(min_length=1, description="Unique id of the study within a comparison.")
    image_paths: list[Path] = Field(
        default_factory=list, description="Image files of the study (PNG, JPEG, DICOM); empty for a report-only study."
    )
    report: str | None = Field(default=None, description="Free-text radiology report, if known.")
    report_path: Path | None = Field(default=None, description="Where the report text was read from.")
    metadata: StudyMetadata = Field(default_factory=StudyMetadata)

    @model_validator(mode="after")
    def _image_or_report(self) -> Study:
        if not self.image_paths and not (self.report and self.report.strip()):
            raise InputError(f"study {self.study_id!r}: no image and no report text (a study needs one of them)")
        return self

    @property
    def has_images(self) -> bool:
        """True when the study has at least one image file."""
        return bool(self.image_paths)

    @property
    def primary_image(self) -> Path:
        """The first image of the study, the one scored by default (an error for a report-only study)."""
        if not self.image_paths:
            raise InputError(f"study {self.study_id!r}: no image (a report-only study)")
        return self.image_paths[0]


class StudySet(BaseModel):
    """A named group of studies (one side of a comparison)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, description="Short name of the group, e.g. 'survivors'.")
    description: str = Field(default="", description="Free-text description of the group, if known.")
    studies: list[Study] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_ids(self) -> StudySet:
        seen: set[str] = set()
        for study in self.studies:
            if study.study_id in seen:
                raise InputError(f"group {self.name!r}: study id {study.study_id!r} appears twice")
            seen.add(study.study_id)
        return self

    def __len__(self) -> int:
        return len(self.studies)

    @property
    def has_reports(self) -> bool:
        """True when at least one study of the set carries report text."""
        return any(s.report for s in self.studies)


class Comparison(BaseModel):
    """Two study sets to contrast, and optionally the user's question or focus."""

    model_config = ConfigDict(extra="forbid")

    set_a: StudySet
    set_b: StudySet
    question: str = Field(default="", description="The user's question or focus, e.g. 'look at the left base'.")

    @model_validator(mode="after")
    def _valid_groups(self) -> Comparison:
        for group in (self.set_a, self.set_b):
            if not group.studies:
                raise InputError(f"group {group.name!r}: empty group (no studies)")
        ids_a = {s.study_id for s in self.set_a.studies}
        both = sorted(ids_a & {s.study_id for s in self.set_b.studies})
        if both:
            raise InputError(
                f"study {both[0]!r} is present in both groups ({len(both)} shared); a study must be in one group"
            )
        with_images = [s for _, s in self.all_studies() if s.has_images]
        if with_images and len(with_images) < len(self.set_a) + len(self.set_b):
            lone = next(s for _, s in self.all_studies() if not s.has_images)
            raise InputError(
                f"study {lone.study_id!r} has a report and no image, while {len(with_images)} studies have images: "
                "a comparison is of images (reports optional) or of reports only, not both"
            )
        paths_a = {p.resolve() for s in self.set_a.studies for p in s.image_paths}
        shared = sorted(str(p) for s in self.set_b.studies for p in s.image_paths if p.resolve() in paths_a)
        if shared:
            raise InputError(f"image {shared[0]} is present in both groups ({len(shared)} shared)")
        return self

    @property
    def report_only(self) -> bool:
        """True when no study has an image: the comparison runs in report-only mode (report-text scorer)."""
        return not any(s.has_images for _, s in self.all_studies())

    def group(self, label: GroupLabel) -> StudySet:
        """Return the set for group label ``"A"`` or ``"B"``."""
        if label == "A":
            return self.set_a
        if label == "B":
            return self.set_b
        raise ValueError(f"group label must be 'A' or 'B', got {label!r}")

    def all_studies(self) -> list[tuple[GroupLabel, Study]]:
        """Every study with its group label, group A first."""
        out: list[tuple[GroupLabel, Study]] = [("A", s) for s in self.set_a.studies]
        out.extend(("B", s) for s in self.set_b.studies)
        return out


class Hypothesis(BaseModel):
    """A proposed difference: a short clinical phrase more present in one group."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, description="The difference as a radiologist would write it.")
    group: GroupLabel = Field(description="The group in which the finding is more present.")
    rationale: str = Field(default="", description="Why it was proposed (evidence seen).")
    contrast: str | None = Field(
        default=None, description="Contrast prompt for negation-aware scoring, e.g. 'no pleural effusion'."
    )
    region: str | None = Field(default=None, description="Anatomical region the finding lives in, if any.")
    finding: str | None = Field(default=None, description="Finding vocabulary key, when known.")
    attributes: dict[str, str] = Field(default_factory=dict, description="Attributes (side, size, lobe...).")
    source: str = Field(default="", description="Who proposed it: policy name and round.")
    orient_by_data: bool = Field(
        default=False, description="A screening hypothesis with no claimed direction: scoring sets its group."
    )

    @property
    def key(self) -> str:
        """Normalised text used to deduplicate hypotheses."""
        return " ".join(self.text.lower().split())


class HypothesisScore(BaseModel):
    """How well one hypothesis separates group A from group B, with honest statistics."""

    model_config = ConfigDict(extra="forbid")

    auroc: float = Field(description="AUROC of the score for 'in group A' (0.5 = no separation).")
    ci_low: float = Field(description="Lower bound of the 95% DeLong confidence interval of the AUROC.")
    ci_high: float = Field(description="Upper bound of the 95% DeLong confidence interval of the AUROC.")
    p_value: float = Field(description="Two-sided p-value of AUROC = 0.5 (Mann-Whitney, normal approx.).")
    q_value: float = Field(description="Benjamini-Hochberg q-value across the hypotheses of the run.")
    mean_a: float = Field(description="Mean score in group A.")
    mean_b: float = Field(description="Mean score in group B.")
    effect_size: float = Field(default=0.0, description="Cohen's d of the scores (A minus B).")
    n_a: int = Field(default=0, ge=0)
    n_b: int = Field(default=0, ge=0)


class ScoredHypothesis(BaseModel):
    """A hypothesis with its score on a comparison and the studies that best show it."""

    model_config = ConfigDict(extra="forbid")

    hypothesis: Hypothesis
    score: HypothesisScore
    round: int = Field(default=0, ge=0, description="Round in which it was scored.")
    scorer: str = Field(default="", description="Model id of the scorer.")
    region: str | None = Field(default=None, description="Region the score was restricted to, if any.")
    evidence_a: list[str] = Field(default_factory=list, description="Most typical study ids of group A.")
    evidence_b: list[str] = Field(default_factory=list, description="Most typical study ids of group B.")

    @property
    def directional_auroc(self) -> float:
        """AUROC oriented by the hypothesis' group: high when it is more present where it claims."""
        return self.score.auroc if self.hypothesis.group == "A" else 1.0 - self.score.auroc

    @property
    def directional_ci(self) -> tuple[float, float]:
        """The 95% CI of :attr:`directional_auroc` (low, high)."""
        if self.hypothesis.group == "A":
            return self.score.ci_low, self.score.ci_high
        return 1.0 - self.score.ci_high, 1.0 - self.score.ci_low


class SkippedItem(BaseModel):
    """An input that was reported and skipped instead of stopping the run."""

    model_config = ConfigDict(extra="forbid")

    item: str = Field(description="The file or study id that was skipped.")
    reason: str = Field(description="One-line reason.")


class ConfounderReport(BaseModel):
    """How well each metadata field alone separates the groups, and how hypotheses track them."""

    model_config = ConfigDict(extra="forbid")

    field_auroc: dict[str, float] = Field(default_factory=dict, description="AUROC of each field for A vs B.")
    hypothesis_correlation: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="hypothesis text -> field -> correlation of its scores with the field."
    )
    hypothesis_overlap: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="hypothesis text -> better-ranked hypothesis of another finding -> within-group Spearman "
        "correlation of their scores.",
    )
    flagged: list[str] = Field(default_factory=list, description="Plain-language warnings.")


PrevalenceChannel = Literal["reports", "descriptions", "scorer"]
"""Where per-study calls come from: the report labeler on each study's report, the describer's calibrated
findings text of each image (labelled), or the scorer's contrast pair (P(X) > P(no X); not calibrated)."""


class Prevalence(BaseModel):
    """How often one channel calls a difference present in each group, with Fisher's exact test."""

    model_config = ConfigDict(extra="forbid")

    channel: PrevalenceChannel
    claim: str = Field(default="", description="What was counted: the finding, or the wording with its attributes.")
    calibrated: bool = Field(description="False for calls that no calibration stands behind (the scorer's pair).")
    positive_a: int = Field(ge=0, description="Studies of group A the channel calls positive.")
    n_a: int = Field(ge=0, description="Studies of group A the channel has a call for.")
    positive_b: int = Field(ge=0)
    n_b: int = Field(ge=0)
    p_value: float = Field(description="Fisher's exact test, one-sided in the difference's direction.")
    ci_low: float = Field(description="Lower bound of the 95% Newcombe interval of share A minus share B.")
    ci_high: float = Field(description="Upper bound of that interval.")

    @property
    def share_a(self) -> float:
        """Fraction of group A called positive."""
        return self.positive_a / self.n_a if self.n_a else 0.0

    @property
    def share_b(self) -> float:
        """Fraction of group B called positive."""
        return self.positive_b / self.n_b if self.n_b else 0.0

    def counts(self) -> str:
        """'28/30 vs 1/30' (group A first)."""
        return f"{self.positive_a}/{self.n_a} vs {self.positive_b}/{self.n_b}"


class Difference(BaseModel):
    """One distinct difference between the groups: a finding with its best-supported attributes, the wordings
    tested for it, its prevalence per channel, its image-text statistics and why it counts as independent."""

    model_config = ConfigDict(extra="forbid")

    text: str = Field(description="The difference in the best-supported wording.")
    group: GroupLabel = Field(description="The group in which it is more present.")
    finding: str | None = Field(default=None, description="Finding vocabulary key (None: free text).")
    attributes: dict[str, str] = Field(default_factory=dict)
    auroc: float = Field(description="Directional AUROC of the wording (high = more present where it claims).")
    ci_low: float
    ci_high: float
    p_value: float
    q_value: float
    prevalence: list[Prevalence] = Field(default_factory=list, description="Per-study calls, one entry per channel.")
    basis: str = Field(default="", description="Why it is reported as an independent difference.")
    decided_by: PrevalenceChannel | None = Field(
        default=None, description="The channel whose calls decided it (None: its image scores alone)."
    )
    conditional_p: float | None = Field(
        default=None, description="p of the group effect on its scores given the differences listed before it."
    )
    evidence_a: list[str] = Field(default_factory=list)
    evidence_b: list[str] = Field(default_factory=list)
    wordings: list[str] = Field(default_factory=list, description="Other wordings tested for it (with AUROC).")


class CovaryingSignal(BaseModel):
    """A hypothesis that separates the groups but is not reported as a difference, and why."""

    model_config = ConfigDict(extra="forbid")

    text: str
    group: GroupLabel
    finding: str | None = None
    auroc: float
    q_value: float
    follows: str | None = Field(default=None, description="The difference whose scores it follows most.")
    spearman: float | None = Field(default=None, description="Within-group Spearman with that difference.")
    conditional_p: float | None = None
    prevalence: list[Prevalence] = Field(default_factory=list)
    reason: str = ""


class RunResult(BaseModel):
    """Everything a run concluded: the differences, co-varying signals, every ranked hypothesis with statistics,
    skipped inputs, timings."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    set_a_name: str
    set_b_name: str
    n_a: int = Field(ge=0)
    n_b: int = Field(ge=0)
    question: str = ""
    summary: str = Field(default="", description="Plain-language summary of the differences.")
    differences: list[Difference] = Field(default_factory=list, description="Distinct, independent differences.")
    covarying: list[CovaryingSignal] = Field(
        default_factory=list, description="Signals that separate the groups but follow a difference or lack backing."
    )
    ranked: list[ScoredHypothesis] = Field(default_factory=list, description="Every tested hypothesis, ranked.")
    rounds: int = Field(default=0, ge=0)
    stop_reason: str = ""
    auroc_history: list[float] = Field(default_factory=list, description="Best AUROC after each round.")
    skipped: list[SkippedItem] = Field(default_factory=list)
    confounders: ConfounderReport | None = None
    settings: dict[str, Any] = Field(default_factory=dict)
    seconds: float = Field(default=0.0, ge=0)
    mode: Literal["images", "reports"] = Field(
        default="images",
        description="'reports': hypotheses were scored on report text only (a report-only comparison, or the "
        "reports_only ablation): no image was described, scored or zoomed into.",
    )
    llm_calls: int = Field(default=0, ge=0, description="LLM chat calls of the run (0 for the rules policy).")
    llm_tool_calls: int = Field(default=0, ge=0, description="Tool calls the LLM made (valid or not).")
    llm_tool_errors: int = Field(default=0, ge=0, description="Tool calls of the LLM that came back as errors.")
    llm_tokens: int = Field(default=0, ge=0, description="LLM tokens (prompt + completion) the run spent.")

    @property
    def n_skipped(self) -> int:
        """How many inputs were skipped."""
        return len(self.skipped)
