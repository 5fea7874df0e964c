"""The offline ``mini`` describer: findings text from ``mini-cxr-clip`` over the finding vocabulary.

For each finding, the decision score is the log-odds of "X" minus that of "no X" (the contrast pair), read
from the model's supervised statement head (statements it was not trained on, such as the number of
pacemaker leads, are scored zero-shot from their phrase); a finding is reported present above its calibrated
threshold (stored with the weights, calibrated on SynthCXR images never used in training). Attributes (side,
size, lobe, tip...) are the best-scoring value of each attribute. The text has the shape of a VLM caption: a
FINDINGS paragraph with pertinent negatives and an IMPRESSION line. A prompt that names findings gets an
explicit statement about each of them first.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from tools.backends.mini import CONFIG_FILE, MiniCXRClip, load_mini, weights_dir
from tools.phrasing import Statement
from tools.vocabulary import FINDINGS, describe_finding

if TYPE_CHECKING:
    from tools.settings import Settings

log = logging.getLogger(__name__)

PERTINENT_NEGATIVES = ("pleural_effusion", "pneumothorax", "consolidation", "cardiomegaly")
DEFAULT_THRESHOLD = 0.0
FindingCalls = dict[str, dict[str, str]]


class MiniDescriber:
    """Describer backend ``mini``: ``describe(images, prompt) -> list[str]`` and structured ``findings``."""

    backend = "mini"

    def __init__(self, model: MiniCXRClip, thresholds: dict[str, float] | None = None) -> None:
        self.model = model
        self.thresholds = dict(thresholds or {})
        self.keys = list(FINDINGS)
        self._present = [Statement(k, True) for k in self.keys]
        self._absent = [Statement(k, False) for k in self.keys]
        self._attr_statements: list[tuple[str, str, str, Statement]] = [
            (k, name, value, Statement(k, True, ((name, value),)))
            for k in self.keys
            for name, values in FINDINGS[k].attributes.items()
            for value in values
        ]
        self._statements = self._present + self._absent + [s for *_, s in self._attr_statements]

    @property
    def model_id(self) -> str:
        """The underlying model id."""
        return self.model.model_id

    def _logits(self, images: Sequence[np.ndarray]) -> np.ndarray:
        return self.model.statement_logits(images, self._statements)

    def decision_scores(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """(N, F) contrast scores logit('X') - logit('no X') in vocabulary order."""
        logits = self._logits(images)
        n = len(self.keys)
        return np.asarray(logits[:, :n] - logits[:, n : 2 * n])

    def findings(self, images: Sequence[np.ndarray]) -> list[FindingCalls]:
        """Structured calls per image: finding key -> chosen attributes, for findings above threshold."""
        if len(images) == 0:
            return []
        logits = self._logits(images)
        n = len(self.keys)
        decision = logits[:, :n] - logits[:, n : 2 * n]
        attr_logits = logits[:, 2 * n :]
        calls: list[FindingCalls] = []
        for row in range(len(images)):
            present: FindingCalls = {}
            for j, key in enumerate(self.keys):
                if decision[row, j] > self.thresholds.get(key, DEFAULT_THRESHOLD):
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
    return any(f" {syn} " in text or f" {syn}," in text or f" {syn}." in text for syn in FINDINGS[key].synonyms)


def render_description(calls: FindingCalls, focus: Sequence[str] = ()) -> str:
    """Render structured calls as a short report: FINDINGS paragraph and IMPRESSION line."""
    sentences = []
    for key in focus:
        if key in calls:
            sentences.append(f"There is {describe_finding(key, calls[key])}.")
        else:
            sentences.append(f"{FINDINGS[key].negation.capitalize()}.")
    for key, attrs in calls.items():
        if key not in focus:
            sentences.append(f"There is {describe_finding(key, attrs)}.")
    negatives = [FINDINGS[k].negation for k in PERTINENT_NEGATIVES if k not in calls and k not in focus]
    if negatives:
        sentences.append(f"{negatives[0].capitalize()}" + "".join(f", {n}" for n in negatives[1:]) + ".")
    impression = (
        "; ".join(describe_finding(k, a) for k, a in calls.items()).capitalize() + "."
        if calls
        else "No acute cardiopulmonary process."
    )
    return f"FINDINGS: {' '.join(sentences)}\nIMPRESSION: {impression}"


def load_describer_thresholds(folder: Any = None) -> dict[str, float]:
    """Calibrated per-finding thresholds stored in the weights' JSON (empty when not calibrated)."""
    path = (folder or weights_dir()) / CONFIG_FILE
    if not path.is_file():
        return {}
    data = json.loads(path.read_text())
    return {k: float(v) for k, v in data.get("describer", {}).get("thresholds", {}).items()}


def load_mini_describer(settings: Settings | None = None) -> MiniDescriber:
    """Factory used by the describer registry for the id ``mini``."""
    from tools.settings import Settings, resolve_device

    device = resolve_device(settings or Settings())
    return MiniDescriber(load_mini(device=device), load_describer_thresholds())
