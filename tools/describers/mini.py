"""The offline ``mini`` describer: findings text from ``mini-cxr-clip`` over the finding vocabulary.

For each finding, the decision score is the log-odds of "X" minus that of "no X" (the contrast pair), read
from the model's supervised statement head (statements it was not trained on, such as the number of
pacemaker leads, are scored zero-shot from their phrase). When the model has a dense head and the stored
calibration holds its statistics, the decision is the mean of two standardised scores: that contrast and the
peak of the finding's dense map (where the model sees the finding most strongly; small things such as a rib
fracture or a nodule show there better than in the pooled image features). A finding is reported present
above its calibrated threshold (stored with the weights, calibrated on SynthCXR images never used in
training). Attributes (side, size, lobe, tip...) are the best-scoring value of each attribute. The text has
the shape of a VLM caption: a FINDINGS paragraph with pertinent negatives and an IMPRESSION line. A prompt
that names findings gets an explicit statement about each of them first.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.domain import InputError
from tools.reports.phrasing import Statement
from tools.scorers.mini import CONFIG_FILE, MiniCXRClip, load_mini, weights_dir
from tools.vocabulary import PLANTABLE_FINDINGS, describe_finding

if TYPE_CHECKING:
    from tools.settings import Settings

log = logging.getLogger(__name__)

PERTINENT_NEGATIVES = ("pleural_effusion", "pneumothorax", "consolidation", "cardiomegaly")
DEFAULT_THRESHOLD = 0.0
FindingCalls = dict[str, dict[str, str]]
# per finding, (mean, sd) on the calibration images of each decision component: "statement" (the contrast
# of the statement head) and "dense" (the peak of the finding's dense map)
FusionStats = dict[str, dict[str, tuple[float, float]]]


@dataclass(frozen=True)
class DescriberCalibration:
    """What calibration stores for the describer: per-finding thresholds on the decision score, and the
    statistics that standardise its two components (None: decide on the statement head's contrast alone)."""

    thresholds: dict[str, float] = field(default_factory=dict)
    fusion: FusionStats | None = None

    def to_record(self) -> dict[str, Any]:
        """JSON-able form (stored under ``describer`` in the weights' JSON)."""
        record: dict[str, Any] = {"thresholds": self.thresholds}
        if self.fusion is not None:
            record["fusion"] = {part: {k: list(v) for k, v in stats.items()} for part, stats in self.fusion.items()}
        return record

    @classmethod
    def fusion_statistics(cls, contrast: np.ndarray, dense: np.ndarray, keys: Sequence[str]) -> FusionStats:
        """Per finding, the mean and sd of each ``(N, F)`` decision component on calibration images."""
        return {
            name: {k: (float(col.mean()), float(col.std() + 1e-6)) for k, col in zip(keys, scores.T, strict=True)}
            for name, scores in (("statement", contrast), ("dense", dense))
        }

    def fuse(self, contrast: np.ndarray, dense: np.ndarray | None, keys: Sequence[str]) -> np.ndarray:
        """The ``(N, F)`` decision score: the mean of the two standardised components, or the contrast alone
        without fusion statistics (or without a dense head)."""
        if self.fusion is None or dense is None:
            return contrast
        parts = []
        for name, scores in (("statement", contrast), ("dense", dense)):
            mean = np.array([self.fusion[name][k][0] for k in keys])
            sd = np.array([self.fusion[name][k][1] for k in keys])
            parts.append((scores - mean) / sd)
        return np.asarray((parts[0] + parts[1]) / 2.0)

    def digest(self) -> str:
        """A short hash of the calibration ("" when empty)."""
        record = self.to_record()
        if not record["thresholds"] and "fusion" not in record:
            return ""
        return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:12]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DescriberCalibration:
        """Inverse of :meth:`to_record`."""
        fusion = record.get("fusion")
        return cls(
            {k: float(v) for k, v in record.get("thresholds", {}).items()},
            {part: {k: (float(v[0]), float(v[1])) for k, v in stats.items()} for part, stats in fusion.items()}
            if fusion
            else None,
        )


class MiniDescriber:
    """Describer backend ``mini``: ``describe(images, prompt) -> list[str]`` and structured ``findings``."""

    backend = "mini"

    def __init__(self, model: MiniCXRClip, calibration: DescriberCalibration | None = None) -> None:
        self.model = model
        self.calibration = calibration or DescriberCalibration()
        digest = self.calibration.digest()
        # the description cache is keyed by the model id: new thresholds or fusion statistics give new descriptions
        self.model_id = f"{model.model_id}+calibration@{digest}" if digest else model.model_id
        self.keys = list(PLANTABLE_FINDINGS)
        self._present = [Statement(k, True) for k in self.keys]
        self._absent = [Statement(k, False) for k in self.keys]
        self._attr_statements: list[tuple[str, str, str, Statement]] = [
            (k, name, value, Statement(k, True, ((name, value),)))
            for k in self.keys
            for name, values in PLANTABLE_FINDINGS[k].attributes.items()
            for value in values
        ]
        self._statements = self._present + self._absent + [s for *_, s in self._attr_statements]
        self._dense_columns = (
            [model.dense_maps.index(k) for k in self.keys] if all(k in model.dense_maps for k in self.keys) else None
        )
        fusion = self.calibration.fusion
        if fusion is not None:
            missing = sorted({k for k in self.keys for part in ("statement", "dense") if k not in fusion.get(part, {})})
            if missing:
                raise InputError(f"describer calibration: no fusion statistics for {', '.join(missing)}; recalibrate")
            if self._dense_columns is None:
                log.warning("%s: no dense map for every finding; deciding on the statement head alone", model.model_id)

    def component_scores(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        """One pass: ``(N, F)`` contrasts logit('X') - logit('no X') in vocabulary order, ``(N, F)`` peaks of
        the findings' dense maps (None without a dense head) and ``(N, A)`` attribute log-odds."""
        logits, peaks = self.model.image_evidence(images, self._statements)
        n = len(self.keys)
        dense = peaks[:, self._dense_columns] if peaks is not None and self._dense_columns is not None else None
        return np.asarray(logits[:, :n] - logits[:, n : 2 * n]), dense, logits[:, 2 * n :]

    def decision_scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, F) decision scores in vocabulary order (compared with the per-finding thresholds)."""
        contrast, dense, _ = self.component_scores(images)
        return self.calibration.fuse(contrast, dense, self.keys)

    def findings(self, images: Sequence[np.ndarray]) -> list[FindingCalls]:
        """Structured calls per image: finding key -> chosen attributes, for findings above threshold."""
        if len(images) == 0:
            return []
        contrast, dense, attr_logits = self.component_scores(images)
        decision = self.calibration.fuse(contrast, dense, self.keys)
        calls: list[FindingCalls] = []
        for row in range(len(images)):
            present: FindingCalls = {}
            for j, key in enumerate(self.keys):
                if decision[row, j] > self.calibration.thresholds.get(key, DEFAULT_THRESHOLD):
                    present[key] = self._attributes(key, attr_logits[row])
            calls.append(present)
        return calls

    def _attributes(self, key: str, attr_logits: np.ndarray) -> dict[str, str]:
        best: dict[str, tuple[float, str]] = {}
        for i, (finding, name, value, _statement) in enumerate(self._attr_statements):
            if finding == key and (name not in best or attr_logits[i] > best[name][0]):
                best[name] = (float(attr_logits[i]), value)
        return {name: value for name, (_score, value) in best.items()}

    def describe(self, images: list[np.ndarray], prompt: str) -> list[str]:
        """One radiology-style description per image (FINDINGS with pertinent negatives, IMPRESSION)."""
        focus = [k for k in self.keys if _mentions(prompt, k)]
        return [render_description(calls, focus) for calls in self.findings(images)]


def _mentions(prompt: str, key: str) -> bool:
    text = f" {prompt.lower()} "
    return any(
        f" {syn} " in text or f" {syn}," in text or f" {syn}." in text for syn in PLANTABLE_FINDINGS[key].synonyms
    )


def render_description(calls: FindingCalls, focus: Sequence[str] = ()) -> str:
    """Render structured calls as a short report: FINDINGS paragraph and IMPRESSION line."""
    sentences = []
    for key in focus:
        if key in calls:
            sentences.append(f"There is {describe_finding(key, calls[key])}.")
        else:
            sentences.append(f"{PLANTABLE_FINDINGS[key].negation.capitalize()}.")
    for key, attrs in calls.items():
        if key not in focus:
            sentences.append(f"There is {describe_finding(key, attrs)}.")
    negatives = [PLANTABLE_FINDINGS[k].negation for k in PERTINENT_NEGATIVES if k not in calls and k not in focus]
    if negatives:
        sentences.append(f"{negatives[0].capitalize()}" + "".join(f", {n}" for n in negatives[1:]) + ".")
    impression = (
        "; ".join(describe_finding(k, a) for k, a in calls.items()).capitalize() + "."
        if calls
        else "No acute cardiopulmonary process."
    )
    return f"FINDINGS: {' '.join(sentences)}\nIMPRESSION: {impression}"


def load_describer_calibration(folder: Any = None) -> DescriberCalibration:
    """The describer calibration stored in the weights' JSON (empty when not calibrated)."""
    path = (folder or weights_dir()) / CONFIG_FILE
    if not path.is_file():
        return DescriberCalibration()
    return DescriberCalibration.from_record(json.loads(path.read_text()).get("describer", {}))


def load_mini_describer(settings: Settings | None = None) -> MiniDescriber:
    """Factory used by the describer registry for the id ``mini``."""
    from tools.settings import Settings, resolve_device

    device = resolve_device(settings or Settings())
    return MiniDescriber(load_mini(device=device), load_describer_calibration())
