"""The run context: every setting of one agent run, typed and described, in one object.

Nodes read it through LangGraph's runtime (``runtime.context``); nothing here is stored in the graph state,
so a resumed run may be given the same context again. Loop limits and budgets live here, not as literals.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from tools.scorers.registry import scorer_scores_reports
from tools.settings import Settings

if TYPE_CHECKING:
    from agent.session import RunSession


class RunContext(BaseModel):
    """Settings of one agent run (models, rounds, samples, budgets, ablations, seeds)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str = Field(default="run", description="Id of the run: names its folder, trace and checkpoint thread.")
    run_dir: Path = Field(default=Path("raddiff-runs/run"), description="Folder for results, trace and report.")
    llm: str = Field(
        default="rules",
        description="'rules' (offline policy) or an LLM: 'openai:MODEL', a model name, or 'local[:MODEL]' (offline).",
    )
    llm_base_url: str | None = Field(default=None, description="OpenAI-compatible server base URL for the LLM.")
    scorer: str = Field(default="mini", description="Image-text scorer id ('mini', 'chexzero:PATH', ...).")
    describer: str = Field(default="mini", description="Describer id ('mini', 'chexagent:ID', 'openai:MODEL').")
    max_rounds: int = Field(default=4, ge=1, le=50, description="Most hypothesize-verify-reflect rounds.")
    samples_per_group: int = Field(default=12, ge=1, le=500, description="Studies described per group in the survey.")
    hypotheses_per_round: int = Field(default=8, ge=1, le=100, description="New hypotheses proposed per round.")
    top_k: int = Field(default=5, ge=1, le=50, description="Best hypotheses fed back to the reflection step.")
    convergence_delta: float = Field(
        default=0.01, ge=0, le=1, description="Stop when best and top-k mean AUROC improve less than this in a round."
    )
    auroc_ceiling: float = Field(default=0.98, gt=0.5, le=1, description="Stop once the best AUROC reaches this.")
    time_budget_s: float = Field(default=900.0, gt=0, description="Wall-clock budget of the run, seconds.")
    token_budget: int = Field(default=200_000, ge=0, description="LLM tokens (prompt + completion) the run may spend.")
    tool_call_budget: int = Field(default=40, ge=1, description="Tool calls the LLM may make in one reflection step.")
    max_repairs: int = Field(default=2, ge=0, le=10, description="Retries of a malformed structured LLM answer.")
    require_tool_call: bool = Field(
        default=True, description="The LLM's first turn of each reflection must call a tool (tool_choice=required)."
    )
    llm_max_tokens: int = Field(default=512, ge=16, le=32768, description="Most tokens of one LLM answer.")
    zoom_samples: int = Field(default=40, ge=2, description="Studies per group re-scored on a zoomed region.")
    prevalence_describe_max: int = Field(
        default=200,
        ge=0,
        le=100_000,
        description="Studies per group the describer calls at the report, for each difference's prevalence "
        "(0: only the report labeler and the scorer's calls).",
    )
    evidence_k: int = Field(default=3, ge=0, le=20, description="Most/least typical studies kept per hypothesis.")
    seed: int = Field(default=0, description="Seed of every random choice of the run.")
    use_zoom: bool = Field(default=True, description="Ablation switch: allow localize-and-zoom.")
    use_reports: bool = Field(default=True, description="Ablation switch: read reports when present.")
    use_images: bool = Field(default=True, description="Ablation switch: describe images (False = reports only).")
    refine: bool = Field(default=True, description="Ablation switch: False = single pass (VisDiff-style).")
    contrast_scoring: bool = Field(default=True, description="Score hypotheses against a contrast prompt.")
    image_grids: bool = Field(
        default=False, description="Send RadDiff-style 4x5 image grids of each group to a multimodal LLM proposer."
    )
    settings: Settings = Field(
        default_factory=Settings,
        description="The project settings the run was started with (device, dtype, batch size, cache folder, "
        "remote code); the workspace and its models use this object, never settings rebuilt from the environment.",
    )
    paused_s: float = Field(
        default=0.0,
        ge=0,
        description="Seconds the run was not running (between an interruption and its resume); the time budget "
        "does not count them. Set by the runner on resume.",
    )
    _session: Any = PrivateAttr(default=None)  # the run's RunSession (agent.session), never serialised

    @property
    def session(self) -> RunSession | None:
        """The run's in-memory session (trace, workspace, policy), when one is attached."""
        return self._session

    def attach_session(self, session: RunSession | None) -> None:
        """Attach the run's session (the runner does, before the graph runs); copies of this context share it."""
        self._session = session

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> RunContext:
        """Build a context from the project settings, then apply ``overrides`` (``None`` values ignored)."""
        values: dict[str, object] = {
            "llm": settings.llm,
            "llm_base_url": settings.llm_base_url,
            "scorer": settings.scorer,
            "describer": settings.describer,
            "max_rounds": settings.max_rounds,
            "seed": settings.seed,
            "settings": settings,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls.model_validate(values)

    def report_only(self) -> RunContext:
        """This context in report-only mode: hypotheses scored on report text, no image description or zoom."""
        return self.model_copy(
            update={"scorer": "reports", "use_images": False, "use_zoom": False, "use_reports": True}
        )

    @property
    def scores_reports(self) -> bool:
        """True when hypotheses are scored on report text (report-only mode or the reports_only ablation)."""
        return scorer_scores_reports(self.scorer) and not self.use_images
