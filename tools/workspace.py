"""The run workspace: one comparison, its lazily loaded backends and embeddings, and the radiologist's tools.

The agent (any policy) and the LangChain tools call these methods; each call is recorded as a
:class:`ToolCallRecord` (arguments, output summary, time, backend) and handed to ``on_tool_call`` (the
graph writes it to the run trace). Models load on first use through the registries; the full-set image
embeddings are computed once per workspace (and cached on disk by content hash across runs).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from tools.describers.base import DEFAULT_DESCRIBE_PROMPT
from tools.domain import (
    Comparison,
    ConfounderReport,
    CovaryingSignal,
    Difference,
    GroupLabel,
    Hypothesis,
    HypothesisScore,
    InputError,
    RadDiffError,
    ScoredHypothesis,
    SkippedItem,
    Study,
)
from tools.settings import Settings

if TYPE_CHECKING:
    from tools.ranking.differences import Channels
from tools.ranking.lines import hypothesis_line
from tools.ranking.ranking import family_of, rank_scored
from tools.reports.phrasing import annotate_hypothesis, crop_wording

log = logging.getLogger(__name__)


class ToolCallRecord(BaseModel):
    """One tool call, as written to the run trace."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    summary: str = ""
    seconds: float = 0.0
    backend: str = ""
    error: str | None = None


@dataclass
class _Embedded:
    embeddings: np.ndarray
    study_index: list[int]  # index into comparison.all_studies() of each row
    in_group_a: np.ndarray
    matrix: dict[str, np.ndarray] = field(default_factory=dict)  # hypothesis key -> scores per row


class Workspace:
    """Tools over one comparison: describe, read reports, score, zoom, grids, confounders."""

    def __init__(
        self,
        comparison: Comparison,
        *,
        settings: Settings | None = None,
        scorer: str | None = None,
        describer: str | None = None,
        seed: int = 0,
        evidence_k: int = 3,
        contrast: bool = True,
        artifacts_dir: Path | None = None,
        on_tool_call: Callable[[ToolCallRecord], None] | None = None,
    ) -> None:
        self.comparison = comparison
        self.settings = settings or Settings()
        self.scorer_id = scorer or self.settings.scorer
        self.describer_id = describer or self.settings.describer
        self.seed = seed
        self.evidence_k = evidence_k
        self.contrast = contrast
        self.artifacts_dir = artifacts_dir
        self.on_tool_call = on_tool_call
        self.records: list[ToolCallRecord] = []
        self.skipped: list[SkippedItem] = []
        self._studies: list[tuple[GroupLabel, Study]] = comparison.all_studies()
        self._by_id = {s.study_id: (g, s) for g, s in self._studies}
        self._by_path = {str(p): s.study_id for _, s in self._studies for p in s.image_paths}
        self._model: Any = None
        self._describer: Any = None
        self._cache: Any = None
        self._embedded: _Embedded | None = None
        self._report_rows: dict[str, dict[str, Any]] = {}

    # ------------------------------------------------------------------ plumbing

    def _record(
        self, tool: str, arguments: dict[str, Any], started: float, summary: str, error: str | None = None
    ) -> None:
        record = ToolCallRecord(
            tool=tool,
            arguments=arguments,
            summary=summary[:2000],
            seconds=round(time.perf_counter() - started, 3),
            backend=self.describer_id if tool == "describe_images" else self.scorer_id,
            error=error,
        )
        self.records.append(record)
        if self.on_tool_call is not None:
            self.on_tool_call(record)

    def _skip(self, items: Sequence[SkippedItem]) -> None:
        """Record skipped inputs once per study: a tool naming a study's image file counts as that study, and
        a study skipped again (by another tool, for another reason) keeps its first reason."""
        known = {s.item for s in self.skipped}
        for item in items:
            study_id = self._by_path.get(item.item, item.item)
            if study_id not in known:
                self.skipped.append(item.model_copy(update={"item": study_id}))
                known.add(study_id)
                log.warning("skipped %s", item.reason)

    @property
    def scores_reports(self) -> bool:
        """True when the scorer scores report text, not images (its registry entry says so: ``reports``)."""
        from tools.scorers.registry import scorer_scores_reports

        return scorer_scores_reports(self.scorer_id)

    @property
    def model(self) -> Any:
        """The image-text scorer (loaded on first use)."""
        if self._model is None:
            from tools.scorers.registry import load_scorer

            self._model = load_scorer(
                self.scorer_id,
                device=self.settings.device,
                dtype=self.settings.dtype,
                batch_size=self.settings.batch_size,
            )
        return self._model

    @property
    def cache(self) -> Any:
        """The persistent embedding cache."""
        if self._cache is None:
            from tools.embeddings.cache import EmbeddingCache

            self._cache = EmbeddingCache.from_settings(self.settings)
        return self._cache

    def study(self, study_id: str) -> tuple[GroupLabel, Study]:
        """Group and study for an id; a one-line error for an unknown id."""
        if study_id not in self._by_id:
            raise InputError(f"study {study_id!r}: no such study in this comparison")
        return self._by_id[study_id]

    def _sample(self, group: GroupLabel, n: int, seed: int, exclude: set[str], need_report: bool) -> list[Study]:
        pool = [s for s in self.comparison.group(group).studies if s.study_id not in exclude]
        if need_report:
            pool = [s for s in pool if s.report]
        rng = np.random.default_rng([seed, 0 if group == "A" else 1])
        order = rng.permutation(len(pool))[:n]
        return [pool[i] for i in sorted(order)]

    # ------------------------------------------------------------------ describe

    def describe(
        self,
        group: GroupLabel,
        n: int = 8,
        *,
        seed: int | None = None,
        exclude: set[str] | None = None,
        study_ids: Sequence[str] | None = None,
        prompt: str = DEFAULT_DESCRIBE_PROMPT,
    ) -> tuple[list[str], list[str]]:
        """Describe sampled (or given) studies of a group: (study ids, description texts)."""
        from tools.describers.cache import default_description_cache, describe_cached
        from tools.describers.registry import get_describer

        started = time.perf_counter()
        args = {"group": group, "n": n, "study_ids": list(study_ids or []), "prompt": prompt[:200]}
        if study_ids:
            studies = [self.study(sid)[1] for sid in study_ids]
        else:
            studies = self._sample(group, n, self.seed if seed is None else seed, exclude or set(), False)
        if self._describer is None:
            self._describer = get_describer(self.describer_id, self.settings)
        ids, images = [], []
        for study in studies:
            from tools.data.images import load_image

            try:
                images.append((None, load_image(study.primary_image)))
                ids.append(study.study_id)
            except InputError as exc:
                self._skip([SkippedItem(item=study.study_id, reason=str(exc))])
        texts = (
            describe_cached(self._describer, images, prompt, default_description_cache(self.settings)) if images else []
        )
        self._record("describe_images", args, started, f"{len(texts)} descriptions of group {group}")
        return ids, list(texts)

    # ------------------------------------------------------------------ reports

    def reports(
        self, group: GroupLabel, n: int = 8, *, seed: int | None = None, exclude: set[str] | None = None
    ) -> tuple[list[str], list[str]]:
        """Reports (FINDINGS + IMPRESSION) of sampled studies of a group that have one: (study ids, texts)."""
        from tools.reports.search import split_sections

        started = time.perf_counter()
        studies = self._sample(group, n, self.seed if seed is None else seed, exclude or set(), True)
        texts = [split_sections(s.report or "").body or (s.report or "") for s in studies]
        self._record("lookup_reports", {"group": group, "n": n}, started, f"{len(texts)} reports of group {group}")
        return [s.study_id for s in studies], texts

    # ------------------------------------------------------------------ scoring

    def _embed_all(self) -> _Embedded:
        if self._embedded is None:
            from tools.embeddings.cache import embed_images

            started = time.perf_counter()
            result = embed_images(
                self.model, [s for _, s in self._studies], self.cache, batch_size=self.settings.batch_size
            )
            self._skip(result.skipped)
            in_a = np.array([self._studies[i][0] == "A" for i in result.kept], dtype=bool)
            if not in_a.any() or in_a.all():
                raise InputError("after skipping unreadable images one group is empty; nothing can be scored")
            self._embedded = _Embedded(np.asarray(result.embeddings, dtype=np.float32), list(result.kept), in_a)
            self._record(
                "embed_images",
                {"n": len(self._studies)},
                started,
                f"{len(result.kept)} images embedded ({result.hit_rate:.0%} from cache), {len(result.skipped)} skipped",
            )
        return self._embedded

    def annotate(self, hypothesis: Hypothesis) -> Hypothesis:
        """Fill a hypothesis' finding key and attributes from its text (see :func:`annotate_hypothesis`)."""
        return annotate_hypothesis(hypothesis)

    def score(
        self, hypotheses: Sequence[Hypothesis], *, round_: int = 0, study_ids: Sequence[str] | None = None
    ) -> list[ScoredHypothesis]:
        """Score hypotheses on the full sets (or the given studies): AUROC, CI, p, q, evidence study ids."""
        started = time.perf_counter()
        args = {"hypotheses": [h.text for h in hypotheses], "subset": len(study_ids or [])}
        if not hypotheses:
            return []
        out = self._score_any(hypotheses, round_, study_ids)
        # screening hypotheses claim no direction: the data orients them
        flip = [i for i, s in enumerate(out) if s.hypothesis.orient_by_data and s.score.auroc < 0.5]
        if flip:
            turned = [out[i].hypothesis.model_copy(update={"group": "B"}) for i in flip]
            for i, rescored in zip(flip, self._score_any(turned, round_, study_ids), strict=True):
                out[i] = rescored
        summary = "; ".join(hypothesis_line(s, ci=False, test=None) for s in out[:12])
        self._record("score_hypotheses", args, started, summary)
        return out

    def _score_any(
        self, hypotheses: Sequence[Hypothesis], round_: int, study_ids: Sequence[str] | None
    ) -> list[ScoredHypothesis]:
        if self.scores_reports:
            return self._score_reports(hypotheses, round_)
        return self._score_images(hypotheses, round_, study_ids)

    def _score_images(
        self, hypotheses: Sequence[Hypothesis], round_: int, study_ids: Sequence[str] | None
    ) -> list[ScoredHypothesis]:
        from tools.scoring.engine import score_texts

        embedded = self._embed_all()
        rows = np.arange(len(embedded.study_index))
        if study_ids:
            wanted = set(study_ids)
            rows = np.array([r for r, i in enumerate(embedded.study_index) if self._studies[i][1].study_id in wanted])
            if rows.size == 0:
                raise InputError("none of the given study ids has a scored image")
        result = score_texts(
            self.model,
            embedded.embeddings[rows],
            embedded.in_group_a[rows],
            list(hypotheses),
            negation_aware=self.contrast,
            cache=self.cache,
            evidence_k=max(self.evidence_k, 1),
        )
        if not study_ids:
            for hyp, row in zip(hypotheses, result.matrix, strict=True):
                embedded.matrix[hyp.key] = np.asarray(row, dtype=np.float32)
        ids = [self._studies[embedded.study_index[r]][1].study_id for r in rows]
        return [
            self._scored(hyp, score, round_, [ids[i] for i in ev_a], [ids[i] for i in ev_b], None)
            for hyp, score, (ev_a, ev_b) in zip(hypotheses, result.scores, result.evidence, strict=True)
        ]

    def _score_reports(self, hypotheses: Sequence[Hypothesis], round_: int) -> list[ScoredHypothesis]:
        from tools.scorers.reports_scorer import ReportTextScorer
        from tools.scoring.contrast import contrast_for
        from tools.scoring.statistics import auroc_statistics, evidence_indices

        if self._model is None:
            self._model = ReportTextScorer()
        studies = [s for _, s in self._studies]
        contrasts = [contrast_for(h) for h in hypotheses] if self.contrast else None
        matrix, skipped = self._model.score(studies, [h.text for h in hypotheses], contrasts)
        self._skip(skipped)
        keep = np.flatnonzero(np.all(np.isfinite(matrix), axis=1))
        in_a = np.array([self._studies[i][0] == "A" for i in keep])
        if keep.size == 0 or not in_a.any() or in_a.all():
            raise InputError("report scorer: one group has no study with a report")
        scores = np.asarray(matrix[keep].T, dtype=np.float32)
        stats = auroc_statistics(scores, in_a).records()
        toward = np.array([h.group == "A" for h in hypotheses])
        evidence = evidence_indices(scores, in_a, k=max(self.evidence_k, 1), toward_a=toward)
        ids = [self._studies[i][1].study_id for i in keep]
        groups = [self._studies[i][0] for i in keep]
        for h, row in zip(hypotheses, scores, strict=True):
            self._report_rows[h.key] = {"ids": ids, "groups": groups, "scores": [float(v) for v in row]}
        return [
            self._scored(h, s, round_, [ids[i] for i in a], [ids[i] for i in b], None)
            for h, s, (a, b) in zip(hypotheses, stats, evidence, strict=True)
        ]

    def _scored(
        self,
        hyp: Hypothesis,
        score: HypothesisScore,
        round_: int,
        ev_a: list[str],
        ev_b: list[str],
        region: str | None,
    ) -> ScoredHypothesis:
        return ScoredHypothesis(
            hypothesis=hyp,
            score=score,
            round=round_,
            scorer=getattr(self._model, "model_id", self.scorer_id),
            region=region,
            evidence_a=ev_a[: self.evidence_k],
            evidence_b=ev_b[: self.evidence_k],
        )

    # ------------------------------------------------------------------ zoom

    def zoom(
        self, region: str, hypotheses: Sequence[Hypothesis], *, n_per_group: int = 40, round_: int = 0
    ) -> tuple[list[ScoredHypothesis], dict[str, Any]]:
        """Crop ``region`` from sampled studies of both groups (from the original images) and re-score there.

        A failure (an unknown region, no usable crop in a group) is recorded as a failed tool call and raised
        as :class:`InputError` for the caller to report.
        """
        started = time.perf_counter()
        args = {"region": region, "hypotheses": [h.text for h in hypotheses], "n_per_group": n_per_group}
        try:
            return self._zoom(region, hypotheses, n_per_group, round_, started, args)
        except InputError as exc:
            self._record("localize_and_zoom", args, started, f"zoom into {region!r} failed", error=str(exc))
            raise

    def _zoom(
        self,
        region: str,
        hypotheses: Sequence[Hypothesis],
        n_per_group: int,
        round_: int,
        started: float,
        args: dict[str, Any],
    ) -> tuple[list[ScoredHypothesis], dict[str, Any]]:
        from tools.data.grids import build_ab_grid
        from tools.regions.crops import crop_paths
        from tools.scoring.engine import score_texts

        groups: tuple[GroupLabel, GroupLabel] = ("A", "B")
        chosen = {g: self._sample(g, n_per_group, self.seed + 7919, set(), False) for g in groups}
        crops: dict[str, list[np.ndarray]] = {}
        ids: list[str] = []
        in_a: list[bool] = []
        for group in groups:
            studies = chosen[group]
            found, skipped = crop_paths([s.primary_image for s in studies], region)
            self._skip(skipped)
            by_path = {c.path: c for c in found}
            crops[group] = []
            for study in studies:
                crop = by_path.get(study.primary_image)
                if crop is not None:
                    crops[group].append(crop.image)
                    ids.append(study.study_id)
                    in_a.append(group == "A")
        if not crops["A"] or not crops["B"]:
            raise InputError(f"region {region!r}: no usable crop in one of the groups")
        data: dict[str, Any] = {"n_a": len(crops["A"]), "n_b": len(crops["B"])}
        if self.artifacts_dir is not None:
            self.artifacts_dir.mkdir(parents=True, exist_ok=True)
            grid = build_ab_grid(crops["A"][:8], crops["B"][:8])
            path = self.artifacts_dir / f"zoom-{region}-round{round_}.png"
            grid.save(path)
            data["grid"] = str(path)
        out: list[ScoredHypothesis] = []
        if hypotheses and not self.scores_reports:
            embeddings = self.model.encode_images(crops["A"] + crops["B"])
            result = score_texts(
                self.model,
                np.asarray(embeddings, dtype=np.float32),
                np.array(in_a),
                [crop_wording(h) for h in hypotheses],
                negation_aware=self.contrast,
                cache=self.cache,
                evidence_k=max(self.evidence_k, 1),
            )
            for hyp, score, (ev_a, ev_b) in zip(hypotheses, result.scores, result.evidence, strict=True):
                out.append(self._scored(hyp, score, round_, [ids[i] for i in ev_a], [ids[i] for i in ev_b], region))
            data["aurocs"] = {s.hypothesis.text: round(s.directional_auroc, 4) for s in out}
        summary = f"zoomed {region}: " + "; ".join(f"{k}: {v}" for k, v in data.get("aurocs", {}).items())
        self._record("localize_and_zoom", args, started, summary)
        return out, data

    # ------------------------------------------------------------------ final report

    def score_rows(self, hypotheses: Sequence[Hypothesis]) -> dict[str, dict[str, Any]]:
        """Per-study scores of full-image hypotheses: key -> {"ids", "groups", "scores"} (for plots and reports).

        Rows kept from verification are reused; missing ones are scored now (from cached embeddings) without
        being recorded as agent tool calls.
        """
        missing = [h for h in hypotheses if h.key not in self._rows()]
        if missing:
            hook, self.on_tool_call = self.on_tool_call, None
            try:
                self._score_any(missing, 0, None)
            finally:
                self.on_tool_call = hook
        rows = self._rows()
        return {h.key: rows[h.key] for h in hypotheses if h.key in rows}

    def _rows(self) -> dict[str, dict[str, Any]]:
        if self.scores_reports:
            return self._report_rows
        if self._embedded is None:
            return {}
        embedded = self._embedded
        ids = [self._studies[i][1].study_id for i in embedded.study_index]
        groups = [self._studies[i][0] for i in embedded.study_index]
        return {
            key: {"ids": ids, "groups": groups, "scores": [float(v) for v in row]}
            for key, row in embedded.matrix.items()
        }

    def finalize(
        self, pool: Sequence[ScoredHypothesis], support: dict[str, float] | None = None
    ) -> list[ScoredHypothesis]:
        """Deduplicate and rank (``support``: text evidence per hypothesis key, the tie-breaker after AUROC);
        q-values recomputed by Benjamini-Hochberg across all of the run's tests."""
        from tools.scoring.statistics import benjamini_hochberg

        ranked = rank_scored(pool, support)
        if not ranked:
            return []
        q_values = benjamini_hochberg([s.score.p_value for s in ranked])
        return [
            s.model_copy(update={"score": s.score.model_copy(update={"q_value": float(q)})})
            for s, q in zip(ranked, q_values, strict=True)
        ]

    def prevalence_channels(self, describe_per_group: int, *, use_reports: bool = True) -> Channels:
        """Per-study calls for prevalence: every report labelled, and the describer's calls on up to
        ``describe_per_group`` studies of each group (0: no description channel); cached descriptions are reused."""
        from tools.ranking.differences import Channels, positive_mentions
        from tools.reports.phrases import text_phrases
        from tools.reports.search import split_sections

        started = time.perf_counter()
        reports: dict[GroupLabel, list[Any]] | None = None
        phrases: dict[str, dict[GroupLabel, list[frozenset[str]]]] = {}
        if use_reports and (self.comparison.set_a.has_reports or self.comparison.set_b.has_reports):
            reports = {"A": [], "B": []}
            phrases["reports"] = {"A": [], "B": []}
            for group, study in self._studies:
                if study.report:
                    text = split_sections(study.report).body or study.report
                    reports[group].append(positive_mentions(text))
                    phrases["reports"][group].append(frozenset(text_phrases(text)))
        descriptions: dict[GroupLabel, list[Any]] | None = None
        if describe_per_group > 0:
            descriptions = {"A": [], "B": []}
            groups: tuple[GroupLabel, GroupLabel] = ("A", "B")
            for group in groups:
                chosen = self._sample(group, describe_per_group, self.seed, set(), False)
                _ids, texts = self.describe(group, study_ids=[s.study_id for s in chosen])
                descriptions[group] = [positive_mentions(t) for t in texts]
                phrases.setdefault("descriptions", {"A": [], "B": []})[group] = [
                    frozenset(text_phrases(t)) for t in texts
                ]
        summary = ", ".join(
            f"{name}: {len(v['A'])} vs {len(v['B'])} studies"
            for name, v in (("reports", reports), ("descriptions", descriptions))
            if v is not None
        )
        self._record("prevalence_calls", {"describe_per_group": describe_per_group}, started, summary or "none")
        return Channels(reports=reports, descriptions=descriptions, phrases=phrases)  # type: ignore[arg-type]

    def differences(
        self, ranked: Sequence[ScoredHypothesis], channels: Channels
    ) -> tuple[list[Difference], list[CovaryingSignal]]:
        """Distinct, independent differences and the co-varying signals of a ranked list
        (:func:`tools.ranking.differences.select_differences`)."""
        from tools.ranking.differences import select_differences

        started = time.perf_counter()
        whole = [s.hypothesis for s in ranked if s.region is None]
        table = self.score_rows(whole)
        if not table:
            return [], []
        first = next(iter(table.values()))
        in_a = np.array([g == "A" for g in first["groups"]], dtype=bool)
        # rows of one comparison score the same studies in the same order; a row of other studies is left out
        rows = {k: np.asarray(r["scores"], dtype=np.float64) for k, r in table.items() if r["ids"] == first["ids"]}
        differences, covarying = select_differences(ranked, rows, in_a, channels)
        self._record(
            "select_differences",
            {"tested": len(ranked)},
            started,
            f"{len(differences)} differences: "
            + "; ".join(d.text for d in differences)
            + f"; {len(covarying)} co-varying signals",
        )
        return differences, covarying

    def confounders(self, top: Sequence[ScoredHypothesis]) -> ConfounderReport | None:
        """How well each metadata field separates the groups, how the top hypotheses' scores track the fields,
        and which top hypotheses' scores follow a better-ranked one's (see :mod:`tools.scoring.confounders`)."""
        from tools.scoring.confounders import check_confounders

        started = time.perf_counter()
        if self.scores_reports:
            return None
        embedded = self._embed_all()  # a resumed run's fresh workspace: embeddings come from the cache
        missing = [s.hypothesis for s in top if s.hypothesis.key not in embedded.matrix and s.region is None]
        if missing:
            self.score_rows(missing)
        metadata = [self._studies[i][1].metadata for i in embedded.study_index]
        scores = {
            s.hypothesis.text: embedded.matrix[s.hypothesis.key] for s in top if s.hypothesis.key in embedded.matrix
        }
        if not any(m.as_flat_dict() for m in metadata) and len(scores) < 2:
            self._record("confounder_check", {}, started, "no per-study metadata and one hypothesis: nothing to check")
            return None
        findings = {s.hypothesis.text: family_of(s)[0] for s in top}
        try:
            report = check_confounders(metadata, embedded.in_group_a, scores, findings=findings)
        except RadDiffError as exc:
            self._record("confounder_check", {}, started, "", error=str(exc))
            return None
        self._record("confounder_check", {"hypotheses": list(scores)}, started, "; ".join(report.flagged) or "no flag")
        return report


def open_workspace(comparison: Comparison, **kwargs: Any) -> Workspace:
    """Create the workspace of a run (backends load lazily on first use)."""
    return Workspace(comparison, **kwargs)
